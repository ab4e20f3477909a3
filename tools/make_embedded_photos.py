"""Rebuilds spn_tf/data_files/photos.npz from scikit-image's public-domain / CC0 sample photos.

Run once by a maintainer (needs `pip install scikit-image`); the package itself only reads the
npz. Each photo is resized (area averaging) so its shorter side is 128 pixels; grayscale
textures are replicated to RGB. Crops are cut at load time (spn_tf/data.py).
"""

import numpy as np
import skimage.data
import tensorflow as tf

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
          "immunohistochemistry", "brick", "grass", "gravel")


def main(out="spn_tf/data_files/photos.npz", short_side=128):
    arrays = {}
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        img = img[..., :3]
        h, w = img.shape[:2]
        scale = short_side / min(h, w)
        size = (round(h * scale), round(w * scale))
        small = tf.image.resize(img[None].astype(np.float32), size, method="area")[0]
        arrays[name] = np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)
    np.savez_compressed(out, **arrays)


if __name__ == "__main__":
    main()
