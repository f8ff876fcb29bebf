"""``lstm_scan``: :func:`lstm_jax.scan` for the LSTM with its hand-derived derivative.

The article's ``LSTMCell`` has ``forward`` and ``backward(output_gradient)``. This is the
functional equivalent for a whole sequence: the forward pass is the same recurrence as
:func:`lstm_jax.scan`, and its derivative is written out by hand, once, as a ``jax.custom_jvp``
(see :mod:`lstm_jax.sequence.fast_lstm` for the equations). ``jax.grad`` gets the transposed rule:
backpropagation through time, with the weight gradients as a few large matrix products after the
reverse recurrence instead of one small product per step; ``jax.jvp``, ``jax.jacfwd`` and
Hessian-vector products work too. It is :func:`lstm_jax.sequence.fast.fast_scan` restricted to
:class:`LSTMCell`; the layers use the same path by default.
"""

from __future__ import annotations

from typing import Any

import jax

from lstm_jax.cells.lstm import LSTMCell, LSTMState
from lstm_jax.core.checks import Problems
from lstm_jax.sequence.fast import check_fast, fast_scan


def lstm_scan(
    cell: LSTMCell,
    params: Any,
    xs: jax.Array,
    carry: LSTMState | None = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool | None = None,
    recurrent_mask: jax.Array | None = None,
    checkpoint_every: int | None = None,
) -> tuple[LSTMState, jax.Array]:
    """Runs an LSTM over a sequence like :func:`lstm_jax.scan`, with the hand-derived derivative.

    Same arguments, return value and errors as :func:`lstm_jax.scan`; outputs and derivatives
    (reverse and forward mode, any order) equal those of autodiff through :func:`lstm_jax.scan`
    to float rounding.

    Args:
      cell: an :class:`LSTMCell` with sigmoid gates and tanh activation, with or without a
        forget gate and bias. Peepholes, ``proj_size``, ``layer_norm``, other activations and a
        compute ``dtype`` different from ``param_dtype`` raise a ``ValueError``: use
        :func:`lstm_jax.scan` for those.
      params: the cell's ``LSTMParams`` (``param_dtype`` float32 or float64).
      xs: ``(..., T, I)`` (batch-major) or ``(T, ..., I)`` with ``time_major=True``; cast to
        ``param_dtype``.
      carry: initial ``LSTMState(h: (..., H), c: (..., H))``; zeros when None.
      lengths: optional integer ``...``-shaped valid lengths in ``[0, T]``.
      reverse: process the sequence from its end (outputs stay in input order).
      time_major: the layout of ``xs`` and of the returned ``ys``.
      unroll: steps per loop iteration of the forward and derivative recurrences; None picks
        per backend as in :func:`lstm_jax.scan` (8 on GPU, 1 elsewhere).
      recurrent_mask: optional ``(..., H)`` multiplier on ``h_{t-1}`` in the recurrent product.
      checkpoint_every: keep only every ``k``-th carry in the forward pass and recompute one
        ``k``-step segment at a time when differentiating. Memory for reverse mode falls from
        ``O(T)`` stored steps to ``O(T/k + k)``, at the cost of a second forward pass;
        ``k ~ sqrt(T)`` minimises it. None (the default) stores every step.

    Returns:
      ``(carry, ys)``: the final ``LSTMState`` and the outputs ``(..., T, H)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import LSTMCell, lstm_scan, scan
      >>> cell = LSTMCell(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> loss = lambda p, f: jnp.sum(f(cell, p, xs)[1] ** 2)
      >>> g1, g2 = jax.grad(loss)(params, lstm_scan), jax.grad(loss)(params, scan)
      >>> bool(jnp.allclose(g1.w_h, g2.w_h, atol=1e-5))
      True
      >>> t1 = jax.jvp(lambda p: loss(p, lstm_scan), (params,), (g1,))[1]
      >>> t2 = jax.jvp(lambda p: loss(p, scan), (params,), (g1,))[1]
      >>> bool(jnp.allclose(t1, t2, rtol=1e-5))
      True
    """
    check_supported("lstm_scan", cell)
    return fast_scan(
        cell,
        params,
        xs,
        carry,
        lengths=lengths,
        reverse=reverse,
        time_major=time_major,
        unroll=unroll,
        recurrent_mask=recurrent_mask,
        checkpoint_every=checkpoint_every,
        where="lstm_scan",
    )


def check_supported(where, cell, recurrent_mask=None, batch=(), checkpoint_every=None) -> None:
    """Raises a ``TypeError`` unless ``cell`` is an :class:`LSTMCell`, and a ``ValueError``
    naming every option of it (and argument) that the hand-derived derivative lacks."""
    if type(cell) is not LSTMCell:
        p = Problems(where)
        p.type(
            f"`cell` must be an LSTMCell; got {type(cell).__name__}. Use `scan` (or "
            "`lstm_jax.sequence.fast.fast_scan` for a GRUCell or SimpleRNNCell) instead."
        )
        p.raise_if_any()
    check_fast(where, cell, recurrent_mask, batch, checkpoint_every)
