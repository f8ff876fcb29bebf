"""What the paper reproductions share: a model, seeds trained as one ensemble, a table row.

Every reproduction trains ``cell`` + a ``Dense`` head with Adam (learning rate decayed linearly
to 0, gradient clipping at 1) by
full backpropagation through time, ``seeds`` runs as one vmapped ensemble
(:func:`lstm_jax.train_ensemble`), where the papers trained online with plain gradient
descent and, for LSTM, a gradient truncated at the cell (Hochreiter & Schmidhuber 1997).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.diagnostics import input_gradient_flow
from lstm_jax.layers.dense import Dense
from lstm_jax.sequence.scan import scan
from lstm_jax.training.ensemble import init_ensemble, train_ensemble


class Row(NamedTuple):
    """One line of the reproductions' table."""

    task: str  # e.g. "Embedded Reber grammar (H&S 1997, exp. 1)"
    paper: str  # what the paper reports
    measured: str  # what this run measured
    seeds: int  # runs per model
    steps: str  # optimiser steps x batch per run, e.g. "2000 x 16"
    seconds: float  # wall time of the task, compilation included
    lstm_as_paper: bool  # the LSTM does what the paper reports (e.g. most runs solve it)
    baseline_as_paper: bool  # and so does the baseline it is compared with (e.g. it fails)

    @property
    def same_outcome(self) -> str:
        if self.lstm_as_paper and self.baseline_as_paper:
            return "yes"
        if self.lstm_as_paper:
            return "LSTM yes, baseline **no**"
        return "**no**" if not self.baseline_as_paper else "LSTM **no**, baseline yes"


class Flow(NamedTuple):
    """Mean ``||dy_T / dx_{T-k}||`` by lag ``k`` of one trained model (seed 0)."""

    label: str  # e.g. "adding T=100, LSTM (1997)"
    lag: np.ndarray  # (T,)
    norm: np.ndarray  # (T,) mean over the probe sequences


class Trained(NamedTuple):
    """The ``N`` runs of one model on one task."""

    cell: Any
    params: Any  # {"cell", "head"}, leading axis N on every leaf
    loss: np.ndarray  # (steps, N) training loss
    outputs: Callable  # outputs(params_of_one_run, xs (B, T, I)) -> (B, T, O)


INPUT_GATE_BIAS = -2.0  # the 1997 cell's input gates start mostly closed


def lstm_1997(hidden: int) -> LSTMCell:
    """The cell of Hochreiter & Schmidhuber (1997): input and output gates, no forget gate.

    :func:`sequence_model` starts its input-gate biases at ``INPUT_GATE_BIAS``, as the paper
    starts its gate biases negative: with the gates half open, a state that never decays
    sums up every input and saturates ``tanh(C_t)`` within a few dozen steps.
    """
    return LSTMCell(hidden, forget_gate=False)


def _init_cell(cell, key, n_in):
    params = cell.init(key, n_in)
    if isinstance(cell, LSTMCell) and not cell.forget_gate:  # gate blocks i, g, o
        params = params._replace(b=params.b.at[: cell.hidden_size].set(INPUT_GATE_BIAS))
    return params


def tanh_rnn(hidden: int) -> SimpleRNNCell:
    return SimpleRNNCell(hidden)


def optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    """Adam, its learning rate decayed linearly from ``lr`` to 0 over ``steps``, clipped at 1.

    The decay plays the part of Gers et al.'s (2000) decaying learning rate: without it, the
    last updates' noise leaves rare errors on long test streams.
    """
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(optax.linear_schedule(lr, 0.0, steps))
    )


def sequence_model(cell, n_in: int, n_out: int):
    """``(init_fn, outputs)`` of ``cell`` followed by ``Dense(n_out)`` at every step."""
    head = Dense(n_out)

    def init_fn(key):
        k_cell, k_head = jax.random.split(key)
        return {"cell": _init_cell(cell, k_cell, n_in), "head": head.init(k_head, cell.output_size)}

    def outputs(params, xs):  # (B, T, I) -> (B, T, O)
        _, hs = scan(cell, params["cell"], xs)
        return head.apply(params["head"], hs)

    return init_fn, outputs


def train(cell, n_in, n_out, loss_of, batch_fn, *, steps, seeds, lr, key) -> Trained:
    """Trains ``seeds`` runs of ``cell`` + head; ``loss_of(outputs, batch)`` scores a batch.

    ``batch_fn(key)`` draws one batch whose first element is the inputs ``(B, T, n_in)``.
    """
    init_fn, outputs = sequence_model(cell, n_in, n_out)

    def loss_fn(params, batch):
        return loss_of(outputs(params, batch[0]), batch)

    opt = optimizer(lr, steps)
    k_init, k_data = jax.random.split(key)
    states = init_ensemble(init_fn, opt, jax.random.split(k_init, seeds))
    states, metrics = train_ensemble(loss_fn, opt, states, batch_fn, steps, k_data)
    return Trained(cell, states.params, np.asarray(metrics["loss"]), outputs)


def evaluate(trained: Trained, xs: jax.Array) -> np.ndarray:
    """``(N, B, T, O)`` outputs of every run on the same inputs ``xs``."""
    return np.asarray(jax.jit(jax.vmap(trained.outputs, in_axes=(0, None)))(trained.params, xs))


def member(tree: Any, n: int) -> Any:
    """Run ``n`` of an ensemble pytree."""
    return jax.tree.map(lambda a: a[n], tree)


def gradient_flow(label: str, trained: Trained, xs: jax.Array) -> Flow:
    """The input-gradient flow of run 0's cell on probe sequences ``xs: (B, T, I)``."""
    flow = input_gradient_flow(trained.cell, member(trained.params, 0)["cell"], xs)
    return Flow(label, np.asarray(flow.lag), np.asarray(jnp.mean(flow.norm, axis=0)))


def predicts_all_possible(logits: np.ndarray, possible: np.ndarray) -> np.ndarray:
    """H&S 1997's criterion: the units of the possible next symbols are the most active ones.

    Args:
      logits: ``(..., S)`` outputs; possible: ``(..., S)`` multi-hot targets.

    Returns:
      ``(...)`` bool: the smallest output over possible symbols beats the largest over the rest.
    """
    on = np.where(possible > 0, logits, np.inf).min(axis=-1)
    off = np.where(possible > 0, -np.inf, logits).max(axis=-1)
    return on > off


def masked_sigmoid_xent(logits, targets, mask):
    """Mean binary cross-entropy over the real steps: ``(B, T, S)``, ``(B, T, S)``, ``(B, T)``."""
    xent = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)  # (B, T)
    return jnp.sum(xent * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def fraction(k: int, n: int) -> str:
    return f"{k}/{n}"
