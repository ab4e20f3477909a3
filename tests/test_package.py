"""`import spn_tf` alone is enough: public submodules are attributes and every saved model loads
in a fresh process."""

import os
import subprocess
import sys

import numpy as np

from spn_tf import models

SCRIPT = """
import sys
import keras
import numpy as np
import spn_tf

model = spn_tf.models.build("spn", 4, channels=1, bits=2, preset="tiny")
assert isinstance(model, spn_tf.SubscalePixelNetwork)
for name in ("data", "distributions", "hparams", "inputs", "layers", "orderings", "sampling",
             "testing"):
    getattr(spn_tf, name)
loaded = keras.saving.load_model(sys.argv[1])
images = np.zeros((1, 4, 4, 1), np.int32)
print(float(loaded.log_prob(images)[0]))
"""


def test_import_spn_tf_reaches_submodules_and_loads_a_saved_model(tmp_path):
    model = models.build("multiscale", 4, channels=1, bits=2, preset="tiny", base_size=2)
    expected = float(model.log_prob(np.zeros((1, 4, 4, 1), np.int32))[0])
    path = str(tmp_path / "model.keras")
    model.save(path)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, path], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) == np.float32(expected)
