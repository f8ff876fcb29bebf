"""Gers, Schmidhuber & Cummins (2000): the continual embedded Reber grammar.

One unsegmented stream of embedded Reber strings (:func:`lstm_jax.data.continual_reber`) with
no resets: neither the data nor the network's state is ever reset, in training or in testing.
Training walks ``batch`` parallel streams in chunks of ``chunk`` symbols by truncated BPTT,
each chunk starting from the carry where the last one ended, and draws each chunk of a stream
from where that stream's automaton stopped. A trained run is tested on a fresh stream: it
succeeds when it predicts every symbol of it by H&S 1997's criterion (the possible next
symbols are the most active outputs). The paper compares the LSTM with forget gates to the
1997 cell without them, whose cell state grows without bound on such a stream.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cli.experiments.paper import (
    Flow,
    Row,
    Timer,
    masked_sigmoid_xent,
    member,
    optimizer,
    predicts_all_possible,
    sequence_model,
)
from lstm_jax.data.reber import REBER_SYMBOLS, continual_reber
from lstm_jax.diagnostics import input_gradient_flow
from lstm_jax.layers.dense import Dense
from lstm_jax.sequence.scan import scan
from lstm_jax.training.ensemble import init_ensemble

PAPER = (
    "of 100 networks (solved: 10 streams of 100,000 symbols without an error), the 1997 "
    "LSTM solves 0% without resets (74% with external resets); with forget gates 18% (62% "
    "with a decaying learning rate); the 1997 cell's state tends to grow linearly, the "
    "forget-gate cells learn to reset themselves"
)
WARM_UP = 200  # test symbols drawn beyond `length`: enough for the first string to end
CELLS = {
    "LSTM, forget gate": lambda h: LSTMCell(h),
    "LSTM 1997 (no forget gate)": lambda h: LSTMCell(h, forget_gate=False),
}


def train_continual(cell, *, steps, batch, chunk, seeds, lr, key):
    """Trains ``seeds`` runs by truncated BPTT on never-reset streams; returns the params."""
    init_fn, _ = sequence_model(cell, 7, 7)
    opt = optimizer(lr, steps)
    states = init_ensemble(init_fn, opt, jax.random.split(jax.random.fold_in(key, 0), seeds))
    carry = cell.initial_carry((seeds, batch))
    where = jnp.zeros((seeds, batch), jnp.int32)  # every stream's automaton state
    states = _train(cell, opt, steps, chunk, states, carry, where, jax.random.fold_in(key, 1))
    return states.params


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _train(cell, opt, steps, chunk, states, carry, where, key):
    def loss_fn(params, carry, xs, targets):
        carry, hs = scan(cell, params["cell"], xs, carry)  # (B, K, H)
        logits = _head(params, hs)
        return masked_sigmoid_xent(logits, targets, jnp.ones(xs.shape[:2])), carry

    def one(state, carry, where, key):  # one run, one chunk of every stream
        keys = jax.random.split(key, where.shape[0])
        xs, targets, where = jax.vmap(continual_reber, in_axes=(0, None, 0))(keys, chunk, where)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, carry), grads = grad_fn(state.params, carry, xs, targets)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = jax.tree.map(jnp.add, state.params, updates)
        state = state._replace(params=params, opt_state=opt_state, step=state.step + 1)
        return state, jax.lax.stop_gradient(carry), where

    def body(c, s):
        states, carry, where = c
        keys = jax.random.split(jax.random.fold_in(key, s), where.shape[0])
        return jax.vmap(one)(states, carry, where, keys), None

    (states, _, _), _ = jax.lax.scan(body, (states, carry, where), jnp.arange(steps))
    return states


def _head(params, hs):  # (..., H) -> (..., 7)
    return Dense(7).apply(params["head"], hs)


def run_test_stream(cell, params, length: int, key):
    """Runs every trained run on one fresh stream from a zero carry, never reset.

    A zero carry cannot tell the stream's first ``B`` (outer) from the next (inner), so the
    first string only warms the run up: scoring starts after its final ``E``.

    Returns:
      ``(correct, c_norm)``: ``(N, length)`` bool per symbol and ``(N, length)`` mean ``|C_t|``.
    """
    xs, targets, _ = continual_reber(key, length + WARM_UP)
    logits, cs = _run(cell, params, xs)
    correct = predicts_all_possible(np.asarray(logits), np.asarray(targets)[None])
    start = first_string_end(np.asarray(xs)) + 1
    return correct[:, start : start + length], np.asarray(cs)[:, start : start + length]


def first_string_end(xs: np.ndarray) -> int:
    """Index of the first string's final ``E`` (its second ``E``) in one-hot ``xs: (L, 7)``."""
    return int(np.flatnonzero(xs[:, REBER_SYMBOLS.index("E")] > 0)[1])


@functools.partial(jax.jit, static_argnums=0)
def _run(cell, params, xs):
    def one(p):
        def step(carry, x):
            carry, h = cell(p["cell"], carry, x)
            return carry, (h, jnp.mean(jnp.abs(carry.c)))

        _, (hs, c) = jax.lax.scan(step, cell.initial_carry(), xs)
        return _head(p, hs), c

    return jax.vmap(one)(params)


def symbols_before_error(correct: np.ndarray) -> np.ndarray:
    """``(N,)`` how many symbols each run predicted before its first error (all if none)."""
    first = np.argmin(correct, axis=-1)
    return np.where(correct.all(-1), correct.shape[-1], first)


def continual_experiment(*, steps, batch, chunk, seeds, lr, key, test_length, hidden=8):
    """Trains both cells on the stream; returns ``(row, flows, results)``."""
    results, flows = {}, []
    marks = [t for t in (100, 1000, 10_000, 100_000) if t <= test_length]
    with Timer() as timer:
        for name, make in CELLS.items():
            cell = make(hidden)
            params = train_continual(
                cell, steps=steps, batch=batch, chunk=chunk, seeds=seeds, lr=lr, key=key
            )
            correct, c = run_test_stream(cell, params, test_length, jax.random.fold_in(key, 2))
            before = symbols_before_error(correct)
            results[name] = (before, c[:, [t - 1 for t in marks]])  # (N,), (N, len(marks))
            xs, _, _ = continual_reber(jax.random.fold_in(key, 3), 200)
            flow = input_gradient_flow(cell, member(params, 0)["cell"], xs[None])
            flows.append(Flow(f"continual Reber, {name}", np.asarray(flow.lag), flow.norm[0]))
    parts = []
    for name, (before, c) in results.items():
        solved = int(np.sum(before == test_length))
        states = ", ".join(f"{np.mean(c[:, j]):.2g}" for j in range(len(marks)))
        parts.append(
            f"{name}: {solved}/{seeds} runs predict all {test_length:,} test symbols "
            f"(median {int(np.median(before)):,} before the first error); mean abs(C_t) at "
            f"t={'/'.join(f'{t:,}' for t in marks)}: {states}"
        )
    fg, old = results["LSTM, forget gate"], results["LSTM 1997 (no forget gate)"]
    row = Row(
        "Continual embedded Reber grammar (Gers et al. 2000)",
        PAPER,
        "; ".join(parts),
        seeds,
        f"{steps} x {batch} streams x {chunk} symbols",
        timer.seconds,
        bool(np.mean(fg[0] == test_length) >= 0.5 and np.max(fg[1]) < 100),
        bool(np.all(old[0] < test_length) and np.mean(old[1][:, -1]) > 10 * np.mean(fg[1][:, -1])),
    )
    return row, flows, results


__all__ = ["CELLS", "PAPER", "continual_experiment", "symbols_before_error", "train_continual"]
