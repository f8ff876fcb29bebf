"""The GRU cell (Cho et al. 2014), the article's "simpler variant of LSTM with fewer gates".

Layout: ``w_x: (I, 3H)``, ``w_h: (H, 3H)``, ``b: (3H,)`` with gate blocks ordered **r, z, n**
(reset, update, candidate), PyTorch's and Flax's order. The carry is the hidden state ``h``
itself, an array ``(..., H)``.

Two placements of the reset gate exist and give different functions:

* ``reset_after=True`` (default; PyTorch, cuDNN, Flax, Keras' default): the reset gate scales
  the recurrent product, which has its own bias ``b_hn``::

      n_t = tanh(x_t W_xn + b_n + r_t * (h_{t-1} W_hn + b_hn))

* ``reset_after=False`` (Cho et al. 2014, Keras ``reset_after=False``)::

      n_t = tanh(x_t W_xn + (r_t * h_{t-1}) W_hn + b_n)
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.base import CellBase, cast_floats
from lstm_jax.core.activations import Activation
from lstm_jax.core.checks import as_batch_shape
from lstm_jax.core.initializers import Initializer, gate_blocks
from lstm_jax.core.ops import lead, matmul


class GRUParams(NamedTuple):
    """Parameters of one GRU cell."""

    w_x: jax.Array  # (I, 3H) input weights, blocks r, z, n
    w_h: jax.Array  # (H, 3H) recurrent weights, blocks r, z, n
    b: jax.Array | None = None  # (3H,) bias (PyTorch's b_ih + b_hh for r and z, b_in for n)
    b_hn: jax.Array | None = None  # (H,) recurrent candidate bias (reset_after=True only)


class GRUGates(NamedTuple):
    r: jax.Array  # reset gate
    z: jax.Array  # update gate
    n: jax.Array  # candidate state
    h: jax.Array  # new hidden state


@dataclasses.dataclass(frozen=True)
class GRUCell(CellBase):
    """Configuration of a GRU cell; same protocol as :class:`LSTMCell`.

    One step, with ``sigma`` the gate activation::

        r_t = sigma(x_t W_xr + h_{t-1} W_hr + b_r)        reset gate
        z_t = sigma(x_t W_xz + h_{t-1} W_hz + b_z)        update gate
        n_t = tanh(x_t W_xn + b_n + r_t * (h_{t-1} W_hn + b_hn))   candidate (reset_after)
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Args:
      hidden_size: ``H``.
      reset_after: where the reset gate acts (see the module docstring).
      gate_activation, activation: as for :class:`LSTMCell`.
      use_bias: False drops ``b`` and ``b_hn``.
      kernel_init, recurrent_init, dtype, param_dtype: as for :class:`LSTMCell`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import GRUCell
      >>> cell = GRUCell(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> h, y = cell(params, cell.initial_carry(), jnp.ones(3))
      >>> h.shape
      (4,)

    References:
      Cho et al. (2014), Learning Phrase Representations using RNN Encoder-Decoder.
    """

    hidden_size: int
    reset_after: bool = True
    gate_activation: str | Activation = "sigmoid"
    activation: str | Activation = "tanh"
    use_bias: bool = True
    kernel_init: str | Initializer = "glorot_uniform"
    recurrent_init: str | Initializer = "orthogonal"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _FLAGS = ("reset_after", "use_bias")
    _ACTIVATIONS = ("gate_activation", "activation")
    _INITIALIZERS = ("kernel_init", "recurrent_init")

    @property
    def params_type(self) -> type:
        return GRUParams

    def init(self, key: jax.Array, input_size: int) -> GRUParams:
        key, input_size = self.init_args(key, input_size)
        H, dt = self.hidden_size, self.param_dtype
        k_x, k_h = jax.random.split(key)
        kinit, rinit = self.initializer_of("kernel_init"), self.initializer_of("recurrent_init")
        with_b_hn = self.use_bias and self.reset_after
        return GRUParams(
            w_x=gate_blocks(kinit, k_x, input_size, H, 3, dt),
            w_h=gate_blocks(rinit, k_h, H, H, 3, dt),
            b=jnp.zeros((3 * H,), dt) if self.use_bias else None,
            b_hn=jnp.zeros((H,), dt) if with_b_hn else None,
        )

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> jax.Array:
        batch_shape = as_batch_shape("GRUCell.initial_carry", batch_shape)
        return jnp.zeros((*batch_shape, self.hidden_size), self.param_dtype)

    def __call__(self, params: GRUParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None):
        """One step: ``h_{t-1}: (..., H)``, ``x: (..., I)`` -> ``(h_t, y_t = h_t)``."""
        self.check(params, carry, x, where="GRUCell.__call__")
        h, _ = self.gates(params, carry, x, recurrent_mask=recurrent_mask)
        return h, h

    def gates(self, params: GRUParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None):
        """One step that also returns its gates: ``-> (h_t, GRUGates)``."""
        sigma, act = self.activation_of("gate_activation"), self.activation_of("activation")
        cdt, pdt = self.step_dtypes(params, x)  # operands, results (lstm_jax.core.dtypes)
        params, h_prev, x = cast_floats(params, pdt), carry.astype(pdt), x.astype(pdt)
        H = self.hidden_size
        h_in = h_prev if recurrent_mask is None else h_prev * recurrent_mask.astype(h_prev.dtype)
        zx = matmul(x, params.w_x, cdt, pdt)  # (..., 3H)
        if params.b is not None:
            zx = zx + lead(params.b.astype(pdt), zx.ndim)
        zx_r, zx_z, zx_n = jnp.split(zx, 3, axis=-1)
        if self.reset_after:
            zh = matmul(h_in, params.w_h, cdt, pdt)  # (..., 3H)
            zh_r, zh_z, zh_n = jnp.split(zh, 3, axis=-1)
            if params.b_hn is not None:
                zh_n = zh_n + lead(params.b_hn.astype(pdt), zh_n.ndim)
            r = sigma(zx_r + zh_r)
            z = sigma(zx_z + zh_z)
            n = act(zx_n + r * zh_n)
        else:
            zh_rz = matmul(h_in, params.w_h[:, : 2 * H], cdt, pdt)  # (..., 2H)
            zh_r, zh_z = jnp.split(zh_rz, 2, axis=-1)
            r = sigma(zx_r + zh_r)
            z = sigma(zx_z + zh_z)
            n = act(zx_n + matmul(r * h_in, params.w_h[:, 2 * H :], cdt, pdt))
        h = (1.0 - z) * n + z * h_prev
        return h, GRUGates(r=r, z=z, n=n, h=h)

    def param_shapes(self, input_size: int) -> GRUParams:
        H = self.hidden_size
        return GRUParams(
            w_x=(input_size, 3 * H),
            w_h=(H, 3 * H),
            b=(3 * H,) if self.use_bias else None,
            b_hn=(H,) if self.use_bias and self.reset_after else None,
        )

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*batch_shape, self.hidden_size)
