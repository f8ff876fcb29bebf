"""Diagnostics for recurrent cells: how far back gradients reach, and what the gates do.

The article's central claim is that an LSTM learns long-term dependencies where a plain RNN's
gradients vanish. Two measurements make that claim visible for any cell of this library:

* :func:`input_gradient_flow`: ``||dy_T / dx_t||_F`` as a function of the lag ``T - t`` (one
  Jacobian per example, by ``jax.jacrev`` under ``jit``). For an Elman RNN it decays
  geometrically, since ``dh_t/dh_{t-1} = diag(1 - h_t^2) W_h^T``; for an LSTM the cell state's
  ``dC_t/dC_{t-1} = diag(f_t)`` lets it stay flat while the forget gate is open.
* :func:`state_gradient_flow`: ``||dL / d carry_t||`` for a loss ``L`` of the outputs, the
  "error flow" of Hochreiter & Schmidhuber (1997), by one ``jax.grad`` through a zero
  perturbation added to the carry entering every step.
* :func:`gate_statistics`: per step, the mean of every sigmoid gate and the fraction of units
  saturated near 0 (closed) or near 1 (open), from the cell's ``gates`` method.

Both flows are returned indexed by **lag** (the number of steps between the quantity and the
end of the sequence, in ``flow.lag``), so ``plt.semilogy(flow.lag, flow.norm.mean(0))`` is the
usual plot.

References:
  Bengio, Simard & Frasconi (1994), Learning long-term dependencies with gradient descent is
  difficult. Hochreiter & Schmidhuber (1997), Long Short-Term Memory. Pascanu, Mikolov & Bengio
  (2013), On the difficulty of training recurrent neural networks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.core.checks import Problems
from lstm_jax.core.vma import vary_like
from lstm_jax.sequence.scan import check_sequence, scan

__all__ = [
    "GateTrace",
    "GradientFlow",
    "gate_statistics",
    "input_gradient_flow",
    "state_gradient_flow",
]


class GradientFlow(NamedTuple):
    """Gradient norms by lag; ``norm[..., k]`` belongs to lag ``lag[k]``."""

    lag: jax.Array  # (T,) lags, increasing
    norm: jax.Array  # (..., T) one curve per example


class GateTrace(NamedTuple):
    """Statistics of one gate at every step, averaged over the batch and the units."""

    mean: jax.Array  # (T,) mean activation
    closed: jax.Array  # (T,) fraction of units below `threshold`
    open: jax.Array  # (T,) fraction of units above 1 - `threshold`

    @property
    def saturation(self) -> jax.Array:
        """``(T,)`` fraction of units saturated at either end."""
        return self.closed + self.open


def input_gradient_flow(cell: Any, params: Any, xs: jax.Array, carry: Any = None) -> GradientFlow:
    """``||dy_{T-1} / dx_t||_F`` for every step ``t``, indexed by lag ``T - 1 - t``.

    Args:
      cell: any cell of this library (LSTMCell, GRUCell, SimpleRNNCell, ...).
      params: the cell's params.
      xs: ``(..., T, I)`` inputs; one Jacobian of shape ``(P, T, I)`` is taken per example.
      carry: optional initial carry for batch ``...``; zeros when None.

    Returns:
      :class:`GradientFlow` with ``norm`` of shape ``(..., T)``: the Frobenius norm of the
      ``(P, I)`` block of the Jacobian of the last output with respect to ``x_{T-1-k}``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import SimpleRNNCell
      >>> cell = SimpleRNNCell(4)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> flow = input_gradient_flow(cell, params, jnp.ones((3, 10, 2)))
      >>> flow.norm.shape
      (3, 10)
    """
    T, batch_shape = check_sequence("input_gradient_flow", cell, params, xs, carry, None, False)
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    norms = _input_flow(cell, params, xs, carry, len(batch_shape))  # (..., T) by time
    return GradientFlow(lag=jnp.arange(T), norm=jnp.flip(norms, axis=-1))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _input_flow(cell, params, xs, carry, n_batch):
    def one(x, c):  # x: (T, I), c: one example's carry
        jac = jax.jacrev(lambda x: scan(cell, params, x, c)[1][-1])(x)  # (P, T, I)
        return jnp.sqrt(jnp.sum(jnp.square(jac), axis=(0, 2)))  # (T,)

    for _ in range(n_batch):
        one = jax.vmap(one)
    return one(xs, carry)


def state_gradient_flow(
    cell: Any,
    params: Any,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array] | None = None,
    carry: Any = None,
) -> GradientFlow:
    """``||dL / d carry_{t-1}||`` for the carry entering every step ``t``, by lag ``T - t``.

    The carry entering step ``t`` (``carry_{t-1}``; for an LSTM both ``h_{t-1}`` and
    ``C_{t-1}``) gets a zero perturbation ``e_t``; ``dL/de_t`` is then exactly
    ``dL/d carry_{t-1}``, so one backward pass gives every step. Index ``k`` of the result is
    the carry ``k + 1`` steps before the end; the last entry is the initial carry (lag ``T``).

    Args:
      cell: any cell of this library.
      params: the cell's params.
      xs: ``(..., T, I)`` inputs.
      loss_fn: maps the outputs ``ys: (..., T, P)`` to a scalar. Default: the sum of the last
        step's outputs, ``ys[..., -1, :].sum()``, which isolates the pure recurrence.
      carry: optional initial carry for batch ``...``; zeros when None.

    Returns:
      :class:`GradientFlow` with ``lag = 1, ..., T`` and ``norm`` of shape ``(..., T)``: per
      example, the Euclidean norm over every carry leaf's features of the gradient.
    """
    T, batch_shape = check_sequence("state_gradient_flow", cell, params, xs, carry, None, False)
    if loss_fn is not None and not callable(loss_fn):
        p = Problems("state_gradient_flow")
        p.type(f"`loss_fn` must be a callable `ys -> scalar`; got {type(loss_fn).__name__}.")
        p.raise_if_any()
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    loss_fn = _last_output_sum if loss_fn is None else loss_fn
    norms = _state_flow(cell, params, xs, carry, loss_fn)  # (..., T) by time
    return GradientFlow(lag=jnp.arange(1, T + 1), norm=jnp.flip(norms, axis=-1))


def _last_output_sum(ys: jax.Array) -> jax.Array:
    return jnp.sum(ys[..., -1, :])


@functools.partial(jax.jit, static_argnums=(0, 4))
def _state_flow(cell, params, xs, carry, loss_fn):
    xs_t = jnp.moveaxis(xs, -2, 0)  # (T, ..., I)
    T = xs_t.shape[0]
    carry = vary_like(carry, carry, params, xs)  # under shard_map: vary as the steps do
    eps = jax.tree.map(lambda c: jnp.zeros((T, *c.shape), c.dtype), carry)  # (T, ..., F) leaves

    def loss(eps):
        def step(c, inp):
            x, e = inp
            return cell(params, jax.tree.map(jnp.add, c, e), x)

        _, ys = jax.lax.scan(step, carry, (xs_t, eps))  # (T, ..., P)
        value = loss_fn(jnp.moveaxis(ys, 0, -2))
        if jnp.shape(value) != ():
            got = jnp.shape(value)
            raise ValueError(f"`state_gradient_flow`: `loss_fn` must return a scalar; got {got}.")
        return value

    grads = jax.grad(loss)(eps)
    sq = sum(jnp.sum(jnp.square(g), axis=-1) for g in jax.tree.leaves(grads))  # (T, ...)
    return jnp.moveaxis(jnp.sqrt(sq), 0, -1)  # (..., T)


def gate_statistics(
    cell: Any, params: Any, xs: jax.Array, carry: Any = None, *, threshold: float = 0.1
) -> dict[str, GateTrace]:
    """Mean activation and saturation of every sigmoid gate, at every step of ``xs``.

    Args:
      cell: a cell with a ``gates(params, carry, x) -> (carry, gates)`` method: LSTMCell
        (gates ``f``, ``i``, ``o``) or GRUCell (gates ``r``, ``z``).
      params: the cell's params.
      xs: ``(..., T, I)`` inputs.
      carry: optional initial carry for batch ``...``; zeros when None.
      threshold: a unit counts as closed below ``threshold`` and open above ``1 - threshold``.

    Returns:
      ``{gate name: GateTrace}``, each field of shape ``(T,)``, averaged over the batch and
      the units. Without a forget gate (``LSTMCell(forget_gate=False)``) ``f`` is all ones.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell
      >>> cell = LSTMCell(8)
      >>> stats = gate_statistics(cell, cell.init(jax.random.key(0), 2), jnp.ones((4, 6, 2)))
      >>> sorted(stats), stats["f"].mean.shape
      (['f', 'i', 'o'], (6,))
    """
    p = Problems("gate_statistics")
    names = _gate_names(cell)
    if names is None:
        p.type(
            f"`cell` must have a `gates` method returning LSTMGates or GRUGates (LSTMCell, "
            f"GRUCell); got {type(cell).__name__}."
        )
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (0.0 < threshold < 0.5)
    ):
        p.value(f"`threshold` must be a number in (0, 0.5); got {threshold!r}.")
    p.raise_if_any()
    _, batch_shape = check_sequence("gate_statistics", cell, params, xs, carry, None, False)
    if carry is None:
        carry = cell.initial_carry(batch_shape)
    return _gate_stats(cell, params, xs, carry, float(threshold), names)


def _gate_names(cell: Any) -> tuple[str, ...] | None:
    """The sigmoid gates of the cell's gates tuple: LSTM f, i, o; GRU r, z."""
    if isinstance(cell, LSTMCell):
        return ("f", "i", "o")
    if isinstance(cell, GRUCell):
        return ("r", "z")
    return None


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _gate_stats(cell, params, xs, carry, threshold, names):
    def step(c, x):
        c, g = cell.gates(params, c, x)
        return c, tuple(getattr(g, n) for n in names)

    carry = vary_like(carry, carry, params, xs)
    _, gates = jax.lax.scan(step, carry, jnp.moveaxis(xs, -2, 0))  # each (T, ..., H)

    def trace(g):
        axes = tuple(range(1, g.ndim))
        frac = lambda m: jnp.mean(m.astype(g.dtype), axis=axes)  # noqa: E731
        return GateTrace(jnp.mean(g, axis=axes), frac(g < threshold), frac(g > 1 - threshold))

    return {n: trace(g) for n, g in zip(names, gates, strict=True)}
