"""minLSTM and minGRU (Feng et al. 2024): gates that read only ``x_t``, so a parallel scan.

Both cells compute ``h_t = a_t * h_{t-1} + b_t`` with ``a_t`` and ``b_t`` functions of ``x_t``
alone. A linear recurrence of that form is an associative scan; :func:`lstm_jax.parallel_scan`
runs it with ``jax.lax.associative_scan`` on ``(log a, log b)`` pairs (Heinsen 2023), which is
why the candidate state goes through the positive activation ``g`` (the paper's log-space
variant): ``g(z) = z + 1/2`` for ``z >= 0`` and ``sigmoid(z)`` below, so ``b_t > 0``. A step of
the cell is the sequential mode, for :func:`lstm_jax.scan`; both give the same numbers.

Layout: ``w_x: (I, 3H)``, ``b: (3H,)`` with blocks **f, i, h** for minLSTM and ``w_x: (I, 2H)``,
``b: (2H,)`` with blocks **z, h** for minGRU. The carry is ``h: (..., H)``; with a carry that
has negative entries the parallel mode still agrees (it adds ``h_0 * prod a`` outside the log
scan).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.mlstm import no_recurrent_mask
from lstm_jax.cells.slstm import cast
from lstm_jax.core.checks import as_batch_shape, check_size, check_step
from lstm_jax.core.initializers import Initializer, gate_blocks, resolve_initializer
from lstm_jax.core.ops import lead
from lstm_jax.core.validate import check_key


class MinRNNParams(NamedTuple):
    """Parameters of a minLSTM (blocks f, i, h) or minGRU (blocks z, h) cell."""

    w_x: jax.Array  # (I, nH) input weights
    b: jax.Array  # (nH,) bias


def log_g(z: jax.Array) -> jax.Array:
    """``log g(z)``, with ``g(z) = z + 1/2`` for ``z >= 0`` and ``sigmoid(z)`` otherwise."""
    return jnp.where(z >= 0, jnp.log(jax.nn.relu(z) + 0.5), -jax.nn.softplus(-z))


@dataclasses.dataclass(frozen=True)
class _MinCell:
    hidden_size: int
    kernel_init: str | Initializer = "glorot_uniform"
    param_dtype: Any = jnp.float32

    n_blocks = 0

    def __post_init__(self):
        where = type(self).__name__
        check_size(where, "hidden_size", self.hidden_size)
        resolve_initializer(self.kernel_init, self.hidden_size, where, "kernel_init")

    @property
    def params_type(self) -> type:
        return MinRNNParams

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def short_repr(self) -> str:
        return f"{type(self).__name__}(hidden_size={self.hidden_size})"

    def init(self, key: jax.Array, input_size: int) -> MinRNNParams:
        where = type(self).__name__
        check_size(f"{where}.init", "input_size", input_size)
        key = check_key(f"{where}.init", "key", key)
        H, dt = self.hidden_size, self.param_dtype
        kinit = resolve_initializer(self.kernel_init, H, where, "kernel_init")
        w_x = gate_blocks(kinit, key, input_size, H, self.n_blocks, dt)
        return MinRNNParams(w_x=w_x, b=jnp.zeros((self.n_blocks * H,), dt))

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> jax.Array:
        batch_shape = as_batch_shape(f"{type(self).__name__}.initial_carry", batch_shape)
        return jnp.zeros((*batch_shape, self.hidden_size), self.param_dtype)

    def __call__(
        self, params: MinRNNParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None
    ):
        """One step: ``h_{t-1}: (..., H)``, ``x: (..., I)`` -> ``(h_t, h_t)``."""
        where = f"{type(self).__name__}.__call__"
        check_step(self, MinRNNParams, params, carry, x, where)
        no_recurrent_mask(where, recurrent_mask)
        log_a, log_b = self.log_coefficients(params, x)
        h = jnp.exp(log_a) * carry.astype(log_a.dtype) + jnp.exp(log_b)
        return h, h

    def preactivations(self, params: MinRNNParams, x: jax.Array) -> jax.Array:
        dt = jnp.promote_types(params.w_x.dtype, x.dtype)  # float64 in, float64 out
        params = cast(params, dt)
        return x.astype(dt) @ params.w_x + lead(params.b, x.ndim)  # (..., nH)

    def param_shapes(self, input_size: int) -> MinRNNParams:
        n = self.n_blocks * self.hidden_size
        return MinRNNParams(w_x=(input_size, n), b=(n,))

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*batch_shape, self.hidden_size)


@dataclasses.dataclass(frozen=True)
class minLSTMCell(_MinCell):
    """Configuration of a minLSTM cell (Feng et al. 2024, log-space variant).

    One step; every gate reads ``x_t`` only::

        f_t = sigmoid(x_t W_f + b_f),  i_t = sigmoid(x_t W_i + b_i)
        f'_t = f_t / (f_t + i_t),      i'_t = i_t / (f_t + i_t)      normalised gates
        h~_t = g(x_t W_h + b_h)                                     g > 0, see the module
        h_t = f'_t * h_{t-1} + i'_t * h~_t

    computed from logs: ``log f'_t = -softplus(d_t)``, ``log i'_t = -softplus(-d_t)`` with
    ``d_t = softplus(-f~) - softplus(-i~)``.

    Args:
      hidden_size: ``H``.
      kernel_init: initialiser of each block of ``w_x``.
      param_dtype: dtype of the params and carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import minLSTMCell, parallel_scan, scan
      >>> cell = minLSTMCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 7, 3))
      >>> h, ys = scan(cell, params, xs)
      >>> h_p, ys_p = parallel_scan(cell, params, xs)
      >>> ys.shape, bool(jnp.allclose(ys, ys_p, atol=1e-6))
      ((2, 7, 4), True)

    References:
      Feng et al. (2024), Were RNNs All We Needed?, arXiv:2410.01201, section 3.2, appendix B.
      Heinsen (2023), Efficient Parallelization of a Ubiquitous Sequential Computation.
    """

    n_blocks = 3

    def log_coefficients(self, params: MinRNNParams, x: jax.Array):
        """``(log a_t, log b_t)``, each ``(..., H)``, of ``h_t = a_t h_{t-1} + b_t``."""
        f_, i_, h_ = jnp.split(self.preactivations(params, x), 3, axis=-1)
        d = jax.nn.softplus(-f_) - jax.nn.softplus(-i_)  # log i - log f
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_g(h_)


@dataclasses.dataclass(frozen=True)
class minGRUCell(_MinCell):
    """Configuration of a minGRU cell (Feng et al. 2024, log-space variant).

    One step; the update gate reads ``x_t`` only::

        z_t = sigmoid(x_t W_z + b_z)
        h~_t = g(x_t W_h + b_h)                                     g > 0, see the module
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

    computed from ``log(1 - z_t) = -softplus(z~)`` and ``log z_t = -softplus(-z~)``.

    Args:
      hidden_size: ``H``.
      kernel_init: initialiser of each block of ``w_x``.
      param_dtype: dtype of the params and carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import minGRUCell, scan
      >>> cell = minGRUCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> h, ys = scan(cell, params, jnp.ones((5, 3)))
      >>> ys.shape
      (5, 4)

    References:
      Feng et al. (2024), Were RNNs All We Needed?, arXiv:2410.01201, section 3.1, appendix B.
    """

    n_blocks = 2

    def log_coefficients(self, params: MinRNNParams, x: jax.Array):
        """``(log a_t, log b_t)``, each ``(..., H)``, of ``h_t = a_t h_{t-1} + b_t``."""
        z_, h_ = jnp.split(self.preactivations(params, x), 2, axis=-1)
        return -jax.nn.softplus(z_), -jax.nn.softplus(-z_) + log_g(h_)
