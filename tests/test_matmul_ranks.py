"""No graph spn_tf builds multiplies matrices with broadcast batch dimensions (oneDNN's heap
corruption in TF 2.21: `spn_tf.matmul_ranks`): the train step, `log_prob` and the `xla`
sampler's loop of each harness case (every exported signature, the `graph` samplers
included, is the harness's `saved_model` claim); the scan is shown to fail on a broadcasting
product inside a while loop, and the attention layers' 2-D projections to give Keras's
values."""

import numpy as np
import pytest
import tensorflow as tf

import harness
from spn_tf import matmul_ranks
from spn_tf.layers import causal_self_attention, slice_embedder
from spn_tf.training.step import TrainStep
from test_harness import CASES


def _in_a_loop(a_shape, b_shape):
    """A traced `tf.function`: a while loop whose body calls a function holding
    `tf.matmul(a, b)` (traced, never run: rank 4 by rank 2 corrupts the heap)."""
    inner = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))

    @tf.function
    def outer(a, b):
        return tf.while_loop(lambda i, total: i < 3,
                             lambda i, total: (i + 1, total + inner(a, b)), [0, 0.0])

    return outer.get_concrete_function(tf.TensorSpec(a_shape), tf.TensorSpec(b_shape))


@pytest.mark.parametrize("a_shape, b_shape, reason", [
    ([5, 3, 4], [4, 6], "ranks differ (3 vs 2)"),
    ([13, 1, 3, 4], [4, 16], "ranks differ (4 vs 2)"),  # tensorflow#117700's crash
    ([1, 3, 4], [5, 4, 6], "batch dimension 0 broadcasts (1 vs 5)"),
    ([1, 3, 4], [None, 4, 6], "batch dimension 0 is 1 against an unknown"),
    (None, [4, 6], "unknown rank"),
])
def test_the_scan_finds_a_broadcasting_product_in_a_loop(a_shape, b_shape, reason):
    function = _in_a_loop(a_shape, b_shape)
    for graph in (function, function.graph.as_graph_def()):
        findings = matmul_ranks.scan(graph).findings
        assert len(findings) == 1 and reason in findings[0].reason, findings
        assert findings[0].function != matmul_ranks.TOP  # found inside the callee, in the loop
    with pytest.raises(AssertionError, match="1 broadcasting or unverifiable"):
        matmul_ranks.assert_no_broadcast_matmul(function)


@pytest.mark.parametrize("a_shape, b_shape", [
    ([5, 3, 4], [5, 4, 6]), ([None, 2, 3, 4], [None, 2, 4, 6]), ([3, 4], [4, 6])])
def test_the_scan_passes_same_rank_products(a_shape, b_shape):
    result = matmul_ranks.scan(_in_a_loop(a_shape, b_shape))
    assert not result.findings and sum(result.counts.values()) == 1, result.report()


def _graphs(model):
    """`(what, graph)` for the graphs the model's code builds outside its export: its train
    step, `log_prob` and its sampler in `xla` mode."""
    rng = np.random.default_rng(0)
    examples, cond, given = harness._examples(model, rng, 2)
    batch = {"images": examples, **cond} if cond else examples
    optimizer = harness.keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = TrainStep(model, optimizer, tf.distribute.get_strategy())
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    yield "train step", step._step.get_concrete_function(iter(dataset))
    yield "log_prob", tf.function(model.log_prob).get_concrete_function(examples, cond)
    sampler = tf.function(lambda seed, temperature: model.run_sampler(
        seed, temperature, cond, given, mode="xla"))
    yield "xla sampler", sampler.get_concrete_function(tf.constant([[1, 2], [3, 4]]),
                                                       tf.constant([1.0, 0.5]))


@pytest.mark.parametrize("case", list(CASES))
def test_no_graph_broadcasts_a_matrix_product(case):
    model = harness.make_model(**CASES[case])
    scanned = 0
    with harness.dtype_policy(model.dtype_policy.name):  # traced as its run would trace it
        for what, graph in _graphs(model):
            scanned += sum(matmul_ranks.assert_no_broadcast_matmul(
                graph, f"{case} {what}").counts.values())
    # The scan saw the products (a scan of nothing would pass vacuously); a raster model
    # with neither conditioning nor attention is all convolutions outside its export.
    config = CASES[case]
    assert scanned or (config["kind"] == "raster" and not config.get("cond")
                       and not config.get("attention_layers")), case


def test_the_attention_projections_give_keras_values(monkeypatch):
    """The 2-D projections and the slice embedder's attention equal Keras's own
    `EinsumDense` / `MultiHeadAttention` calls (rank 3 by rank 2: no crash) on an SPN with
    both attentions."""
    model = harness.make_model(**CASES["spn"])
    examples, cond, _ = harness._examples(model, np.random.default_rng(1), 3)
    ours = model.log_prob(examples, cond).numpy()
    keras_call = lambda dense, x: dense(x)
    monkeypatch.setattr(causal_self_attention, "project", keras_call)
    monkeypatch.setattr(slice_embedder, "project", keras_call)
    monkeypatch.setattr(slice_embedder.SliceEmbedder, "_attend",
                        lambda self, seq: self.attention(seq, seq))
    np.testing.assert_allclose(ours, model.log_prob(examples, cond).numpy(), rtol=1e-6,
                               atol=1e-5)
