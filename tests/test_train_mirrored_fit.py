"""Plain `model.fit` / `model.evaluate` under MirroredStrategy equal one device's values.

Two logical CPU devices must be configured before TF initialises its devices, so the
comparison runs in a fresh interpreter (this file run as a script) and prints JSON.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# Float32 losses of one device vs two replicas differ only by summation order.
TOLERANCE = 1e-4


def _fit_and_evaluate(name, strategy, images):
    import keras
    import tensorflow as tf

    from spn_tf import models

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = models.build(name, 4, channels=3, bits=2, preset="tiny",
                             **({"seed": 1} if name == "spn" else {}))
        model.build()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = tf.data.Dataset.from_tensor_slices(images).batch(8).repeat()
    history = model.fit(ds, steps_per_epoch=1, epochs=3, verbose=0).history["loss"]
    held_out = model.evaluate(tf.data.Dataset.from_tensor_slices(images).batch(8), verbose=0)
    return {"train": [float(v) for v in history], "held_out": float(held_out),
            "exact": float(np.mean(model.bits_per_dim(images).numpy()))}


def _slices_per_replica(strategy):
    """The SPN training slice drawn for the same images on each replica."""
    import tensorflow as tf

    from spn_tf import models

    with strategy.scope():
        model = models.build("spn", 4, channels=3, bits=2, preset="tiny", subscale_factor=2,
                             seed=3)
        model.build()
    images = tf.zeros([16, 4, 4, 3], tf.int32)

    @tf.function
    def draw():
        return strategy.run(lambda: model(images, training=True)["slice_index"][:, 0])

    return [v.numpy().tolist() for v in strategy.experimental_local_results(draw())]


def _replica_seeds(strategy):
    """Per step (the generator's seed word advancing by one), each replica's slice seed."""
    import tensorflow as tf

    from spn_tf.models.subscale.model import _replica_seed

    steps = [tf.constant([5, 7]), tf.constant([5, 8])]
    return [[v.numpy().tolist() for v in strategy.experimental_local_results(
        strategy.run(tf.function(lambda s=step: _replica_seed(s))))] for step in steps]


def main():
    import tensorflow as tf

    from spn_tf import strategies

    strategies.split_cpu(2)
    images = np.random.default_rng(0).integers(0, 4, (16, 4, 4, 3)).astype(np.int32)
    mirrored = tf.distribute.MirroredStrategy()
    result = {name: {"one": _fit_and_evaluate(name, tf.distribute.get_strategy(), images),
                     "mirrored": _fit_and_evaluate(name, mirrored, images)}
              for name in ("raster", "spn")}
    result["replicas"] = mirrored.num_replicas_in_sync
    result["slices"] = _slices_per_replica(mirrored)
    result["replica_seeds"] = _replica_seeds(mirrored)
    print(json.dumps(result))


@pytest.fixture(scope="module")
def measured():
    result = subprocess.run([sys.executable, os.path.abspath(__file__)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_raster_fit_and_evaluate_under_mirrored_equal_one_device(measured):
    assert measured["replicas"] == 2
    one, mirrored = measured["raster"]["one"], measured["raster"]["mirrored"]
    np.testing.assert_allclose(mirrored["train"], one["train"], atol=TOLERANCE)
    np.testing.assert_allclose(mirrored["held_out"], one["held_out"], atol=TOLERANCE)
    # The reported value is the model's exact bits/dim, not a multiple of it.
    np.testing.assert_allclose(one["held_out"], one["exact"], atol=TOLERANCE)


def test_spn_evaluate_under_mirrored_reports_exact_bits_per_dim(measured):
    # Replicas draw other slices than one device does, so the weights differ slightly: compare
    # each run's reported value with its own exact bits/dim, and the scale across runs.
    one, mirrored = measured["spn"]["one"], measured["spn"]["mirrored"]
    np.testing.assert_allclose(mirrored["held_out"], mirrored["exact"], atol=TOLERANCE)
    np.testing.assert_allclose(one["held_out"], one["exact"], atol=TOLERANCE)
    np.testing.assert_allclose(mirrored["train"], one["train"], rtol=0.05)


def test_spn_replicas_draw_different_slices(measured):
    first, second = measured["slices"]
    assert first != second
    assert set(first) | set(second) <= {0, 1, 2, 3}


def test_replica_slice_seeds_are_fold_ins_never_another_steps_seed(measured):
    import tensorflow as tf

    (step0, step1) = measured["replica_seeds"]
    for base, seeds in (([5, 7], step0), ([5, 8], step1)):
        assert seeds == [tf.random.experimental.stateless_fold_in(base, r).numpy().tolist()
                         for r in range(2)]
    assert step0[1] != step1[0] and len({tuple(s) for s in step0 + step1}) == 4


if __name__ == "__main__":
    main()
