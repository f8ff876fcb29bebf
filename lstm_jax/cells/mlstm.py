"""The mLSTM cell of xLSTM (Beck et al. 2024): a matrix memory updated by outer products.

Layout: ``w_x: (I, 4H + 2NH)`` and ``b: (4H + 2NH,)`` hold the blocks **q, k, v, o** (``H``
columns each: query, key, value, output gate) then **i, f** (``NH`` columns each: one scalar
input and forget gate per head). Heads split ``H`` into ``NH`` blocks of ``D = H / NH``. The
carry is :class:`mLSTMState`: the memory ``c: (..., NH, D, D)``, the normaliser
``n: (..., NH, D)`` and the stabiliser ``m: (..., NH)``.

The gates do not read ``h_{t-1}``, so the whole sequence can also be computed at once like
causal linear attention with a decay (the parallel form, quadratic in ``T``) or chunk by chunk
(linear in ``T``); :func:`lstm_jax.parallel_scan` runs those forms and gives the same carry and
outputs as :func:`lstm_jax.scan` running this cell.

NX-AI's ``xlstm`` package splits the cell differently: its ``mLSTMCell`` reads ``q, k, v``
already projected, computes ``i, f`` from their concatenation, normalises each head's output
with a learnt group norm and leaves the output gate to the block. ``output_gate=False,
head_norm=True`` and an input ``[q, k, v]`` give exactly that cell (see
:mod:`lstm_jax.interop.xlstm_weights`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.base import check_heads
from lstm_jax.cells.slstm import cast
from lstm_jax.core.checks import as_batch_shape, check_size, check_step
from lstm_jax.core.initializers import Initializer, gate_blocks, resolve_initializer
from lstm_jax.core.ops import lead
from lstm_jax.core.validate import check_key


class mLSTMParams(NamedTuple):
    """Parameters of one mLSTM cell."""

    w_x: jax.Array  # (I, 4H + 2NH) blocks q, k, v, o (H each) then i, f (NH each)
    b: jax.Array  # (4H + 2NH,) same blocks
    norm_scale: jax.Array | None = None  # (H,) per-head norm scale (head_norm=True only)


class mLSTMState(NamedTuple):
    """Carry of an mLSTM cell, all stabilised by ``exp(-m)``."""

    c: jax.Array  # (..., NH, D, D) memory, sum of i_s k_s v_s^T
    n: jax.Array  # (..., NH, D) normaliser, sum of i_s k_s
    m: jax.Array  # (..., NH) stabiliser


class mLSTMInputs(NamedTuple):
    """The per-step projections of ``x``; ``...`` is any batch-and-time prefix."""

    q: jax.Array  # (..., NH, D)
    k: jax.Array  # (..., NH, D), already divided by sqrt(D)
    v: jax.Array  # (..., NH, D)
    o: jax.Array  # (..., H) output-gate pre-activation
    i: jax.Array  # (..., NH) input-gate pre-activation (log of the input gate)
    log_f: jax.Array  # (..., NH) log of the forget gate


@dataclasses.dataclass(frozen=True)
class mLSTMCell:
    """Configuration of an mLSTM cell (xLSTM's matrix-memory LSTM).

    One step per head, with ``q, k, v: (D,)`` and ``k`` scaled by ``1/sqrt(D)``::

        q_t = x_t W_q + b_q,  k_t = (x_t W_k + b_k) / sqrt(D),  v_t = x_t W_v + b_v
        i~ = x_t w_i + b_i,   log f_t = log sigmoid(x_t w_f + b_f)   (or x_t w_f + b_f for "exp")
        m_t = max(log f_t + m_{t-1}, i~)                           stabiliser
        i'_t = exp(i~ - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
        C_t = f'_t C_{t-1} + i'_t k_t v_t^T                        (D, D) memory
        n_t = f'_t n_{t-1} + i'_t k_t
        h~_t = C_t^T q_t / (max(|n_t . q_t|, exp(-m_t)) + eps)
        h_t = sigmoid(x_t W_o + b_o) * h~_t                        (output_gate=True)

    ``max(|n.q|, exp(-m))`` is the paper's ``max(|n.q|, 1)`` in stabilised units. With
    ``head_norm=True`` each head's ``h~`` is layer-normalised and scaled by ``norm_scale`` before
    the output gate.

    Args:
      hidden_size: ``H``, the width of ``q, k, v`` and of the output.
      num_heads: ``NH``; must divide ``hidden_size``.
      forget_gate: ``"sigmoid"`` (the default, as in the ``xlstm`` package) or ``"exp"``.
      output_gate: multiply by ``sigmoid(o~)``; the ``xlstm`` block gates outside the cell.
      head_norm: a per-head layer norm with a learnt scale on ``h~`` (the ``xlstm`` cell's).
      eps: added to the denominator of ``h~`` (1e-6, the ``xlstm`` package's value).
      kernel_init: initialiser of the ``q, k, v, o`` blocks of ``w_x``; the gate columns start
        at zero, the forget bias spread over ``[3, 6]`` across heads and the input bias at
        zero, as the ``xlstm`` package does.
      param_dtype: dtype of the params and carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import mLSTMCell, parallel_scan, scan
      >>> cell = mLSTMCell(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
      >>> carry, ys = scan(cell, params, xs)
      >>> carry_p, ys_p = parallel_scan(cell, params, xs)
      >>> ys.shape, carry.c.shape, bool(jnp.allclose(ys, ys_p, atol=1e-5))
      ((2, 6, 8), (2, 2, 4, 4), True)

    References:
      Beck et al. (2024), xLSTM: Extended Long Short-Term Memory, NeurIPS, eqs. 19-27 and
      appendix A.3 (the stabilised parallel form).
    """

    hidden_size: int
    num_heads: int = 1
    forget_gate: str = "sigmoid"
    output_gate: bool = True
    head_norm: bool = False
    eps: float = 1e-6
    kernel_init: str | Initializer = "glorot_uniform"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        where = type(self).__name__
        check_heads(where, self.hidden_size, self.num_heads, self.forget_gate)
        resolve_initializer(self.kernel_init, self.hidden_size, where, "kernel_init")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def params_type(self) -> type:
        return mLSTMParams

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def short_repr(self) -> str:
        return f"mLSTMCell(hidden_size={self.hidden_size}, num_heads={self.num_heads})"

    def init(self, key: jax.Array, input_size: int) -> mLSTMParams:
        check_size("mLSTMCell.init", "input_size", input_size)
        key = check_key("mLSTMCell.init", "key", key)
        H, NH, dt = self.hidden_size, self.num_heads, self.param_dtype
        kinit = resolve_initializer(self.kernel_init, H, "mLSTMCell", "kernel_init")
        w_qkvo = gate_blocks(kinit, key, input_size, H, 4, dt)
        w_x = jnp.concatenate([w_qkvo, jnp.zeros((input_size, 2 * NH), dt)], axis=-1)
        b_f = jnp.linspace(3.0, 6.0, NH, dtype=dt)
        b = jnp.concatenate([jnp.zeros((4 * H + NH,), dt), b_f])
        scale = jnp.ones((H,), dt) if self.head_norm else None
        return mLSTMParams(w_x=w_x, b=b, norm_scale=scale)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> mLSTMState:
        s = self.carry_shapes(as_batch_shape("mLSTMCell.initial_carry", batch_shape))
        return jax.tree.map(lambda shape: jnp.zeros(shape, self.param_dtype), s, is_leaf=_shape)

    def __call__(
        self, params: mLSTMParams, carry: mLSTMState, x: jax.Array, *, recurrent_mask=None
    ):
        """One step: ``x: (..., I)`` -> ``(carry, h_t: (..., H))``."""
        check_step(self, mLSTMParams, params, carry, x, "mLSTMCell.__call__")
        no_recurrent_mask("mLSTMCell.__call__", recurrent_mask)
        dt = jnp.promote_types(params.w_x.dtype, x.dtype)  # float64 in, float64 out
        params, carry = cast((params, carry), dt)
        u = self.project(params, x)
        log_f_m = u.log_f + carry.m  # (..., NH)
        m = jnp.maximum(log_f_m, u.i)
        f_gate, i_gate = jnp.exp(log_f_m - m), jnp.exp(u.i - m)  # (..., NH)
        kv = u.k[..., :, None] * u.v[..., None, :]  # (..., NH, D, D)
        c = f_gate[..., None, None] * carry.c + i_gate[..., None, None] * kv
        n = f_gate[..., None] * carry.n + i_gate[..., None] * u.k
        num = jnp.einsum("...d,...de->...e", u.q, c)  # (..., NH, D)
        qn = jnp.sum(u.q * n, axis=-1)  # (..., NH)
        h = self.readout(params, u, num, qn, m)
        return mLSTMState(c=c, n=n, m=m), h

    def project(self, params: mLSTMParams, x: jax.Array) -> mLSTMInputs:
        """``x: (..., I)`` -> the gates and ``q, k, v`` of every position in ``...``."""
        H, NH, D = self.hidden_size, self.num_heads, self.head_size
        dt = jnp.promote_types(params.w_x.dtype, x.dtype)
        params = cast(params, dt)
        z = x.astype(dt) @ params.w_x + lead(params.b, x.ndim)  # (..., 4H + 2NH)
        heads = z[..., : 3 * H].reshape(*z.shape[:-1], 3, NH, D)  # (..., 3, NH, D)
        f_ = z[..., 4 * H + NH :]
        log_f = jax.nn.log_sigmoid(f_) if self.forget_gate == "sigmoid" else f_
        return mLSTMInputs(
            q=heads[..., 0, :, :],
            k=heads[..., 1, :, :] / jnp.sqrt(jnp.asarray(D, dt)),
            v=heads[..., 2, :, :],
            o=z[..., 3 * H : 4 * H],
            i=z[..., 4 * H : 4 * H + NH],
            log_f=log_f,
        )

    def readout(self, params: mLSTMParams, u: mLSTMInputs, num, qn, m) -> jax.Array:
        """``h_t`` from the numerator ``(..., NH, D)``, ``n.q`` and ``m`` ``(..., NH)``."""
        den = jnp.maximum(jnp.abs(qn), jnp.exp(-m)) + jnp.asarray(self.eps, num.dtype)
        h = num / den[..., None]  # (..., NH, D)
        if self.head_norm:
            mean = jnp.mean(h, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
            h = (h - mean) * jax.lax.rsqrt(var + jnp.asarray(1e-5, h.dtype))
        h = h.reshape(*h.shape[:-2], self.hidden_size)  # (..., H)
        if self.head_norm:
            h = h * lead(params.norm_scale, h.ndim)
        return jax.nn.sigmoid(u.o) * h if self.output_gate else h

    def param_shapes(self, input_size: int) -> mLSTMParams:
        width = 4 * self.hidden_size + 2 * self.num_heads
        scale = (self.hidden_size,) if self.head_norm else None
        return mLSTMParams(w_x=(input_size, width), b=(width,), norm_scale=scale)

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> mLSTMState:
        NH, D = self.num_heads, self.head_size
        return mLSTMState(c=(*batch_shape, NH, D, D), n=(*batch_shape, NH, D), m=(*batch_shape, NH))


def no_recurrent_mask(where: str, recurrent_mask: Any) -> None:
    """Cells whose gates never read ``h_{t-1}`` have no recurrent product to drop out."""
    if recurrent_mask is not None:
        raise ValueError(
            f"`{where}`: `recurrent_mask` must be None: the gates of this cell do not read "
            "h_{t-1}, so there is no recurrent product for variational dropout to act on; "
            "use `recurrent_dropout=0` and the between-layer `dropout` instead."
        )


def _shape(s: Any) -> bool:
    return type(s) is tuple
