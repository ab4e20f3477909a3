"""`spn_tf.codec` against PNG, WebP lossless and JPEG XL lossless, in real file sizes.

Two held-out domains, each trained the way a user would (`--dataset=folder_crops:`: random
crops of the model's size at full resolution, from a folder of PNGs written here) for at most
`--train_cpu_seconds` of CPU time (default 600: 10 CPU-minutes; Adam 1e-3, batches of 16;
`small` presets with the discretized logistic mixture head, 8 bits):
  * photos — RGB, a 32 model trained on scikit-image's ten full-size photos (the originals of
    the embedded ones), coding the held-out stereo pair `skimage.data.stereo_motorcycle()`
    (left and right, 741x500 each) at full size: 24 x 16 tiles an image, edge tiles
    overlapping;
  * faces — grayscale, a 16 model trained on the first 150 of scikit-image's `lfw_subset`
    (25x25 faces and non-faces, a small-image set that ships in a package), coding the other
    50 (4 overlapping tiles an image: the price of tiling at this size is measured);
    the raster kind codes whole images (it is fully convolutional) and here also tiles, which
    measures what tiling costs (context lost at tile edges, overlap coded twice).
Classical codecs (`classical.py`: strongest lossless settings, each decoded and checked) code
each image as its own file and, their best case, all held-out images of a set as one mosaic.
Ours: one file per set (`spn_tf.codec.encode_images`, its header, tables, names and overlap
included), decoded and checked; encode and decode seconds per megapixel on this machine.

Usage: python benchmarks/codec.py [--kinds multiscale spn] [--train_cpu_seconds 600]
       [--sets photos faces] [--json out]   (needs `pip install -e .[bench]`)
"""

import argparse
import json
import os
import tempfile
import time

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import numpy as np
from PIL import Image
from skimage import data as skdata

import classical
from heads import Trainer
from spn_tf import codec, data, models

TRAIN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                "immunohistochemistry", "brick", "grass", "gravel")


def photos():
    """`(train, held-out)`: uint8 `(H, W, 3)` lists."""
    train = [np.asarray(getattr(skdata, name)()) for name in TRAIN_PHOTOS]
    train = [np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x[..., :3] for x in train]
    left, right, _ = skdata.stereo_motorcycle()
    return train, [left, right]


def faces():
    """`(train, held-out)`: uint8 `(25, 25, 1)` lists."""
    faces = np.round(skdata.lfw_subset() * 255).astype(np.uint8)[..., None]
    return list(faces[:150]), list(faces[150:])


SETS = {"photos": (photos, 32, 3), "faces": (faces, 16, 1)}


def train(kind, images, size, channels, cpu_seconds, folder):
    """A model trained on crops of `images` (written as PNGs into `folder`)."""
    for i, image in enumerate(images):
        Image.fromarray(image.squeeze(-1) if channels == 1 else image).save(
            os.path.join(folder, f"{i:03d}.png"))
    model = models.build(kind, size, channels=channels, bits=8, preset="small",
                         head="logistic_mixture")
    model.build()
    batches = iter(data.load(f"folder_crops:{folder}", "train", image_size=size, bits=8,
                             channels=channels, batch_size=16, repeat=True))
    trainer = Trainer(model, batches)
    trainer.train_for(cpu_seconds, clock=time.process_time)
    return model, trainer.steps


def ours(model, images, batch_size=64, whole=None):
    megapixels = sum(x.shape[0] * x.shape[1] for x in images) / 1e6
    start = time.perf_counter()
    coded = codec.encode_images(model, images, batch_size=batch_size, whole=whole)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded, _ = codec.decode_images(model, coded)
    decode_s = time.perf_counter() - start
    assert all(np.array_equal(a, b) for a, b in zip(decoded, images)), "round trip failed"
    row = {"bytes": len(coded), "encode_s_per_mp": encode_s / megapixels,
           "decode_s_per_mp": decode_s / megapixels}
    if whole is None:  # the model's -log2 p(x) of what the file codes (tiles, or whole)
        row["info_bytes"] = sum(codec.image_bits(model, x) for x in images) / 8
    return row


def run_set(name, kinds, cpu_seconds):
    load, size, channels = SETS[name]
    train_images, held_out = load()
    dims = sum(x.size for x in held_out)
    rows = {}
    for codec_name in classical.available():
        rows[codec_name] = {"bytes": sum(classical.sizes(x)[codec_name] for x in held_out)}
    if len({x.shape for x in held_out}) == 1:
        mosaic = classical.mosaic(held_out)
        for codec_name, size_bytes in classical.sizes(mosaic).items():
            rows[codec_name + " (one mosaic)"] = {"bytes": size_bytes}
    for kind in kinds:
        with tempfile.TemporaryDirectory() as folder:
            model, steps = train(kind, train_images, size, channels, cpu_seconds, folder)
        label = f"spn_tf {kind} ({model.count_params():,} params, {steps} steps)"
        rows[label + (", whole images" if model.fully_convolutional else ", tiles")] = ours(
            model, held_out)
        if model.fully_convolutional:
            rows[label + ", tiles"] = ours(model, held_out, whole=False)
        for row_name in [r for r in rows if r.startswith(label)]:
            print(f"  {name}: {row_name}: {json.dumps(rows[row_name])}", flush=True)
    for row in rows.values():
        row["bits_per_subpixel"] = 8 * row["bytes"] / dims
        if "info_bytes" in row:
            row["info_bits_per_subpixel"] = 8 * row["info_bytes"] / dims
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["multiscale", "spn"])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--train_cpu_seconds", type=float, default=600)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    report = {name: run_set(name, args.kinds, args.train_cpu_seconds) for name in args.sets}
    for name, rows in report.items():
        print(f"\n{name}: bits per sub-pixel of the held-out images (real file bytes)")
        for codec_name, row in sorted(rows.items(), key=lambda r: r[1]["bits_per_subpixel"]):
            times = (f"  encode {row['encode_s_per_mp']:.0f} s/MP, decode "
                     f"{row['decode_s_per_mp']:.0f} s/MP" if "decode_s_per_mp" in row else "")
            if "info_bytes" in row:
                times += (f"; model -log2 p(x) {row['info_bits_per_subpixel']:.3f} (file "
                          f"+{100 * (row['bytes'] / row['info_bytes'] - 1):.2f}%)")
            print(f"  {row['bits_per_subpixel']:.3f}  {codec_name}{times}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
