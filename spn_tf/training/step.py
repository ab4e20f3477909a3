"""`TrainStep`: one optimizer step under any tf.distribute strategy.

The same code serves the default strategy, MirroredStrategy, MultiWorkerMirroredStrategy and
TPUStrategy: a `tf.function` takes the next element of a distributed iterator, `strategy.run`s
the per-replica step, and reduces the loss. Per replica: the loss (already divided by the
replica count, see `DensityModel.compute_loss`) and its gradients come from a function that
may be XLA-compiled; the gradients are all-reduced (summed) in float32 — also under
`mixed_bfloat16` — and clipped by their global norm. Keras 3 optimizers refuse to apply
gradients in cross-replica context and always sum what the replicas pass, so each replica
passes the clipped sum divided by the replica count (a second all-reduce; exact for a
power-of-two replica count). XLA compiles only the per-replica part: tf2xla cannot compile
iterators and collectives.
"""

import tensorflow as tf

from spn_tf.layers.text_encoder import text_to_bytes


class TrainStep:
    """Callable `step(iterator)` → `(loss, gradient_norm)`, float32 scalars.

    Args:
      model: a built `DensityModel`, created under `strategy.scope()`.
      optimizer: a Keras optimizer built on `model.trainable_variables` in the same scope.
      strategy: the `tf.distribute.Strategy`.
      xla: XLA-compile the per-replica loss and gradients.
      clip_grad_norm: clip the all-reduced gradients to this global norm (None: no clipping).

    Attributes:
      traces: how often the step was traced; stays 1 over a run (static shapes).
    """

    def __init__(self, model, optimizer, strategy, xla=False, clip_grad_norm=None):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.clip_grad_norm = clip_grad_norm
        self.traces = 0
        self._loss_and_gradients = tf.function(self._loss_and_gradients_fn, jit_compile=xla)
        self._step = tf.function(self._step_fn)

    def __call__(self, iterator):
        return self._step(iterator)

    def _step_fn(self, iterator):
        self.traces += 1
        loss, norm = self.strategy.run(self._replica_step, (next(iterator),))
        norm = self.strategy.experimental_local_results(norm)[0]  # equal on every replica
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None), norm

    def _loss_and_gradients_fn(self, batch):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(batch, training=True)
            loss = tf.cast(self.model.compute_loss(x=batch, y_pred=outputs), tf.float32)
        gradients = tape.gradient(loss, variables)
        # Dense (embedding lookups give IndexedSlices) and float32 for the all-reduce; zeros
        # for a trainable variable the loss does not reach (all-zero masked kernels were such,
        # before MaskedConv2D made them non-trainable). `UnconnectedGradients.ZERO` cannot
        # make them: it reads a Keras variable's dtype, a string (AttributeError).
        return loss, [tf.zeros(variable.shape, tf.float32) if gradient is None else
                      tf.cast(tf.convert_to_tensor(gradient), tf.float32)
                      for variable, gradient in zip(variables, gradients)]

    def _replica_step(self, batch):
        if isinstance(batch, dict) and "text" in batch:
            # Captions become byte ids (checked) here: XLA has no strings.
            batch = {**batch, "text": text_to_bytes(batch["text"], self.model.cond_spec["text"])}
        loss, gradients = self._loss_and_gradients(batch)
        context = tf.distribute.get_replica_context()
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        norm = tf.linalg.global_norm(gradients)
        if self.clip_grad_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.clip_grad_norm, use_norm=norm)
        replicas = float(context.num_replicas_in_sync)
        self.optimizer.apply([gradient / replicas for gradient in gradients],
                             self.model.trainable_variables)
        return loss, norm
