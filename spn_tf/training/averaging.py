"""Evaluating with the optimizer's exponential moving average (Polyak) of the weights."""

import contextlib


@contextlib.contextmanager
def averaged_weights(model, optimizer):
    """Within the block, `model`'s trainable weights are the optimizer's EMA (if it keeps one).

    Training weights come back on exit, so evaluation and sampling mid-run do not disturb
    training. Without `use_ema` the block changes nothing.
    """
    if not optimizer.use_ema:
        yield model
        return
    saved = [variable.numpy() for variable in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    try:
        yield model
    finally:
        for variable, value in zip(model.trainable_variables, saved):
            variable.assign(value)
