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

from lstm_jax.training.fit import FitResult
from lstm_jax.training.place import place
from lstm_jax.training.progress import progress_bar
from lstm_jax.training.step import TrainState, _check_loss, init_train_state


def reset_carry(carry: Any, reset: jax.Array) -> Any:
    """Zeros the carry of every row ``b`` with ``reset[b]``; ``reset`` is ``(B,)`` bool and
    every carry leaf is ``(B, ...)``."""

    def one(c):
        r = reset.reshape(reset.shape + (1,) * (c.ndim - 1))  # (B, 1, ..., 1)
        return jnp.where(r, jnp.zeros_like(c), c)

    return jax.tree.map(one, carry)


def make_tbptt_step(loss_fn: Callable[..., Any], optimizer: optax.GradientTransformation):
    """Builds ``step(state, carry, chunk, reset) -> (state, carry, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, carry, chunk) -> (loss, carry)``: the loss of one chunk and
        the carry at its end.
      optimizer: any optax transformation.

    Returns:
      A pure function. ``reset`` (``(B,)`` bool) zeros those rows' carry before the chunk; the
      returned carry has its gradient stopped (the truncation).
    """

    def objective(params, carry, chunk):
        loss, new_carry = loss_fn(params, carry, chunk)
        _check_loss(loss)
        return loss, new_carry

    def step(state: TrainState, carry: Any, chunk: Any, reset: jax.Array):
        carry = reset_carry(carry, reset)
        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (loss, new_carry), grads = grad_fn(state.params, carry, chunk)
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
    """
    leaves = jax.tree.leaves(stream)
    B, N = np.shape(leaves[0])[:2]
    if starts is not None:
        starts = np.asarray(starts, bool)
        off = starts.copy()
        off[:, ::chunk_length] = False
        if starts.shape != (B, N) or off.any():
            raise ValueError(
                f"`stream_chunks`: `starts` must be a ({B}, {N}) bool array whose True entries "
                f"sit at multiples of chunk_length={chunk_length}; pad each sequence to a "
                "multiple of chunk_length."
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
    progress: bool = False,
) -> FitResult:
    """Stateful training over a long stream with truncated BPTT.

    Each epoch walks the chunks of :func:`stream_chunks` in order, carrying ``carry`` (the
    zero carry for ``B`` rows, e.g. ``layer.initial_carry((B,))``) from chunk to chunk and
    resetting it at the epoch's start and at sequence ``starts``.

    Returns:
      A :class:`FitResult`; ``history`` holds the mean chunk loss of every epoch.
    """
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    step = jax.jit(make_tbptt_step(loss_fn, optimizer), donate_argnums=(0, 1))
    state = place(init_train_state(jax.tree.map(jnp.array, params), optimizer), "state")
    chunks = stream_chunks(jax.tree.map(np.asarray, stream), chunk_length, starts)
    history: dict[str, list] = {"epoch": [], "step": [], "loss": [], "time_s": []}
    t0 = time.perf_counter()
    with progress_bar(progress, total=epochs * len(chunks), unit="chunk", leave=False) as bar:
        for epoch in range(1, epochs + 1):
            c, total = jax.tree.map(jnp.array, carry), jnp.zeros((), jnp.float32)
            for chunk, reset in chunks:
                state, c, metrics = step(state, c, place(chunk, "batch"), reset)
                total = total + metrics["loss"]
                bar.update(1)
            row = (epoch, int(state.step), float(total) / len(chunks), time.perf_counter() - t0)
            for k, v in zip(("epoch", "step", "loss", "time_s"), row, strict=True):
                history[k].append(v)
            bar.set_postfix(epoch=epoch, loss=f"{history['loss'][-1]:.4g}")
    return FitResult(state, state.params, history, None, False)
