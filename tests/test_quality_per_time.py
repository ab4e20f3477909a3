"""The likelihood-per-second benchmark (`benchmarks/quality_per_time.py`): its smoke run and
the protocol both sides share (the same batches, clocks that stop at the checkpoints)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
import peer_tfp  # noqa: E402


def test_batch_order_is_a_permutation_per_epoch_and_repeats_for_a_seed():
    first, again = peer_tfp.batch_order(10, 3, 7), peer_tfp.batch_order(10, 3, 7)
    batches = [next(first) for _ in range(6)]  # two epochs of 3 full batches each
    assert all(np.array_equal(a, next(again)) for a in batches)
    for epoch in (batches[:3], batches[3:]):
        seen = np.concatenate(epoch)
        assert len(set(seen.tolist())) == 9 and seen.max() < 10
    assert not all(np.array_equal(a, b) for a, b in zip(batches[:3], batches[3:]))


class _Loss(float):
    def numpy(self):  # `curve` ends each step with `.numpy()`, as for a tensor
        return float(self)


class _Step:
    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append(batch)
        return _Loss(0.0)


def test_curve_evaluates_at_each_checkpoint_outside_the_clock():
    step, scores = _Step(), iter([3.0, 2.0, 1.0])
    points = peer_tfp.curve(step, lambda: next(scores), iter(range(10 ** 9)), [0.02, 0.01, 0.04])
    assert [p["bits_per_dim"] for p in points] == [3.0, 2.0, 1.0]
    for point, checkpoint in zip(points, [0.01, 0.02, 0.04]):
        assert point["seconds"] >= checkpoint
    assert [p["steps"] for p in points] == sorted(p["steps"] for p in points)
    assert points[-1]["steps"] == len(step.batches) and step.batches[0] == 0


class _Rate:
    def __init__(self):
        self.value = None

    def assign(self, value):
        self.value = value


def test_linear_decay_follows_the_clock_to_zero_at_the_last_checkpoint():
    rate, seen = _Rate(), []
    decay = peer_tfp.linear_decay(rate, 2e-3)

    def progress(fraction):
        decay(fraction)
        seen.append((fraction, rate.value))
    peer_tfp.curve(_Step(), lambda: 0.0, iter(range(10 ** 9)), [0.01, 0.03], progress)
    assert seen[0] == (0.0, 2e-3)  # the untimed first step runs at the peak
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[-1] < 1
    for fraction, value in seen:
        assert value == pytest.approx(2e-3 * (1 - fraction))
    decay(1.5)  # past the budget: 0, never negative
    assert rate.value == 0


def test_smoke_run_scores_every_kind_and_both_heads(tmp_path):
    quiet = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out, figure = tmp_path / "figures.json", tmp_path / "curve.png"
    result = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "quality_per_time.py"), "--smoke",
         "--datasets", "photos", f"--json={out}", f"--plot={figure}"],
        capture_output=True, text=True, timeout=300, env=quiet)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    rows = json.loads(out.read_text())["results"]["photos"]
    kinds = {spec.split(":")[0] for spec in rows}
    assert kinds == {"raster", "spn", "multiscale", "upscaling"}
    assert sum("logistic_mixture" in spec for spec in rows) == 2 and len(rows) == 4
    for spec, row in rows.items():
        values = [p["bits_per_dim"] for p in row["curve"]]
        assert len(values) == 4 and all(0 < v < 16 for v in values), (spec, values)
        assert f"| {spec} |" in result.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["--budgets", "0"], ["--datasets", "mnist"],
                                  ["--decay", "linear", "--budgets", "150", "600"],
                                  ["--decay", "cosine"]])
def test_bad_flags_are_refused(argv, capsys):
    import quality_per_time

    with pytest.raises(SystemExit):
        quality_per_time.parse(argv)
    assert "error" in capsys.readouterr().err
