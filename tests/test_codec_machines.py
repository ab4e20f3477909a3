"""`spn_tf.codec` files decode the same under other settings: written in one process (oneDNN
on, default threads), decoded in others with `TF_ENABLE_ONEDNN_OPTS=0` and with one thread (a
file of its own, so the suite's workers share the subprocess time)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(5)


_PROCESS = """
import os, sys
import numpy as np
import tensorflow as tf
threads = int(os.environ.get("CODEC_TEST_THREADS", "0"))
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
import keras
import spn_tf
from spn_tf import codec
from spn_tf.codec import entropy, tables
step, folder, name = sys.argv[1:]
model = keras.saving.load_model(folder + "/model.keras")
images = np.load(folder + "/images.npy")
# The float32 value logits of the model's own coding loop (what a float32 codec would code
# with), recorded for the test's power check.
seen, frequencies = [], tables.frequencies
tables.frequencies = lambda logits: (seen.append(np.array(logits)), frequencies(logits))[1]
raw, draws = model.coding_plan.parts(tf.constant(images))
codec._coded_sample(model, entropy.Encoder(raw, draws, model.num_values), None,
                    model.coding_plan.given(raw), len(images))
tables.frequencies = frequencies
np.save(f"{folder}/logits_{name}.npy", np.concatenate([x.reshape(-1) for x in seen]))
if step == "encode":
    open(folder + "/coded", "wb").write(codec.encode(model, images))
else:
    coded = open(folder + "/coded", "rb").read()
    np.save(f"{folder}/decoded_{name}.npy", codec.decode(model, coded))
"""


@pytest.mark.parametrize("kind, side, preset", [("multiscale", 16, "small"), ("spn", 8, "tiny")])
def test_decodes_in_other_processes_onednn_off_and_one_thread(tmp_path, kind, side, preset):
    """Encoded in one process (oneDNN on, default threads), decoded in others: with
    `TF_ENABLE_ONEDNN_OPTS=0`, and with one intra- and inter-op thread. The first setting
    changes the float32 value logits of the model's coding loop (checked: the test's power),
    and the float64
    copy and grid tables (`spn_tf.codec.tables`) still give the decoder the encoder's tables."""
    model = harness.make_model(kind, image_size=side, channels=3, bits=5, preset=preset)
    model.save(str(tmp_path / "model.keras"))
    images = RNG.integers(0, 32, (4, side, side, 3)).astype(np.int32)
    np.save(tmp_path / "images.npy", images)

    def run(step, name, **env):
        result = subprocess.run([sys.executable, "-c", _PROCESS, step, str(tmp_path), name],
                                cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", **env})
        assert result.returncode == 0, result.stderr[-3000:]
    run("encode", "encoder")
    run("decode", "onednn_off", TF_ENABLE_ONEDNN_OPTS="0")
    run("decode", "one_thread", CODEC_TEST_THREADS="1")
    for name in ("onednn_off", "one_thread"):
        np.testing.assert_array_equal(np.load(tmp_path / f"decoded_{name}.npy"), images)
    float32_logits = np.load(tmp_path / "logits_encoder.npy")
    assert float32_logits.dtype == np.float32
    assert not np.array_equal(np.load(tmp_path / "logits_onednn_off.npy"), float32_logits)
