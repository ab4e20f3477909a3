"""The entropy coders behind `spn_tf.codec`: constriction's range coder driven by the model's
value tables, one stream per coding batch.

An `Encoder` or `Decoder` is the `coder` of `DensityModel.run_sampler(mode="coding")` (see
`spn_tf.sampling.Draws`): at each draw of the model's sampler it gets the head's value logits
of the sub-pixels drawn together, turns them into integer frequencies the same way in both
directions and on every machine (`spn_tf.codec.tables`), and codes or decodes the batch's
values with them in one stream,
in the order the sampler draws them (the draw's sub-pixels in row-major order: the
same on both sides, since both run the same loop on the same batch layout). One stream per
batch, not per image, spends the coder's flush (a few bytes) once per batch. The carriers
(the noise a sampler would have drawn) say which image a sub-pixel belongs to, and for the
encoder its true value.

Quantization: constriction's `Categorical(perfect=False)` rounds each table of exact integer
weights to frequencies of a 24-bit total, deterministically (IEEE float64 arithmetic in a fixed
order), and gives every value at least frequency 1 (its "leaky" quantization), so a value
the model thinks impossible still codes, at about 24 bits.
"""

import time

import constriction
import numpy as np

from spn_tf import sampling
from spn_tf.codec import tables

FAMILY = constriction.stream.model.Categorical(perfect=False)
BASE = sampling.CARRIER_BASE


def _carriers(values):
    """float32 carriers `row * BASE + value` of int `values` `(B, ...)`."""
    rows = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
    return (rows * BASE + values).astype(np.float32)


class _Coder:
    """What both directions share: progress and the split of a draw by image."""

    def __init__(self, batch, progress):
        self.batch = batch
        self.coded = 0
        self._progress, self._last = progress, time.monotonic()

    def _rows(self, logits, carriers):
        """`(integer weights (n, K), rows (n,), carried values (n,))` of one draw."""
        rows, values = np.divmod(np.asarray(carriers, np.int64).reshape(-1), BASE)
        if rows.size and (rows.min() < 0 or rows.max() >= self.batch):
            raise RuntimeError(f"a draw carried rows outside [0, {self.batch}).")
        return tables.frequencies(logits), rows, values

    def _report(self, count):
        self.coded += count
        now = time.monotonic()
        if self._progress is not None and now - self._last >= 2.0:
            self._last = now
            self._progress(self.coded)


class Encoder(_Coder):
    """Codes known examples: the sampler's draws return the true values.

    Args:
      raw: int `(B, ...)` sub-pixels coded uniformly at `raw_values` values each, before the
        model's (`DensityModel.coding_plan.parts`), or None.
      draws: int arrays, the true values of each of the sampler's noise draws in call order.
      progress: None or `progress(values coded so far)`, every few seconds.
    """

    def __init__(self, raw, draws, raw_values, progress=None):
        self._draws = [np.asarray(d) for d in draws]
        super().__init__(self._draws[0].shape[0], progress)
        self._stream = constriction.stream.queue.RangeEncoder()
        if raw is not None:
            raw = np.asarray(raw).reshape(-1)
            self._stream.encode(raw.astype(np.int32), FAMILY, np.ones((raw.size, raw_values)))

    def noise(self, shape):
        if not self._draws:
            raise RuntimeError("the sampler drew more noise than the model's coding plan gave.")
        target = self._draws.pop(0)
        if target.shape != tuple(shape):
            raise RuntimeError(f"the sampler drew noise of shape {tuple(shape)} where the "
                               f"model's coding plan gave {target.shape}.")
        return _carriers(target)

    def draw(self, logits, carriers):
        probs, _, values = self._rows(logits, carriers)
        if values.size:
            self._stream.encode(values.astype(np.int32), FAMILY, probs)
        self._report(values.size)
        return values.reshape(np.shape(carriers))

    def finish(self):
        """The batch's stream: bytes of little-endian 32-bit words."""
        return self._stream.get_compressed().astype("<u4").tobytes()


class Decoder(_Coder):
    """Decodes the stream of an `Encoder`: the sampler's draws return the decoded values.

    Args:
      payload: bytes (`Encoder.finish`).
      batch: the examples coded in it.
    """

    def __init__(self, payload, batch, progress=None):
        super().__init__(batch, progress)
        self._stream = constriction.stream.queue.RangeDecoder(
            np.frombuffer(payload, "<u4").astype(np.uint32))

    def decode_raw(self, shape, raw_values):
        """int32 `(B, ...)` = `shape`: the raw sub-pixels, decoded before the model's."""
        size = int(np.prod(shape))
        return np.asarray(self._stream.decode(FAMILY, np.ones((size, raw_values)))).reshape(
            shape).astype(np.int32)

    def noise(self, shape):
        return _carriers(np.zeros(shape, np.int64))  # the values are what it decodes

    def draw(self, logits, carriers):
        probs, _, values = self._rows(logits, carriers)
        values = values.copy()
        if values.size:
            values[:] = self._stream.decode(FAMILY, probs)
        self._report(values.size)
        return values.reshape(np.shape(carriers))
