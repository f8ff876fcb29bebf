"""The sLSTM cell of xLSTM (Beck et al. 2024): exponential gating with a stabiliser state.

Layout: ``w_x: (I, 4H)`` and ``b: (4H,)`` with gate blocks ordered **i, f, z, o** (input,
forget, cell input, output; the order of NX-AI's ``xlstm`` package), and a block-diagonal
recurrent matrix stored per head, ``r: (NH, D, 4D)`` with ``D = H / NH``: head ``k`` maps its
own ``D`` units of ``h_{t-1}`` to its ``D`` units of each of the four gates (blocks i, f, z, o of
``D`` columns). ``r[k]`` is ``xlstm``'s external ``recurrent_kernel[k]`` reshaped to
``(D, 4D)``. The carry is :class:`sLSTMState` ``(h, c, n, m)``, four arrays ``(..., H)``.

The exponential input gate would overflow on its own; the stabiliser ``m_t`` is the running
maximum of the log gates, and dividing both gates by ``exp(m_t)`` changes ``c_t`` and ``n_t`` by
the same factor, so ``h_t = o_t * c_t / n_t`` is unchanged. One gate is always 1 after the
division, so ``n_t >= 1`` from the first step on and ``c_t / n_t`` stays bounded at any length.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.base import check_heads
from lstm_jax.core.checks import as_batch_shape, check_size, check_step
from lstm_jax.core.initializers import Initializer, gate_blocks, resolve_initializer
from lstm_jax.core.ops import lead
from lstm_jax.core.validate import check_key


class sLSTMParams(NamedTuple):
    """Parameters of one sLSTM cell."""

    w_x: jax.Array  # (I, 4H) input weights, blocks i, f, z, o
    r: jax.Array  # (NH, D, 4D) recurrent weights of each head, blocks i, f, z, o
    b: jax.Array  # (4H,) bias, blocks i, f, z, o


class sLSTMState(NamedTuple):
    """Carry of an sLSTM cell; every field is ``(..., H)``."""

    h: jax.Array  # hidden state (the output)
    c: jax.Array  # cell state, scaled by exp(-m)
    n: jax.Array  # normaliser state, scaled by exp(-m)
    m: jax.Array  # stabiliser, the running max of the log gates


@dataclasses.dataclass(frozen=True)
class sLSTMCell:
    """Configuration of an sLSTM cell (xLSTM's scalar-memory LSTM).

    One step, with ``R_k`` the recurrent block of head ``k`` (block-diagonal over heads)::

        (i~, f~, z~, o~) = x_t W_x + h_{t-1} R + b            pre-activations, (..., H) each
        log f_t = log sigmoid(f~)    (forget_gate="sigmoid")   or  f~   (forget_gate="exp")
        m_t = max(log f_t + m_{t-1}, i~)                       stabiliser (m_1 = i~ when n = 0)
        i'_t = exp(i~ - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
        c_t = f'_t c_{t-1} + i'_t tanh(z~)
        n_t = f'_t n_{t-1} + i'_t
        h_t = sigmoid(o~) * c_t / n_t

    Args:
      hidden_size: ``H``.
      num_heads: ``NH``, the number of diagonal blocks of the recurrent matrix; must divide
        ``hidden_size``.
      forget_gate: ``"sigmoid"`` (the default of the ``xlstm`` package) or ``"exp"``.
      forget_bias: written into the forget block of ``b`` at init (a large value keeps the
        memory at the start of training; Jozefowicz et al. 2015's argument).
      kernel_init: initialiser of ``w_x``, one gate block at a time.
      recurrent_init: initialiser of each head's ``(D, D)`` recurrent gate blocks; ``"zeros"``
        is the ``xlstm`` package's default.
      param_dtype: dtype of the params and carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import sLSTMCell, scan
      >>> cell = sLSTMCell(8, num_heads=2)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, ys = scan(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape, carry.n.shape
      ((2, 5, 8), (2, 8))

    References:
      Beck et al. (2024), xLSTM: Extended Long Short-Term Memory, NeurIPS, eqs. 8-17.
      Hochreiter & Schmidhuber (1997), Long Short-Term Memory.
    """

    hidden_size: int
    num_heads: int = 1
    forget_gate: str = "sigmoid"
    forget_bias: float = 3.0
    kernel_init: str | Initializer = "glorot_uniform"
    recurrent_init: str | Initializer = "zeros"
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        where = type(self).__name__
        check_heads(where, self.hidden_size, self.num_heads, self.forget_gate)
        resolve_initializer(self.kernel_init, self.hidden_size, where, "kernel_init")
        resolve_initializer(self.recurrent_init, self.head_size, where, "recurrent_init")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def params_type(self) -> type:
        return sLSTMParams

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def short_repr(self) -> str:
        return f"sLSTMCell(hidden_size={self.hidden_size}, num_heads={self.num_heads})"

    def init(self, key: jax.Array, input_size: int) -> sLSTMParams:
        check_size("sLSTMCell.init", "input_size", input_size)
        key = check_key("sLSTMCell.init", "key", key)
        H, NH, D, dt = self.hidden_size, self.num_heads, self.head_size, self.param_dtype
        k_x, k_r = jax.random.split(key)
        kinit = resolve_initializer(self.kernel_init, H, "sLSTMCell", "kernel_init")
        rinit = resolve_initializer(self.recurrent_init, D, "sLSTMCell", "recurrent_init")
        r = jnp.stack([gate_blocks(rinit, k, D, D, 4, dt) for k in jax.random.split(k_r, NH)])
        b = jnp.zeros((4, H), dt).at[1].set(self.forget_bias).reshape(4 * H)
        return sLSTMParams(w_x=gate_blocks(kinit, k_x, input_size, H, 4, dt), r=r, b=b)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> sLSTMState:
        batch_shape = as_batch_shape("sLSTMCell.initial_carry", batch_shape)
        z = jnp.zeros((*batch_shape, self.hidden_size), self.param_dtype)
        return sLSTMState(h=z, c=z, n=z, m=z)

    def __call__(
        self, params: sLSTMParams, carry: sLSTMState, x: jax.Array, *, recurrent_mask=None
    ):
        """One step: ``carry`` of ``(..., H)`` arrays, ``x: (..., I)`` -> ``(carry, h_t)``."""
        check_step(self, sLSTMParams, params, carry, x, "sLSTMCell.__call__")
        new = self.step(params, carry, x, recurrent_mask=recurrent_mask)
        return new, new.h

    def step(self, params: sLSTMParams, carry: sLSTMState, x: jax.Array, *, recurrent_mask=None):
        """The unchecked step, ``-> sLSTMState``."""
        dt = jnp.promote_types(params.w_x.dtype, x.dtype)  # float64 in, float64 out
        params, carry, x = cast((params, carry, x), dt)
        h_in = carry.h if recurrent_mask is None else carry.h * recurrent_mask.astype(dt)
        z = x @ params.w_x + lead(params.b, x.ndim)  # (..., 4H)
        return self.gates(z + self.recurrent(params.r, h_in), carry)

    def gates(self, z: jax.Array, carry: sLSTMState) -> sLSTMState:
        """The step after its products: pre-activations ``z: (..., 4H)`` (blocks i, f, z, o)
        and the previous carry -> the new carry (the equations of the class docstring)."""
        i_, f_, z_, o_ = jnp.split(z, 4, axis=-1)  # (..., H) each
        log_f = jax.nn.log_sigmoid(f_) if self.forget_gate == "sigmoid" else f_
        m = jnp.where(carry.n == 0, i_, jnp.maximum(log_f + carry.m, i_))
        i_gate = jnp.exp(i_ - m)
        f_gate = jnp.exp(log_f + carry.m - m)
        c = f_gate * carry.c + i_gate * jnp.tanh(z_)
        n = f_gate * carry.n + i_gate
        h = jax.nn.sigmoid(o_) * c / n
        return sLSTMState(h=h, c=c, n=n, m=m)

    def recurrent(self, r: jax.Array, h: jax.Array) -> jax.Array:
        """``h @ blockdiag(r)`` in gate-block layout: ``(..., H) -> (..., 4H)``."""
        NH, D = self.num_heads, self.head_size
        hk = h.reshape(*h.shape[:-1], NH, D)  # (..., NH, D)
        g = jnp.einsum("...kd,kdg->...kg", hk, r)  # (..., NH, 4D)
        g = g.reshape(*h.shape[:-1], NH, 4, D)
        return jnp.swapaxes(g, -3, -2).reshape(*h.shape[:-1], 4 * NH * D)  # (..., 4H)

    def param_shapes(self, input_size: int) -> sLSTMParams:
        H, NH, D = self.hidden_size, self.num_heads, self.head_size
        return sLSTMParams(w_x=(input_size, 4 * H), r=(NH, D, 4 * D), b=(4 * H,))

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> sLSTMState:
        s = (*tuple(batch_shape), self.hidden_size)
        return sLSTMState(h=s, c=s, n=s, m=s)


def cast(tree: Any, dtype: Any) -> Any:
    """Every array leaf of ``tree`` in ``dtype`` (a no-op where it already is)."""
    return jax.tree.map(lambda a: a.astype(dtype), tree)
