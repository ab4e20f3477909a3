import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CLIs' persistent XLA cache stays off in tests (no writes to ~/.cache); the tests of the
# cache pass --xla_cache themselves.
os.environ.setdefault("SPN_TF_XLA_CACHE", "off")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
