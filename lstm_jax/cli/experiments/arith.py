"""Experiments 4 and 5 of Hochreiter & Schmidhuber (1997): adding and multiplying two marked
values across a lag of at least ``T / 2`` steps.

The generators are :func:`lstm_jax.data.lag_adding_problem` (values in ``[-1, 1]``, target
``0.5 + (X1 + X2) / 4``) and :func:`lstm_jax.data.lag_multiplication_problem` (values in
``[0, 1]``, target ``X1 * X2``), of random length ``T .. T + T/10``. A test sequence is
processed wrongly when the absolute error at its end is 0.04 or more; the paper counts wrong
sequences out of 2560 test sequences, and so does this reproduction. Predicting the mean
target gets most sequences wrong (the ``constant`` column).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cli.experiments.paper import (
    Row,
    Timer,
    evaluate,
    gradient_flow,
    lstm_1997,
    tanh_rnn,
    train,
)
from lstm_jax.data.lags import lag_adding_problem, lag_multiplication_problem

TASKS = {
    "adding": (lag_adding_problem, "Adding problem (H&S 1997, exp. 4)"),
    "multiplication": (lag_multiplication_problem, "Multiplication problem (H&S 1997, exp. 5)"),
}
PAPER = {
    "adding": "T=100: 1/2560 test sequences wrong after 74,000 training sequences "
    "(T=500: 0/2560 after 209,000; T=1000: 1/2560 after 853,000); 2 blocks of 2 cells, "
    "93 weights, means of 10 trials",
    "multiplication": "T=100: 139/2560 wrong after 482,000 sequences, 14/2560 after "
    "1,273,000; 2 blocks of 2 cells, 93 weights, means of 10 trials",
}
TOLERANCE = 0.04  # the papers' criterion of a correctly processed sequence
N_TEST = 2560


def last_output(outputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """``(B, O)`` the output at step ``lengths - 1`` of ``outputs: (B, T, O)``."""
    return jnp.take_along_axis(outputs, (lengths - 1)[:, None, None], axis=1)[:, 0]


def arith_experiment(task: str, *, T, steps, batch, seeds, lr, key, hidden=(8, 16)):
    """Trains the 1997 LSTM and a tanh RNN on ``task``; returns ``(row, flows, wrong)``.

    ``wrong[name]`` is ``(N,)``: test sequences out of 2560 with absolute error >= 0.04.
    """
    generate, title = TASKS[task]

    def loss_of(outputs, b):
        return jnp.mean(jnp.square(last_output(outputs, b[1]) - b[2]))

    xs, lengths, ys = generate(jax.random.fold_in(key, 1), N_TEST, T)
    constant = int(np.sum(np.abs(np.asarray(ys) - float(jnp.mean(ys))) >= TOLERANCE))
    wrong, flows = {}, []
    with Timer() as timer:
        for name, cell in (("LSTM", lstm_1997(hidden[0])), ("tanh RNN", tanh_rnn(hidden[1]))):
            run = train(
                cell,
                2,
                1,
                loss_of,
                lambda k: generate(k, batch, T),
                steps=steps,
                seeds=seeds,
                lr=lr,
                key=key,
            )
            out = evaluate(run, xs)  # (N, 2560, Tmax, 1)
            pred = jax.vmap(last_output, in_axes=(0, None))(jnp.asarray(out), lengths)
            wrong[name] = np.sum(
                np.abs(np.asarray(pred) - np.asarray(ys)) >= TOLERANCE, axis=(1, 2)
            )
            # probe the flow on sequences of exactly T steps, so the lags line up
            flows.append(gradient_flow(f"{task} T={T}, {name}", run, xs[:8, :T]))
    measured = (
        f"T={T}: LSTM (1997 cell, {hidden[0]} units) {_runs(wrong['LSTM'])} wrong; "
        f"tanh RNN ({hidden[1]} units) {_runs(wrong['tanh RNN'])}; "
        f"constant prediction {constant}/{N_TEST}"
    )
    good = wrong["LSTM"] < 0.5 * constant
    row = Row(
        title,
        PAPER[task],
        measured,
        seeds,
        f"{steps} x {batch}",
        timer.seconds,
        bool(good.mean() >= 0.5),
        bool((wrong["tanh RNN"] >= 0.5 * constant).all()),
    )
    return row, flows, wrong


def _runs(wrong: np.ndarray) -> str:
    return ", ".join(f"{int(w)}/{N_TEST}" for w in wrong)


__all__ = ["N_TEST", "PAPER", "TASKS", "TOLERANCE", "arith_experiment", "last_output"]
