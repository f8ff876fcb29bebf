"""The simple (Elman) recurrent cell, ``h_t = tanh(x_t W_x + h_{t-1} W_h + b)``.

It is here as the baseline whose gradients vanish: ``dh_t/dh_{t-1} = diag(1 - h_t^2) W_h^T``
is a product of T such factors over a lag of T steps, and it shrinks geometrically unless
``W_h`` is tuned just so (Bengio, Simard & Frasconi 1994; Pascanu et al. 2013).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.base import CellBase, cast_floats
from lstm_jax.core.activations import Activation
from lstm_jax.core.checks import as_batch_shape
from lstm_jax.core.initializers import Initializer
from lstm_jax.core.ops import lead, matmul


class SimpleRNNParams(NamedTuple):
    w_x: jax.Array  # (I, H)
    w_h: jax.Array  # (H, H)
    b: jax.Array | None = None  # (H,)


@dataclasses.dataclass(frozen=True)
class SimpleRNNCell(CellBase):
    """Configuration of an Elman RNN cell; same protocol as :class:`LSTMCell`.

    ``h_t = activation(x_t @ w_x + h_{t-1} @ w_h + b)``; the carry is ``h: (..., H)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import SimpleRNNCell
      >>> cell = SimpleRNNCell(4)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> cell(params, cell.initial_carry((3,)), jnp.ones((3, 2)))[1].shape
      (3, 4)

    References:
      Elman (1990), Finding Structure in Time, Cognitive Science 14(2).
    """

    hidden_size: int
    activation: str | Activation = "tanh"
    use_bias: bool = True
    kernel_init: str | Initializer = "glorot_uniform"
    recurrent_init: str | Initializer = "orthogonal"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _FLAGS = ("use_bias",)
    _ACTIVATIONS = ("activation",)
    _INITIALIZERS = ("kernel_init", "recurrent_init")

    @property
    def params_type(self) -> type:
        return SimpleRNNParams

    def init(self, key: jax.Array, input_size: int) -> SimpleRNNParams:
        key, input_size = self.init_args(key, input_size)
        H, dt = self.hidden_size, self.param_dtype
        k_x, k_h = jax.random.split(key)
        kinit, rinit = self.initializer_of("kernel_init"), self.initializer_of("recurrent_init")
        return SimpleRNNParams(
            w_x=kinit(k_x, (input_size, H), dt),
            w_h=rinit(k_h, (H, H), dt),
            b=jnp.zeros((H,), dt) if self.use_bias else None,
        )

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> jax.Array:
        batch_shape = as_batch_shape("SimpleRNNCell.initial_carry", batch_shape)
        return jnp.zeros((*batch_shape, self.hidden_size), self.param_dtype)

    def __call__(
        self, params: SimpleRNNParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None
    ):
        """One step: ``h_{t-1}: (..., H)``, ``x: (..., I)`` -> ``(h_t, y_t = h_t)``."""
        self.check(params, carry, x, where="SimpleRNNCell.__call__")
        act = self.activation_of("activation")
        cdt, pdt = self.step_dtypes(params, x)  # operands, results (lstm_jax.core.dtypes)
        params, carry, x = cast_floats(params, pdt), carry.astype(pdt), x.astype(pdt)
        h_in = carry if recurrent_mask is None else carry * recurrent_mask.astype(pdt)
        z = matmul(x, params.w_x, cdt, pdt) + matmul(h_in, params.w_h, cdt, pdt)
        if params.b is not None:
            z = z + lead(params.b, z.ndim)
        h = act(z)
        return h, h

    def param_shapes(self, input_size: int) -> SimpleRNNParams:
        H = self.hidden_size
        return SimpleRNNParams(w_x=(input_size, H), w_h=(H, H), b=(H,) if self.use_bias else None)

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*batch_shape, self.hidden_size)
