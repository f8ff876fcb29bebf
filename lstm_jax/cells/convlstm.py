"""The convolutional LSTM cell (Shi et al. 2015): the LSTM equations with every matrix product
replaced by a 2-D convolution, so the state is a feature map and the cell models video.

Notation: ``...`` is any number of leading batch dimensions, ``(Hs, Ws)`` the frame's spatial
size, ``C`` the input channels, ``F`` the hidden channels (``hidden_size``), ``(kh, kw)`` the
kernel size. A frame is ``x_t: (..., Hs, Ws, C)`` (channels last) and the carry is
``LSTMState(h: (..., Hs, Ws, F), c: (..., Hs, Ws, F))``.

Spatial axes are batch axes for the carry. :meth:`ConvLSTMCell.initial_carry` takes the frame's
leading shape *including* its spatial size, ``batch_shape = (..., Hs, Ws)``, exactly the shape
``x.shape[:-1]`` that the cell protocol of :class:`LSTMCell` uses everywhere.

Weight layout. The convolution kernels are stored as matrices whose first axis is the input
channel, so ``params.w_x.shape[0]`` is the input size as for every other cell:
``w_x: (C, kh * kw * 4F)`` and ``w_h: (F, kh * kw * 4F)``, gate blocks **i, f, g, o**.
:meth:`ConvLSTMCell.kernels` reshapes them to the ``HWIO`` kernels ``(kh, kw, C, 4F)`` and
``(kh, kw, F, 4F)`` used by ``jax.lax.conv_general_dilated``.

Driving it with :func:`lstm_jax.scan`: the cell declares ``feature_axes = 3`` (a frame is
``(Hs, Ws, C)``), so batch-major video ``(..., T, Hs, Ws, C)`` is scanned over ``T`` as is, and
time-major video ``(T, ..., Hs, Ws, C)`` with ``time_major=True``.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.base import CellBase, cast_floats
from lstm_jax.cells.lstm import LSTMGates, LSTMState
from lstm_jax.core.checks import Problems, as_batch_shape
from lstm_jax.core.ops import lead


class ConvLSTMParams(NamedTuple):
    """Parameters of one ConvLSTM cell; kernels stored input-channel first (see module doc)."""

    w_x: jax.Array  # (C, kh*kw*4F) input kernel, reshaped from (C, kh, kw, 4F)
    w_h: jax.Array  # (F, kh*kw*4F) recurrent kernel, reshaped from (F, kh, kw, 4F)
    b: jax.Array | None = None  # (4F,) bias, forget block initialised to forget_bias


@dataclasses.dataclass(frozen=True)
class ConvLSTMCell(CellBase):
    """Configuration of a ConvLSTM cell; the cell protocol of :class:`LSTMCell` over frames.

    One step, with ``*`` a 'same'-padded, stride-1 2-D convolution (cross-correlation, as in
    every deep-learning library) and ``sigma`` the logistic sigmoid::

        i_t  = sigma(W_xi * X_t + W_hi * H_{t-1} + b_i)
        f_t  = sigma(W_xf * X_t + W_hf * H_{t-1} + b_f)
        C~_t = tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
        C_t  = f_t . C_{t-1} + i_t . C~_t
        o_t  = sigma(W_xo * X_t + W_ho * H_{t-1} + b_o)
        H_t  = o_t . tanh(C_t)

    Shi et al. also add Hadamard peephole terms ``W_c. . C``; like Keras' ``ConvLSTM2D`` this
    cell leaves them out, which keeps the params independent of the frame size.

    Args:
      hidden_size: ``F``, the number of hidden (and cell-state) channels.
      kernel_size: ``(kh, kw)``, odd, shared by the input and recurrent convolutions.
      forget_bias: written into the forget block of ``b`` at init (Jozefowicz et al. 2015).
      use_bias: False drops ``b``.
      dtype: dtype of the convolutions' operands (e.g. ``jnp.bfloat16``); None computes in the
        promoted dtype of ``params`` and ``x``, in which the outputs and carry are returned.
      param_dtype: dtype ``init`` draws the parameters in (and of ``initial_carry``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import ConvLSTMCell, scan
      >>> cell = ConvLSTMCell(hidden_size=4, kernel_size=(3, 3))
      >>> params = cell.init(jax.random.key(0), input_size=1)
      >>> frames = jnp.ones((2, 5, 8, 8, 1))  # (B, T, Hs, Ws, C), batch-major
      >>> carry, ys = scan(cell, params, frames)
      >>> ys.shape, carry.c.shape
      ((2, 5, 8, 8, 4), (2, 8, 8, 4))

    References:
      Shi, Chen, Wang, Yeung, Wong & Woo (2015), Convolutional LSTM Network: A Machine Learning
      Approach for Precipitation Nowcasting, NeurIPS.
    """

    hidden_size: int
    kernel_size: tuple[int, int] = (3, 3)
    forget_bias: float = 1.0
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    feature_axes = 3  # a frame x_t is (..., Hs, Ws, C): scan's time axis is the one before
    _FLAGS = ("use_bias",)
    _FLOATS = ("forget_bias",)

    def __post_init__(self):
        super().__post_init__()
        ks = self.kernel_size
        ok = isinstance(ks, (tuple, list)) and len(ks) == 2
        if not ok or not all(_odd_size(k) for k in ks):
            raise ValueError(
                "`ConvLSTMCell`: `kernel_size` must be a tuple of two odd positive ints (so 'same' "
                f"padding is symmetric), e.g. (3, 3); got {ks!r}."
            )
        object.__setattr__(self, "kernel_size", (int(ks[0]), int(ks[1])))  # hashable, canonical

    @property
    def params_type(self) -> type:
        return ConvLSTMParams

    @property
    def output_size(self) -> int:
        """``F``: the channels of ``h`` and of every output frame."""
        return self.hidden_size

    def short_repr(self) -> str:
        return f"ConvLSTMCell(hidden_size={self.hidden_size}, kernel_size={self.kernel_size})"

    def init(self, key: jax.Array, input_size: int) -> ConvLSTMParams:
        """Draws ``ConvLSTMParams`` for frames with ``input_size`` channels.

        Each gate's kernel is Glorot-uniform with fan-in ``kh * kw * C`` (or ``F``) and fan-out
        ``kh * kw * F``, as for a separate ``Conv2D`` per gate.
        """
        key, input_size = self.init_args(key, input_size)
        F, dt = self.hidden_size, self.param_dtype
        k_x, k_h = jax.random.split(key)
        b = None
        if self.use_bias:
            b = jnp.zeros((4 * F,), dt).at[F : 2 * F].set(self.forget_bias)  # i, f, g, o
        return ConvLSTMParams(
            w_x=self._to_matrix(self._draw(k_x, input_size)),
            w_h=self._to_matrix(self._draw(k_h, F)),
            b=b,
        )

    def _draw(self, key: jax.Array, fan_in: int) -> jax.Array:
        kh, kw = self.kernel_size
        init = jax.nn.initializers.glorot_uniform(in_axis=-2, out_axis=-1)
        keys = jax.random.split(key, 4)
        blocks = [init(k, (kh, kw, fan_in, self.hidden_size), self.param_dtype) for k in keys]
        return jnp.concatenate(blocks, axis=-1)  # (kh, kw, fan_in, 4F)

    def _to_matrix(self, kernel: jax.Array) -> jax.Array:
        """``(kh, kw, I, 4F) -> (I, kh * kw * 4F)``."""
        return jnp.transpose(kernel, (2, 0, 1, 3)).reshape(kernel.shape[2], -1)

    def kernels(self, params: ConvLSTMParams) -> tuple[jax.Array, jax.Array]:
        """The ``HWIO`` kernels ``(kh, kw, C, 4F)`` and ``(kh, kw, F, 4F)`` of ``params``."""
        kh, kw = self.kernel_size

        def hwio(w):  # (I, kh*kw*4F) -> (kh, kw, I, 4F)
            return jnp.transpose(w.reshape(w.shape[0], kh, kw, -1), (1, 2, 0, 3))

        return hwio(params.w_x), hwio(params.w_h)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> LSTMState:
        """Zero ``LSTMState`` with ``h, c: (*batch_shape, F)``.

        ``batch_shape`` is the frame's shape without its channels, ``(..., Hs, Ws)``.
        """
        shape = (*as_batch_shape("ConvLSTMCell.initial_carry", batch_shape), self.hidden_size)
        return LSTMState(h=jnp.zeros(shape, self.param_dtype), c=jnp.zeros(shape, self.param_dtype))

    def __call__(
        self, params: ConvLSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None
    ):
        """One step: frame ``x: (..., Hs, Ws, C)`` -> ``(carry, y = carry.h: (..., Hs, Ws, F))``.

        ``recurrent_mask``, optional ``(..., Hs, Ws, F)``, multiplies ``H_{t-1}`` where it
        enters the recurrent convolution.
        """
        self.check(params, carry, x, where="ConvLSTMCell.__call__")
        new_carry, _ = self.gates(params, carry, x, recurrent_mask=recurrent_mask)
        return new_carry, new_carry.h

    def gates(self, params: ConvLSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
        """One step that also returns its gates: ``(carry, LSTMGates)``.

        Every gate is ``(..., Hs, Ws, F)``.
        """
        cdt, odt = self.step_dtypes(params, x)  # operands, results (lstm_jax.core.dtypes)
        params, carry, x = cast_floats(params, odt), cast_floats(carry, odt), x.astype(odt)
        k_x, k_h = self.kernels(params)
        h = carry.h if recurrent_mask is None else carry.h * recurrent_mask.astype(odt)
        z = _conv_same(x, k_x, cdt, odt) + _conv_same(h, k_h, cdt, odt)
        if params.b is not None:
            z = z + lead(params.b, z.ndim)  # (..., Hs, Ws, 4F)
        z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
        f, i, g, o = jax.nn.sigmoid(z_f), jax.nn.sigmoid(z_i), jnp.tanh(z_g), jax.nn.sigmoid(z_o)
        c = f * carry.c + i * g
        h = o * jnp.tanh(c)
        return LSTMState(h=h, c=c), LSTMGates(f=f, i=i, g=g, c=c, o=o, h=h)

    def param_shapes(self, input_size: int) -> ConvLSTMParams:
        kh, kw = self.kernel_size
        F = self.hidden_size
        return ConvLSTMParams(
            w_x=(input_size, kh * kw * 4 * F),
            w_h=(F, kh * kw * 4 * F),
            b=(4 * F,) if self.use_bias else None,
        )

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> LSTMState:
        shape = (*batch_shape, self.hidden_size)
        return LSTMState(h=shape, c=shape)

    def check(self, params, carry, x, where: str) -> None:
        """Raises a clear error unless params, carry and one frame ``x`` fit this cell."""
        if hasattr(x, "ndim") and x.ndim < 3:
            p = Problems(where)
            p.value(
                f"`x` must be a frame (..., Hs, Ws, channels) of rank >= 3; got x.shape={x.shape}."
            )
            p.raise_if_any()
        super().check(params, carry, x, where)


def _odd_size(k) -> bool:
    integral = isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_))
    return integral and k >= 1 and k % 2 == 1


def _conv_same(x: jax.Array, kernel: jax.Array, cdt, odt) -> jax.Array:
    """'Same' 2-D cross-correlation of ``x: (..., Hs, Ws, I)`` with ``kernel: (kh, kw, I, O)``.

    Written as one matrix product over image patches (im2col): the ``kh * kw`` shifted copies
    of the zero-padded input are stacked on the channel axis. Inside the time loop of a scan,
    XLA:CPU runs this several times faster than ``conv_general_dilated``, forward and backward
    (gradient of a 10-step sequence, batch 8, 16x16 frames, F=16, 3x3 kernels: 55 ms against
    383 ms); outside a loop XLA's convolution is the faster one. Operands in ``cdt``, result in
    ``odt``.
    """
    kh, kw, n_in, n_out = kernel.shape
    Hs, Ws = x.shape[-3], x.shape[-2]
    pad = [(0, 0)] * (x.ndim - 3) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)]
    xp = jnp.pad(x.astype(cdt), pad)  # (..., Hs + kh - 1, Ws + kw - 1, I)
    patches = jnp.concatenate(
        [xp[..., dy : dy + Hs, dx : dx + Ws, :] for dy in range(kh) for dx in range(kw)], axis=-1
    )  # (..., Hs, Ws, kh * kw * I), ordered (dy, dx, i)
    w = kernel.astype(cdt).reshape(kh * kw * n_in, n_out)  # same (dy, dx, i) order
    return jnp.matmul(patches, w, preferred_element_type=odt)
