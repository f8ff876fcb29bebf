"""Weights to and from NX-AI's ``xlstm`` package (PyTorch), for its sLSTM and mLSTM cells.

The converters read and write plain state dicts (name -> array; torch tensors are read through
NumPy), so this module imports neither torch nor ``xlstm``.

* ``xlstm.blocks.slstm.cell.sLSTMCell`` (vanilla backend) reads the gate pre-activations
  ``x W`` already computed, ``(B, S, 4H)`` in blocks i, f, z, o, and holds
  ``_recurrent_kernel_: (NH, 4D, D)`` and ``_bias_: (4H,)``. The matching
  :class:`lstm_jax.sLSTMCell` has ``input_size = 4H`` and ``w_x`` the identity;
  ``r[k] = _recurrent_kernel_[k].T`` and ``b = _bias_`` (both already in gate-block order).
* ``xlstm.blocks.mlstm.cell.mLSTMCell`` reads ``q, k, v: (B, S, H)``, holds
  ``igate``/``fgate: Linear(3H, NH)`` on ``[q, k, v]`` and ``outnorm.weight: (H,)`` (the
  group-norm scale is ``1 + weight``). The matching :class:`lstm_jax.mLSTMCell` has
  ``output_gate=False, head_norm=True``, ``input_size = 3H`` (the input is ``[q, k, v]``) and
  identity blocks for ``q, k, v`` in ``w_x``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.mlstm import mLSTMCell, mLSTMParams
from lstm_jax.cells.slstm import sLSTMCell, sLSTMParams


def _np(a: Any) -> np.ndarray:
    detach = getattr(a, "detach", None)
    a = detach().cpu().numpy() if detach else a  # a torch tensor, through its own NumPy view
    return np.array(a, dtype=np.float32)


def _entry(where: str, sd: dict, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in sd:
        raise ValueError(f"`{where}`: `state_dict` has no entry {name!r}; got {sorted(sd)}.")
    a = _np(sd[name])
    if a.shape != shape:
        raise ValueError(
            f"`{where}`: `state_dict[{name!r}]` must have shape {shape}; got {a.shape}."
        )
    return a


def slstm_from_xlstm(state_dict: dict, *, num_heads: int, forget_gate: str = "sigmoid"):
    """``(cell, params)`` equal to an ``xlstm`` sLSTM cell with this ``state_dict``.

    Args:
      state_dict: the ``state_dict()`` of ``xlstm``'s ``sLSTMCell`` (vanilla backend).
      num_heads: its ``config.num_heads``.
      forget_gate: ``"sigmoid"`` for its ``function="slstm"`` (the only form it ships).

    Returns:
      ``(sLSTMCell, sLSTMParams)``; the cell reads ``(..., 4H)`` gate pre-activations.
    """
    where = "slstm_from_xlstm"
    if "_bias_" not in state_dict:
        raise ValueError(
            f"`{where}`: `state_dict` has no entry '_bias_'; got {sorted(state_dict)}."
        )
    H = _np(state_dict["_bias_"]).shape[0] // 4
    cell = sLSTMCell(H, num_heads=num_heads, forget_gate=forget_gate)
    D = cell.head_size
    r = _entry(where, state_dict, "_recurrent_kernel_", (num_heads, 4 * D, D))
    params = sLSTMParams(
        w_x=jnp.eye(4 * H, dtype=jnp.float32),
        r=jnp.asarray(np.transpose(r, (0, 2, 1))),
        b=jnp.asarray(_np(state_dict["_bias_"])),
    )
    return cell, params


def slstm_to_xlstm(cell: sLSTMCell, params: sLSTMParams) -> dict[str, np.ndarray]:
    """The ``xlstm`` sLSTM cell's state dict for ``params`` (whose ``w_x`` must be the identity:
    that cell has no input weights; its layer applies them)."""
    H = cell.hidden_size
    if params.w_x.shape != (4 * H, 4 * H) or not np.allclose(params.w_x, np.eye(4 * H)):
        raise ValueError(
            "`slstm_to_xlstm`: `params.w_x` must be the (4H, 4H) identity, because the xlstm "
            f"sLSTM cell reads gate pre-activations; got w_x.shape={params.w_x.shape}. Apply "
            "the input weights outside the cell."
        )
    return {
        "_recurrent_kernel_": np.transpose(np.asarray(params.r), (0, 2, 1)).copy(),
        "_bias_": np.asarray(params.b).copy(),
    }


def mlstm_from_xlstm(state_dict: dict, *, num_heads: int):
    """``(cell, params)`` equal to an ``xlstm`` mLSTM cell with this ``state_dict``.

    The returned cell reads ``[q, k, v]`` concatenated on the last axis, ``(..., 3H)``.
    """
    where = "mlstm_from_xlstm"
    H = _entry(where, state_dict, "outnorm.weight", _shape_of(state_dict, "outnorm.weight")).size
    cell = mLSTMCell(H, num_heads=num_heads, output_gate=False, head_norm=True)
    w_i = _entry(where, state_dict, "igate.weight", (num_heads, 3 * H))
    w_f = _entry(where, state_dict, "fgate.weight", (num_heads, 3 * H))
    b_i = _entry(where, state_dict, "igate.bias", (num_heads,))
    b_f = _entry(where, state_dict, "fgate.bias", (num_heads,))
    w_qkv = np.eye(3 * H, dtype=np.float32)  # q, k, v blocks read their third of the input
    w_x = np.concatenate([w_qkv, np.zeros((3 * H, H), np.float32), w_i.T, w_f.T], axis=1)
    b = np.concatenate([np.zeros(4 * H, np.float32), b_i, b_f])
    scale = 1.0 + _np(state_dict["outnorm.weight"])
    params = mLSTMParams(w_x=jnp.asarray(w_x), b=jnp.asarray(b), norm_scale=jnp.asarray(scale))
    return cell, params


def mlstm_to_xlstm(cell: mLSTMCell, params: mLSTMParams) -> dict[str, np.ndarray]:
    """The ``xlstm`` mLSTM cell's state dict for ``params`` of a cell from
    :func:`mlstm_from_xlstm` (identity ``q, k, v`` blocks, no output gate, a head norm)."""
    H, NH = cell.hidden_size, cell.num_heads
    w = np.asarray(params.w_x)
    ok = (
        cell.head_norm
        and not cell.output_gate
        and w.shape == (3 * H, 4 * H + 2 * NH)
        and np.allclose(w[:, : 3 * H], np.eye(3 * H))
        and not np.any(np.asarray(params.b)[: 3 * H])
    )
    if not ok:
        raise ValueError(
            "`mlstm_to_xlstm`: the xlstm mLSTM cell reads [q, k, v] and has no output gate: "
            "`cell` needs output_gate=False, head_norm=True and `params.w_x` identity q, k, v "
            f"blocks without bias (as `mlstm_from_xlstm` makes); got {cell.short_repr()} with "
            f"w_x.shape={w.shape}."
        )
    b = np.asarray(params.b)
    return {
        "igate.weight": w[:, 4 * H : 4 * H + NH].T.copy(),
        "igate.bias": b[4 * H : 4 * H + NH].copy(),
        "fgate.weight": w[:, 4 * H + NH :].T.copy(),
        "fgate.bias": b[4 * H + NH :].copy(),
        "outnorm.weight": np.asarray(params.norm_scale) - 1.0,
    }


def _shape_of(sd: dict, name: str) -> tuple[int, ...]:
    return tuple(sd[name].shape) if name in sd else (-1,)
