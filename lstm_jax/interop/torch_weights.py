"""PyTorch <-> lstm_jax: ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` and their ``*Cell`` versions.

PyTorch stores each gate matrix as ``(G*H, in)`` (``y = x @ W.T``) with the gate blocks in the
order i, f, g, o (LSTM) and r, z, n (GRU), the order used here, so a weight converts by a
transpose. It has two biases, ``bias_ih`` and ``bias_hh``; they only ever appear summed, so
``b = bias_ih + bias_hh``, except the GRU's recurrent candidate bias (the n block of
``bias_hh``), which sits inside the reset gate's product and becomes ``GRUParams.b_hn``.
Going back, ``bias_ih`` receives ``b`` and ``bias_hh`` zeros (and ``b_hn``): the same function.
``batch_first=False``, PyTorch's default, is ``time_major=True`` here.

``nn.Linear`` (``y = x @ W.T + b``, ``W: (O, I)``) is :class:`~lstm_jax.Dense` with
``w = W.T``; ``nn.Embedding``'s ``weight: (V, F)`` is :class:`~lstm_jax.Embedding`'s table as
it is. A whole model's ``state_dict`` converts one module at a time, named by ``prefix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.gru import GRUCell, GRUParams
from lstm_jax.cells.lstm import LSTMCell, LSTMParams
from lstm_jax.cells.simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax.interop.common import (
    CELLS,
    activation_name,
    as_jax,
    check_cell_params,
    check_layer_params,
    check_plain_cell,
)
from lstm_jax.interop.torch_heads import from_torch_head, to_torch_head
from lstm_jax.interop.torch_state import (
    check_state_dict,
    expected_shapes,
    infer_config,
    to_numpy,
    under_prefix,
)
from lstm_jax.layers.dense import Dense
from lstm_jax.layers.embedding import Embedding
from lstm_jax.layers.stacked import LayerParams, StackedRNN


def from_torch(
    peer: Any,
    *,
    prefix: str = "",
    batch_first: bool | None = None,
    nonlinearity: str | None = None,
):
    """Converts a PyTorch module (or its ``state_dict``) to lstm_jax.

    Args:
      peer: a ``torch.nn.LSTM``, ``GRU`` or ``RNN`` (any ``num_layers``, ``bidirectional``,
        ``proj_size``, ``bias``, ``batch_first``), one of ``LSTMCell``, ``GRUCell``,
        ``RNNCell``, an ``nn.Linear``, an ``nn.Embedding``, or the ``state_dict()`` of any of
        these but the embedding; with ``prefix``, any model that holds one of them, or its
        state dict. A state dict does not record the kind of module: it is read from the keys
        and shapes (``weight_hh`` is ``(4H, P)`` for an LSTM, ``(3H, H)`` for a GRU,
        ``(H, H)`` for a tanh RNN; ``weight`` and ``bias`` alone are a Linear).
      prefix: the module's path in a whole model, as its state dict spells it:
        ``from_torch(model.state_dict(), prefix="encoder.lstm.")`` converts the entries
        ``encoder.lstm.weight_ih_l0``, ...; ``from_torch(model, prefix="encoder.lstm.")``
        converts the submodule ``model.encoder.lstm`` itself (so its ``batch_first`` is known).
      batch_first: layout of the inputs the converted layer takes; default: the module's own,
        or PyTorch's default ``False`` for a state dict.
      nonlinearity: ``"tanh"`` or ``"relu"``, for the state dict of an ``nn.RNN``; default:
        the module's own, or ``"tanh"``.

    Returns:
      ``(layer, params)``: a :class:`~lstm_jax.StackedRNN` with ``time_major = not batch_first``
      and its params, so that ``layer.apply(params, xs)`` equals the module's output (with
      ``lengths`` equal to a ``pack_padded_sequence`` of the same lengths, padded outputs
      zero); ``(cell, params)`` for a cell module; ``(Dense, DenseParams)`` for a Linear,
      ``(Embedding, EmbeddingParams)`` for an embedding.

    Raises:
      TypeError: ``peer`` is not one of the above.
      ValueError: a state dict with missing, unexpected or mis-shaped entries, or a ``prefix``
        that names nothing in ``peer`` (the message lists the modules it holds).
    """
    where = "from_torch"
    if not isinstance(prefix, str):
        raise TypeError(f"`{where}`: `prefix` must be a str; got {type(prefix).__name__}.")
    if prefix:
        peer = _submodule(where, peer, prefix)
    head = from_torch_head(where, peer, batch_first, nonlinearity)
    if head is not None:
        return head
    mode, is_cell, sd, opts = _describe(where, peer)
    if batch_first is not None and "batch_first" in opts and batch_first != opts["batch_first"]:
        raise ValueError(
            f"`{where}`: `batch_first={batch_first}` contradicts the module's "
            f"batch_first={opts['batch_first']}; leave it out to use the module's."
        )
    sd = {k: to_numpy(v) for k, v in sd.items()}
    cfg = infer_config(where, mode, is_cell, sd)
    check_state_dict(where, sd, expected_shapes(is_cell, cfg))
    if nonlinearity not in (None, "tanh", "relu"):
        raise ValueError(
            f"`{where}`: `nonlinearity` must be 'tanh' or 'relu'; got {nonlinearity!r}."
        )
    cell = _make_cell(cfg, nonlinearity or opts.get("nonlinearity", "tanh"), sd)
    if is_cell:
        return cell, _cell_params(cell, sd, "")
    bf = opts.get("batch_first", False) if batch_first is None else batch_first
    params = tuple(
        LayerParams(
            _cell_params(cell, sd, f"_l{k}"),
            _cell_params(cell, sd, f"_l{k}_reverse") if cfg["bidirectional"] else None,
        )
        for k in range(cfg["num_layers"])
    )
    layer = StackedRNN(
        cell, cfg["num_layers"], cfg["bidirectional"], opts.get("dropout", 0.0), time_major=not bf
    )
    return layer, params


def _submodule(where, peer, prefix):
    """The module (or the state-dict entries) under ``prefix`` in a whole model."""
    if isinstance(peer, Mapping):
        return under_prefix(where, peer, prefix)
    if not hasattr(peer, "get_submodule"):
        raise TypeError(
            f"`{where}`: with `prefix`, `peer` must be a torch.nn.Module or a state dict; got "
            f"{type(peer).__name__}."
        )
    try:
        return peer.get_submodule(prefix.rstrip("."))
    except AttributeError:
        names = [n + "." for n, _ in peer.named_modules() if n]
        raise ValueError(
            f"`{where}`: `prefix={prefix!r}` names no submodule of the {type(peer).__name__}; "
            f"it holds {names[:12] + (['...'] if len(names) > 12 else [])}."
        ) from None


def _describe(where, peer):
    """``(mode, is_cell, state_dict, options)`` of a torch module or state dict."""
    if isinstance(peer, Mapping):
        return None, not any(k.endswith("_l0") for k in peer), dict(peer), {}
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - torch is installed in the test extra
        nn = None
    kinds = {} if nn is None else {
        nn.LSTM: ("LSTM", False), nn.GRU: ("GRU", False), nn.RNN: ("RNN", False),
        nn.LSTMCell: ("LSTM", True), nn.GRUCell: ("GRU", True), nn.RNNCell: ("RNN", True),
    }  # fmt: skip
    kind = kinds.get(type(peer))
    if kind is None:
        raise TypeError(
            f"`{where}`: `peer` must be a torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell, "
            f"Linear, Embedding or the state_dict of one (or a model holding one, with "
            f"`prefix`); got {type(peer).__name__}."
        )
    opts = {"nonlinearity": getattr(peer, "nonlinearity", "tanh")}
    if not kind[1]:
        opts.update(batch_first=peer.batch_first, dropout=float(peer.dropout))
    return kind[0], kind[1], peer.state_dict(), opts


def _make_cell(cfg, nonlinearity, sd):
    dt = jnp.dtype(next(iter(sd.values())).dtype)
    H, bias = cfg["hidden_size"], cfg["bias"]
    mode = cfg["mode"]
    if mode == "LSTM":
        return LSTMCell(
            H, forget_bias=0.0, proj_size=cfg["proj_size"], use_bias=bias, param_dtype=dt
        )
    if mode == "GRU":
        return GRUCell(H, use_bias=bias, param_dtype=dt)
    return SimpleRNNCell(H, activation=nonlinearity, use_bias=bias, param_dtype=dt)


def _cell_params(cell, sd, s):
    dt = cell.param_dtype
    w_x, w_h = as_jax(sd[f"weight_ih{s}"].T, dt), as_jax(sd[f"weight_hh{s}"].T, dt)
    b_ih, b_hh = sd.get(f"bias_ih{s}"), sd.get(f"bias_hh{s}")
    if isinstance(cell, LSTMCell):
        w_hr = sd.get(f"weight_hr{s}")
        return LSTMParams(
            w_x=w_x,
            w_h=w_h,
            b=None if b_ih is None else as_jax(b_ih + b_hh, dt),
            w_proj=None if w_hr is None else as_jax(w_hr.T, dt),
        )
    if isinstance(cell, GRUCell):
        if b_ih is None:
            return GRUParams(w_x, w_h)
        H = cell.hidden_size
        b = np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])  # r, z summed; n apart
        return GRUParams(w_x, w_h, as_jax(b, dt), as_jax(b_hh[2 * H :], dt))
    return SimpleRNNParams(w_x, w_h, None if b_ih is None else as_jax(b_ih + b_hh, dt))


def to_torch(layer: Any, params: Any):
    """Builds the PyTorch module computing what ``layer`` computes with ``params``.

    Args:
      layer: a :class:`~lstm_jax.StackedRNN` of an LSTM, GRU (``reset_after=True``) or
        SimpleRNN (tanh or relu) cell -> ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` with
        ``batch_first = not layer.time_major``; a cell -> ``nn.LSTMCell`` / ``nn.GRUCell``
        / ``nn.RNNCell``; a :class:`~lstm_jax.Dense` -> ``nn.Linear``; an
        :class:`~lstm_jax.Embedding` -> ``nn.Embedding``.
      params: the matching params.

    Returns:
      The ``torch.nn.Module`` (float32 or float64, as the params), holding copies of params.

    Raises:
      TypeError: ``layer`` is not one of the above, or ``params`` has the wrong type.
      ValueError: an option PyTorch lacks (peepholes, layer norm, no forget gate, other
        activations, ``reset_after=False``, ``recurrent_dropout``, a projected LSTMCell),
        or params whose shapes do not fit ``layer``.
    """
    import torch

    where = "to_torch"
    if isinstance(layer, (Dense, Embedding)):
        return to_torch_head(where, torch, layer, params)
    if not isinstance(layer, (StackedRNN, *CELLS)):
        raise TypeError(
            f"`{where}`: `layer` must be a StackedRNN, a LSTMCell, GRUCell or SimpleRNNCell, a "
            f"Dense or an Embedding; got {type(layer).__name__}."
        )
    is_cell = not isinstance(layer, StackedRNN)
    cell = layer if is_cell else layer.cell
    check_plain_cell(where, "layer" if is_cell else "layer.cell", cell, "PyTorch", True)
    if isinstance(cell, SimpleRNNCell) and activation_name(cell.activation) not in ("tanh", "relu"):
        raise ValueError(
            f"`{where}`: `layer` has activation={cell.activation!r}; torch.nn.RNN offers only "
            "'tanh' and 'relu'."
        )
    if is_cell and getattr(cell, "proj_size", None) is not None:
        raise ValueError(
            f"`{where}`: `layer` has proj_size={cell.proj_size}, which torch.nn.LSTMCell lacks; "
            "wrap it in lstm_jax.StackedRNN(cell) to get a torch.nn.LSTM."
        )
    if not is_cell and layer.recurrent_dropout:
        raise ValueError(
            f"`{where}`: `layer.recurrent_dropout={layer.recurrent_dropout}` has no PyTorch "
            "equivalent; rebuild the layer with recurrent_dropout=0.0."
        )
    if is_cell:
        size = check_cell_params(where, cell, params)
        cell_sd = [("", params)]
    else:
        size = check_layer_params(where, layer, params)[0]
        cell_sd = [(f"_l{k}", lp.forward) for k, lp in enumerate(params)]
        cell_sd += [(f"_l{k}_reverse", lp.backward) for k, lp in enumerate(params) if lp.backward]
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(str(params_dtype(params)))
    if dtype is None:
        raise ValueError(
            f"`{where}`: `params` must be float32 or float64; got {params_dtype(params)}."
        )
    module = _torch_module(torch.nn, layer, cell, size, dtype)
    sd = {}
    for s, p in cell_sd:
        sd.update(_torch_entries(cell, p, s))
    module.load_state_dict({k: torch.tensor(np.array(v), dtype=dtype) for k, v in sd.items()})
    return module


def params_dtype(params):
    import jax

    return jax.tree.leaves(params)[0].dtype


def _torch_module(nn, layer, cell, size, dtype):
    H, bias = cell.hidden_size, cell.use_bias
    if isinstance(layer, (LSTMCell, GRUCell, SimpleRNNCell)):
        if isinstance(cell, SimpleRNNCell):
            return nn.RNNCell(size, H, bias, activation_name(cell.activation), dtype=dtype)
        return (nn.LSTMCell if isinstance(cell, LSTMCell) else nn.GRUCell)(
            size, H, bias, dtype=dtype
        )
    common = dict(
        num_layers=layer.num_layers,
        bias=bias,
        batch_first=not layer.time_major,
        dropout=float(layer.dropout),
        bidirectional=layer.bidirectional,
        dtype=dtype,
    )
    if isinstance(cell, LSTMCell):
        return nn.LSTM(size, H, proj_size=cell.proj_size or 0, **common)
    if isinstance(cell, GRUCell):
        return nn.GRU(size, H, **common)
    return nn.RNN(size, H, nonlinearity=activation_name(cell.activation), **common)


def _torch_entries(cell, p, s):
    """The state-dict entries of one cell's params (``s`` is the key suffix)."""
    f = lambda a: np.ascontiguousarray(np.asarray(a).T)  # noqa: E731
    out = {f"weight_ih{s}": f(p.w_x), f"weight_hh{s}": f(p.w_h)}
    if p.b is not None:
        b = np.asarray(p.b)
        out[f"bias_ih{s}"] = b
        out[f"bias_hh{s}"] = np.zeros_like(b)
        if isinstance(cell, GRUCell):
            b_ih, b_hh = b.copy(), np.zeros_like(b)
            b_hh[2 * cell.hidden_size :] = np.asarray(p.b_hn)
            out[f"bias_ih{s}"], out[f"bias_hh{s}"] = b_ih, b_hh
    if getattr(p, "w_proj", None) is not None:
        out[f"weight_hr{s}"] = f(p.w_proj)
    return out
