"""Flax (linen and NNX) <-> lstm_jax for ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` and
``SimpleCell``, plus NNX ``RNN`` / ``Bidirectional`` around them.

Param trees, ``x @ kernel`` layout throughout (so no transposes):

* linen ``LSTMCell`` and ``OptimizedLSTMCell`` (same tree): ``ii, if, ig, io`` hold ``kernel
  (I, H)``; ``hi, hf, hg, ho`` hold ``kernel (H, H)`` and ``bias (H,)``. NNX ``LSTMCell`` is the
  same with ``if_`` for ``if``; NNX ``OptimizedLSTMCell`` fuses them: ``dense_i.kernel (I, 4H)``,
  ``dense_h.kernel (H, 4H)``, ``dense_h.bias (4H,)``, blocks i, f, g, o as here.
* linen ``GRUCell``: ``ir, iz, in`` with ``kernel (I, H)``, ``bias``; ``hr, hz`` with ``kernel``;
  ``hn`` with ``kernel`` and ``bias`` (that one is ``GRUParams.b_hn``). NNX ``GRUCell``:
  ``dense_i.kernel (I, 3H)``, ``dense_i.bias``, ``dense_h.kernel (H, 3H)``, and no ``b_hn``.
* ``SimpleCell``: linen ``i`` (kernel, bias), ``h`` (kernel); NNX ``dense_i``, ``dense_h``.

Flax's LSTM carry is ``(c, h)``; here it is ``LSTMState(h, c)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.gru import GRUCell, GRUParams
from lstm_jax.cells.lstm import LSTMCell, LSTMParams
from lstm_jax.cells.simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax.core.activations import resolve_activation
from lstm_jax.interop.common import activation_name, check_cell_params, check_plain_cell
from lstm_jax.layers.stacked import LayerParams, StackedRNN
from lstm_jax.sequence.scan import resolve_unroll

_LINEN_LSTM = ("ii", "if", "ig", "io", "hi", "hf", "hg", "ho")
_NNX_LSTM = ("ii", "if_", "ig", "io", "hi", "hf", "hg", "ho")
_LINEN_GRU = ("ir", "iz", "in", "hr", "hz", "hn")
_CELL_NAMES = ("LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell")


def _act(fn: Any) -> Any:
    """A registry name when ``fn`` is a registered activation (keeps configs printable)."""
    return activation_name(fn) or fn


def _pure(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _pure(v) for k, v in tree.items()}
    return jnp.asarray(getattr(tree, "value", tree))


def from_flax(peer: Any, *, gate_activation: Any = "sigmoid", activation: Any = "tanh"):
    """Converts a Flax recurrent cell (NNX module, or linen/NNX param tree) to lstm_jax.

    Args:
      peer: an NNX ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell`` (Flax's
        or :mod:`lstm_jax.nnx`'s), an NNX ``RNN`` / ``Bidirectional`` of those (not reversed,
        default ``merge_fn``), or a param tree of any linen or NNX cell above (a linen
        ``variables`` dict with its ``'params'`` key is fine). The kind is read from the keys.
      gate_activation, activation: for param trees, which carry no functions; an NNX module's
        own ``gate_fn`` / ``activation_fn`` are used instead.

    Returns:
      ``(cell, params)``, with ``cell(params, LSTMState(h, c), x)`` equal to Flax's
      ``cell((c, h), x)``; for ``RNN`` / ``Bidirectional``, ``(StackedRNN, params)``.

    Raises:
      TypeError: ``peer`` is none of the above.
      ValueError: a param tree with unknown keys or inconsistent shapes.
    """
    where = "from_flax"
    name = type(peer).__name__
    if name in ("RNN", "Bidirectional") and callable(peer) and not isinstance(peer, Mapping):
        return _from_nnx_rnn(where, peer)
    if name in _CELL_NAMES and not isinstance(peer, Mapping) and hasattr(peer, "hidden_features"):
        from flax import nnx

        tree = nnx.to_pure_dict(nnx.state(peer, nnx.Param))
        gate_activation = getattr(peer, "gate_fn", gate_activation)
        activation = getattr(peer, "activation_fn", activation)
        residual = bool(getattr(peer, "residual", False))
    elif isinstance(peer, Mapping):
        tree, residual = dict(peer), False
        if set(tree) == {"params"}:
            tree = dict(tree["params"])
    else:
        raise TypeError(
            f"`{where}`: `peer` must be a Flax NNX LSTMCell, OptimizedLSTMCell, GRUCell, "
            f"SimpleCell, RNN or Bidirectional, or a linen/NNX param tree; got {name}."
        )
    return _from_tree(where, _pure(tree), _act(gate_activation), _act(activation), residual)


def _from_tree(where, t, gate, act, residual):
    keys = set(t)
    try:
        if keys in (set(_LINEN_LSTM), set(_NNX_LSTM)):
            names = _LINEN_LSTM if "if" in keys else _NNX_LSTM
            w_x = jnp.concatenate([t[k]["kernel"] for k in names[:4]], axis=-1)  # (I, 4H)
            w_h = jnp.concatenate([t[k]["kernel"] for k in names[4:]], axis=-1)  # (H, 4H)
            b = jnp.concatenate([t[k]["bias"] for k in names[4:]], axis=-1)
            return _lstm(w_x, w_h, b, gate, act)
        if keys == set(_LINEN_GRU):
            cat = lambda ks, f: jnp.concatenate([t[k][f] for k in ks], axis=-1)  # noqa: E731
            w_x, b = cat(("ir", "iz", "in"), "kernel"), cat(("ir", "iz", "in"), "bias")
            w_h = cat(("hr", "hz", "hn"), "kernel")
            return _gru(w_x, w_h, b, t["hn"]["bias"], gate, act)
        if keys == {"i", "h"}:
            return _simple(t["i"]["kernel"], t["h"]["kernel"], t["i"]["bias"], act, residual)
        if keys == {"dense_i", "dense_h"}:
            i, h = t["dense_i"], t["dense_h"]
            H = h["kernel"].shape[0]
            if "bias" in h:  # OptimizedLSTMCell: the bias sits on the recurrent side
                return _lstm(i["kernel"], h["kernel"], h["bias"], gate, act)
            if h["kernel"].shape[-1] == 3 * H:
                return _gru(
                    i["kernel"], h["kernel"], i["bias"], jnp.zeros_like(i["bias"][:H]), gate, act
                )
            return _simple(i["kernel"], h["kernel"], i["bias"], act, residual)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"`{where}`: `peer` is missing an entry of its cell's tree: {e!r}."
        ) from None
    raise ValueError(
        f"`{where}`: `peer` has keys {sorted(keys)}, which match no Flax cell: expected "
        f"{list(_LINEN_LSTM)} (linen LSTM), {list(_NNX_LSTM)} (NNX LSTMCell), "
        f"{list(_LINEN_GRU)} (linen GRU), ['h', 'i'] (linen SimpleCell) or "
        "['dense_h', 'dense_i'] (NNX OptimizedLSTMCell, GRUCell, SimpleCell)."
    )


def _checked(where, cell, params):
    check_cell_params(where, cell, params)
    return cell, params


def _lstm(w_x, w_h, b, gate, act):
    cell = LSTMCell(w_h.shape[0], 0.0, gate, act, param_dtype=w_x.dtype)
    return _checked("from_flax", cell, LSTMParams(w_x, w_h, b))


def _gru(w_x, w_h, b, b_hn, gate, act):
    cell = GRUCell(w_h.shape[0], True, gate, act, param_dtype=w_x.dtype)
    return _checked("from_flax", cell, GRUParams(w_x, w_h, b, b_hn))


def _simple(w_x, w_h, b, act, residual):
    if residual:  # h' = act(x W_i + b + h W_h + h) = act(x W_i + b + h (W_h + I))
        w_h = w_h + jnp.eye(w_h.shape[0], dtype=w_h.dtype)
    cell = SimpleRNNCell(w_h.shape[0], act, param_dtype=w_x.dtype)
    return _checked("from_flax", cell, SimpleRNNParams(w_x, w_h, b))


def _from_nnx_rnn(where, peer):
    if type(peer).__name__ == "RNN":
        if peer.reverse:
            raise ValueError(f"`{where}`: `peer.reverse=True` has no StackedRNN equivalent.")
        cell, p = from_flax(peer.cell)
        layer = StackedRNN(cell, time_major=peer.time_major, unroll=peer.unroll)
        return layer, (LayerParams(p),)
    # The default merge_fn, read from the peer's own class (Flax's or lstm_jax.nnx's).
    default = inspect.signature(type(peer).__init__).parameters["merge_fn"].default
    if peer.merge_fn is not default:
        raise ValueError(f"`{where}`: `peer.merge_fn` must be the default concatenation.")
    (cell, p_f), (cell_b, p_b) = from_flax(peer.forward_rnn.cell), from_flax(peer.backward_rnn.cell)
    if cell != cell_b:
        raise ValueError(
            f"`{where}`: `peer`'s forward and backward cells differ: {cell} vs {cell_b}."
        )
    return StackedRNN(cell, bidirectional=True, time_major=peer.time_major), (
        LayerParams(p_f, p_b),
    )


def to_flax(layer: Any, params: Any, *, kind: str = "nnx", optimized: bool = False):
    """Builds the Flax cell computing what ``layer`` computes with ``params``.

    Args:
      layer: an :class:`~lstm_jax.LSTMCell` (no peepholes, projection, layer norm; forget gate
        on), :class:`~lstm_jax.GRUCell` (``reset_after=True``) or
        :class:`~lstm_jax.SimpleRNNCell`; with ``kind="nnx"`` also a one-layer
        :class:`~lstm_jax.StackedRNN` of one (-> ``nnx.RNN`` or ``nnx.Bidirectional``).
      params: the matching params. ``use_bias=False`` becomes zero Flax biases.
      kind: ``"nnx"`` returns an NNX module holding copies of the params; ``"linen"``
        returns ``(module, variables)`` for ``module.apply(variables, (c, h), x)``.
      optimized: build ``OptimizedLSTMCell`` instead of ``LSTMCell`` (same maths).

    Raises:
      TypeError / ValueError: other layers or options, a ``GRUParams.b_hn`` that is not zero
      with ``kind="nnx"`` (NNX's ``GRUCell`` has no such bias; use ``kind="linen"``), or params
      that do not fit ``layer``.
    """
    where = "to_flax"
    if kind not in ("nnx", "linen"):
        raise ValueError(f"`{where}`: `kind` must be 'nnx' or 'linen'; got {kind!r}.")
    if isinstance(layer, StackedRNN):
        return _to_nnx_rnn(where, layer, params, kind, optimized)
    check_plain_cell(where, "layer", layer, "Flax", allow_proj=False, any_activation=True)
    size = check_cell_params(where, layer, params)
    H, dt = layer.hidden_size, layer.param_dtype
    b = params.b if params.b is not None else jnp.zeros((params.w_h.shape[-1],), dt)
    act = resolve_activation(layer.activation, where, "activation")
    fns = {"activation_fn": act}
    if isinstance(layer, LSTMCell):
        name = "OptimizedLSTMCell" if optimized else "LSTMCell"
        tree = _lstm_tree(params, b, kind, optimized)
    elif isinstance(layer, GRUCell):
        name = "GRUCell"
        b_hn = params.b_hn if params.b_hn is not None else jnp.zeros((H,), dt)
        tree = _gru_tree(where, params, b, b_hn, kind)
    else:
        name = "SimpleCell"
        keys = ("dense_i", "dense_h") if kind == "nnx" else ("i", "h")
        tree = {keys[0]: {"kernel": params.w_x, "bias": b}, keys[1]: {"kernel": params.w_h}}
    if name != "SimpleCell":
        fns["gate_fn"] = resolve_activation(layer.gate_activation, where, "gate_activation")
    dtypes = {"param_dtype": dt, "dtype": layer.dtype}
    if kind == "linen":
        import flax.linen as nn

        return getattr(nn, name)(H, **fns, **dtypes), {"params": tree}
    from flax import nnx

    module = getattr(nnx, name)(size, H, **fns, **dtypes, rngs=nnx.Rngs(0))
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(module, state)
    return module


def _lstm_tree(params, b, kind, optimized):
    if kind == "nnx" and optimized:
        return {"dense_i": {"kernel": params.w_x}, "dense_h": {"kernel": params.w_h, "bias": b}}
    tree = {}
    blocks = [jnp.split(a, 4, axis=-1) for a in (params.w_x, params.w_h, b)]
    for g, wx, wh, bb in zip("ifgo", *blocks, strict=True):
        tree[f"i{g}"], tree[f"h{g}"] = {"kernel": wx}, {"kernel": wh, "bias": bb}
    if kind == "nnx":
        tree["if_"] = tree.pop("if")
    return tree


def _gru_tree(where, params, b, b_hn, kind):
    if kind == "nnx":
        if not bool(np.all(np.asarray(b_hn) == 0)):
            raise ValueError(
                f"`{where}`: `params.b_hn` is not zero, but flax.nnx.GRUCell has no recurrent "
                "candidate bias; use kind='linen', whose GRUCell has one."
            )
        return {"dense_i": {"kernel": params.w_x, "bias": b}, "dense_h": {"kernel": params.w_h}}
    sx, sh, sb = (jnp.split(a, 3, axis=-1) for a in (params.w_x, params.w_h, b))
    tree = {f"i{g}": {"kernel": k, "bias": bb} for g, k, bb in zip("rzn", sx, sb, strict=True)}
    tree.update({f"h{g}": {"kernel": k} for g, k in zip("rzn", sh, strict=True)})
    tree["hn"]["bias"] = b_hn
    return tree


def _to_nnx_rnn(where, layer, params, kind, optimized):
    if kind != "nnx" or layer.num_layers != 1:
        raise ValueError(
            f"`{where}`: a StackedRNN converts only with kind='nnx' and num_layers=1 "
            f"(nnx.RNN / nnx.Bidirectional); got kind={kind!r}, num_layers={layer.num_layers}."
        )
    from flax import nnx

    if not isinstance(params, tuple) or len(params) != 1 or not isinstance(params[0], LayerParams):
        raise TypeError(
            f"`{where}`: `params` must be a tuple of 1 LayerParams; got {type(params).__name__}."
        )

    def rnn(p):
        cell = to_flax(layer.cell, p, optimized=optimized)
        return nnx.RNN(cell, time_major=layer.time_major, unroll=resolve_unroll(layer.unroll))

    if not layer.bidirectional:
        return rnn(params[0].forward)
    return nnx.Bidirectional(
        rnn(params[0].forward), rnn(params[0].backward), time_major=layer.time_major
    )
