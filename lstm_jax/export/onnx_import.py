"""``from_onnx``: ONNX ``LSTM``/``GRU``/``RNN`` operators (and the head after them) as lstm_jax.

The file's data path is followed from its first input to its first output, node by node, with a
label per axis (time, batch, direction, features) so that every layout operation is checked,
not guessed: ``Transpose``, ``Squeeze``, ``Reshape`` (merging the direction axis into the
features), ``Identity`` and ``Cast`` move labels; each recurrent node becomes one layer; then
``Gather``/``Slice`` of the last step, and ``Gemm`` or ``MatMul`` (+ ``Add``) become the head.
Nodes off the data path that only compute shapes or zero initial states (``Shape``,
``ConstantOfShape``, ``Expand``, ...) are allowed. Anything else on the path, an attribute the
cells lack (``clip``, ``input_forget``, ``direction='reverse'``, other activations), or a file
without a recurrent node raises an error naming the node.

This reads what :func:`lstm_jax.export.to_onnx` writes and what PyTorch's ``torch.onnx.export``
writes for ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (both its TorchScript and its dynamo exporter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.gru import GRUCell, GRUParams
from lstm_jax.cells.lstm import LSTMCell, LSTMParams, Peepholes
from lstm_jax.cells.simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax.export.model import RecurrentModel, RecurrentModelParams, input_file
from lstm_jax.layers.dense import Dense, DenseParams
from lstm_jax.layers.stacked import LayerParams, StackedRNN

RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gate blocks per operator
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
PLAIN_ACTS = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "Softsign": "softsign"}
FROM_ONNX_ORDER = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}  # -> lstm_jax blocks
SHAPE_ONLY = {"Shape", "Size"}


class _Reader:
    def __init__(self, proto):
        g = proto.graph
        self.nodes = list(g.node)
        self.consts = {i.name: _array(i) for i in g.initializer}
        for n in self.nodes:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = _array(n.attribute[0].t)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.output = g.output[0].name

    def const(self, name: str, node, what: str) -> np.ndarray:
        if name not in self.consts:
            raise ValueError(f"`from_onnx`: {_where(node)}: {what} must be a constant tensor.")
        return self.consts[name]

    def next_node(self, tensor: str):
        users = [n for n in self.consumers.get(tensor, []) if n.op_type not in SHAPE_ONLY]
        if len(users) > 1:
            ops = ", ".join(_where(n) for n in users)
            raise ValueError(f"`from_onnx`: tensor {tensor!r} feeds several nodes ({ops}).")
        return users[0] if users else None


def _array(t) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def _where(node) -> str:
    return f"node {node.name or node.output[0]!r} ({node.op_type})"


def _attrs(node) -> dict:
    from onnx import helper

    out = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


def from_onnx(path: str | Path) -> tuple[Any, Any]:
    """``(layer, params)`` from an ONNX file whose data path is recurrent operators and a head.

    Returns a :class:`~lstm_jax.StackedRNN` and its params when the file holds only recurrent
    layers, else a :class:`RecurrentModel` (``pooling="last"`` for a last-step read-out, a
    ``Dense`` head for ``Gemm``/``MatMul``). ``layer.apply(params, xs)`` reproduces the file's
    first output; when its operators read ``sequence_lens`` from an input, pass
    ``lengths=``; an ``initial_h``/``initial_c`` read from inputs is the ``carry`` argument.

    Raises:
      ValueError: a node or attribute with no lstm_jax counterpart (named), no recurrent node,
        or a file that is not an ONNX model.
      FileNotFoundError: no file at ``path``.
    """
    import onnx

    path = input_file("from_onnx", path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError on a file that is not a model
        raise ValueError(
            f"`from_onnx`: {path} is not an ONNX model: {type(e).__name__}: {e}"
        ) from e
    r = _Reader(proto)
    if not any(n.op_type in RECURRENT for n in r.nodes):
        ops = sorted({n.op_type for n in r.nodes})
        raise ValueError(f"`from_onnx`: {path} has no LSTM, GRU or RNN node; its ops are {ops}.")
    labels, tensor = ["a", "b", "F"], r.inputs[0]
    layers, head, pooled, time_major = [], None, False, None
    node = r.next_node(tensor)
    while node is not None:
        op = node.op_type
        if op in RECURRENT:
            if head is not None or pooled:
                raise ValueError(f"`from_onnx`: {_where(node)} follows the head; not supported.")
            layout = _attrs(node).get("layout", 0)
            want = ["T", "B", "F"] if layout == 0 else ["B", "T", "F"]
            if time_major is None:  # which input axis reaches the operator's time axis
                time_axis = labels[want.index("T")]
                time_major = time_axis == "a"
                labels = [("T" if x == time_axis else "B") if x in "ab" else x for x in labels]
            if labels != want:
                raise ValueError(f"`from_onnx`: {_where(node)} reads axes {labels}, not {want}.")
            layers.append(_layer(r, node))
            if not node.output[0]:
                raise ValueError(f"`from_onnx`: {_where(node)}: its output Y is not used.")
            labels = ["T", "D", "B", "F"] if layout == 0 else ["B", "T", "D", "F"]
        elif op in ("Identity", "Cast") or op == "Dropout" and len(node.input) == 1:
            pass
        elif op == "Transpose":
            labels = [labels[p] for p in _attrs(node)["perm"]]
        elif op == "Squeeze":
            labels = _squeeze(r, node, labels, layers)
        elif op == "Reshape":
            labels = _reshape(r, node, labels, layers)
        elif op in ("Gather", "Slice") and not pooled and head is None:
            labels = _last_step(r, node, labels)
            pooled = "T" not in labels
        elif op == "GatherND" and not pooled and head is None:
            labels, pooled = _last_valid_step(r, node, labels), True
        elif op in ("MatMul", "Gemm") and head is None:
            head = _head(r, node, labels, tensor)
        elif op == "Add" and head is not None and head.b is None and op_is_bias(r, node, tensor):
            bias = r.consts[next(i for i in node.input if i != tensor)]
            head = DenseParams(head.w, jnp.asarray(np.broadcast_to(bias, head.w.shape[1:])))
        else:
            raise ValueError(f"`from_onnx`: {_where(node)} on the data path has no lstm_jax layer.")
        tensor = node.output[0]
        node = r.next_node(tensor)
    if tensor != r.output:
        raise ValueError(f"`from_onnx`: the data path ends at {tensor!r}, not at {r.output!r}.")
    return _assemble(layers, head, pooled, labels, bool(time_major))


def op_is_bias(r, node, tensor) -> bool:
    others = [i for i in node.input if i != tensor]
    return len(others) == 1 and others[0] in r.consts


def _squeeze(r, node, labels, layers):
    axes = _attrs(node).get("axes")
    if axes is None and len(node.input) > 1:
        axes = r.const(node.input[1], node, "axes").tolist()
    axes = [a % len(labels) for a in np.atleast_1d(axes).tolist()]
    for a in axes:
        if labels[a] not in ("D", "T1") or labels[a] == "D" and layers[-1][2]:
            raise ValueError(f"`from_onnx`: {_where(node)} squeezes axis {labels[a]!r}.")
    return [x for i, x in enumerate(labels) if i not in axes]


def _reshape(r, node, labels, layers):
    """The one reshape a stack needs: ``(.., D, F) -> (.., D*F)`` after a bidirectional layer."""
    bidirectional = layers[-1][2]
    if "D" not in labels or bidirectional and labels[-2:] != ["D", "F"]:
        raise ValueError(f"`from_onnx`: {_where(node)} reshapes axes {labels}; not supported.")
    if node.input[1] in r.consts:
        shape = r.consts[node.input[1]].tolist()
        ok = len(shape) == len(labels) - 1 and all(s in (0, -1) for s in shape[:-1])
        if not ok or shape[-1] not in (-1, (1 + bidirectional) * layers[-1][1]):
            raise ValueError(f"`from_onnx`: {_where(node)} reshapes {labels} to {shape}.")
    return [x for x in labels if x != "D"]


def _last_step(r, node, labels):
    a = _attrs(node)
    if node.op_type == "Gather":
        axis, idx = a.get("axis", 0) % len(labels), r.const(node.input[1], node, "indices")
        if labels[axis] != "T" or idx.ndim != 0 or int(idx) != -1:
            raise ValueError(f"`from_onnx`: {_where(node)} is not a read of the last time step.")
        return [x for i, x in enumerate(labels) if i != axis]
    starts, ends = (r.const(node.input[k], node, "starts/ends") for k in (1, 2))
    axes = r.const(node.input[3], node, "axes") if len(node.input) > 3 else np.arange(len(starts))
    steps = r.const(node.input[4], node, "steps") if len(node.input) > 4 else np.ones_like(starts)
    if len(axes) != 1 or labels[int(axes[0]) % len(labels)] != "T" or int(steps[0]) != 1:
        raise ValueError(f"`from_onnx`: {_where(node)} is not a slice of the last time step.")
    if int(starts[0]) != -1 or int(ends[0]) < 2**31 - 1:  # [-1:] up to "the end"
        raise ValueError(f"`from_onnx`: {_where(node)} slices time from {starts} to {ends}.")
    return ["T1" if x == "T" else x for x in labels]


def _last_valid_step(r, node, labels):
    """``GatherND(ys (B, T, F), max(lengths - 1, 0)[:, None], batch_dims=1)``, as written by
    ``to_onnx`` for a last-step read-out with lengths."""
    chain, name = [], node.input[1]
    while name in r.producer and len(chain) < 6:
        n = r.producer[name]
        chain.append(n)
        name = n.input[0]
    ops = [n.op_type for n in chain]
    consts = [r.consts.get(n.input[1]) if len(n.input) > 1 else None for n in chain]
    ok = (
        labels == ["B", "T", "F"]
        and _attrs(node).get("batch_dims", 0) == 1
        and ops == ["Unsqueeze", "Max", "Sub", "Cast"]
        and name in r.inputs
        and consts[1] is not None
        and int(consts[1]) == 0
        and consts[2] is not None
        and int(consts[2]) == 1
    )
    if not ok:
        raise ValueError(f"`from_onnx`: {_where(node)} is not a read of each last valid step.")
    return ["B", "F"]


def _head(r, node, labels, tensor) -> DenseParams:
    if labels[-1] != "F" or node.input[0] != tensor:
        raise ValueError(f"`from_onnx`: {_where(node)} must multiply the features on the right.")
    w = r.const(node.input[1], node, "the weight (input B)")
    b = None
    if node.op_type == "Gemm":
        a = _attrs(node)
        if a.get("transA", 0) or labels != ["B", "F"]:
            raise ValueError(f"`from_onnx`: {_where(node)} needs a (batch, features) input A.")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        if len(node.input) > 2 and node.input[2]:
            c = r.const(node.input[2], node, "the bias (input C)") * a.get("beta", 1.0)
            b = jnp.asarray(np.broadcast_to(c, w.shape[1:]), jnp.float32)
    if w.ndim != 2:
        raise ValueError(f"`from_onnx`: {_where(node)} has a {w.ndim}-d weight; expected 2-d.")
    return DenseParams(jnp.asarray(w, jnp.float32), b)


def _layer(r, node):
    """``(cell, hidden_size, bidirectional, LayerParams, op)`` of one recurrent node."""
    op, a = node.op_type, _attrs(node)
    H, direction = int(a["hidden_size"]), a.get("direction", "forward")
    for name, bad in (
        ("direction", direction == "reverse"),
        ("clip", "clip" in a),
        ("input_forget", a.get("input_forget", 0) != 0),
    ):
        if bad:
            raise ValueError(
                f"`from_onnx`: {_where(node)}: attribute {name}={a[name]!r} has no lstm_jax cell."
            )
    ins = list(node.input) + [""] * 8
    W, R = (r.const(ins[k], node, n) for k, n in ((1, "W"), (2, "R")))
    B = r.const(ins[3], node, "B") if ins[3] else None
    if op == "LSTM" and ins[7]:
        P = r.const(ins[7], node, "P")
    else:
        P = None
    seq = ins[4]
    while seq and seq not in r.inputs and r.producer.get(seq) is not None:
        if r.producer[seq].op_type != "Cast":
            break
        seq = r.producer[seq].input[0]
    if seq and seq not in r.inputs:
        raise ValueError(f"`from_onnx`: {_where(node)}: sequence_lens must come from an input.")
    for k in (5, 6):
        if ins[k] and ins[k] not in r.inputs and not _is_zero(r, ins[k]):
            raise ValueError(
                f"`from_onnx`: {_where(node)}: initial state {ins[k]!r} is neither a graph input "
                "nor zeros."
            )
    cell = _cell(node, op, H, a, B is not None, P is not None)
    dirs = [_params(op, cell, W[d], R[d], None if B is None else B[d], P, d) for d in range(len(W))]
    return cell, H, direction == "bidirectional", LayerParams(*dirs), op


def _is_zero(r, name: str, depth: int = 0) -> bool:
    """True when ``name`` is computed as zeros (ConstantOfShape, Expand/Slice of zeros, ...)."""
    if name in r.consts:
        return not np.any(r.consts[name])
    node = r.producer.get(name)
    if node is None or depth > 8:
        return False
    if node.op_type == "ConstantOfShape":
        value = _attrs(node).get("value")
        return value is None or not np.any(_array(value))
    if node.op_type in ("Expand", "Slice", "Reshape", "Cast", "Identity", "Unsqueeze", "Tile"):
        return _is_zero(r, node.input[0], depth + 1)
    return False


def _cell(node, op, H, a, has_b, has_p):
    acts = [s if isinstance(s, str) else s.decode() for s in a.get("activations", DEFAULT_ACTS[op])]
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    names = []
    for act in acts[: len(DEFAULT_ACTS[op])]:
        if act in PLAIN_ACTS:
            names.append(PLAIN_ACTS[act])
        elif act in ("HardSigmoid", "Affine"):
            al, be = (alphas.pop(0) if alphas else 0.2), (betas.pop(0) if betas else 0.5)
            want = (1 / 6, 0.5) if act == "HardSigmoid" else (1.0, 0.0)
            if not np.allclose([al, be], want):
                raise ValueError(
                    f"`from_onnx`: {_where(node)}: {act}(alpha={al}, beta={be}) has no lstm_jax "
                    f"activation (only alpha, beta = {want})."
                )
            names.append("hard_sigmoid" if act == "HardSigmoid" else "identity")
        else:
            raise ValueError(f"`from_onnx`: {_where(node)}: activation {act!r} is not supported.")
    if len(acts) > len(names) and acts[len(names) :] != acts[: len(names)]:
        raise ValueError(f"`from_onnx`: {_where(node)}: the two directions' activations differ.")
    if op == "LSTM":
        return LSTMCell(H, 0.0, names[0], names[1], peephole=has_p, use_bias=has_b)
    if op == "GRU":
        lbr = bool(a.get("linear_before_reset", 0))
        return GRUCell(
            H, reset_after=lbr, gate_activation=names[0], activation=names[1], use_bias=has_b
        )
    return SimpleRNNCell(H, activation=names[0], use_bias=has_b)


def _params(op, cell, W, R, B, P, d):
    H, order = cell.hidden_size, FROM_ONNX_ORDER[op]

    def blocks(a):  # ONNX gate blocks -> lstm_jax's, along the last axis
        parts = np.split(np.asarray(a, np.float32), len(order), axis=-1)
        return jnp.asarray(np.concatenate([parts[k] for k in order], axis=-1))

    w_x, w_h = blocks(W.T), blocks(R.T)
    if op == "LSTM":
        b = None if B is None else blocks(B[: 4 * H] + B[4 * H :])
        peep = (
            None
            if P is None
            else Peepholes(*(jnp.asarray(P[d, k * H : (k + 1) * H]) for k in (0, 2, 1)))
        )
        return LSTMParams(w_x, w_h, b, peep)
    if op == "GRU":
        if B is None:
            return GRUParams(w_x, w_h)
        wb, rb = B[: 3 * H], B[3 * H :]
        if cell.reset_after:  # r, z biases add; h's recurrent bias sits inside r * (...)
            both = np.concatenate([wb[: 2 * H] + rb[: 2 * H], wb[2 * H :]])
            return GRUParams(w_x, w_h, blocks(both), jnp.asarray(rb[2 * H :], jnp.float32))
        return GRUParams(w_x, w_h, blocks(wb + rb))
    return SimpleRNNParams(w_x, w_h, None if B is None else jnp.asarray(B[:H] + B[H:]))


def _assemble(layers, head, pooled, labels, time_major):
    cells = {(repr(c), op) for c, _, _, _, op in layers}
    if len(cells) > 1:
        raise ValueError(f"`from_onnx`: the recurrent layers differ ({sorted(cells)}); a "
                         "StackedRNN repeats one cell.")  # fmt: skip
    bidirectional = {bi for _, _, bi, _, _ in layers}
    if len(bidirectional) > 1:
        raise ValueError("`from_onnx`: some layers are bidirectional and some are not.")
    cell = layers[0][0]
    rnn = StackedRNN(cell, len(layers), bidirectional.pop(), time_major=time_major)
    params = tuple(lp for _, _, _, lp, _ in layers)
    out_tm = labels[:2] == ["T", "B"]
    if not pooled and out_tm != time_major:
        raise ValueError(
            f"`from_onnx`: the output's axes are {labels} but the input's are "
            f"{'time' if time_major else 'batch'}-major; a StackedRNN keeps one layout."
        )
    if head is None and not pooled:
        return rnn, params
    dense = None if head is None else Dense(int(head.w.shape[1]), use_bias=head.b is not None)
    model = RecurrentModel(rnn, dense, pooling="last" if pooled else None)
    return model, RecurrentModelParams(params, head)
