"""The two residual blocks of xLSTM (Beck et al. 2024, section 2.4 and figures 10-11).

Both blocks map ``xs: (..., T, E)`` to ``(carry, ys: (..., T, E))`` with a pre-LayerNorm and a
residual connection, ``ys = xs + f(LN(xs))``; ``carry`` is the final state of the block's cell.

* :class:`mLSTMBlock` (pre up-projection): ``x, z = LN(xs) W_up`` (``E -> 2 I``, ``I`` =
  ``proj_factor * E`` rounded up to a multiple of ``round_to``); ``c = SiLU(conv(x))`` (a causal
  depthwise convolution); the mLSTM cell reads ``q, k`` from ``c`` and ``v`` from ``x``, by
  block-diagonal maps of ``qkv_blocksize`` units, and its gates ``i, f`` from ``[q, k, v]``
  (``w_gates``); it runs through :func:`lstm_jax.parallel_scan` (chunkwise) or
  :func:`lstm_jax.scan`; its head-normalised output gets a learnable skip ``+ s * c`` and the
  output gate ``* SiLU(z)``, then ``W_down`` (``I -> E``).
* :class:`sLSTMBlock` (post up-projection): ``c = SiLU(conv(LN(xs)))``; the sLSTM cell reads its
  gates ``i, f`` from ``c`` and ``z, o`` from ``LN(xs)`` by block-diagonal maps per head, runs
  through :func:`lstm_jax.scan`, and its output is group-normalised per head; then a second
  residual: a gated MLP ``(GeLU(y W_g) * y W_u) W_down`` with ``U = 4/3 E`` (rounded up).

The cells' input is ``[c, x]`` (``2I`` or ``2E`` features) and their ``w_x`` is multiplied by a
constant 0/1 mask that keeps exactly the block-diagonal structure above (so the masked
entries get zero gradient and never matter). This is the structure of NX-AI's ``xlstm``
package (``mLSTMLayer``, ``sLSTMLayer``, ``xLSTMBlock``), parameter for parameter, so weights
convert exactly both ways (:mod:`lstm_jax.interop.xlstm_weights`) and a gradient step equals the
package's. In particular the mLSTM gates, like the package's ``igate``/``fgate``, hold weights
``w_gates: (3I, 2NH)`` on ``[q, k, v]``: :meth:`mLSTMBlock.apply` composes them with the cell's
``q, k, v`` blocks into the cell's ``i, f`` columns, ``[c, x] W_qkv w_gates``, so ``W_q, W_k,
W_v`` also get the gates' share of the gradient; the cell's own ``i, f`` columns are masked to
zero.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.mlstm import mLSTMCell, mLSTMParams
from lstm_jax.cells.slstm import sLSTMCell, sLSTMParams
from lstm_jax.core.checks import Problems, check_float_array, check_size
from lstm_jax.core.ops import lead
from lstm_jax.sequence.parallel import parallel_scan
from lstm_jax.sequence.scan import scan

MLSTM_FORMS = ("chunkwise", "recurrent")


class mLSTMBlockParams(NamedTuple):
    norm_scale: jax.Array  # (E,) pre-LayerNorm scale
    w_up: jax.Array  # (E, 2I) blocks x, z
    conv_w: jax.Array  # (K, I) depthwise causal kernel, tap K-1 reads step t
    conv_b: jax.Array  # (I,)
    cell: mLSTMParams  # w_x: (2I, 4I + 2NH) on [c, x], masked to the block structure
    skip: jax.Array  # (I,) learnable skip of c
    w_down: jax.Array  # (I, E)
    w_gates: jax.Array  # (3I, 2NH) gates i, f (NH columns each) on [q, k, v]


class sLSTMBlockParams(NamedTuple):
    norm_scale: jax.Array  # (E,)
    conv_w: jax.Array  # (K, E)
    conv_b: jax.Array  # (E,)
    cell: sLSTMParams  # w_x: (2E, 4E) on [c, x], masked to the block structure
    group_norm_scale: jax.Array  # (E,)
    ffn_norm_scale: jax.Array  # (E,)
    w_ffn_up: jax.Array  # (E, 2U) blocks gate, up
    w_ffn_down: jax.Array  # (U, E)


def round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def layer_norm(x: jax.Array, scale: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm over the last axis with a scale and no bias (``xlstm``'s ``LayerNorm``)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + jnp.asarray(eps, x.dtype))
    return y * lead(scale.astype(x.dtype), x.ndim)


def head_norm(x: jax.Array, scale: jax.Array, num_heads: int) -> jax.Array:
    """LayerNorm within each of ``num_heads`` groups of ``(..., E)``, then a scale ``(E,)``."""
    xh = x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)  # (..., NH, D)
    ones = jnp.ones(xh.shape[-1], x.dtype)
    return layer_norm(xh, ones).reshape(x.shape) * lead(scale.astype(x.dtype), x.ndim)


def causal_conv(xs: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Depthwise causal convolution: ``y_t = b + sum_j w[j] x_{t-K+1+j}``, ``(..., T, C)``."""
    K, T = w.shape[0], xs.shape[-2]
    pad = jnp.pad(xs, [(0, 0)] * (xs.ndim - 2) + [(K - 1, 0), (0, 0)])  # (..., T+K-1, C)
    y = sum(pad[..., j : j + T, :] * lead(w[j].astype(xs.dtype), xs.ndim) for j in range(K))
    return y + lead(b.astype(xs.dtype), xs.ndim)


def block_diagonal(size: int, block: int) -> np.ndarray:
    """``(size, size)`` 0/1 mask of diagonal blocks of ``block`` units."""
    return np.kron(np.eye(size // block), np.ones((block, block)))


def check_block_input(where: str, embedding_dim: int, params: Any, ptype: type, xs: Any):
    p = Problems(where)
    if not isinstance(params, ptype):
        p.type(f"`params` must be a {ptype.__name__}; got {type(params).__name__}.")
    if check_float_array(p, "xs", xs, 2, "(..., T, E)") and xs.shape[-1] != embedding_dim:
        p.value(
            f"`xs` must have embedding_dim={embedding_dim} features (the residual adds the "
            f"block's output to its input); got xs.shape={tuple(xs.shape)}."
        )
    p.raise_if_any()


def check_heads(where: str, name: str, width_name: str, width: int, heads: int) -> None:
    check_size(where, name, heads)
    if width % heads:
        raise ValueError(
            f"`{where}`: `{name}` must divide {width_name} (each head owns an equal share of "
            f"the units); got {width_name}={width}, {name}={heads}."
        )


@dataclasses.dataclass(frozen=True)
class mLSTMBlock:
    """xLSTM's mLSTM block: pre up-projection, causal conv, mLSTM, skip, output gate.

    Args:
      embedding_dim: ``E``, the block's input and output width.
      num_heads: heads of the mLSTM cell; must divide the inner width ``I``.
      proj_factor: ``I = proj_factor * E``, rounded up to a multiple of ``round_to``.
      round_to: the multiple ``I`` is rounded up to (64 in the ``xlstm`` package).
      conv_kernel: width ``K`` of the causal depthwise convolution.
      qkv_blocksize: the size of the diagonal blocks of the ``q, k, v`` maps.
      form: ``"chunkwise"`` (:func:`lstm_jax.parallel_scan`) or ``"recurrent"``
        (:func:`lstm_jax.scan`); equal outputs to float tolerance.
      chunk_size: the chunk length of the chunkwise form (None: parallel_scan's default).
      param_dtype: dtype of the params.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import mLSTMBlock
      >>> block = mLSTMBlock(32, num_heads=4)
      >>> params = block.init(jax.random.key(0), 32)
      >>> carry, ys = block.apply(params, jnp.ones((2, 5, 32)))
      >>> ys.shape, carry.c.shape, block.inner_dim
      ((2, 5, 32), (2, 4, 16, 16), 64)
    """

    embedding_dim: int
    num_heads: int = 4
    proj_factor: float = 2.0
    round_to: int = 64
    conv_kernel: int = 4
    qkv_blocksize: int = 4
    form: str = "chunkwise"
    chunk_size: int | None = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        where = "mLSTMBlock"
        for name in ("embedding_dim", "round_to", "conv_kernel", "qkv_blocksize"):
            check_size(where, name, getattr(self, name))
        check_heads(where, "num_heads", "the inner width", self.inner_dim, self.num_heads)
        check_heads(where, "qkv_blocksize", "the inner width", self.inner_dim, self.qkv_blocksize)
        if self.form not in MLSTM_FORMS:
            raise ValueError(f"`{where}`: `form` must be one of {MLSTM_FORMS}; got {self.form!r}.")

    @property
    def inner_dim(self) -> int:
        return round_up(self.proj_factor * self.embedding_dim, self.round_to)

    @property
    def cell(self) -> mLSTMCell:
        return mLSTMCell(
            self.inner_dim, self.num_heads, output_gate=False, head_norm=True,
            param_dtype=self.param_dtype,
        )  # fmt: skip

    def cell_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """0/1 masks of the cell's ``w_x: (2I, 4I + 2NH)`` and ``b``: q, k from c, v from x.

        The ``i, f`` columns of ``w_x`` are zero: ``apply`` puts ``W_qkv w_gates`` there.
        """
        I, NH = self.inner_dim, self.num_heads
        bd, zero = block_diagonal(I, self.qkv_blocksize), np.zeros((I, I))
        top = np.concatenate([bd, bd, zero, zero, np.zeros((I, 2 * NH))], axis=1)  # rows of c
        bottom = np.concatenate([zero, zero, bd, zero, np.zeros((I, 2 * NH))], axis=1)  # of x
        b = np.concatenate([np.zeros(4 * I), np.ones(2 * NH)])
        return np.concatenate([top, bottom], axis=0), b

    def init(self, key: jax.Array, input_size: int) -> mLSTMBlockParams:
        check_embedding("mLSTMBlock.init", self.embedding_dim, input_size)
        E, I, K, dt = self.embedding_dim, self.inner_dim, self.conv_kernel, self.param_dtype
        k_up, k_conv, k_cell, k_down = jax.random.split(key, 4)
        cell = self.cell.init(k_cell, 2 * I)
        w_mask, b_mask = self.cell_mask()
        cell = cell._replace(w_x=cell.w_x * w_mask.astype(dt), b=cell.b * b_mask.astype(dt))
        return mLSTMBlockParams(
            norm_scale=jnp.ones((E,), dt),
            w_up=small_init(k_up, (E, 2 * I), E, dt),
            conv_w=jax.random.normal(k_conv, (K, I), dt) / math.sqrt(K),
            conv_b=jnp.zeros((I,), dt),
            cell=cell,
            skip=jnp.ones((I,), dt),
            w_down=small_init(k_down, (I, E), I, dt),
            w_gates=jnp.zeros((3 * I, 2 * self.num_heads), dt),  # zero, as the package's gates
        )

    def apply(self, params: mLSTMBlockParams, xs: jax.Array):
        """``xs: (..., T, E)`` -> ``(carry: mLSTMState, ys: (..., T, E))``."""
        check_block_input("mLSTMBlock.apply", self.embedding_dim, params, mLSTMBlockParams, xs)
        I = self.inner_dim
        up = layer_norm(xs, params.norm_scale) @ params.w_up.astype(xs.dtype)  # (..., T, 2I)
        x, z = up[..., :I], up[..., I:]
        c = jax.nn.silu(causal_conv(x, params.conv_w, params.conv_b))  # (..., T, I)
        w_mask, b_mask = self.cell_mask()
        w_x = params.cell.w_x * w_mask.astype(params.cell.w_x.dtype)  # (2I, 4I + 2NH)
        check_gates(params.w_gates, (3 * I, 2 * self.num_heads))
        gates = w_x[:, : 3 * I] @ params.w_gates.astype(w_x.dtype)  # (2I, 2NH) on [q, k, v]
        w_x = jnp.concatenate([w_x[:, : 4 * I], gates], axis=-1)
        cp = params.cell._replace(w_x=w_x, b=params.cell.b * b_mask.astype(params.cell.b.dtype))
        cell_in = jnp.concatenate([c, x], axis=-1)  # (..., T, 2I)
        if self.form == "chunkwise":
            carry, h = parallel_scan(self.cell, cp, cell_in, chunk_size=self.chunk_size)
        else:
            carry, h = scan(self.cell, cp, cell_in)
        h = (h + lead(params.skip.astype(h.dtype), c.ndim) * c) * jax.nn.silu(z)  # (..., T, I)
        return carry, xs + h @ params.w_down.astype(h.dtype)


@dataclasses.dataclass(frozen=True)
class sLSTMBlock:
    """xLSTM's sLSTM block: causal conv, sLSTM with heads, group norm, then a gated MLP.

    Args:
      embedding_dim: ``E``.
      num_heads: heads of the sLSTM cell (block-diagonal recurrence); must divide ``E``.
      conv_kernel: width ``K`` of the causal depthwise convolution.
      ffn_factor: the gated MLP's width ``U = ffn_factor * E``, rounded up to ``round_to``.
      round_to: the multiple ``U`` is rounded up to (64 in the ``xlstm`` package).
      param_dtype: dtype of the params.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import sLSTMBlock
      >>> block = sLSTMBlock(32, num_heads=4)
      >>> params = block.init(jax.random.key(0), 32)
      >>> carry, ys = block.apply(params, jnp.ones((2, 5, 32)))
      >>> ys.shape, carry.h.shape, block.ffn_dim
      ((2, 5, 32), (2, 32), 64)
    """

    embedding_dim: int
    num_heads: int = 4
    conv_kernel: int = 4
    ffn_factor: float = 4 / 3
    round_to: int = 64
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        where = "sLSTMBlock"
        for name in ("embedding_dim", "conv_kernel", "round_to"):
            check_size(where, name, getattr(self, name))
        check_heads(where, "num_heads", "embedding_dim", self.embedding_dim, self.num_heads)

    @property
    def ffn_dim(self) -> int:
        return round_up(self.ffn_factor * self.embedding_dim, self.round_to)

    @property
    def cell(self) -> sLSTMCell:
        return sLSTMCell(self.embedding_dim, self.num_heads, param_dtype=self.param_dtype)

    def cell_mask(self) -> np.ndarray:
        """0/1 mask of the cell's ``w_x: (2E, 4E)``: gates i, f from c, z, o from x, per head."""
        E = self.embedding_dim
        bd, zero = block_diagonal(E, E // self.num_heads), np.zeros((E, E))
        top = np.concatenate([bd, bd, zero, zero], axis=1)
        return np.concatenate([top, np.concatenate([zero, zero, bd, bd], axis=1)], axis=0)

    def init(self, key: jax.Array, input_size: int) -> sLSTMBlockParams:
        check_embedding("sLSTMBlock.init", self.embedding_dim, input_size)
        E, U, K, dt = self.embedding_dim, self.ffn_dim, self.conv_kernel, self.param_dtype
        k_conv, k_cell, k_up, k_down = jax.random.split(key, 4)
        cell = self.cell.init(k_cell, 2 * E)
        return sLSTMBlockParams(
            norm_scale=jnp.ones((E,), dt),
            conv_w=jax.random.normal(k_conv, (K, E), dt) / math.sqrt(K),
            conv_b=jnp.zeros((E,), dt),
            cell=cell._replace(w_x=cell.w_x * self.cell_mask().astype(dt)),
            group_norm_scale=jnp.ones((E,), dt),
            ffn_norm_scale=jnp.ones((E,), dt),
            w_ffn_up=small_init(k_up, (E, 2 * U), E, dt),
            w_ffn_down=small_init(k_down, (U, E), U, dt),
        )

    def apply(self, params: sLSTMBlockParams, xs: jax.Array):
        """``xs: (..., T, E)`` -> ``(carry: sLSTMState, ys: (..., T, E))``."""
        check_block_input("sLSTMBlock.apply", self.embedding_dim, params, sLSTMBlockParams, xs)
        x = layer_norm(xs, params.norm_scale)  # (..., T, E)
        c = jax.nn.silu(causal_conv(x, params.conv_w, params.conv_b))
        w_x = params.cell.w_x * self.cell_mask().astype(params.cell.w_x.dtype)
        carry, h = scan(self.cell, params.cell._replace(w_x=w_x), jnp.concatenate([c, x], -1))
        xs = xs + head_norm(h, params.group_norm_scale, self.num_heads)
        y = layer_norm(xs, params.ffn_norm_scale) @ params.w_ffn_up.astype(xs.dtype)
        gate, up = y[..., : self.ffn_dim], y[..., self.ffn_dim :]  # (..., T, U) each
        y = jax.nn.gelu(gate, approximate=False) * up
        return carry, xs + y @ params.w_ffn_down.astype(xs.dtype)


def small_init(key: jax.Array, shape: tuple[int, int], fan: int, dtype: Any) -> jax.Array:
    """``N(0, 2 / (5 fan))``, the "small init" of Nguyen & Salazar (2019) used by ``xlstm``."""
    return jax.random.normal(key, shape, dtype) * math.sqrt(2 / (5 * fan))


def check_embedding(where: str, embedding_dim: int, input_size: Any) -> None:
    check_size(where, "input_size", input_size)
    if input_size != embedding_dim:
        raise ValueError(
            f"`{where}`: `input_size` must equal embedding_dim={embedding_dim} (the residual "
            f"adds the block's output to its input); got input_size={input_size}."
        )


def check_gates(w_gates: Any, shape: tuple[int, int]) -> None:
    if getattr(w_gates, "shape", None) != shape:
        raise ValueError(
            f"`mLSTMBlock.apply`: `params.w_gates` must have shape {shape} (the gates i, f on "
            f"[q, k, v]); got {getattr(w_gates, 'shape', type(w_gates).__name__)}."
        )
