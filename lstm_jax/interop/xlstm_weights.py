"""Weights to and from NX-AI's ``xlstm`` package (PyTorch): its sLSTM and mLSTM cells and blocks.

The converters read and write plain state dicts (name -> array; torch tensors are read through
NumPy), so this module imports neither torch nor ``xlstm``.

Cells:

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

Blocks (:func:`mlstm_block_from_xlstm` and the three others below): ``xlstm``'s
``mLSTMBlock`` / ``sLSTMBlock`` (``xLSTMBlock`` around an ``mLSTMLayer`` / ``sLSTMLayer``) and
:class:`lstm_jax.mLSTMBlock` / :class:`lstm_jax.sLSTMBlock` hold the same parameters, so the
conversion is exact both ways (layouts only: transposes, the package's residual norm weights
``1 + w``, block-diagonal maps placed in or read from the masked ``w_x`` of the cell). The
parameters of one side are an affine image of the other's in which every number appears once,
so gradients convert like the weights, without the ``+1`` of the norms.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.mlstm import mLSTMCell, mLSTMParams
from lstm_jax.cells.slstm import sLSTMCell, sLSTMParams
from lstm_jax.layers.xlstm_blocks import (
    mLSTMBlock,
    mLSTMBlockParams,
    sLSTMBlock,
    sLSTMBlockParams,
)

__all__ = [
    "MLSTM_BLOCK_KEYS",
    "SLSTM_BLOCK_KEYS",
    "mlstm_block_from_xlstm",
    "mlstm_block_to_xlstm",
    "mlstm_from_xlstm",
    "mlstm_to_xlstm",
    "slstm_block_from_xlstm",
    "slstm_block_to_xlstm",
    "slstm_from_xlstm",
    "slstm_to_xlstm",
]


def _np(a: Any) -> np.ndarray:
    detach = getattr(a, "detach", None)
    a = detach().cpu().float().numpy() if detach else a  # a torch tensor (bfloat16 too)
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


# ---------------------------------------------------------------------------------------------
# Blocks.

_BIAS_HINT = (
    "lstm_jax's blocks have no biases in their projections (the package's default "
    "bias=False); build the xlstm layer / feedforward with bias=False"
)


def _block_diag(blocks: np.ndarray) -> np.ndarray:
    """``(n, out, in)`` per-head weights of ``LinearHeadwiseExpand`` -> ``(n*in, n*out)``
    block-diagonal, ``x @ W``."""
    n, o, i = blocks.shape
    w = np.zeros((n, i, n, o), blocks.dtype)
    w[np.arange(n), :, np.arange(n), :] = np.transpose(blocks, (0, 2, 1))
    return w.reshape(n * i, n * o)


def _diag_blocks(w: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`_block_diag`: the ``(n, out, in)`` diagonal blocks of ``w``; the entries
    outside them (masked in the blocks, so never used) are dropped."""
    i, o = w.shape[0] // n, w.shape[1] // n
    return np.transpose(w.reshape(n, i, n, o)[np.arange(n), :, np.arange(n), :], (0, 2, 1))


def _block_state_dict(where: str, state_dict: Any, prefix: str, expected: set[str]) -> dict:
    """The entries of ``state_dict`` whose keys start with ``prefix``; refuses any but
    ``prefix + name`` for the names in ``expected``."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"`{where}`: `state_dict` must be a mapping of names to arrays (a torch "
            f"state_dict() or a dict of NumPy arrays); got {type(state_dict).__name__}."
        )
    if not isinstance(prefix, str):
        raise TypeError(f"`{where}`: `prefix` must be a str; got {type(prefix).__name__}.")
    sd = {k: v for k, v in state_dict.items() if isinstance(k, str) and k.startswith(prefix)}
    extra = sorted(set(sd) - {prefix + k for k in expected})
    biases = [k for k in extra if k.endswith(".bias")]
    if biases:
        raise ValueError(f"`{where}`: `state_dict` has {biases}: {_BIAS_HINT}.")
    if extra:
        raise ValueError(
            f"`{where}`: `state_dict` has entries the lstm_jax block cannot hold: {extra}."
        )
    return sd


def _check_type(where: str, name: str, value: Any, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(
            f"`{where}`: `{name}` must be a {kind.__name__}; got {type(value).__name__}."
        )


def _field(where: str, name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as NumPy, refusing another shape (the lstm_jax side's counterpart of _entry)."""
    if a is None or getattr(a, "shape", None) is None:
        raise TypeError(
            f"`{where}`: `params.{name}` must be an array of shape {shape}; got {type(a).__name__}."
        )
    if tuple(a.shape) != shape:
        raise ValueError(
            f"`{where}`: `params.{name}` must have shape {shape}; got {tuple(a.shape)}."
        )
    return np.asarray(a)


MLSTM_BLOCK_KEYS = (
    "xlstm_norm.weight",  # (E,) pre-LayerNorm, scale 1 + weight
    "xlstm.proj_up.weight",  # (2I, E) blocks x, z
    "xlstm.q_proj.weight",  # (I/bs, bs, bs) per block (out, in), on c
    "xlstm.k_proj.weight",  # (I/bs, bs, bs) on c
    "xlstm.v_proj.weight",  # (I/bs, bs, bs) on x
    "xlstm.conv1d.conv.weight",  # (I, 1, K)
    "xlstm.conv1d.conv.bias",  # (I,)
    "xlstm.mlstm_cell.igate.weight",  # (NH, 3I) on [q, k, v]
    "xlstm.mlstm_cell.igate.bias",  # (NH,)
    "xlstm.mlstm_cell.fgate.weight",  # (NH, 3I)
    "xlstm.mlstm_cell.fgate.bias",  # (NH,)
    "xlstm.mlstm_cell.outnorm.weight",  # (I,) per-head norm, scale 1 + weight
    "xlstm.learnable_skip",  # (I,)
    "xlstm.proj_down.weight",  # (E, I)
)


def mlstm_block_from_xlstm(state_dict: Any, block: mLSTMBlock, *, prefix: str = ""):
    """The :class:`lstm_jax.mLSTMBlockParams` equal to an ``xlstm`` ``mLSTMBlock``.

    Args:
      state_dict: the ``state_dict()`` of ``xlstm.blocks.mlstm.block.mLSTMBlock`` (torch tensors
        or NumPy arrays), with the keys of :data:`MLSTM_BLOCK_KEYS` (``I`` the inner width,
        ``bs`` the ``qkv_proj_blocksize``, ``NH`` the heads, ``K`` the conv kernel)::

          xlstm_norm.weight (E,)                 xlstm.proj_up.weight (2I, E)
          xlstm.{q,k,v}_proj.weight (I/bs, bs, bs)
          xlstm.conv1d.conv.weight (I, 1, K)     xlstm.conv1d.conv.bias (I,)
          xlstm.mlstm_cell.{igate,fgate}.weight (NH, 3I) and .bias (NH,)
          xlstm.mlstm_cell.outnorm.weight (I,)   xlstm.learnable_skip (I,)
          xlstm.proj_down.weight (E, I)

        Its layer must have ``bias=False`` (the default; lstm_jax's block has no projection
        biases): any other entry, a ``.bias`` above all, is refused.
      block: the :class:`lstm_jax.mLSTMBlock` with the package block's ``embedding_dim``,
        ``num_heads``, ``proj_factor``, ``round_to`` (``round_proj_up_to_multiple_of``),
        ``conv_kernel`` (``conv1d_kernel_size``) and ``qkv_blocksize``
        (``qkv_proj_blocksize``); its ``form`` is free.
      prefix: prepended to every key, e.g. ``"xlstm_block_stack.blocks.0."`` to read one
        block out of an ``xLSTMBlockStack`` or ``xLSTMLMModel`` state dict.

    Returns:
      ``mLSTMBlockParams`` in ``block.param_dtype``: ``w_up = proj_up.weight.T``; the cell's
      ``w_x: (2I, 4I + 2NH)`` holds ``q, k`` (rows of ``c``) and ``v`` (rows of ``x``) as
      block-diagonal maps, zero elsewhere; ``w_gates = [igate.weight.T, fgate.weight.T]``;
      ``cell.b`` the gate biases after ``4I`` zeros; norm scales ``1 + weight``.

    Raises:
      TypeError: ``block`` is not an ``mLSTMBlock`` or ``state_dict`` not a mapping.
      ValueError: a missing entry, an entry of the wrong shape (naming the key, the shape
        expected and the one received), or one the block cannot hold.
    """
    where = "mlstm_block_from_xlstm"
    _check_type(where, "block", block, mLSTMBlock)
    sd = _block_state_dict(where, state_dict, prefix, set(MLSTM_BLOCK_KEYS))
    E, I, NH, K, bs = (block.embedding_dim, block.inner_dim, block.num_heads,
                       block.conv_kernel, block.qkv_blocksize)  # fmt: skip

    def get(name, shape):
        return _entry(where, sd, prefix + name, shape)

    q, k, v = (get(f"xlstm.{n}_proj.weight", (I // bs, bs, bs)) for n in "qkv")
    zero = np.zeros((I, I), np.float32)
    Q, Kd, V = _block_diag(q), _block_diag(k), _block_diag(v)
    w_x = np.concatenate(
        [
            np.concatenate([Q, Kd, zero, zero], axis=1),  # rows of c
            np.concatenate([zero, zero, V, zero], axis=1),  # rows of x
        ],
        axis=0,
    )
    w_x = np.concatenate([w_x, np.zeros((2 * I, 2 * NH), np.float32)], axis=1)
    gates = [get(f"xlstm.mlstm_cell.{g}.weight", (NH, 3 * I)) for g in ("igate", "fgate")]
    b_gates = [get(f"xlstm.mlstm_cell.{g}.bias", (NH,)) for g in ("igate", "fgate")]
    dt = block.param_dtype
    cell = mLSTMParams(
        w_x=jnp.asarray(w_x, dt),
        b=jnp.asarray(np.concatenate([np.zeros(4 * I, np.float32), *b_gates]), dt),
        norm_scale=jnp.asarray(1.0 + get("xlstm.mlstm_cell.outnorm.weight", (I,)), dt),
    )
    return mLSTMBlockParams(
        norm_scale=jnp.asarray(1.0 + get("xlstm_norm.weight", (E,)), dt),
        w_up=jnp.asarray(get("xlstm.proj_up.weight", (2 * I, E)).T, dt),
        conv_w=jnp.asarray(get("xlstm.conv1d.conv.weight", (I, 1, K))[:, 0, :].T, dt),
        conv_b=jnp.asarray(get("xlstm.conv1d.conv.bias", (I,)), dt),
        cell=cell,
        skip=jnp.asarray(get("xlstm.learnable_skip", (I,)), dt),
        w_down=jnp.asarray(get("xlstm.proj_down.weight", (E, I)).T, dt),
        w_gates=jnp.asarray(np.concatenate([g.T for g in gates], axis=1), dt),
    )


def mlstm_block_to_xlstm(
    block: mLSTMBlock, params: mLSTMBlockParams, *, prefix: str = ""
) -> dict[str, np.ndarray]:
    """The ``xlstm`` ``mLSTMBlock`` state dict (keys and shapes of
    :func:`mlstm_block_from_xlstm`, each prefixed by ``prefix``) equal to ``params``.

    Load it with ``peer.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`` into
    a package block built with ``bias=False`` and the sizes listed in
    :func:`mlstm_block_from_xlstm`. The masked entries of ``params.cell`` (off the
    block-diagonal ``q, k, v`` maps, the ``o`` block and the ``q, k, v, o`` biases, which never
    reach the output) are dropped, as are the cell's ``i, f`` columns, which ``w_gates``
    replaces.

    Raises:
      TypeError: ``block`` or ``params`` of the wrong type.
      ValueError: a field of the wrong shape.
    """
    where = "mlstm_block_to_xlstm"
    _check_type(where, "block", block, mLSTMBlock)
    _check_type(where, "params", params, mLSTMBlockParams)
    _check_type(where, "params.cell", params.cell, mLSTMParams)
    E, I, NH, K, bs = (block.embedding_dim, block.inner_dim, block.num_heads,
                       block.conv_kernel, block.qkv_blocksize)  # fmt: skip
    f = lambda name, shape: _field(where, name, attrgetter(name)(params), shape)  # noqa: E731
    w_x = f("cell.w_x", (2 * I, 4 * I + 2 * NH))
    b = f("cell.b", (4 * I + 2 * NH,))
    w_g = f("w_gates", (3 * I, 2 * NH))
    n = I // bs
    out = {
        "xlstm_norm.weight": f("norm_scale", (E,)) - 1.0,
        "xlstm.learnable_skip": f("skip", (I,)),
        "xlstm.proj_up.weight": f("w_up", (E, 2 * I)).T,
        "xlstm.q_proj.weight": _diag_blocks(w_x[:I, :I], n),
        "xlstm.k_proj.weight": _diag_blocks(w_x[:I, I : 2 * I], n),
        "xlstm.v_proj.weight": _diag_blocks(w_x[I:, 2 * I : 3 * I], n),
        "xlstm.conv1d.conv.weight": f("conv_w", (K, I)).T[:, None, :],
        "xlstm.conv1d.conv.bias": f("conv_b", (I,)),
        "xlstm.mlstm_cell.igate.weight": w_g[:, :NH].T,
        "xlstm.mlstm_cell.igate.bias": b[4 * I : 4 * I + NH],
        "xlstm.mlstm_cell.fgate.weight": w_g[:, NH:].T,
        "xlstm.mlstm_cell.fgate.bias": b[4 * I + NH :],
        "xlstm.mlstm_cell.outnorm.weight": f("cell.norm_scale", (I,)) - 1.0,
        "xlstm.proj_down.weight": f("w_down", (I, E)).T,
    }
    return {prefix + k: np.ascontiguousarray(v).copy() for k, v in out.items()}


SLSTM_BLOCK_KEYS = (
    "xlstm_norm.weight",  # (E,) pre-LayerNorm, scale 1 + weight
    "xlstm.conv1d.conv.weight",  # (E, 1, K)
    "xlstm.conv1d.conv.bias",  # (E,)
    "xlstm.fgate.weight",  # (NH, D, D) per head (out, in), on c: the cell's i block (sic)
    "xlstm.igate.weight",  # (NH, D, D) on c: the cell's f block
    "xlstm.zgate.weight",  # (NH, D, D) on x
    "xlstm.ogate.weight",  # (NH, D, D) on x
    "xlstm.slstm_cell._recurrent_kernel_",  # (NH, 4D, D)
    "xlstm.slstm_cell._bias_",  # (4E,) blocks i, f, z, o
    "xlstm.group_norm.weight",  # (E,) per-head norm, scale 1 + weight
    "ffn_norm.weight",  # (E,)
    "ffn.proj_up.weight",  # (2U, E) blocks gate, up
    "ffn.proj_down.weight",  # (E, U)
)


def slstm_block_from_xlstm(state_dict: Any, block: sLSTMBlock, *, prefix: str = ""):
    """The :class:`lstm_jax.sLSTMBlockParams` equal to an ``xlstm`` ``sLSTMBlock``.

    Args:
      state_dict: the ``state_dict()`` of ``xlstm.blocks.slstm.block.sLSTMBlock`` with the
        **vanilla** sLSTM backend (the CUDA backend stores its recurrent kernel and bias in
        another order), torch tensors or NumPy arrays, with the keys of
        :data:`SLSTM_BLOCK_KEYS` (``D = E / NH``, ``U`` the feedforward width)::

          xlstm_norm.weight (E,)                 xlstm.conv1d.conv.weight (E, 1, K)
          xlstm.conv1d.conv.bias (E,)            xlstm.{f,i,z,o}gate.weight (NH, D, D)
          xlstm.slstm_cell._recurrent_kernel_ (NH, 4D, D)
          xlstm.slstm_cell._bias_ (4E,)          xlstm.group_norm.weight (E,)
          ffn_norm.weight (E,)                   ffn.proj_up.weight (2U, E)
          ffn.proj_down.weight (E, U)

        The package's layer feeds the output of its ``fgate`` module to the cell's input gate
        and that of ``igate`` to the forget gate; the cell's blocks are what count, so
        ``fgate.weight`` becomes the ``i`` block of ``w_x`` and ``igate.weight`` the ``f`` block.
        Refused: ``conv1d_kernel_size=0`` (no conv entries), ``group_norm_weight=False`` (no
        ``group_norm.weight``), ``feedforward=None`` (no ``ffn`` entries), a feedforward with
        ``bias=True``, any other entry. Not visible in a state dict, so not checked: the
        feedforward must use ``act_fn="gelu"`` (exact GeLU) and the cell ``function="slstm"``.
      block: the :class:`lstm_jax.sLSTMBlock` with the package block's ``embedding_dim``,
        ``num_heads``, ``conv_kernel`` and a ``ffn_dim`` equal to its feedforward's
        ``_proj_up_dim`` (``ffn_factor``, ``round_to`` as its ``proj_factor``,
        ``round_proj_up_to_multiple_of``).
      prefix: prepended to every key (see :func:`mlstm_block_from_xlstm`).

    Returns:
      ``sLSTMBlockParams`` in ``block.param_dtype``; the cell's ``w_x: (2E, 4E)`` holds the
      per-head maps block-diagonally (``i, f`` on the rows of ``c``, ``z, o`` on those of
      ``x``), zero elsewhere; ``r = _recurrent_kernel_`` transposed per head, ``b = _bias_``.

    Raises:
      TypeError, ValueError: as :func:`mlstm_block_from_xlstm`.
    """
    where = "slstm_block_from_xlstm"
    _check_type(where, "block", block, sLSTMBlock)
    sd = _block_state_dict(where, state_dict, prefix, set(SLSTM_BLOCK_KEYS))
    missing = {
        "xlstm.conv1d.conv.weight": "conv1d_kernel_size=0 (no convolution)",
        "xlstm.group_norm.weight": "group_norm_weight=False",
        "ffn.proj_up.weight": "feedforward=None",
    }
    for key, option in missing.items():
        if prefix + key not in sd:
            raise ValueError(
                f"`{where}`: `state_dict` has no entry {prefix + key!r}: an xlstm sLSTMBlock "
                f"with {option} has no lstm_jax counterpart (lstm_jax's sLSTMBlock always has "
                f"its convolution, group-norm scale and gated feedforward); got "
                f"{sorted(state_dict)}."
            )
    E, NH, K, U = block.embedding_dim, block.num_heads, block.conv_kernel, block.ffn_dim
    D = E // NH

    def get(name, shape):
        return _entry(where, sd, prefix + name, shape)

    i_w, f_w, z_w, o_w = (
        _block_diag(get(f"xlstm.{g}.weight", (NH, D, D)))
        for g in ("fgate", "igate", "zgate", "ogate")
    )
    zero = np.zeros((E, E), np.float32)
    w_x = np.concatenate(
        [np.concatenate([i_w, f_w, zero, zero], 1), np.concatenate([zero, zero, z_w, o_w], 1)], 0
    )
    r = get("xlstm.slstm_cell._recurrent_kernel_", (NH, 4 * D, D))
    dt = block.param_dtype
    cell = sLSTMParams(
        w_x=jnp.asarray(w_x, dt),
        r=jnp.asarray(np.transpose(r, (0, 2, 1)), dt),
        b=jnp.asarray(get("xlstm.slstm_cell._bias_", (4 * E,)), dt),
    )
    return sLSTMBlockParams(
        norm_scale=jnp.asarray(1.0 + get("xlstm_norm.weight", (E,)), dt),
        conv_w=jnp.asarray(get("xlstm.conv1d.conv.weight", (E, 1, K))[:, 0, :].T, dt),
        conv_b=jnp.asarray(get("xlstm.conv1d.conv.bias", (E,)), dt),
        cell=cell,
        group_norm_scale=jnp.asarray(1.0 + get("xlstm.group_norm.weight", (E,)), dt),
        ffn_norm_scale=jnp.asarray(1.0 + get("ffn_norm.weight", (E,)), dt),
        w_ffn_up=jnp.asarray(get("ffn.proj_up.weight", (2 * U, E)).T, dt),
        w_ffn_down=jnp.asarray(get("ffn.proj_down.weight", (E, U)).T, dt),
    )


def slstm_block_to_xlstm(
    block: sLSTMBlock, params: sLSTMBlockParams, *, prefix: str = ""
) -> dict[str, np.ndarray]:
    """The ``xlstm`` ``sLSTMBlock`` state dict (vanilla backend; keys and shapes of
    :func:`slstm_block_from_xlstm`, each prefixed by ``prefix``) equal to ``params``.

    Load it into a package block built with the vanilla backend, ``conv1d_kernel_size =
    block.conv_kernel``, a gated feedforward with ``act_fn="gelu"``, ``bias=False`` and
    ``_proj_up_dim = block.ffn_dim``. The masked entries of ``params.cell.w_x`` (off the
    per-head diagonal blocks, ``i, f`` from ``x``, ``z, o`` from ``c``) are dropped.

    Raises:
      TypeError: ``block`` or ``params`` of the wrong type.
      ValueError: a field of the wrong shape.
    """
    where = "slstm_block_to_xlstm"
    _check_type(where, "block", block, sLSTMBlock)
    _check_type(where, "params", params, sLSTMBlockParams)
    _check_type(where, "params.cell", params.cell, sLSTMParams)
    E, NH, K, U = block.embedding_dim, block.num_heads, block.conv_kernel, block.ffn_dim
    D = E // NH
    f = lambda name, shape: _field(where, name, attrgetter(name)(params), shape)  # noqa: E731
    w_x = f("cell.w_x", (2 * E, 4 * E))
    c, x = w_x[:E], w_x[E:]
    out = {
        "xlstm_norm.weight": f("norm_scale", (E,)) - 1.0,
        "xlstm.conv1d.conv.weight": f("conv_w", (K, E)).T[:, None, :],
        "xlstm.conv1d.conv.bias": f("conv_b", (E,)),
        "xlstm.fgate.weight": _diag_blocks(c[:, :E], NH),  # the cell's i block (see from_)
        "xlstm.igate.weight": _diag_blocks(c[:, E : 2 * E], NH),  # its f block
        "xlstm.zgate.weight": _diag_blocks(x[:, 2 * E : 3 * E], NH),
        "xlstm.ogate.weight": _diag_blocks(x[:, 3 * E :], NH),
        "xlstm.slstm_cell._recurrent_kernel_": np.transpose(f("cell.r", (NH, D, 4 * D)), (0, 2, 1)),
        "xlstm.slstm_cell._bias_": f("cell.b", (4 * E,)),
        "xlstm.group_norm.weight": f("group_norm_scale", (E,)) - 1.0,
        "ffn_norm.weight": f("ffn_norm_scale", (E,)) - 1.0,
        "ffn.proj_up.weight": f("w_ffn_up", (E, 2 * U)).T,
        "ffn.proj_down.weight": f("w_ffn_down", (U, E)).T,
    }
    return {prefix + k: np.ascontiguousarray(v).copy() for k, v in out.items()}
