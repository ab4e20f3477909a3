"""How often the compiled sampler gives the reference sampler's images for the same seed.

Both samplers consume the same noise (one uniform per sub-pixel, drawn once from the seed)
by inverse CDF, but the compiled one runs XLA (and, for raster-order loops, a cached network
on windows and one attention query per pixel) while the reference runs the whole network as
a TF graph: their logits differ in float rounding. A uniform that falls within that rounding
of a CDF boundary draws a neighbouring value, and every later sub-pixel of the image then
sees a different past. So "compiled == reference" is observed, not guaranteed: this script
measures it, per model kind, as the fraction of images (and of sub-pixels) identical over
`--images` images: `--images / --batch_size` seeds, each a batch whose rows draw
independent noise. Untrained weights (`--preset` sizes): the rate depends on the rounding
and on the number of sub-pixels, and it may differ on trained weights.

`--rows` measures the SavedModel contract instead ("same noise, batched arithmetic"): the
exported `sample` signature (default plain-graph export, and `--xla`) is called once with
`--images` rows, row i seeded `(0, i)`, and row i is compared with `model.sample(1, (0, i))`
in this process (the compiled sampler, at batch 1). Both draw row i from the same noise; they
differ in batched vs batch-1 arithmetic (and graph vs XLA for the default export).

Usage:
  python benchmarks/agreement.py --size=8 --images=1000 --batch_size=250
  python benchmarks/agreement.py --rows --size=8 --images=1000
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from spn_tf import models
from spn_tf.export import export_model

FLAGS = flags.FLAGS
flags.DEFINE_list("kinds", ["raster", "spn", "upscaling", "multiscale_a", "multiscale_b"],
                  "Model kinds to compare.")
flags.DEFINE_integer("size", 8, "Image size (height = width).")
flags.DEFINE_integer("channels", 3, "Image channels.")
flags.DEFINE_integer("bits", 8, "Bits per sub-pixel.")
flags.DEFINE_string("preset", "small", "Model preset.")
flags.DEFINE_integer("images", 1000, "Images compared per kind.")
flags.DEFINE_integer("batch_size", 250, "Images per sampler call (one seed per call).")
flags.DEFINE_bool("rows", False, "Compare the exported `sample` signature's rows with "
                  "model.sample(1, seed[i]) instead of compiled with reference.")

# Per kind: the model name and its overrides (S = 2 so that SPNs have several slices; type B
# multiscale groups in 4x4 patches).
KINDS = {"raster": ("raster", {}), "spn": ("spn", {"subscale_factor": 2}),
         "upscaling": ("upscaling", {"subscale_factor": 2}),
         "multiscale_a": ("multiscale", {}),
         "multiscale_b": ("multiscale", {"group_pixelcnn_patch": 4})}


def agreement(model, images, batch_size):
    """`(identical images, identical sub-pixels, images compared)` over seeds 0, 1, ..."""
    same_images = same_subpixels = total = 0
    for seed in range(-(-images // batch_size)):
        compiled = model.sample(batch_size, seed).numpy()
        reference = model.sample(batch_size, seed, mode="reference").numpy()
        equal = compiled == reference
        same_images += int(np.all(equal, axis=(1, 2, 3)).sum())
        same_subpixels += int(equal.sum())
        total += batch_size
    return same_images, same_subpixels, total


def row_agreement(model, rows):
    """Per export (`graph`, `xla`): `(identical rows, identical sub-pixels)` of one `sample`
    signature call of `rows` rows against `model.sample(1, seed[i])`."""
    seeds = np.stack([np.zeros(rows), np.arange(rows)], 1).astype(np.int32)
    alone = np.concatenate([model.sample(1, seed).numpy() for seed in seeds])
    out = {}
    for xla in (False, True):
        path = os.path.join(tempfile.mkdtemp(prefix="spn_tf_agreement_"), "1")
        export_model(model, path, xla=xla, warmup_batch_sizes=())
        batched = tf.saved_model.load(path).signatures["sample"](
            seed=tf.constant(seeds), temperature=tf.ones([rows]))["images"].numpy()
        equal = batched == alone
        out["xla" if xla else "graph"] = (int(np.all(equal, axis=(1, 2, 3)).sum()),
                                          float(equal.mean()))
    return out


def _models():
    """`(kind, built model)` for every `--kinds` entry."""
    for kind in FLAGS.kinds:
        name, overrides = KINDS[kind]
        model = models.build(name, FLAGS.size, channels=FLAGS.channels, bits=FLAGS.bits,
                             preset=FLAGS.preset, **overrides)
        model.build()
        yield kind, model


def main(argv):
    del argv
    geometry = (f"{FLAGS.size}x{FLAGS.size}x{FLAGS.channels} at {FLAGS.bits} bits, "
                f"`{FLAGS.preset}` presets, untrained weights;")
    if FLAGS.rows:
        print(f"{geometry} one `sample` call of {FLAGS.images} rows (row i seeded (0, i)) "
              f"against model.sample(1, (0, i)) compiled.")
        print("| kind | parameters | rows | default export: identical rows | sub-pixels | "
              "`--xla` export: identical rows | sub-pixels | seconds |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print(f"{geometry} seeds of {FLAGS.batch_size} images each.")
        print("| kind | parameters | images | identical images | identical sub-pixels | "
              "seconds |")
        print("|---|---|---|---|---|---|")
    for kind, model in _models():
        start = time.perf_counter()
        if FLAGS.rows:
            out = row_agreement(model, FLAGS.images)
            cells = " | ".join(f"{same} ({same / FLAGS.images:.2%}) | {subpixels:.4%}"
                               for same, subpixels in (out["graph"], out["xla"]))
            print(f"| {kind} | {model.count_params():,} | {FLAGS.images} | {cells} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)
            continue
        same_images, same_subpixels, total = agreement(model, FLAGS.images, FLAGS.batch_size)
        subpixels = total * FLAGS.size ** 2 * FLAGS.channels
        print(f"| {kind} | {model.count_params():,} | {total} | {same_images} "
              f"({same_images / total:.2%}) | {same_subpixels / subpixels:.4%} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
