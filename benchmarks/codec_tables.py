"""The rate cost of `spn_tf.codec.tables` (logits on a grid, integer exp): the same trained
model's held-out file with the grid tables against exact float64 probabilities
(`exp(logit - max)` of the same float64 logits), both through constriction's 24-bit
quantization, and against `-log2 p(x)`.

Each kind (`--kinds`) trains `--train_seconds` (wall) on the embedded photos (`small`, mixture
head, 32x32x3 at 8 bits: `heads.Trainer`), then codes the 320 held-out crops in one file.

Usage: python benchmarks/codec_tables.py [--kinds raster multiscale] [--train_seconds 120]
"""

import argparse

import spn_tf  # noqa: F401  (first: it silences TensorFlow's start-up lines)
import numpy as np

from heads import BITS, CHANNELS, SIZE, Trainer
from spn_tf import codec, data, models
from spn_tf.codec import tables


def exact(logits):
    x = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
    return np.exp(x - x.max(axis=1, keepdims=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["raster", "multiscale"])
    parser.add_argument("--train_seconds", type=float, default=120)
    args = parser.parse_args()
    held_out, _ = data.embedded_arrays("test", SIZE)
    held_out = held_out.astype(np.int32)
    grid_frequencies = tables.frequencies
    for kind in args.kinds:
        model = models.build(kind, SIZE, channels=CHANNELS, bits=BITS, preset="small",
                             head="logistic_mixture")
        model.build()
        trainer = Trainer(model)
        trainer.train_for(args.train_seconds)
        info = sum(-model.log_prob(held_out[i:i + 64]).numpy().sum()
                   for i in range(0, len(held_out), 64)) / np.log(2)
        sizes = {}
        for name, function in (("grid", grid_frequencies), ("exact", exact)):
            tables.frequencies = function
            try:
                sizes[name] = 8 * len(codec.encode(model, held_out, batch_size=64))
            finally:
                tables.frequencies = grid_frequencies
        dims = held_out.size
        print(f"{kind} ({trainer.steps} steps): -log2 p(x) {info / dims:.4f} bits/sub-pixel; "
              f"file with exact float64 tables {sizes['exact'] / dims:.4f} "
              f"(+{100 * (sizes['exact'] / info - 1):.3f}%), with grid tables "
              f"{sizes['grid'] / dims:.4f} (+{100 * (sizes['grid'] / info - 1):.3f}%): the grid "
              f"costs {100 * (sizes['grid'] / sizes['exact'] - 1):+.4f}%", flush=True)


if __name__ == "__main__":
    main()
