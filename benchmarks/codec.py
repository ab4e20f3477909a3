"""`spn_tf.codec` against PNG, WebP lossless and JPEG XL lossless on held-out photos.

Each kind (`--kinds`, default raster, spn, multiscale, upscaling; `small` presets with the
discretized logistic mixture head, 32x32x3 at 8 bits) trains on the embedded photos for
`--train_seconds` of wall-clock (Adam 1e-3, batches of 16: `heads.Trainer`), then codes
held-out crops (`data.embedded_arrays("test")`: one crop per photo, from strips no training
crop touches) and two images unlike the photos (synthetic: a two-colour checkerboard of 4x4
squares and a smooth diagonal gradient; observed, they are where a photo-trained model loses).

Per image and codec, bits per sub-pixel of one file holding that image alone (headers
included: what a user stores), and ours also as the model's `-log2 p(x)` and as the coded
stream alone (the checks: stream within 1% + 64 bits of `-log2 p(x)`). PNG: Pillow,
`optimize=True`; WebP: Pillow, `lossless=True, quality=100, method=6` (its slowest, best);
JPEG XL: `imagecodecs.jpegxl_encode(lossless=True, effort=9)` where imagecodecs installs
(`pip install imagecodecs`; skipped with a note otherwise). Seconds per image: ours for the
whole batch of held-out images coded together (one file, batch = all), divided by their
number; the others per image.

Usage: python benchmarks/codec.py [--kinds raster spn] [--train_seconds 240] [--json out]
"""

import argparse
import io
import json
import time

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import numpy as np
from PIL import Image

from heads import BITS, CHANNELS, SIZE, Trainer
from spn_tf import codec, data, models

try:
    import imagecodecs
except ImportError:  # an optional benchmark dependency
    imagecodecs = None


def unlike_photos():
    """uint8 `(2, SIZE, SIZE, 3)`: a checkerboard of two colours and a diagonal gradient."""
    ii, jj = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    board = np.where(((ii // 4 + jj // 4) % 2)[..., None] == 0, [200, 40, 40], [30, 30, 160])
    ramp = np.stack([ii * 8, jj * 8, (ii + jj) * 4], -1)
    return np.stack([board, ramp]).clip(0, 255).astype(np.uint8)


def pillow_bytes(image, **options):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)
    return len(buffer.getvalue())


BASELINES = {
    "PNG": lambda x: pillow_bytes(x, format="PNG", optimize=True),
    "WebP lossless": lambda x: pillow_bytes(x, format="WEBP", lossless=True, quality=100,
                                            method=6),
}
if imagecodecs is not None:
    BASELINES["JPEG XL lossless"] = lambda x: len(imagecodecs.jpegxl_encode(
        x, lossless=True, effort=9))


def baseline_rows(images):
    rows = {}
    for name, size_of in BASELINES.items():
        start = time.perf_counter()
        sizes = [size_of(x) for x in images]
        rows[name] = {"bits": [8 * s / images[0].size for s in sizes],
                      "encode_s": (time.perf_counter() - start) / len(images)}
    return rows


def ours(model, images):
    """Per image: file bits (the image alone in a file), -log2 p(x), and the bits of one file
    of all the images (all per sub-pixel); encode and decode seconds per image (all images
    in one batch)."""
    images = images.astype(np.int32)
    dims = images[0].size
    start = time.perf_counter()
    data_all = codec.encode(model, images, batch_size=len(images))
    encode_s = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    decoded = codec.decode(model, data_all)
    decode_s = (time.perf_counter() - start) / len(images)
    assert np.array_equal(decoded, images), "round trip failed"
    info = -model.log_prob(images).numpy() / np.log(2)
    file_bits = 8 * len(data_all)
    single = [8 * len(codec.encode(model, x[None], batch_size=1)) / dims for x in images]
    return {"bits": single, "batch_file_bits": file_bits / (dims * len(images)),
            "info_bits": list(info / dims), "batch_file_over_info": file_bits / info.sum(),
            "encode_s": encode_s,
            "decode_s": decode_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["raster", "spn", "multiscale",
                                                       "upscaling"])
    parser.add_argument("--train_seconds", type=float, default=240)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    held_out, _ = data.embedded_arrays("test", SIZE)
    held_out = held_out[::32]  # one crop per photo
    unlike = unlike_photos()
    report = {"held_out": baseline_rows(held_out), "unlike": baseline_rows(unlike),
              "models": {}}
    for kind in args.kinds:
        model = models.build(kind, SIZE, channels=CHANNELS, bits=BITS, preset="small",
                             head="logistic_mixture")
        model.build()  # the optimizer is built on the weights
        trainer = Trainer(model)
        trainer.train_for(args.train_seconds)
        report["models"][kind] = {"params": model.count_params(), "steps": trainer.steps}
        report["held_out"][kind] = ours(model, held_out)
        report["unlike"][kind] = ours(model, unlike)
        print(f"{kind}: {model.count_params():,} parameters, {trainer.steps} steps in "
              f"{trainer.seconds:.0f} s", flush=True)
    for name, rows in (("held-out photos", report["held_out"]),
                       ("unlike the photos (checkerboard, gradient)", report["unlike"])):
        print(f"\n{name}: bits per sub-pixel of a one-image file (mean over images; per image "
              f"in brackets for the two synthetic ones), seconds per image")
        for codec_name, row in rows.items():
            per_image = ("" if name.startswith("held") else
                         " [" + ", ".join(f"{b:.2f}" for b in row["bits"]) + "]")
            extra = ""
            if "info_bits" in row:
                extra = (f"; -log2 p(x) {np.mean(row['info_bits']):.3f}, all images in one "
                         f"file {row['batch_file_bits']:.3f} (x{row['batch_file_over_info']:.4f}"
                         f" of it, header and tables included), decode {row['decode_s']:.2f} s")
            print(f"  {codec_name:18s} {np.mean(row['bits']):.3f}{per_image}  encode "
                  f"{row['encode_s']:.3f} s{extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
