"""The LSTM cell: the gate equations of Hochreiter & Schmidhuber (1997) with the forget gate of
Gers, Schmidhuber & Cummins (2000), as one pure step function.

Notation: ``...`` is any number of leading batch dimensions (none at all is fine), ``I`` the
input size, ``H`` the hidden (cell) size, ``P`` the output size (``proj_size`` when the cell has
an output projection, else ``H``).

Weight layout. The four gate matrices ``W_i, W_f, W_C, W_o`` of the textbook equations act on
the concatenation ``[h_{t-1}, x_t]``. Here they are stored fused and split by input instead:
``w_x`` of shape ``(I, 4H)`` and ``w_h`` of shape ``(P, 4H)``, with the gate blocks packed in the
order **i, f, g, o** (``g`` is the candidate ``C~``) along the last axis, and one bias ``b`` of
shape ``(4H,)``. So ``W_f . [h, x] + b_f == (h @ w_h + x @ w_x + b)[..., H:2H]``. This is
PyTorch's, Equinox's and Flax's ``OptimizedLSTMCell`` gate order in the ``x @ w`` layout, which
lets leading batch dimensions broadcast for free.

.. warning::
   Flax's ``LSTMCell`` carries ``(c, h)``; this library carries ``LSTMState(h, c)``. Haiku packs
   gates as ``i, g, f, o`` and adds the forget bias inside the step; here the forget bias is
   written into ``b`` at init (Jozefowicz et al. 2015), so the step is the textbook one.
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
from lstm_jax.core.ops import layer_norm, lead, matmul


class LSTMState(NamedTuple):
    """The recurrent carry of an LSTM."""

    h: jax.Array  # (..., P) hidden state h_t (the cell's output)
    c: jax.Array  # (..., H) cell state C_t


class Peepholes(NamedTuple):
    """Diagonal peephole weights (Gers & Schmidhuber 2000): gates also see the cell state."""

    w_ci: jax.Array  # (H,) C_{t-1} -> input gate
    w_cf: jax.Array  # (H,) C_{t-1} -> forget gate
    w_co: jax.Array  # (H,) C_t     -> output gate


class LSTMLayerNorm(NamedTuple):
    """Layer-normalisation gains and biases (Ba, Kiros & Hinton 2016)."""

    scale_x: jax.Array  # (G*H,) gain on LN(x @ w_x)
    scale_h: jax.Array  # (G*H,) gain on LN(h @ w_h)
    scale_c: jax.Array  # (H,) gain on LN(C_t) before the output tanh
    bias_c: jax.Array  # (H,)


class LSTMParams(NamedTuple):
    """Parameters of one LSTM cell; ``G`` is 4 (i, f, g, o), or 3 (i, g, o) without forget gate."""

    w_x: jax.Array  # (I, G*H) input weights
    w_h: jax.Array  # (P, G*H) recurrent weights
    b: jax.Array | None = None  # (G*H,) bias, forget block initialised to forget_bias
    peephole: Peepholes | None = None
    w_proj: jax.Array | None = None  # (H, P) output projection (LSTMP, Sak et al. 2014)
    layer_norm: LSTMLayerNorm | None = None


class LSTMGates(NamedTuple):
    """Every intermediate of one step, each ``(..., H)``; returned by :meth:`LSTMCell.gates`."""

    f: jax.Array  # forget gate (all ones without a forget gate)
    i: jax.Array  # input gate
    g: jax.Array  # candidate cell state C~_t
    c: jax.Array  # cell state C_t
    o: jax.Array  # output gate
    h: jax.Array  # o_t * tanh(C_t), before any projection


def lstm_equations(cell: LSTMCell, params: LSTMParams, carry: LSTMState, z: jax.Array):
    """The article's six equations, in order, given the fused pre-activations ``z``.

    With ``z = x_t @ w_x + h_{t-1} @ w_h + b`` (the ``W . [h_{t-1}, x_t] + b`` of every gate)::

        f_t  = sigma(z_f)                  forget gate
        i_t  = sigma(z_i)                  input gate
        C~_t = tanh(z_g)                   candidate cell state
        C_t  = f_t * C_{t-1} + i_t * C~_t  cell state
        o_t  = sigma(z_o)                  output gate
        h_t  = o_t * tanh(C_t)             hidden state

    Peepholes add ``w_c. * C`` to the gate pre-activations; without a forget gate (the 1997
    cell) ``f_t = 1``; layer norm normalises ``C_t`` inside the output ``tanh``.
    """
    sigma, tanh = cell.gate_fn, cell.activation_fn
    c_prev = carry.c
    z_i, z_f, z_g, z_o = split_gates(z, cell.forget_gate)
    peep = params.peephole
    f = sigma(z_f + _peep(peep, "w_cf", c_prev)) if cell.forget_gate else jnp.ones_like(c_prev)
    i = sigma(z_i + _peep(peep, "w_ci", c_prev))
    g = tanh(z_g)
    c = f * c_prev + i * g
    o = sigma(z_o + _peep(peep, "w_co", c))
    h = o * tanh(c if params.layer_norm is None else _ln_c(params.layer_norm, c))
    return LSTMGates(f=f, i=i, g=g, c=c, o=o, h=h)


def split_gates(z: jax.Array, forget_gate: bool = True):
    """``(..., G*H) -> (z_i, z_f, z_g, z_o)``, each ``(..., H)`` (``z_f`` is None when G == 3)."""
    if forget_gate:
        z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
        return z_i, z_f, z_g, z_o
    z_i, z_g, z_o = jnp.split(z, 3, axis=-1)
    return z_i, None, z_g, z_o


def _peep(peep: Peepholes | None, name: str, c: jax.Array):
    return 0.0 if peep is None else lead(getattr(peep, name), c.ndim) * c


def _ln_c(ln: LSTMLayerNorm, c: jax.Array) -> jax.Array:
    return layer_norm(c, ln.scale_c, ln.bias_c)


@dataclasses.dataclass(frozen=True)
class LSTMCell(CellBase):
    """Configuration of an LSTM cell; hashable, so it can be a static argument of ``jit``.

    A cell is three pure functions: ``init(key, input_size) -> LSTMParams``,
    ``initial_carry(batch_shape=()) -> LSTMState`` (zeros), and
    ``cell(params, carry, x) -> (carry, y)`` for one time step, where ``x`` is ``(..., I)`` and
    ``y = carry.h`` is ``(..., P)``. The step's argument order makes
    ``functools.partial(cell, params)`` a ``jax.lax.scan`` body. See :func:`lstm_equations`
    for the maths.

    Args:
      hidden_size: ``H``, the size of the cell state and of every gate.
      forget_bias: added to the forget-gate block of ``b`` at init. 1.0 (the default) keeps the
        gate open early in training so gradients reach far back (Gers et al. 2000; Jozefowicz
        et al. 2015). Use 0.0 to match PyTorch's and Flax's initial params.
      gate_activation: ``sigma``: a name (``"sigmoid"``, ``"hard_sigmoid"``, ...) or a callable.
      activation: the cell input/output activation (``tanh`` in the equations).
      forget_gate: False gives the original 1997 cell, ``C_t = C_{t-1} + i_t * C~_t``; then
        params hold three gate blocks, ordered i, g, o.
      peephole: add diagonal peephole connections (Gers & Schmidhuber 2000).
      proj_size: if set, ``h_t = (o_t * tanh(C_t)) @ w_proj`` has size ``P = proj_size < H``
        (LSTMP, Sak et al. 2014; PyTorch's ``proj_size``).
      layer_norm: layer-normalise the input and recurrent pre-activations and the cell state
        (Ba et al. 2016).
      use_bias: False drops ``b`` (PyTorch's ``bias=False``).
      kernel_init: initialiser of ``w_x`` per gate block (Glorot/Xavier uniform by default).
      recurrent_init: initialiser of ``w_h`` per gate block (orthogonal by default).
      dtype: dtype of the matrix products' operands (e.g. ``jnp.bfloat16``). None (the
        default) computes everything in the promoted dtype of ``params`` and ``x``, as
        ``jax.numpy`` would: float64 in, float64 out. Products accumulate, and ``y`` and the
        carry are returned, in that promoted dtype.
      param_dtype: dtype ``init`` draws the parameters in (and of ``initial_carry``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell
      >>> cell = LSTMCell(hidden_size=8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> carry = cell.initial_carry(batch_shape=(2,))
      >>> carry, y = cell(params, carry, jnp.ones((2, 3)))
      >>> y.shape, carry.c.shape
      ((2, 8), (2, 8))

    References:
      Hochreiter & Schmidhuber (1997), Long Short-Term Memory, Neural Computation 9(8).
      Gers, Schmidhuber & Cummins (2000), Learning to Forget: Continual Prediction with LSTM.
      Jozefowicz, Zaremba & Sutskever (2015), An Empirical Exploration of Recurrent Network
      Architectures.
    """

    hidden_size: int
    forget_bias: float = 1.0
    gate_activation: str | Activation = "sigmoid"
    activation: str | Activation = "tanh"
    forget_gate: bool = True
    peephole: bool = False
    proj_size: int | None = None
    layer_norm: bool = False
    use_bias: bool = True
    kernel_init: str | Initializer = "glorot_uniform"
    recurrent_init: str | Initializer = "orthogonal"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    _OPTIONAL_SIZES = ("proj_size",)
    _FLAGS = ("forget_gate", "peephole", "layer_norm", "use_bias")
    _FLOATS = ("forget_bias",)
    _ACTIVATIONS = ("gate_activation", "activation")
    _INITIALIZERS = ("kernel_init", "recurrent_init")

    def __post_init__(self):
        super().__post_init__()
        if self.proj_size is not None and self.proj_size >= self.hidden_size:
            raise ValueError(
                f"`{type(self).__name__}`: `proj_size` must be smaller than `hidden_size` "
                f"({self.hidden_size}); got proj_size={self.proj_size}."
            )

    # -- derived configuration --------------------------------------------------------------
    @property
    def n_gates(self) -> int:
        return 4 if self.forget_gate else 3

    @property
    def params_type(self) -> type:
        return LSTMParams

    @property
    def output_size(self) -> int:
        """``P``: the size of ``h`` and of every output."""
        return self.hidden_size if self.proj_size is None else self.proj_size

    @property
    def gate_fn(self) -> Activation:
        return self.activation_of("gate_activation")

    @property
    def activation_fn(self) -> Activation:
        return self.activation_of("activation")

    def short_repr(self) -> str:
        extra = "" if self.proj_size is None else f", proj_size={self.proj_size}"
        return f"{type(self).__name__}(hidden_size={self.hidden_size}{extra})"

    # -- the three pure functions ---------------------------------------------------------------
    def init(self, key: jax.Array, input_size: int) -> LSTMParams:
        """Draws ``LSTMParams`` for inputs of size ``input_size``."""
        key, input_size = self.init_args(key, input_size)
        H, P, G, dt = self.hidden_size, self.output_size, self.n_gates, self.param_dtype
        k_x, k_h, k_p, k_b = jax.random.split(key, 4)
        kinit, rinit = self.initializer_of("kernel_init"), self.initializer_of("recurrent_init")
        b = None
        if self.use_bias:
            b = jnp.zeros((G * H,), dt)
            if self.forget_gate:
                b = b.at[H : 2 * H].set(self.forget_bias)  # the f block of i, f, g, o
        return LSTMParams(
            w_x=gate_blocks(kinit, k_x, input_size, H, G, dt),
            w_h=gate_blocks(rinit, k_h, P, H, G, dt),
            b=b,
            peephole=Peepholes(*(jnp.zeros((H,), dt) for _ in range(3))) if self.peephole else None,
            w_proj=None if self.proj_size is None else kinit(k_p, (H, P), dt),
            layer_norm=LSTMLayerNorm(
                jnp.ones((G * H,), dt),
                jnp.ones((G * H,), dt),
                jnp.ones((H,), dt),
                jnp.zeros((H,), dt),
            )
            if self.layer_norm
            else None,
        )

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> LSTMState:
        """Zero ``LSTMState`` with ``h: (*batch_shape, P)`` and ``c: (*batch_shape, H)``."""
        batch_shape = as_batch_shape("LSTMCell.initial_carry", batch_shape)
        return LSTMState(
            h=jnp.zeros((*batch_shape, self.output_size), self.param_dtype),
            c=jnp.zeros((*batch_shape, self.hidden_size), self.param_dtype),
        )

    def __call__(self, params: LSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
        """One step: ``(carry, x) -> (carry, y)`` with ``y = carry.h``.

        Args:
          params: ``LSTMParams`` from :meth:`init`.
          carry: ``LSTMState(h: (..., P), c: (..., H))``.
          x: ``(..., I)`` input at this step.
          recurrent_mask: optional ``(..., P)`` multiplier on ``h_{t-1}`` where it enters the
            recurrent product (variational dropout, Gal & Ghahramani 2016).
        """
        self.check(params, carry, x, where=f"{type(self).__name__}.__call__")
        new_carry, _ = self.gates(params, carry, x, recurrent_mask=recurrent_mask)
        return new_carry, new_carry.h

    def gates(self, params: LSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
        """One step that also returns every gate: ``-> (carry, LSTMGates)``.

        Everything is computed in the promoted dtype of ``params`` and ``x``; ``dtype``, when
        set, is the dtype of the matrix products' operands (see :mod:`lstm_jax.core.dtypes`).
        """
        cdt, odt = self.step_dtypes(params, x)
        params, carry = cast_floats(params, odt), cast_floats(carry, odt)
        z = self.preactivations(params, carry.h, x.astype(odt), recurrent_mask, cdt)
        g = lstm_equations(self, params, carry, z)
        h = g.h
        if params.w_proj is not None:
            h = matmul(h, params.w_proj, cdt, odt)  # (..., P)
        return LSTMState(h=h, c=g.c), g

    def preactivations(
        self, params: LSTMParams, h: jax.Array, x: jax.Array, recurrent_mask=None, cdt=None
    ):
        """``z = x @ w_x + h @ w_h + b``: ``(..., G*H)`` in the dtype of ``params``.

        ``cdt`` is the dtype of the products' operands (default: ``dtype``, else the params').
        """
        if recurrent_mask is not None:
            h = h * recurrent_mask.astype(h.dtype)
        pdt = params.w_x.dtype
        cdt = cdt or self.dtype or pdt
        zx = matmul(x, params.w_x, cdt, pdt)
        zh = matmul(h, params.w_h, cdt, pdt)
        if params.layer_norm is not None:
            zx = layer_norm(zx, params.layer_norm.scale_x, None)
            zh = layer_norm(zh, params.layer_norm.scale_h, None)
        z = zx + zh
        return z if params.b is None else z + lead(params.b.astype(pdt), z.ndim)

    # -- validation --------------------------------------------------------------------------
    def param_shapes(self, input_size: int) -> LSTMParams:
        """The shape of every leaf of ``LSTMParams`` for this config (a pytree of tuples)."""
        H, P, G = self.hidden_size, self.output_size, self.n_gates
        return LSTMParams(
            w_x=(input_size, G * H),
            w_h=(P, G * H),
            b=(G * H,) if self.use_bias else None,
            peephole=Peepholes((H,), (H,), (H,)) if self.peephole else None,
            w_proj=None if self.proj_size is None else (H, P),
            layer_norm=LSTMLayerNorm((G * H,), (G * H,), (H,), (H,)) if self.layer_norm else None,
        )

    def carry_shapes(self, batch_shape: tuple[int, ...]) -> LSTMState:
        return LSTMState(h=(*batch_shape, self.output_size), c=(*batch_shape, self.hidden_size))
