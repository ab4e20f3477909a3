"""Timing shared by the sampling benchmarks: a cold call, then interleaved warm repeats.

The machine may be shared with other jobs, so every variant is called once cold (tracing and
XLA compilation included), then `repeats` times warm, the variants interleaved (A, B, C, A,
B, C, ...) so that a busy spell slows them alike; the warm figure is the minimum over repeats
(the least disturbed run), the median is kept beside it.

A timer is a function `() -> (seconds, factor)`: seconds measured and the factor that turns
them into the whole run's seconds (1 unless the run was truncated and is extrapolated).
"""

import dataclasses
import statistics
import time


class _Stop(Exception):
    """Raised from a sampler's `on_step` callback to end a truncated run."""


def whole(fn):
    """A timer of `fn()`, run in full."""
    def timer():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, 1.0
    return timer


def truncated(run, steps, total):
    """A timer of `run(on_step)`, stopped after `steps` of its `total` steps and extrapolated.

    Args:
      run: calls a sampler with `on_step` (a `(step, total)` progress callback; None: no stop).
      steps: steps to time; at least `total` runs in full.
      total: steps of a whole run.
    """
    if steps >= total:
        return whole(lambda: run(None))

    def stop(step, _):
        if step == steps:
            raise _Stop

    def timer():
        start = time.perf_counter()
        try:
            run(stop)
        except _Stop:
            pass
        return time.perf_counter() - start, total / steps
    return timer


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of one variant's whole run.

    Attributes:
      warm: fastest warm run (extrapolated when `extrapolated`).
      median: median warm run (likewise).
      compile: first call minus the fastest warm call, as measured (tracing, XLA compilation).
      extrapolated: whether the runs were truncated and scaled to the whole run.
    """
    warm: float
    median: float
    compile: float
    extrapolated: bool


def measure(timers, repeats):
    """Times every timer: one cold call each, then `repeats` interleaved warm rounds.

    Args:
      timers: `{name: timer}`.
      repeats: warm calls per timer (>= 1).

    Returns:
      `{name: Timing}`.
    """
    cold = {name: timer()[0] for name, timer in timers.items()}
    warm = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            warm[name].append(timer())
    result = {}
    for name, runs in warm.items():
        seconds, factor = min(s for s, _ in runs), runs[0][1]
        result[name] = Timing(seconds * factor, statistics.median(s for s, _ in runs) * factor,
                              max(0.0, cold[name] - seconds), factor != 1.0)
    return result
