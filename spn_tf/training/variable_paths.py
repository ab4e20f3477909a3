"""Variables named by where they live in the model, not by when they were created.

Keras 3 names variables after layer names that carry a process-wide counter
(`masked_conv2d_7/kernel`), and `model.variables` lists them in creation order: both change
when code creates layers in another order, or builds a second model in the same process. A
checkpoint keyed by either would restore weights of equal shape into the wrong places without
an error. `structural_paths` keys each variable by the attribute path that reaches it
(`decoder/blocks/0/vertical/kernel`, attribute names sorted), and `checkpoint_variables` adds
the optimizer's state under the path of the variable it belongs to.
"""

import keras

# Keras's bookkeeping on layers: they repeat (or wrap) what the named attributes hold.
_BOOKKEEPING = frozenset({"_layers", "_tracker", "_trainable_variables",
                          "_non_trainable_variables", "_seed_generators", "_inbound_nodes",
                          "_outbound_nodes", "_input_spec", "_call_signature"})


def _walk(obj, path, out, seen):
    if id(obj) in seen:
        return
    if isinstance(obj, keras.Variable):
        seen.add(id(obj))
        out[path] = obj
    elif isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj):
            _walk(item, f"{path}/{index}", out, seen)
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            _walk(obj[key], f"{path}/{key}", out, seen)
    elif isinstance(obj, (keras.layers.Layer, keras.random.SeedGenerator)):
        seen.add(id(obj))
        names = sorted(name for name in vars(obj) if name not in _BOOKKEEPING)
        # Public names first: a layer kept as `self.decoder` and as `self._decoder` is found
        # under the public one.
        for name in sorted(names, key=lambda name: name.startswith("_")):
            _walk(vars(obj)[name], f"{path}/{name}" if path else name, out, seen)


def structural_paths(model):
    """`{path: variable}` for every variable of `model` (weights and seed-generator states).

    Raises:
      ValueError: a variable no attribute path reaches (it could only be keyed by position).
    """
    out, seen = {}, set()
    for name in sorted(vars(model), key=lambda name: (name.startswith("_"), name)):
        if name not in _BOOKKEEPING:
            _walk(vars(model)[name], name, out, seen)
    missing = [v.path for v in model.variables if id(v) not in seen]
    if missing:
        raise ValueError(f"variables {missing} of {type(model).__name__} are not reachable by "
                         f"an attribute path; keep layers and variables in attributes.")
    return out


def checkpoint_variables(model, optimizer=None):
    """`{path: variable}` of the model and of the optimizer's state, for `tf.train.Checkpoint`.

    A slot (moment, EMA, ...) is keyed `optimizer/<its variable's path>/<slot>`; the
    optimizer's own counters `optimizer/<name>`. Slots are matched to their variable by the
    name Keras gives them (`<variable path with / as _>_<slot>`).

    Raises:
      ValueError: an optimizer variable that belongs to no model variable and is not one of
        the optimizer's own.
    """
    paths = structural_paths(model)
    out = {f"model/{path}": variable for path, variable in paths.items()}
    if optimizer is None:
        return out
    owners = {variable.path.replace("/", "_") + "_": path
              for path, variable in paths.items() if variable.trainable}
    for variable in optimizer.variables:
        name = variable.name
        owner = max((prefix for prefix in owners if name.startswith(prefix)), key=len,
                    default=None)
        key = (f"optimizer/{owners[owner]}/{name[len(owner):]}" if owner
               else f"optimizer/{name}")
        if key in out:
            raise ValueError(f"optimizer variables share the checkpoint key {key!r}.")
        out[key] = variable
    return out
