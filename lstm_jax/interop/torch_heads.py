"""PyTorch <-> lstm_jax for the layers around a recurrent core: ``nn.Linear`` <-> ``Dense``
(``y = x @ W.T + b`` with ``W: (O, I)``, so ``w = W.T``) and ``nn.Embedding`` <->
``Embedding`` (the ``(V, F)`` table as it is)."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import Problems, check_shapes
from lstm_jax.interop.common import as_jax
from lstm_jax.interop.torch_state import check_state_dict, to_numpy
from lstm_jax.layers.dense import Dense, DenseParams
from lstm_jax.layers.embedding import Embedding, EmbeddingParams


def from_torch_head(where, peer, batch_first, nonlinearity):
    """``(Dense, params)`` for an ``nn.Linear`` or its state dict, ``(Embedding, params)`` for
    an ``nn.Embedding``; None for anything else."""
    kind = type(peer).__name__
    if isinstance(peer, Mapping):
        if not set(peer) or not set(peer) <= {"weight", "bias"}:
            return None
        if set(peer) == {"weight"}:
            raise ValueError(
                f"`{where}`: a state dict holding only `weight` may be an nn.Linear(bias=False) "
                "or an nn.Embedding; pass the module itself (with `prefix` for a part of a "
                "model) so its kind is known."
            )
        kind, sd = "Linear", {k: to_numpy(v) for k, v in peer.items()}
    elif kind in ("Linear", "Embedding") and type(peer).__module__.startswith("torch.nn"):
        sd = {k: to_numpy(v) for k, v in peer.state_dict().items()}
    else:
        return None
    if batch_first is not None or nonlinearity is not None:
        raise ValueError(
            f"`{where}`: `batch_first` and `nonlinearity` apply to recurrent modules, not to "
            f"an nn.{kind}; leave them out."
        )
    w = sd.get("weight")
    if w is None or w.ndim != 2:
        raise ValueError(
            f"`{where}`: `peer['weight']` must be a matrix (out_features, in_features); got "
            f"{None if w is None else w.shape}."
        )
    dt = jnp.dtype(w.dtype)
    if kind == "Embedding":
        if getattr(peer, "max_norm", None) is not None:
            raise ValueError(
                f"`{where}`: the nn.Embedding has max_norm={peer.max_norm}, which renormalises "
                "rows in the forward pass; lstm_jax.Embedding has no equivalent."
            )
        return Embedding(*w.shape, param_dtype=dt), EmbeddingParams(as_jax(w, dt))
    O, _ = w.shape
    check_state_dict(where, sd, {"weight": w.shape, **({"bias": (O,)} if "bias" in sd else {})})
    b = sd.get("bias")
    layer = Dense(O, use_bias=b is not None, param_dtype=dt)
    return layer, DenseParams(as_jax(w.T, dt), None if b is None else as_jax(b, dt))


def to_torch_head(where, torch, layer, params):
    """``nn.Linear`` for a Dense, ``nn.Embedding`` for an Embedding, holding copies of params."""
    p = Problems(where)
    kind = type(layer).__name__
    ptype = DenseParams if kind == "Dense" else EmbeddingParams
    if not isinstance(params, ptype):
        p.type(f"`params` must be a {ptype.__name__} (from `{kind}.init`); got "
               f"{type(params).__name__}.")  # fmt: skip
    elif kind == "Dense":
        w = params.w
        if w is None or len(w.shape) != 2 or w.shape[1] != layer.features:
            p.value(f"`params.w` must be (in_features, {layer.features}); got "
                    f"{getattr(w, 'shape', None)}.")  # fmt: skip
        else:
            exp = DenseParams(tuple(w.shape), (layer.features,) if layer.use_bias else None)
            check_shapes(p, "params", params, exp, f"Dense({layer.features})")
    else:
        exp = EmbeddingParams((layer.vocab_size, layer.features))
        check_shapes(p, "params", params, exp, f"Embedding({layer.vocab_size}, {layer.features})")
    p.raise_if_any()
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(str(params_dtype(params)))
    if dtype is None:
        raise ValueError(
            f"`{where}`: `params` must be float32 or float64; got {params_dtype(params)}."
        )
    t = lambda a: torch.tensor(np.array(a), dtype=dtype)  # noqa: E731
    if kind == "Embedding":
        module = torch.nn.Embedding(layer.vocab_size, layer.features, dtype=dtype)
        module.load_state_dict({"weight": t(params.table)})
        return module
    module = torch.nn.Linear(*params.w.shape, bias=params.b is not None, dtype=dtype)
    sd = {"weight": t(np.asarray(params.w).T)}
    if params.b is not None:
        sd["bias"] = t(params.b)
    module.load_state_dict(sd)
    return module


def params_dtype(params):
    import jax

    return jax.tree.leaves(params)[0].dtype
