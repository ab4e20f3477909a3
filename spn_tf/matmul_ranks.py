"""Matrix products whose operands broadcast, found in a traced graph.

TensorFlow 2.21 with oneDNN corrupts the heap on `tf.matmul` of a rank-4 tensor by a rank-2
matrix (broadcast batch dimensions; BUILD_NOTES, Traps): it aborts, or returns wrong numbers.
Same-rank products with equal batch dimensions are unaffected. `scan(graph)` lists every
batched matrix product of a graph and of every function it calls (while-loop bodies and
conditions, `If` / `Case` branches, `PartitionedCall` / `StatefulPartitionedCall` callees,
XLA-compiled functions, at any depth) whose operands

  * have different ranks (`(B, T, K) x (K, N)`),
  * or the same rank and batch dimensions that differ where both are known (`1` vs `N`
    included),
  * or cannot be verified: an operand of unknown rank, a batch dimension of 1 against an
    unknown one (the shape of a broadcast), or a called function whose body is not found.

A batch dimension unknown on one or both sides against anything but 1 (`(None, h, t, d) x
(None, h, d, t)`, `(2, h, t, d) x (None, h, d, t)`, as gradients and dynamic batches give)
passes: the product is same-rank, and a runtime 1 there is not decidable from the graph.
2-D `MatMul` (and oneDNN's `_MklMatMul`, `_FusedMatMul`) cannot broadcast: counted, never
reported.
"""

import collections
import dataclasses

import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.python.eager import context
from tensorflow.python.framework import function_def_to_graph

TOP = "<graph>"  # the `function` of an op of the scanned graph itself


@dataclasses.dataclass(frozen=True)
class Finding:
    """A matrix product that broadcasts, or that the scan cannot verify.

    Attributes:
      function: the function holding the op (`TOP` for the scanned graph itself).
      op: the op's name inside `function`.
      op_type: e.g. `BatchMatMulV2`, `_MklBatchMatMulV2`.
      shapes: the two operands' static shapes (lists with None for unknown dimensions; None
        for an unknown rank), or `()` for a function that could not be found.
      reason: what is wrong, in words.
    """
    function: str
    op: str
    op_type: str
    shapes: tuple
    reason: str

    def __str__(self):
        shapes = " x ".join("?" if s is None else str(s) for s in self.shapes)
        return f"{self.function}/{self.op} ({self.op_type} {shapes}): {self.reason}"


@dataclasses.dataclass(frozen=True)
class Scan:
    """What `scan` saw.

    Attributes:
      findings: the `Finding`s (empty: every product is 2-D or same-rank with equal batch
        dimensions).
      counts: `Counter` of op type → matrix products inspected (2-D ones included).
      functions: names of the functions walked, `TOP` first.
    """
    findings: tuple
    counts: collections.Counter
    functions: tuple

    def report(self):
        """The findings, one a line, after a summary line."""
        lines = [f"{len(self.findings)} broadcasting or unverifiable matrix product(s) among "
                 f"{sum(self.counts.values())} in {len(self.functions)} function(s)"]
        return "\n".join(lines + [f"  {finding}" for finding in self.findings])


def is_matmul(op_type):
    """Whether `op_type` is a dense matrix product: `MatMul`, `BatchMatMul[V2|V3]`, or a
    oneDNN rewrite of one (`_MklBatchMatMulV2`, `_MklFusedBatchMatMulV2`, `_FusedMatMul`)."""
    return op_type in ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3") or (
        op_type.startswith("_") and "MatMul" in op_type)


def _dims(shape):
    return None if shape.rank is None else shape.as_list()


def check_operands(a_shape, b_shape):
    """Why a batched product of operands of static shapes `a_shape` and `b_shape` (anything
    `tf.TensorShape` takes) is unsafe, or None when it is same-rank with batch dimensions
    equal where both are known (unknown ones: module doc)."""
    a, b = _dims(tf.TensorShape(a_shape)), _dims(tf.TensorShape(b_shape))
    if a is None or b is None:
        return "unverifiable: an operand of unknown rank"
    if len(a) != len(b):
        return f"operand ranks differ ({len(a)} vs {len(b)}): broadcast batch dimensions"
    for axis, (m, n) in enumerate(zip(a[:-2], b[:-2])):
        if m is not None and n is not None and m != n:
            return f"batch dimension {axis} broadcasts ({m} vs {n})"
        if (m is None) != (n is None) and 1 in (m, n):
            return f"unverifiable: batch dimension {axis} is 1 against an unknown ({m} vs {n})"
    return None


def _called(node_attrs):
    """Names of the functions that an op's attributes (a NodeDef's `attr` map) call: `f`
    (calls), `body` / `cond` (while), `then_branch` / `else_branch` (If), `branches` (Case, a
    list), and any other function-valued attribute."""
    for value in node_attrs.values():
        if value.HasField("func"):
            yield value.func.name
        elif value.HasField("list"):
            yield from (func.name for func in value.list.func)


def _graph_of(graph):
    """`graph` as a `tf.Graph` (a GraphDef is imported into a new one) and the FunctionDefs
    it carries, by name."""
    if isinstance(graph, graph_pb2.GraphDef):
        graph_def = graph
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    elif not isinstance(graph, tf.Graph):
        graph = graph.graph  # a ConcreteFunction (e.g. a loaded signature)
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    return graph, library


def _function_def(name, library):
    if name in library:
        return library[name]
    try:  # a function registered in the eager context only (e.g. one a SavedModel restored)
        return context.context().get_function_def(name)
    except (tf.errors.NotFoundError, ValueError):
        return None


def scan(graph):
    """Every broadcasting or unverifiable batched matrix product of `graph` and of the
    functions it calls (module doc).

    Args:
      graph: a `tf.Graph` / `FuncGraph`, a `ConcreteFunction` (its graph is scanned), or a
        `GraphDef` (its `library` holds the functions it calls).

    Returns:
      a `Scan`.
    """
    graph, library = _graph_of(graph)
    findings, counts, seen = [], collections.Counter(), [TOP]
    pending = collections.deque([(TOP, graph)])
    while pending:
        function, body = pending.popleft()
        for op in body.get_operations():
            for name in _called(op.node_def.attr):
                if name in seen:
                    continue
                seen.append(name)
                function_def = _function_def(name, library)
                if function_def is None:
                    findings.append(Finding(name, op.name, op.type, (),
                                            "unverifiable: the called function's body is not "
                                            "in the graph's library"))
                    continue
                with graph.as_default():  # where the callees' own callees are found
                    body_graph = function_def_to_graph.function_def_to_graph(function_def)
                pending.append((name, body_graph))
            if not is_matmul(op.type):
                continue
            counts[op.type] += 1
            if "BatchMatMul" not in op.type:
                continue
            a, b = op.inputs[0].shape, op.inputs[1].shape
            reason = check_operands(a, b)
            if reason:
                findings.append(Finding(function, op.name, op.type, (_dims(a), _dims(b)),
                                        reason))
    return Scan(tuple(findings), counts, tuple(seen))


def assert_no_broadcast_matmul(graph, what="graph"):
    """Raises AssertionError naming every finding of `scan(graph)`; returns the `Scan`."""
    result = scan(graph)
    assert not result.findings, f"{what}: {result.report()}"
    return result
