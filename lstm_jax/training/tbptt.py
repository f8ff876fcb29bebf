"""Truncated backpropagation through time (TBPTT) for long streams, with carried state.

A stream is a pytree of arrays shaped ``(B, N, ...)``: ``B`` parallel rows of ``N`` steps
(e.g. a text cut into ``B`` rows). Training walks the stream in chunks of ``K`` steps. The
carry at the end of chunk ``k`` starts chunk ``k + 1`` ("stateful" training), with the
gradient stopped at the chunk boundary, so memory is ``O(K)`` while the forward pass sees the
whole history: running the chunks one after another gives exactly the outputs of one scan
over all ``N`` steps. A row's carry is reset to zeros where a new sequence starts; sequence
starts must fall on chunk boundaries (pad sequences to a multiple of ``K``).

References:
  Williams & Peng, "An Efficient Gradient-Based Algorithm for On-Line Training of Recurrent
  Network Trajectories", Neural Computation 1990.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.core.validate import check_int, check_key
from lstm_jax.training.callbacks import CallbackList, TrainInfo, check_callbacks
from lstm_jax.training.checks import (
    check_loss,
    check_loss_fn,
    check_trainable,
    first_bad_step,
    raise_if_bad,
)
from lstm_jax.training.fit import FitResult, optimizer_with_clipping
from lstm_jax.training.place import place
from lstm_jax.training.step import TrainState, init_train_state


def reset_carry(carry: Any, reset: jax.Array) -> Any:
    """Zeros the carry of every row ``b`` with ``reset[b]``; ``reset`` is ``(B,)`` bool and
    every carry leaf is ``(B, ...)``."""

    _check_reset(carry, reset)

    def one(c):
        r = reset.reshape(reset.shape + (1,) * (c.ndim - 1))  # (B, 1, ..., 1)
        return jnp.where(r, jnp.zeros_like(c), c)

    return jax.tree.map(one, carry)


def _check_reset(carry: Any, reset: Any) -> None:
    """``reset`` must be ``(B,)`` bool, ``B`` the leading axis of every carry leaf."""
    if not hasattr(reset, "dtype") or reset.dtype != bool:
        got = getattr(reset, "dtype", type(reset).__name__)
        raise TypeError(f"`reset_carry`: `reset` must be a (B,) bool array; got {got}.")
    sizes = sorted({np.shape(c)[0] if np.ndim(c) else -1 for c in jax.tree.leaves(carry)})
    if len(sizes) > 1 or sizes == [-1] or reset.ndim != 1 or sizes[:1] not in ([], [len(reset)]):
        B = sizes[0] if len(sizes) == 1 else "?"
        raise ValueError(
            f"`reset_carry`: `reset` must be a (B,) bool array with B = {B} (the carry's "
            f"leading axis); got shape {reset.shape} for carry leaves of leading sizes {sizes} "
            "(-1: a scalar leaf)."
        )


def make_tbptt_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array | None = None,
):
    """Builds ``step(state, carry, chunk, reset) -> (state, carry, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, carry, chunk) -> (loss, carry)``: the loss of one chunk and
        the carry at its end. With ``key``, ``loss_fn(params, carry, chunk, key)`` with
        ``jax.random.fold_in(key, state.step)`` (dropout), as in :func:`make_train_step`.
      optimizer: any optax transformation.
      key: optional PRNG key for stochastic losses.

    Returns:
      A pure function. ``reset`` (``(B,)`` bool) zeros those rows' carry before the chunk; the
      returned carry has its gradient stopped (the truncation).
    """

    if key is not None:
        key = check_key("make_tbptt_step", "key", key)
    call = "loss_fn(params, carry, chunk)" if key is None else "loss_fn(params, carry, chunk, key)"
    check_loss_fn("make_tbptt_step", loss_fn, call)

    def objective(params, carry, chunk, step):
        if key is None:
            out = loss_fn(params, carry, chunk)
        else:
            out = loss_fn(params, carry, chunk, jax.random.fold_in(key, step))
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(
                "`make_tbptt_step`: `loss_fn(params, carry, chunk)` must return `(loss, carry)`; "
                f"got {type(out).__name__}."
            )
        loss, new_carry = out
        check_loss("make_tbptt_step", loss)
        return loss, new_carry

    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "`make_tbptt_step`: `optimizer` must be an optax.GradientTransformation; got "
            f"{type(optimizer).__name__}."
        )

    def step(state: TrainState, carry: Any, chunk: Any, reset: jax.Array):
        check_trainable("make_tbptt_step", state.params)
        carry = reset_carry(carry, reset)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (loss, new_carry), grads = grad_fn(state.params, carry, chunk, state.step)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        new_state = TrainState(params, opt_state, state.step + 1)
        return new_state, jax.lax.stop_gradient(new_carry), metrics

    return step


def stream_chunks(stream: Any, chunk_length: int, starts: Any = None):
    """Cuts a ``(B, N, ...)`` stream into chunks of ``chunk_length`` steps along axis 1.

    Args:
      stream: pytree of ``(B, N, ...)`` arrays.
      chunk_length: ``K``; a last, shorter chunk holds the remainder.
      starts: optional ``(B, N)`` bool, True where a new sequence starts in that row. Every
        True must sit at a chunk start.

    Returns:
      A list of ``(chunk, reset)`` pairs; ``reset`` is ``(B,)`` bool, all True for the first
      chunk.

    Raises:
      ValueError: when a leaf is not ``(B, N, ...)`` with ``N >= 1`` (every leaf the same ``B``
        and ``N``), ``chunk_length`` is not an int >= 1, or ``starts`` does not fit.
    """
    B, N = _check_stream("stream_chunks", stream)
    chunk_length = check_int("stream_chunks", "chunk_length", chunk_length)
    if starts is not None:
        starts = np.asarray(starts)
        off = starts.astype(bool) if starts.shape == (B, N) else None
        if off is not None:
            off = off.copy()
            off[:, ::chunk_length] = False
        if starts.dtype != bool or off is None or off.any():
            raise ValueError(
                f"`stream_chunks`: `starts` must be a ({B}, {N}) bool array whose True entries "
                f"sit at multiples of chunk_length={chunk_length}; pad each sequence to a "
                f"multiple of chunk_length. Got shape {starts.shape}, dtype {starts.dtype}."
            )
    out = []
    for s in range(0, N, chunk_length):
        chunk = jax.tree.map(lambda a, s=s: a[:, s : s + chunk_length], stream)
        reset = np.ones((B,), bool) if s == 0 else np.zeros((B,), bool)
        if starts is not None and s > 0:
            reset = starts[:, s]
        out.append((chunk, reset))
    return out


def fit_tbptt(
    loss_fn: Callable[..., Any],
    params: Any,
    stream: Any,
    carry: Any,
    *,
    chunk_length: int,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 1,
    starts: Any = None,
    clip_norm: float | None = None,
    key: jax.Array | None = None,
    callbacks: Any = (),
) -> FitResult:
    """Stateful training over a long stream with truncated BPTT.

    Each epoch walks the chunks of :func:`stream_chunks` in order, carrying ``carry`` (the
    zero carry for ``B`` rows, e.g. ``layer.initial_carry((B,))``) from chunk to chunk and
    resetting it at the epoch's start and at sequence ``starts``.

    Args:
      loss_fn: ``loss_fn(params, carry, chunk) -> (loss, carry)`` (see
        :func:`make_tbptt_step`).
      params: initial params pytree (floating leaves).
      stream: pytree of ``(B, N, ...)`` arrays.
      carry: the carry of ``B`` rows that starts every epoch.
      chunk_length: ``K``, steps per chunk (an int >= 1).
      optimizer: any optax transformation (default ``optax.adam(1e-3)``).
      epochs: passes over the stream.
      starts: optional ``(B, N)`` bool sequence starts (see :func:`stream_chunks`).
      clip_norm: clip gradients to this global L2 norm (> 0).
      key: PRNG key for stochastic losses (see :func:`make_tbptt_step`).
      callbacks: :class:`lstm_jax.Callback` objects; a step is one chunk.

    Returns:
      A :class:`FitResult`; ``history`` holds the mean chunk loss of every epoch.

    Raises:
      FloatingPointError: when a chunk's loss is NaN or inf (naming the step).
    """
    epochs = check_int("fit_tbptt", "epochs", epochs)
    hooks = CallbackList(check_callbacks("fit_tbptt", callbacks))
    optimizer = optimizer_with_clipping("fit_tbptt", optimizer, clip_norm)
    check_trainable("fit_tbptt", params)
    chunks = stream_chunks(jax.tree.map(np.asarray, stream), chunk_length, starts)
    step = jax.jit(make_tbptt_step(loss_fn, optimizer, key=key), donate_argnums=(0, 1))
    state = place(init_train_state(jax.tree.map(jnp.array, params), optimizer), "state")
    history: dict[str, list] = {"epoch": [], "step": [], "loss": [], "time_s": []}
    t0, n, bad = time.perf_counter(), 0, jnp.zeros((), jnp.int32)
    hooks.train_begin(TrainInfo(epochs, len(chunks), epochs * len(chunks), 0, history, False))
    stopped = False
    try:
        for epoch in range(1, epochs + 1):
            c, total = jax.tree.map(jnp.array, carry), jnp.zeros((), jnp.float32)
            done = 0  # chunks of this epoch (fewer when a callback stops it)
            for chunk, reset in chunks:
                state, c, metrics = step(state, c, place(chunk, "batch"), reset)
                n, done = n + 1, done + 1
                loss = metrics["loss"].astype(jnp.float32)
                total, bad = total + loss, first_bad_step(bad, loss, jnp.int32(n))
                if hooks.per_step and hooks.step_end(n, metrics):
                    stopped = True
                    break
            raise_if_bad("fit_tbptt", bad, None, None)
            row = (epoch, n, float(total) / done, time.perf_counter() - t0)
            for k, v in zip(("epoch", "step", "loss", "time_s"), row, strict=True):
                history[k].append(v)
            if stopped or hooks.epoch_end(epoch, {k: v[-1] for k, v in history.items()}):
                stopped = True
                break
    finally:
        hooks.train_end(history)
    return FitResult(state, state.params, history, None, stopped)


def _check_stream(where: str, stream: Any) -> tuple[int, int]:
    """``(B, N)`` of a stream whose every leaf is ``(B, N, ...)``; a clear error otherwise."""
    leaves = jax.tree.leaves(stream)
    shapes = [tuple(np.shape(a)) for a in leaves]
    if not leaves or any(len(s) < 2 for s in shapes) or len({s[:2] for s in shapes}) != 1:
        raise ValueError(
            f"`{where}`: `stream` must be a pytree of arrays shaped (B, N, ...) (B rows of N "
            f"steps, the same B and N in every array); got shapes {shapes}. A single sequence "
            "of N steps is one row: `x[None]`."
        )
    B, N = shapes[0][:2]
    if B == 0 or N == 0:
        raise ValueError(f"`{where}`: `stream` is empty; got shapes {shapes}.")
    return B, N
