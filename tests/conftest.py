import os

# The CLIs' persistent XLA cache stays off in tests (no writes to ~/.cache); the tests of the
# cache pass --xla_cache themselves.
os.environ.setdefault("SPN_TF_XLA_CACHE", "off")

import pytest  # noqa: E402

from spn_tf.startup import quiet_import  # noqa: E402

with quiet_import():  # TensorFlow's import lines, before pytest-xdist's workers capture stderr
    import keras  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
