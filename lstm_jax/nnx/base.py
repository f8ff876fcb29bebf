"""The plumbing shared by the NNX cells: Flax's attributes, carries and dtype rules.

Each cell of :mod:`lstm_jax.nnx` holds real ``nnx.Linear`` submodules under Flax's names
(``cell.ii``, ``cell.if_``, ..., or ``cell.dense_i``, ``cell.dense_h``), drawn from ``rngs`` in
Flax's order, so ``nnx.state``, ``nnx.split`` and ``nnx.update`` see the same tree, and the same
seed gives the same weights. The ``Linear`` modules are never called: a step reads their kernels
and biases, applies the cell's ``promote_dtype`` to each side as Flax's ``Linear`` would, and
runs the functional core's cell (:class:`lstm_jax.LSTMCell`, ``GRUCell``, ``SimpleRNNCell``).

Dtypes follow Flax, not the core: with ``dtype=None`` a step computes in the promoted dtype of
the inputs and params (integer inputs become float, as ``promote_dtype(..., inexact=True)``
makes them); with ``dtype`` set, the matrix products run in ``dtype``; the new carry and the
output then take the promotion of that dtype with the carry's (the LSTM's ``c``, the GRU's
``h``), exactly the dtype Flax's ``f * c + i * g`` or ``(1 - z) * n + z * h`` ends up in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx import rnglib

from lstm_jax.core.validate import check_int

Array = jax.Array
NO_METADATA: Mapping[str, Any] = MappingProxyType({})
CARRY_INIT_WARNING = (
    "carry_init is provided in __init__. Please, use carry_init argument in `initialize_carry` "
    "method instead to initialize the carry. Otherwise, two instances with same configuration "
    "but different carry_init functions will have different graphdefs."
)
KEEP_RNGS_WARNING = (
    "keep_rngs argument is deprecated. Please use rngs argument in __call__ instead "
)


def linear(n_in, n_out, use_bias, kernel_init, bias_init, cell, rngs, k_meta, b_meta):
    """An ``nnx.Linear`` configured as Flax's cells configure theirs (same draws from rngs)."""
    return nnx.Linear(
        n_in,
        n_out,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init if use_bias else nnx.initializers.zeros_init(),
        dtype=cell.dtype,
        param_dtype=cell.param_dtype,
        promote_dtype=cell.promote_dtype,
        rngs=rngs,
        kernel_metadata=k_meta,
        bias_metadata=b_meta if use_bias else NO_METADATA,
    )


class CellBase(nnx.RNNCellBase):
    """Attributes, ``initialize_carry`` and the core-backed step shared by the four cells.

    A subclass defines ``n_carry`` (arrays in the carry), ``_sides()`` (the input side's and the
    recurrent side's ``(kernel, bias)``, as Flax's ``Linear`` modules would see them),
    ``_core(compute, out)`` (the core cell config), ``_core_params(w_x, w_h, b)``,
    ``_out_dtype(dz, carry)`` and the carry conversions.
    """

    n_carry = 1

    def _setup(self, in_features, hidden_features, dtype, param_dtype, promote_dtype, keep_rngs,
               rngs):  # fmt: skip
        where = type(self).__name__
        # Flax divides by these sizes in its initialisers (a ZeroDivisionError for 0).
        self.in_features = check_int(where, "in_features", in_features)
        self.hidden_features = check_int(where, "hidden_features", hidden_features)
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype
        self.rngs: rnglib.RngStream | None
        if keep_rngs:
            warnings.warn(KEEP_RNGS_WARNING, stacklevel=3)
            self.rngs = rngs.carry.fork()
        else:
            self.rngs = nnx.data(None)

    def _set_carry_init(self, carry_init):
        if carry_init:
            warnings.warn(CARRY_INIT_WARNING, stacklevel=3)
        self.carry_init = carry_init

    @property
    def num_feature_axes(self) -> int:
        return 1

    # -- carry ---------------------------------------------------------------------------------
    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        """The initial carry for inputs of shape ``(*batch, in_features)``.

        Each array is ``(*batch, hidden_features)`` in ``param_dtype``, drawn by ``carry_init``
        (the argument, else the constructor's, else zeros) from ``rngs.carry`` (an ``nnx.Rngs``
        or ``RngStream``; the cell's own stream when ``keep_rngs=True``). One key is drawn per
        array, as in Flax, so the stream's count moves the same. Zeros need no random numbers:
        without any ``rngs`` a zero carry is returned, where Flax raises.

        Raises:
          ValueError: a ``carry_init`` is used and no ``rngs`` are available.
        """
        if rngs is None:
            rngs = self.rngs
        if isinstance(rngs, rnglib.Rngs):
            rngs = rngs.carry
        init = carry_init if carry_init is not None else self.carry_init
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        if rngs is None:
            if init is not None:
                raise ValueError(
                    f"`{type(self).__name__}.initialize_carry`: `rngs` must be given when a "
                    "`carry_init` is used (an nnx.Rngs with a 'carry' or default stream, or an "
                    "RngStream); got rngs=None and no stream kept by the cell."
                )
            parts = [jnp.zeros(shape, self.param_dtype) for _ in range(self.n_carry)]
        else:
            init = nnx.initializers.zeros_init() if init is None else init
            parts = [init(rngs(), shape, self.param_dtype) for _ in range(self.n_carry)]
        return tuple(parts) if self.n_carry > 1 else parts[0]

    # The LSTM carry is (c, h) in Flax and LSTMState(h, c) in the core; others are plain h.
    def to_core_carry(self, carry):
        return carry

    def from_core_carry(self, carry):
        return carry

    def _hidden(self, carry):
        return carry

    # -- the step --------------------------------------------------------------------------------
    def prepare(self, inputs, carry):
        """Flax's dtype rules for a step (or a whole sequence) of ``inputs`` from ``carry``.

        Returns ``(core_cell, core_params, inputs, core_carry, out_dtype)``, all cast so that the
        core computes its products in the dtype Flax's ``Linear`` modules would use and returns
        ``out_dtype``, the dtype of Flax's new carry and output.
        """
        (w_x, b_x), (w_h, b_h) = self._sides()
        x, w_x, b_x = self.promote_dtype((inputs, w_x, b_x), dtype=self.dtype)
        h, w_h, b_h = self.promote_dtype((self._hidden(carry), w_h, b_h), dtype=self.dtype)
        dz = jnp.result_type(*(a for a in (x, w_x, b_x) if a is not None))
        dz = jnp.result_type(dz, *(a for a in (h, w_h, b_h) if a is not None))
        out = np.dtype(self._out_dtype(dz, carry))
        core = self._core(None if np.dtype(dz) == out else dz, out)
        b = b_x if b_x is not None else b_h
        params = self._core_params(w_x.astype(out), w_h.astype(out), b.astype(out))
        core_carry = self.to_core_carry(jax.tree.map(lambda a: jnp.asarray(a).astype(out), carry))
        return core, params, x.astype(out), core_carry, out

    def __call__(self, carry, inputs):
        """One step: ``(carry, inputs (*batch, in_features)) -> (new_carry, output)``."""
        core, params, x, c0, out = self.prepare(inputs, carry)
        new, _ = core(params, c0, x)
        new = jax.tree.map(lambda a: a.astype(out), self.from_core_carry(new))
        return new, self._output(new)

    def _output(self, carry):
        return carry
