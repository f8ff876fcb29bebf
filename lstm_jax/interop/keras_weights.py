"""Keras 3 <-> lstm_jax: ``keras.layers.LSTM``, ``GRU``, ``SimpleRNN`` and ``Bidirectional``.

Keras stores weights in the ``x @ kernel`` layout used here: ``kernel (I, G*H)``,
``recurrent_kernel (H, G*H)``, ``bias``. The LSTM's gate order i, f, c, o is this library's
i, f, g, o, so LSTM weights copy as they are. The GRU's order is z, r, h, reordered to r, z, n.
With ``reset_after=True`` (Keras' default) the GRU bias is ``(2, 3H)``, an input row and a
recurrent row; they sum except for the recurrent candidate bias, which becomes
``GRUParams.b_hn``. With ``reset_after=False`` the bias is ``(3H,)`` and the core's
``GRUCell(reset_after=False)`` computes the same function.

Keras layers are batch-major, ``(batch, T, features)``. ``return_sequences=True`` output is
``layer.apply(params, xs)[1]``; with ``return_sequences=False`` Keras returns the final
``h`` (``carry[-1].forward.h``, concatenated with ``carry[-1].backward.h`` for
``Bidirectional``). A Keras ``mask`` marking each example's first ``L`` steps equals
``lengths=L`` at valid steps (``Bidirectional`` also zeroes padded outputs, as here).
Training-time options (``dropout``, ``recurrent_dropout``) are not carried over.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lstm_jax.cells.gru import GRUCell, GRUParams
from lstm_jax.cells.lstm import LSTMCell, LSTMParams
from lstm_jax.cells.simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax.interop.common import (
    activation_name,
    as_jax,
    check_cell_params,
    check_layer_params,
    check_plain_cell,
)
from lstm_jax.layers.stacked import LayerParams, StackedRNN

_KERAS_TO_CORE = {"linear": "identity"}
_SUPPORTED = ("tanh", "sigmoid", "hard_sigmoid", "relu", "softsign", "linear")


def _zrh_to_rzn(a: np.ndarray) -> np.ndarray:
    z, r, h = np.split(a, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def _rzn_to_zrh(a: np.ndarray) -> np.ndarray:
    r, z, n = np.split(a, 3, axis=-1)
    return np.concatenate([z, r, n], axis=-1)


def from_keras(
    peer: Any,
    *,
    reset_after: bool = True,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
):
    """Converts a Keras 3 recurrent layer (or its ``get_weights()`` list) to lstm_jax.

    Args:
      peer: a built ``keras.layers.LSTM``, ``GRU`` or ``SimpleRNN``, a ``Bidirectional``
        around one (``merge_mode="concat"``), or a ``get_weights()`` list of any of these
        (``[kernel, recurrent_kernel, bias?]``, twice for ``Bidirectional``; the kind is read
        from ``recurrent_kernel``'s shape, ``(H, 4H)``, ``(H, 3H)`` or ``(H, H)``).
      reset_after: for a GRU weights list without bias, Keras' ``reset_after`` (a bias of
        shape ``(2, 3H)`` or ``(3H,)`` tells it otherwise).
      activation, recurrent_activation: Keras activation names, for a weights list (a layer
        brings its own).

    Returns:
      ``(layer, params)``: a batch-major one-layer :class:`~lstm_jax.StackedRNN`
      (bidirectional for ``Bidirectional``) and its params.

    Raises:
      TypeError: ``peer`` is none of the above.
      ValueError: an unbuilt layer, weights of inconsistent shapes, or options with no
        equivalent: ``stateful``, ``go_backwards`` outside ``Bidirectional`` (run the
        converted weights list on ``xs[:, ::-1]`` instead), a ``merge_mode`` other than
        ``"concat"``, or an activation other than those of :mod:`lstm_jax`.
    """
    where = "from_keras"
    if isinstance(peer, (list, tuple)):
        arrays = [np.asarray(w) for w in peer]
        if len(arrays) not in (2, 3, 4, 6):
            raise ValueError(
                f"`{where}`: `peer` as a weights list must have 2 or 3 arrays (kernel, "
                f"recurrent_kernel, bias), or 4 or 6 for Bidirectional; got {len(arrays)}."
            )
        halves = (
            [arrays]
            if len(arrays) < 4
            else [arrays[: len(arrays) // 2], arrays[len(arrays) // 2 :]]
        )
        acts = {"activation": activation, "recurrent_activation": recurrent_activation}
        return _assemble(where, [_from_weights(where, w, None, reset_after, acts) for w in halves])
    name = type(peer).__name__
    if name == "Bidirectional" and hasattr(peer, "forward_layer"):
        if peer.merge_mode != "concat":
            raise ValueError(
                f"`{where}`: `peer.merge_mode` must be 'concat' (StackedRNN concatenates "
                f"[forward, backward]); got {peer.merge_mode!r}."
            )
        parts = [
            _from_layer(where, peer.forward_layer, False),
            _from_layer(where, peer.backward_layer, True),
        ]
        return _assemble(where, parts)
    return _assemble(where, [_from_layer(where, peer, False)])


def _assemble(where, parts):
    (cell, p_f), p_b = parts[0], (parts[1][1] if len(parts) > 1 else None)
    if len(parts) > 1 and parts[1][0] != cell:
        raise ValueError(
            f"`{where}`: `peer`'s forward and backward layers differ: {cell} vs {parts[1][0]}."
        )
    return StackedRNN(cell, bidirectional=p_b is not None), (LayerParams(p_f, p_b),)


def _from_layer(where, layer, backward):
    name = type(layer).__name__
    if name not in ("LSTM", "GRU", "SimpleRNN") or not hasattr(layer, "cell"):
        raise TypeError(
            f"`{where}`: `peer` must be a keras.layers.LSTM, GRU, SimpleRNN, a Bidirectional "
            f"of one, or a get_weights() list; got {name}."
        )
    if not layer.built:
        raise ValueError(
            f"`{where}`: `peer` ({layer.name}) has no weights yet; build or call it first."
        )
    if layer.stateful:
        raise ValueError(f"`{where}`: `peer.stateful=True` has no equivalent; use stateful=False.")
    if layer.go_backwards != backward:
        raise ValueError(
            f"`{where}`: `peer.go_backwards={layer.go_backwards}` outside a Bidirectional has no "
            "StackedRNN equivalent; convert `peer.get_weights()` and apply it to xs[:, ::-1]."
        )
    import keras

    acts = {}
    for arg in ("activation", "recurrent_activation"):
        fn = getattr(layer.cell, arg, None)
        if fn is not None:
            acts[arg] = keras.activations.serialize(fn)
    kind = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[name]
    weights = [np.asarray(v.value) for v in layer.weights]  # get_weights() without a copy
    return _from_weights(where, weights, kind, getattr(layer, "reset_after", True), acts)


def _from_weights(where, w, kind, reset_after, acts=None):
    for arg, name in (acts or {}).items():
        if name not in _SUPPORTED:
            raise ValueError(f"`{where}`: `{arg}` must be one of {_SUPPORTED}; got {name!r}.")
    acts = {k: _KERAS_TO_CORE.get(v, v) for k, v in (acts or {}).items()}
    kernel, rec, bias = w[0], w[1], (w[2] if len(w) > 2 else None)
    if kernel.ndim != 2 or rec.ndim != 2 or kernel.shape[1] != rec.shape[1]:
        raise ValueError(
            f"`{where}`: `peer` kernels must be (I, G*H) and (H, G*H); got {kernel.shape} and "
            f"{rec.shape}."
        )
    H = rec.shape[0]
    G = kind if kind is not None else rec.shape[1] // H
    if G not in (1, 3, 4) or rec.shape[1] != G * H:
        raise ValueError(
            f"`{where}`: `peer` recurrent_kernel must be (H, 4H) (LSTM), (H, 3H) (GRU) or (H, H) "
            f"(SimpleRNN); got {rec.shape}."
        )
    if bias is not None and G == 3 and bias.ndim == 2:
        reset_after = True
    elif bias is not None and G == 3:
        reset_after = False
    want = {4: (4 * H,), 1: (H,), 3: (2, 3 * H) if reset_after else (3 * H,)}[G]
    if bias is not None and bias.shape != want:
        raise ValueError(f"`{where}`: `peer` bias must have shape {want}; got {bias.shape}.")
    dt, use_bias = kernel.dtype, bias is not None
    gate = acts.get("recurrent_activation", "sigmoid")
    act = acts.get("activation", "tanh")
    if G == 4:
        cell = LSTMCell(H, 0.0, gate, act, use_bias=use_bias, param_dtype=dt)
        params = LSTMParams(as_jax(kernel), as_jax(rec), None if bias is None else as_jax(bias))
    elif G == 3:
        cell = GRUCell(H, reset_after, gate, act, use_bias=use_bias, param_dtype=dt)
        params = _gru_params(kernel, rec, bias, reset_after, H)
    else:
        cell = SimpleRNNCell(H, act, use_bias=use_bias, param_dtype=dt)
        params = SimpleRNNParams(
            as_jax(kernel), as_jax(rec), None if bias is None else as_jax(bias)
        )
    check_cell_params(where, cell, params)
    return cell, params


def _gru_params(kernel, rec, bias, reset_after, H):
    w_x, w_h = as_jax(_zrh_to_rzn(kernel)), as_jax(_zrh_to_rzn(rec))
    if bias is None:
        return GRUParams(w_x, w_h)
    if not reset_after:
        return GRUParams(w_x, w_h, as_jax(_zrh_to_rzn(bias)))
    b_in, b_rec = _zrh_to_rzn(bias[0]), _zrh_to_rzn(bias[1])
    b = np.concatenate([b_in[: 2 * H] + b_rec[: 2 * H], b_in[2 * H :]])  # r, z summed; n apart
    return GRUParams(w_x, w_h, as_jax(b), as_jax(b_rec[2 * H :]))


def to_keras(layer: Any, params: Any, *, return_sequences: bool = True):
    """Builds the Keras 3 layer computing what ``layer`` computes with ``params``.

    Args:
      layer: a batch-major :class:`~lstm_jax.StackedRNN` of an LSTM (no peepholes,
        projection or layer norm; forget gate on), GRU or SimpleRNN cell with activations
        Keras has. One layer gives ``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN`` (in a
        ``Bidirectional`` when bidirectional); several give a ``keras.Sequential`` of them,
        with ``keras.layers.Dropout(layer.dropout)`` between layers when it is set.
      params: the matching params.
      return_sequences: of the (last) Keras layer; inner layers always return sequences.

    Returns:
      The built Keras layer (or ``Sequential``) holding copies of ``params``.

    Raises:
      TypeError / ValueError: another kind of layer, ``time_major=True``,
      ``recurrent_dropout``, options Keras lacks, or params that do not fit ``layer``.
    """
    import keras

    where = "to_keras"
    if not isinstance(layer, StackedRNN):
        raise TypeError(
            f"`{where}`: `layer` must be a StackedRNN (e.g. lstm_jax.LSTM(...)); "
            f"got {type(layer).__name__}."
        )
    cell = layer.cell
    check_plain_cell(
        where, "layer.cell", cell, "Keras", False, any_activation=True, reset_before_ok=True
    )
    names = {
        a: activation_name(getattr(cell, a))
        for a in ("activation", "gate_activation")
        if hasattr(cell, a)
    }
    for a, n in names.items():
        if n is None:
            raise ValueError(
                f"`{where}`: `layer.cell.{a}` must be a named activation Keras has; "
                f"got {getattr(cell, a)!r}."
            )
    unsupported = (
        (layer.time_major, "time_major=True (Keras layers are batch-major)"),
        (layer.recurrent_dropout, f"recurrent_dropout={layer.recurrent_dropout}"),
    )
    for bad, why in unsupported:
        if bad:
            raise ValueError(f"`{where}`: `layer` has {why}, which Keras cannot express.")
    sizes = check_layer_params(where, layer, params)
    keras_acts = {
        ("recurrent_activation" if a == "gate_activation" else a): (
            "linear" if n == "identity" else n
        )
        for a, n in names.items()
    }
    built = []
    for k, (lp, size) in enumerate(zip(params, sizes, strict=True)):
        last = k == layer.num_layers - 1
        built.append(
            _keras_layer(
                keras, cell, lp, size, keras_acts, return_sequences or not last, layer.bidirectional
            )
        )
        if not last and layer.dropout:
            built.append(keras.layers.Dropout(layer.dropout))
    if len(built) == 1:
        return built[0]
    model = keras.Sequential([keras.Input((None, sizes[0]))] + built)
    return model


def _keras_layer(keras, cell, lp, size, acts, return_sequences, bidirectional):
    kind = {LSTMCell: "LSTM", GRUCell: "GRU", SimpleRNNCell: "SimpleRNN"}[type(cell)]
    extra = {"reset_after": cell.reset_after} if kind == "GRU" else {}
    if kind == "SimpleRNN":
        acts = {"activation": acts["activation"]}

    def make():
        return getattr(keras.layers, kind)(
            cell.hidden_size,
            use_bias=cell.use_bias,
            return_sequences=return_sequences,
            dtype=str(np.dtype(cell.param_dtype)),
            **acts,
            **extra,
        )

    out = keras.layers.Bidirectional(make()) if bidirectional else make()
    out.build((None, None, size))
    weights = _keras_weights(cell, lp.forward)
    if bidirectional:
        weights += _keras_weights(cell, lp.backward)
    for v, w in zip(out.weights, weights, strict=True):
        v.assign(w)
    return out


def _keras_weights(cell, p):
    """``[kernel, recurrent_kernel, bias?]`` of one cell's params."""
    w_x, w_h = np.asarray(p.w_x), np.asarray(p.w_h)
    b = None if p.b is None else np.asarray(p.b)
    if isinstance(cell, GRUCell):
        w_x, w_h = _rzn_to_zrh(w_x), _rzn_to_zrh(w_h)
        if b is not None and cell.reset_after:
            rec = np.concatenate([np.zeros_like(b[: 2 * cell.hidden_size]), np.asarray(p.b_hn)])
            b = np.stack([_rzn_to_zrh(b), _rzn_to_zrh(rec)])  # (2, 3H): input row, recurrent row
        elif b is not None:
            b = _rzn_to_zrh(b)
    return [w_x, w_h] + ([] if b is None else [b])
