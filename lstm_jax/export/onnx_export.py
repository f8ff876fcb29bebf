"""``to_onnx``: a :class:`~lstm_jax.StackedRNN` (with its heads) as ONNX's own ``LSTM``, ``GRU``
and ``RNN`` operators.

ONNX's recurrent operators hold one layer each, time-major, in ``W x`` layout, with their own
gate orders; the weights are rewritten once at export:

==========  ===================  ===============  =====================================
operator    lstm_jax blocks      ONNX blocks      biases ``B = [Wb, Rb]``
==========  ===================  ===============  =====================================
``LSTM``    i, f, g, o           i, o, f, c       ``Wb = b``, ``Rb = 0``; ``P = [w_ci, w_co,
                                                  w_cf]``
``GRU``     r, z, n              z, r, h          ``Wb = b``, ``Rb = [0, 0, b_hn]`` with
                                                  ``linear_before_reset=1`` (reset_after)
``RNN``     (one block)          (one block)      ``Wb = b``, ``Rb = 0``
==========  ===================  ===============  =====================================

The graph is built node by node with ``onnx.helper``: one operator per layer (both directions
in one node when bidirectional), a ``Transpose``/``Reshape`` between layers, and the head as
``Gemm``/``MatMul``. Batch and time are symbolic dimensions (``batch``, ``time``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.core.checks import Problems
from lstm_jax.export.model import (
    RecurrentModel,
    as_recurrent_model,
    export_input_size,
    output_path,
)

# lstm_jax activation name -> (ONNX activation, alpha, beta); alpha/beta None when unused.
ACTIVATIONS = {
    "sigmoid": ("Sigmoid", None, None),
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "softsign": ("Softsign", None, None),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),  # jax.nn.hard_sigmoid = relu6(x + 3) / 6
    "identity": ("Affine", 1.0, 0.0),
}
OPS = {LSTMCell: "LSTM", GRUCell: "GRU", SimpleRNNCell: "RNN"}
LSTM_ORDER = (0, 3, 1, 2)  # ONNX i, o, f, c from lstm_jax i, f, g, o
GRU_ORDER = (1, 0, 2)  # ONNX z, r, h from lstm_jax r, z, n
DEFAULT_OPSET = 17


def to_onnx(
    layer: Any,
    params: Any,
    path: str | Path | None = None,
    *,
    lengths: bool | None = None,
    initial_state: bool = False,
    opset: int = DEFAULT_OPSET,
    input_size: int | None = None,
):
    """Writes ``layer`` with ``params`` as an ONNX model; returns the ``onnx.ModelProto``.

    Args:
      layer: a :class:`~lstm_jax.StackedRNN`, a :class:`RecurrentModel`, or a built-in model of
        the ``lstm-jax`` command.
      params: the layer's params.
      path: where to write the ``.onnx`` file (None: only return the model).
      lengths: add an int32 ``lengths`` input of shape ``(batch,)``, the operators'
        ``sequence_lens``. None: only for the command's ``Classifier``, which needs it.
      initial_state: add inputs ``h0_<l>`` (and ``c0_<l>`` for LSTMs), each
        ``(directions, batch, H)``, the operators' ``initial_h``/``initial_c``.
      opset: the ONNX opset to declare (13 or later).
      input_size: features of the input (read from the params when None; when given, it
        must equal theirs).

    The graph's inputs are ``x`` (``(batch, time, I)``, or ``(time, batch, I)`` when the stack
    is time-major; ``tokens``, int64 ``(batch, time)``, for a model with ``vocab_size``), then
    ``lengths`` and the initial states when asked for. Its outputs are ``y`` (what
    ``layer.apply`` returns as ``ys``), then ``h_<l>`` (and ``c_<l>``) per layer, the final
    carry as ``(directions, batch, H)``, direction 0 forward. For an example of length 0 that
    is its initial state, as in lstm_jax (onnxruntime's operators return zeros there, so the
    graph selects the initial state with a ``Where``).

    Raises:
      ValueError: naming every option the operators cannot express (layer norm, projection,
        no forget gate, mixed precision, non-float32 params, an activation outside the
        operators' list).
      TypeError: for a cell with no ONNX operator (ConvLSTM, a user's own cell).
    """
    import onnx
    from onnx import TensorProto, helper

    if lengths is None:
        lengths = type(layer).__name__ == "Classifier"
    model, mparams = as_recurrent_model(layer, params)
    check_exportable(model)
    if opset < 13:
        raise ValueError(f"`to_onnx`: `opset` must be 13 or later; got {opset}.")
    g = _Graph()
    x = _inputs(g, model, mparams, lengths, initial_state, input_size, TensorProto, helper)
    hs = _stack(g, model, mparams, x, lengths, initial_state, helper)  # (T, B, F)
    y = _pool_and_head(g, model, mparams, hs, lengths, helper)
    g.outputs.insert(0, helper.make_tensor_value_info(y, TensorProto.FLOAT, _y_shape(model)))
    graph = helper.make_graph(g.nodes, "lstm_jax", g.inputs, g.outputs, g.initializers)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lstm_jax"
    )
    proto.ir_version = min(proto.ir_version, 10)  # what current onnxruntime releases read
    onnx.checker.check_model(proto)
    if path is not None:
        onnx.save(proto, str(output_path(path)))
    return proto


def _y_shape(model: RecurrentModel) -> list:
    rnn = model.rnn
    features = rnn.output_size if model.head is None else model.head.features
    if model.pooling is not None:
        return ["batch", features]
    return ["time", "batch", features] if rnn.time_major else ["batch", "time", features]


def check_exportable(model: RecurrentModel) -> None:
    """Raises one error naming every option of ``model`` that ONNX's operators lack."""
    p = Problems("to_onnx")
    cell = model.rnn.cell
    if type(cell) not in OPS:
        raise TypeError(
            f"`to_onnx`: {type(cell).__name__} has no ONNX recurrent operator; only LSTMCell, "
            "GRUCell and SimpleRNNCell stacks export."
        )
    name = type(cell).__name__
    if isinstance(cell, LSTMCell):
        for option, bad, why in (
            ("layer_norm", cell.layer_norm, "ONNX's LSTM has no layer normalisation"),
            ("proj_size", cell.proj_size is not None, "ONNX's LSTM has no output projection"),
            ("forget_gate", not cell.forget_gate, "ONNX's LSTM always has a forget gate"),
        ):
            if bad:
                p.value(f"`{name}({option}={getattr(cell, option)!r})` cannot export: {why}.")
    if cell.dtype is not None and np.dtype(cell.dtype) != np.dtype(cell.param_dtype):
        p.value(f"`{name}(dtype={np.dtype(cell.dtype)})`: mixed precision does not export.")
    if np.dtype(cell.param_dtype) != np.float32:
        p.value(f"`{name}(param_dtype={np.dtype(cell.param_dtype)})`: only float32 exports.")
    for option in _activation_options(cell):
        fn = getattr(cell, option)
        if not isinstance(fn, str) or fn not in ACTIVATIONS:
            p.value(
                f"`{name}({option}={fn!r})` cannot export: the operators take one of "
                f"{sorted(ACTIVATIONS)}."
            )
    p.raise_if_any()


def _activation_options(cell) -> tuple[str, ...]:
    return ("activation",) if isinstance(cell, SimpleRNNCell) else ("gate_activation", "activation")


class _Graph:
    """Nodes, initialisers and value infos under construction, with unique names."""

    def __init__(self):
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs, n_out: int = 1, outputs=None, **attrs):
        from onnx import helper

        outputs = outputs or [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=self.name(op), **attrs))
        return outputs[0] if n_out == 1 else outputs


def _inputs(g, model, mparams, lengths, initial_state, input_size, TensorProto, helper) -> str:
    rnn = model.rnn
    dims = ["time", "batch"] if rnn.time_major else ["batch", "time"]
    if model.vocab_size is not None:
        g.inputs.append(helper.make_tensor_value_info("tokens", TensorProto.INT64, dims))
        eye = g.const("one_hot", np.eye(model.vocab_size, dtype=np.float32))  # (V, V)
        x = g.node("Gather", [eye, "tokens"], axis=0)  # (.., .., V)
    else:
        size = export_input_size("to_onnx", input_size, mparams)
        g.inputs.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [*dims, size]))
        x = "x"
    if lengths:
        g.inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"]))
    if initial_state:
        D, H = 1 + rnn.bidirectional, rnn.cell.hidden_size
        for layer in range(rnn.num_layers):
            for s in _state_names(rnn.cell, layer, "0"):
                g.inputs.append(
                    helper.make_tensor_value_info(s, TensorProto.FLOAT, [D, "batch", H])
                )
    return x if rnn.time_major else g.node("Transpose", [x], perm=[1, 0, 2])  # (T, B, I)


def _state_names(cell, layer: int, suffix: str = "") -> list[str]:
    names = [f"h{suffix}_{layer}"]
    return names + [f"c{suffix}_{layer}"] if isinstance(cell, LSTMCell) else names


def _stack(g, model, mparams, x, lengths, initial_state, helper) -> str:
    from onnx import TensorProto

    rnn, cell = model.rnn, model.rnn.cell
    D, H = 1 + rnn.bidirectional, cell.hidden_size
    seq = g.node("Cast", ["lengths"], to=TensorProto.INT32) if lengths else ""
    for layer, lp in enumerate(mparams.rnn):
        dirs = [lp.forward] + ([lp.backward] if rnn.bidirectional else [])
        w = _weights(cell, dirs)
        ins = [x, g.const("W", w["W"]), g.const("R", w["R"])]
        ins += [g.const("B", w["B"]) if "B" in w else "", seq]
        states = _state_names(cell, layer, "0") if initial_state else []
        ins += states or [""] * len(_state_names(cell, layer))
        if "P" in w:
            ins.append(g.const("P", w["P"]))
        while ins and ins[-1] == "":
            ins.pop()
        outs = [g.name("Y"), *_state_names(cell, layer)]
        acts, alphas, betas = _activations(cell, D)
        attrs = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        attrs["activations"] = acts
        if alphas:  # consumed in order by the activations that take them (ONNX spec)
            attrs["activation_alpha"], attrs["activation_beta"] = alphas, betas
        if isinstance(cell, GRUCell):
            attrs["linear_before_reset"] = int(cell.reset_after)
        finals = outs[1:]
        if lengths and initial_state:
            outs = [outs[0], *(g.name(s) for s in finals)]
        g.node(OPS[type(cell)], ins, outputs=outs, **attrs)
        if lengths and initial_state:  # onnxruntime zeroes Y_h/Y_c of an empty sequence
            empty = _empty_sequences(g)  # (1, B, 1)
            for raw, h0, final in zip(outs[1:], states, finals, strict=True):
                g.node("Where", [empty, h0, raw], outputs=[final])
        for s in finals:
            g.outputs.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, [D, "batch", H]))
        if D == 1:
            x = g.node("Squeeze", [outs[0], g.const("axes", np.array([1], np.int64))])
        else:  # (T, 2, B, H) -> (T, B, 2, H) -> (T, B, 2H): [forward, backward] features
            y = g.node("Transpose", [outs[0]], perm=[0, 2, 1, 3])
            x = g.node("Reshape", [y, g.const("shape", np.array([0, 0, -1], np.int64))])
    return x


def _empty_sequences(g) -> str:
    """``(1, B, 1)`` booleans, True where ``lengths == 0``: there lstm_jax's final carry is the
    initial one (nothing ran), while onnxruntime returns zeros."""
    if not hasattr(g, "empty"):
        zero = g.const("zero_i32", np.array(0, np.int32))
        empty = g.node("Equal", ["lengths", zero])  # (B,)
        g.empty = g.node("Unsqueeze", [empty, g.const("axes", np.array([0, 2], np.int64))])
    return g.empty


def _weights(cell, dirs) -> dict[str, np.ndarray]:
    """ONNX ``W (D, G*H, I)``, ``R (D, G*H, H)``, ``B (D, 2*G*H)`` and LSTM ``P (D, 3H)``."""
    H = cell.hidden_size
    order = {LSTMCell: LSTM_ORDER, GRUCell: GRU_ORDER}.get(type(cell), (0,))

    def blocks(a, axis=-1):  # reorder gate blocks along the last axis
        parts = np.split(np.asarray(a, np.float32), len(order), axis=axis)
        return np.concatenate([parts[k] for k in order], axis=axis)

    W = np.stack([blocks(p.w_x).T for p in dirs])
    R = np.stack([blocks(p.w_h).T for p in dirs])
    out = {"W": W, "R": R}
    if dirs[0].b is not None:
        rb = [np.zeros(len(order) * H, np.float32) for _ in dirs]
        if isinstance(cell, GRUCell) and cell.reset_after:
            for r, p in zip(rb, dirs, strict=True):
                r[2 * H :] = np.asarray(p.b_hn, np.float32)  # h block of ONNX z, r, h
        out["B"] = np.stack(
            [np.concatenate([blocks(p.b), r]) for p, r in zip(dirs, rb, strict=True)]
        )
    if isinstance(cell, LSTMCell) and cell.peephole:
        out["P"] = np.stack(
            [np.concatenate([p.peephole.w_ci, p.peephole.w_co, p.peephole.w_cf]) for p in dirs]
        ).astype(np.float32)
    return out


def _activations(cell, D: int):
    if isinstance(cell, LSTMCell):
        names = [cell.gate_activation, cell.activation, cell.activation]
    elif isinstance(cell, GRUCell):
        names = [cell.gate_activation, cell.activation]
    else:
        names = [cell.activation]
    specs = [ACTIVATIONS[n] for n in names] * D
    with_ab = [s for s in specs if s[1] is not None]
    return [s[0] for s in specs], [s[1] for s in with_ab], [s[2] for s in with_ab]


def _pool_and_head(g, model, mparams, hs, lengths, helper) -> str:
    """``hs: (T, B, F)`` -> the model's ``y``."""
    if model.pooling is None:
        y = hs if model.rnn.time_major else g.node("Transpose", [hs], perm=[1, 0, 2])
        if model.head is None:
            return g.node("Identity", [y], outputs=["y"])
        w = g.const("head_w", np.asarray(mparams.head.w, np.float32))
        if mparams.head.b is None:
            return g.node("MatMul", [y, w], outputs=["y"])
        b = g.const("head_b", np.asarray(mparams.head.b, np.float32))
        return g.node("Add", [g.node("MatMul", [y, w]), b], outputs=["y"])
    if model.pooling == "last":
        pooled = _last_step(g, hs, lengths)
    else:
        pooled = _attention(g, mparams.attention, hs, lengths)
    if model.head is None:
        return g.node("Identity", [pooled], outputs=["y"])
    ins = [pooled, g.const("head_w", np.asarray(mparams.head.w, np.float32))]
    if mparams.head.b is not None:
        ins.append(g.const("head_b", np.asarray(mparams.head.b, np.float32)))
    return g.node("Gemm", ins, outputs=["y"])  # (B, O)


def _last_step(g, hs, lengths) -> str:
    """Each example's output at its last valid step, ``(T, B, F) -> (B, F)``."""
    if not lengths:
        return g.node("Gather", [hs, g.const("last", np.array(-1, np.int64))], axis=0)
    from onnx import TensorProto

    hb = g.node("Transpose", [hs], perm=[1, 0, 2])  # (B, T, F)
    n = g.node("Cast", ["lengths"], to=TensorProto.INT64)
    idx = g.node("Max", [g.node("Sub", [n, g.const("one", np.array(1, np.int64))]),
                         g.const("zero", np.array(0, np.int64))])  # fmt: skip
    idx = g.node("Unsqueeze", [idx, g.const("axes", np.array([1], np.int64))])  # (B, 1)
    # Length 0 reads step 0, whose output the operators leave at zero, as last_step gives.
    return g.node("GatherND", [hb, idx], batch_dims=1)  # (B, F)


def _attention(g, ap, hs, lengths) -> str:
    """Additive attention pooling (:class:`AdditiveAttention`), ``(T, B, F) -> (B, F)``."""
    from onnx import TensorProto

    hb = g.node("Transpose", [hs], perm=[1, 0, 2])  # (B, T, F)
    u = g.node("MatMul", [hb, g.const("att_w", np.asarray(ap.w, np.float32))])
    u = g.node("Tanh", [g.node("Add", [u, g.const("att_b", np.asarray(ap.b, np.float32))])])
    scores = g.node("MatMul", [u, g.const("att_v", np.asarray(ap.v, np.float32))])  # (B, T)
    if lengths:
        T = g.node("Shape", [hb], start=1, end=2)  # (1,)
        T = g.node("Squeeze", [T, g.const("axes", np.array([0], np.int64))])
        steps = g.node(
            "Range",
            [g.const("zero", np.array(0, np.int64)), T, g.const("one", np.array(1, np.int64))],
        )  # (T,)
        n = g.node("Cast", ["lengths"], to=TensorProto.INT64)
        n = g.node("Unsqueeze", [n, g.const("axes", np.array([1], np.int64))])  # (B, 1)
        valid = g.node("Less", [steps, n])  # (B, T)
        neg = g.const("neg_inf", np.array(-np.inf, np.float32))
        scores = g.node("Where", [valid, scores, neg])
        weights = g.node("Softmax", [scores], axis=-1)
        weights = g.node("Where", [valid, weights, g.const("zero_f", np.array(0, np.float32))])
    else:
        weights = g.node("Softmax", [scores], axis=-1)
    w3 = g.node("Unsqueeze", [weights, g.const("axes", np.array([1], np.int64))])  # (B, 1, T)
    ctx = g.node("MatMul", [w3, hb])  # (B, 1, F)
    return g.node("Squeeze", [ctx, g.const("axes", np.array([1], np.int64))])
