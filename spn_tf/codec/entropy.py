"""The entropy coders behind `spn_tf.codec`: constriction's range coder driven by the model's
value tables, one stream per image.

An `Encoder` or `Decoder` is the `coder` of `DensityModel.run_sampler(mode="coding")` (see
`spn_tf.sampling.Draws`): at each draw of the model's sampler it gets the head's float32
value logits of the sub-pixels drawn together, turns them into probabilities the same way in
both directions (`probabilities`), and codes or decodes each image's values with them in
its own stream, in the order the sampler draws them. The carriers (the noise a sampler would
have drawn) say which image a sub-pixel belongs to, and for the encoder its true value.

Quantization: constriction's `Categorical(perfect=False)` rounds each table to integer
frequencies of a 24-bit total, deterministically (integer and float64 arithmetic in a fixed
order), and gives every value at least frequency 1 (its "leaky" quantization), so a value
the model thinks impossible still codes, at about 24 bits.
"""

import time

import constriction
import numpy as np

from spn_tf import sampling

FAMILY = constriction.stream.model.Categorical(perfect=False)
BASE = sampling.CARRIER_BASE


def probabilities(logits):
    """float64 `(n, K)` unnormalized probabilities of float32 value logits `(..., K)` (the
    coder normalizes them); a pure function of the logits' bits."""
    x = np.asarray(logits, np.float64).reshape(-1, logits.shape[-1])
    return np.exp(x - x.max(axis=1, keepdims=True))


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
        """`(probabilities (n, K), rows (n,), carried values (n,))` of one draw."""
        rows, values = np.divmod(np.asarray(carriers, np.int64).reshape(-1), BASE)
        if rows.size and (rows.min() < 0 or rows.max() >= self.batch):
            raise RuntimeError(f"a draw carried rows outside [0, {self.batch}).")
        return probabilities(logits), rows, values

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
        self._streams = [constriction.stream.queue.RangeEncoder() for _ in range(self.batch)]
        if raw is not None:
            raw = np.asarray(raw).reshape(self.batch, -1)
            uniform = np.ones((raw.shape[1], raw_values))
            for stream, values in zip(self._streams, raw):
                stream.encode(values.astype(np.int32), FAMILY, uniform)

    def noise(self, shape):
        if not self._draws:
            raise RuntimeError("the sampler drew more noise than the model's coding plan gave.")
        target = self._draws.pop(0)
        if target.shape != tuple(shape):
            raise RuntimeError(f"the sampler drew noise of shape {tuple(shape)} where the "
                               f"model's coding plan gave {target.shape}.")
        return _carriers(target)

    def draw(self, logits, carriers):
        probs, rows, values = self._rows(logits, carriers)
        for row in np.unique(rows):
            at = rows == row
            self._streams[row].encode(values[at].astype(np.int32), FAMILY, probs[at])
        self._report(values.size)
        return values.reshape(np.shape(carriers))

    def finish(self):
        """Each example's stream: `B` bytes objects of little-endian 32-bit words."""
        return [s.get_compressed().astype("<u4").tobytes() for s in self._streams]


class Decoder(_Coder):
    """Decodes the streams of an `Encoder`: the sampler's draws return the decoded values.

    Args:
      payloads: `B` bytes objects (`Encoder.finish`).
    """

    def __init__(self, payloads, progress=None):
        super().__init__(len(payloads), progress)
        self._streams = [constriction.stream.queue.RangeDecoder(
            np.frombuffer(p, "<u4").astype(np.uint32)) for p in payloads]

    def decode_raw(self, shape, raw_values):
        """int32 `(B, ...)` = `shape`: the raw sub-pixels, decoded before the model's."""
        size = int(np.prod(shape[1:]))
        uniform = np.ones((size, raw_values))
        return np.stack([s.decode(FAMILY, uniform) for s in self._streams]).reshape(
            shape).astype(np.int32)

    def noise(self, shape):
        return _carriers(np.zeros(shape, np.int64))  # the values are what it decodes

    def draw(self, logits, carriers):
        probs, rows, values = self._rows(logits, carriers)
        values = values.copy()
        for row in np.unique(rows):
            at = rows == row
            values[at] = self._streams[row].decode(FAMILY, probs[at])
        self._report(values.size)
        return values.reshape(np.shape(carriers))
