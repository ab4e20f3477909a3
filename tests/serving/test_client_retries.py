"""Client call policy without a server: retries on UNAVAILABLE only, deadline, row seeds,
images refused before any call."""

import grpc
import numpy as np
import pytest

from spn_tf.serving.client import Client, ServingError, row_seeds


class _Error(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return f"fake {self._code.name}"


def _rpc(codes):
    """A fake stub method raising `codes` in turn, then answering "ok"; counts its calls."""
    calls = []

    def rpc(request, timeout):
        calls.append(timeout)
        if len(calls) <= len(codes):
            raise _Error(codes[len(calls) - 1])
        return "ok"

    return rpc, calls


@pytest.fixture
def client():
    with Client("127.0.0.1:1", "m", timeout=5.0, max_attempts=4, initial_backoff=0.01) as c:
        yield c


def test_unavailable_is_retried_until_an_answer(client):
    rpc, calls = _rpc([grpc.StatusCode.UNAVAILABLE] * 3)
    assert client._call(rpc, None) == "ok"
    assert len(calls) == 4
    assert all(0 < t <= 5.0 for t in calls)


@pytest.mark.parametrize("code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                  grpc.StatusCode.DEADLINE_EXCEEDED])
def test_other_errors_are_not_retried(client, code):
    rpc, calls = _rpc([code])
    with pytest.raises(ServingError) as error:
        client._call(rpc, None)
    assert len(calls) == 1 and error.value.code == code


def test_unavailable_after_the_last_attempt_says_so(client):
    rpc, calls = _rpc([grpc.StatusCode.UNAVAILABLE] * 10)
    with pytest.raises(ServingError, match=r"server 127.0.0.1:1 unavailable after 4 attempt"):
        client._call(rpc, None)
    assert len(calls) == 4


def test_row_seeds_count_up_the_second_word():
    np.testing.assert_array_equal(row_seeds(3, 5), [[0, 5], [0, 6], [0, 7]])
    np.testing.assert_array_equal(row_seeds(2, [9, -1]), [[9, -1], [9, 0]])
    assert row_seeds(2, 0).dtype == np.int32
    with pytest.raises(ValueError, match="seed must be an int or a pair"):
        row_seeds(2, [1, 2, 3])


@pytest.mark.parametrize("images", [np.full((1, 2, 2, 1), 0.5, np.float32),
                                    np.ones((1, 2, 2, 1), bool)])
def test_non_integer_images_are_refused_before_any_call(client, images):
    calls = []
    client.predict = lambda inputs, signature: calls.append(signature)
    with pytest.raises(ValueError, match="images must be integers .* quantize first"):
        client.log_prob(images)
    assert not calls
