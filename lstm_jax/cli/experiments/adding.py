"""Reproducible experiments behind the article's claim, runnable from the command line.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; the variant of Le et al. 2015)
asks a recurrent net to read a length-``T`` sequence of (value, marker) pairs and output the
sum of the two marked values, one marked in each half. Predicting the mean, 1.0, scores an MSE
of 1/6 ~ 0.167; beating it requires carrying one value across ~T/2 steps. An LSTM or a GRU
learns it at lengths where a tanh RNN, whose gradients vanish with the lag, stays at the
baseline::

    python -m lstm_jax.experiments adding --T 200

trains a tanh RNN, a GRU and an LSTM (hidden size 32, Adam 1e-2 with gradient clipping at 1,
3000 steps of 64 fresh sequences) and prints their test MSE next to the baseline. Several seeds
(``--seeds 3``) train as one vmapped ensemble per cell and report mean and spread.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.data import adding_problem
from lstm_jax.layers.dense import Dense
from lstm_jax.sequence.scan import scan
from lstm_jax.training.ensemble import init_ensemble, train_ensemble

ADDING_BASELINE = 1.0 / 6.0  # MSE of always predicting 1, the mean of the target
CELLS = {"rnn": ("tanh RNN", SimpleRNNCell), "gru": ("GRU", GRUCell), "lstm": ("LSTM", LSTMCell)}


class AddingResult(NamedTuple):
    """One cell's runs on the adding problem (``N`` seeds)."""

    name: str  # e.g. "LSTM"
    test_mse: np.ndarray  # (N,) MSE on fresh test sequences, one per seed
    train_loss: np.ndarray  # (steps, N) training MSE at every step
    seconds: float  # wall-clock time of training (compilation included)
    params: Any = None  # the trained {"cell", "head"} params, leading axis N on every leaf


def adding_model(cell):
    """``(init_fn, loss_fn)`` of ``cell`` + ``Dense(1)`` on the last output, trained with MSE."""
    head = Dense(1)

    def init_fn(key):
        k_cell, k_head = jax.random.split(key)
        return {"cell": cell.init(k_cell, 2), "head": head.init(k_head, cell.output_size)}

    def loss_fn(params, batch):
        xs, ys = batch  # (B, T, 2), (B, 1)
        _, hs = scan(cell, params["cell"], xs)  # (B, T, H)
        pred = head.apply(params["head"], hs[:, -1])  # (B, 1)
        return jnp.mean(jnp.square(pred - ys))

    return init_fn, loss_fn


def adding_experiment(
    cells: Sequence[str] = ("rnn", "gru", "lstm"),
    *,
    T: int = 200,
    hidden: int = 32,
    steps: int = 3000,
    batch: int = 64,
    lr: float = 1e-2,
    seeds: int = 1,
    seed: int = 0,
    test_size: int = 1000,
) -> list[AddingResult]:
    """Trains each cell on the adding problem with ``seeds`` seeds; returns their results.

    Every cell sees the same init keys, training batches and test set. The seeds of one cell
    train together as a vmapped ensemble (:func:`lstm_jax.train_ensemble`).
    """
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise ValueError(
            f"`adding_experiment`: `cells` must be names from {sorted(CELLS)}; got {unknown}."
        )
    key = jax.random.key(seed)
    k_init, k_data, k_test = jax.random.split(key, 3)
    test = adding_problem(k_test, test_size, T)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    results = []
    for name in cells:
        label, cls = CELLS[name]
        init_fn, loss_fn = adding_model(cls(hidden))
        start = time.perf_counter()
        states = init_ensemble(init_fn, opt, jax.random.split(k_init, seeds))
        states, metrics = train_ensemble(
            loss_fn, opt, states, lambda k: adding_problem(k, batch, T), steps, k_data
        )
        test_mse = jax.vmap(loss_fn, in_axes=(0, None))(states.params, test)  # (N,)
        test_mse.block_until_ready()
        seconds = time.perf_counter() - start
        results.append(
            AddingResult(
                label, np.asarray(test_mse), np.asarray(metrics["loss"]), seconds, states.params
            )
        )
    return results


def format_table(results: Sequence[AddingResult], baseline: float = ADDING_BASELINE) -> str:
    """A plain-text table: test MSE (mean +- std over seeds), the baseline, their ratio."""
    lines = [f"{'model':<10} {'test MSE':>18} {'baseline':>9} {'MSE/base':>9} {'time':>8}"]
    for r in results:
        mean, std = float(np.mean(r.test_mse)), float(np.std(r.test_mse))
        mse = f"{mean:.4f}" if len(r.test_mse) == 1 else f"{mean:.4f} +- {std:.4f}"
        lines.append(
            f"{r.name:<10} {mse:>18} {baseline:>9.3f} {mean / baseline:>9.3f} {r.seconds:>7.1f}s"
        )
    return "\n".join(lines)


NAME = "adding"
HELP = "the adding problem (Le et al. 2015 variant): tanh RNN vs GRU vs LSTM"


def add_arguments(add: argparse.ArgumentParser) -> None:
    add.add_argument("--T", type=int, default=200, help="sequence length (default 200)")
    add.add_argument("--hidden", type=int, default=32)
    add.add_argument("--steps", type=int, default=3000)
    add.add_argument("--batch", type=int, default=64)
    add.add_argument("--lr", type=float, default=1e-2)
    add.add_argument("--seeds", type=int, default=1, help="runs per cell, trained as one ensemble")
    add.add_argument("--seed", type=int, default=0)
    add.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated: rnn, gru, lstm")


def run(args: argparse.Namespace) -> list[AddingResult]:
    cells = tuple(c.strip() for c in args.cells.split(","))
    print(
        f"Adding problem, T={args.T}: hidden {args.hidden}, {args.steps} steps of "
        f"{args.batch} sequences, Adam {args.lr:g}, {args.seeds} seed(s); test MSE on 1000 "
        "fresh sequences. Predicting 1 scores the baseline 1/6.",
        flush=True,
    )
    results = adding_experiment(
        cells,
        T=args.T,
        hidden=args.hidden,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seeds=args.seeds,
        seed=args.seed,
    )
    print(format_table(results))
    return results
