"""The coder's value tables: integer frequencies that decode the same on other machines.

The range coder needs, at each sub-pixel, the very same table in the encoder and the decoder.
Float logits do not give that across machines: the same model under another oneDNN setting,
thread count or kernel order differs in the last bits (measured: ~1e-6 in float32 logits with
`TF_ENABLE_ONEDNN_OPTS=0`), and one frequency off ends the stream. So:

  1. the codec runs a float64 copy of the model (`spn_tf.codec.coding_model`): differences
     between builds shrink to ~1e-15 of a logit;
  2. `frequencies` puts each logit on a grid of `1 / 2**GRID_BITS` nats (a float64 product by
     a power of two and a floor: exact), so a difference flips a table only where a logit lies
     within ~1e-15 of a grid line (about 3e-12 per logit at the default grid: observed
     decode failures none; the CRC of each coding batch stays the last line of defence);
  3. from the grid on, integers only: `exp` of each logit's distance below the largest is read
     from `EXP_TABLE`, integers computed once with `decimal` (correctly rounded, the same on
     every machine), and constriction's `Categorical(perfect=False)` rounds those exact
     float64 integers to 24-bit frequencies with IEEE arithmetic in a fixed order.

Rate cost: the grid moves each logit by at most `1 / 2**GRID_BITS` nats; the coded size grows by
`benchmarks/codec.py`'s "table" line (measured ~0.01%).
"""

import decimal

import numpy as np

GRID_BITS = 4  # logits on a grid of 1/16 nat
RANGE_NATS = 24  # below the largest logit by more than this: the table's last entry
_SCALE_BITS = 40  # EXP_TABLE[0] = 2**40: 256 values sum below 2**53 (exact in float64)


def _exp_table():
    """int64 `round(2**40 * exp(-m / 2**GRID_BITS))` for m in `[0, RANGE_NATS * 2**GRID_BITS]`."""
    context = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
    step = context.divide(decimal.Decimal(1), decimal.Decimal(2 ** GRID_BITS))
    scale = decimal.Decimal(2 ** _SCALE_BITS)
    return np.array([int(context.multiply(scale, context.exp(-step * m)).to_integral_value(
        decimal.ROUND_HALF_EVEN)) for m in range(RANGE_NATS * 2 ** GRID_BITS + 1)], np.int64)


EXP_TABLE = _exp_table()


def frequencies(logits):
    """float64 `(n, K)` exact integer weights of float value logits `(..., K)`: a pure
    function of the logits' grid points (module doc); the coder normalizes them.

    Raises:
      ValueError: a NaN logit (a broken model: nothing sensible can be coded with it).
    """
    x = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
    if np.isnan(x).any():
        raise ValueError("the model gave NaN value logits: its weights are broken (NaN or "
                         "inf); nothing can be coded with it.")
    grid = np.floor(np.clip(x, -1e9, 1e9) * 2 ** GRID_BITS).astype(np.int64)
    below = np.minimum(grid.max(axis=1, keepdims=True) - grid, len(EXP_TABLE) - 1)
    return EXP_TABLE[below].astype(np.float64)
