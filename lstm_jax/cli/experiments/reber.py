"""Experiment 1 of Hochreiter & Schmidhuber (1997): the embedded Reber grammar.

The model reads an embedded Reber string one symbol at a time and predicts, at every step,
the set of symbols that may come next (sigmoid outputs, one per symbol). A run succeeds, as in
the paper, when on every string of the training and the test set the output units of the
possible next symbols are always the most active ones; the hard step is the one after the
inner string's ``E``, where only the second symbol of the string, seen up to ~30 steps
earlier, tells ``T`` from ``P``. The paper trains on 256 strings and tests on 256 others.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cli.experiments.paper import (
    Flow,
    Row,
    Timer,
    evaluate,
    gradient_flow,
    lstm_1997,
    masked_sigmoid_xent,
    predicts_all_possible,
    tanh_rnn,
    train,
)
from lstm_jax.data.reber import REBER_SYMBOLS, embedded_reber_strings, encode_reber

PAPER = (
    "LSTM (3-4 memory blocks, 264-276 weights): 97-100% of 30 trials per setting succeed "
    "(2 failures in 150) after 8,440-39,740 training strings; Elman net (15 units): 0% after "
    "> 200,000; RTRL: 'some fraction' after 25,000-173,000; RCC: 50% after 182,000"
)


def string_success(logits: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(..., n)`` bool: every real step of each string meets the paper's criterion."""
    ok = predicts_all_possible(logits, targets) | (mask == 0)  # (..., n, T)
    return ok.all(axis=-1)


def reber_experiment(*, steps, batch, seeds, lr, key, n_strings=256, hidden=(8, 16)):
    """Trains the 1997 LSTM and a tanh RNN; returns ``(row, flows, results)``."""
    train_set = encode_reber(embedded_reber_strings(0, n_strings))
    test_set = encode_reber(embedded_reber_strings(1, n_strings))
    xs, targets, mask = (jnp.asarray(a) for a in train_set)

    def batch_fn(k):
        idx = jax.random.randint(k, (batch,), 0, n_strings)
        return xs[idx], targets[idx], mask[idx]

    def loss_of(logits, b):
        return masked_sigmoid_xent(logits, b[1], b[2])

    results, flows = {}, []
    with Timer() as timer:
        for name, cell in (("LSTM", lstm_1997(hidden[0])), ("tanh RNN", tanh_rnn(hidden[1]))):
            run = train(cell, 7, 7, loss_of, batch_fn, steps=steps, seeds=seeds, lr=lr, key=key)
            ok = [string_success(evaluate(run, d[0]), d[1], d[2]) for d in (train_set, test_set)]
            results[name] = (np.concatenate(ok, axis=-1).all(-1), ok[1].mean(-1))  # (N,), (N,)
            flows.append(gradient_flow(f"Reber, {name}", run, jnp.asarray(test_set[0][:8])))
    (lstm_ok, lstm_test), (rnn_ok, rnn_test) = results["LSTM"], results["tanh RNN"]
    measured = (
        f"LSTM (1997 cell, {hidden[0]} units): {lstm_ok.sum()}/{seeds} runs succeed "
        f"(test strings right: {_pct(lstm_test)}); tanh RNN ({hidden[1]} units): "
        f"{rnn_ok.sum()}/{seeds} ({_pct(rnn_test)})"
    )
    row = Row(
        "Embedded Reber grammar (H&S 1997, exp. 1)",
        PAPER,
        measured,
        seeds,
        f"{steps} x {batch}",
        timer.seconds,
        bool(lstm_ok.mean() >= 0.5),
        bool(rnn_ok.sum() == 0),
    )
    return row, flows, results


def _pct(values: np.ndarray) -> str:
    return "/".join(f"{100 * v:.0f}%" for v in values)


__all__ = ["PAPER", "REBER_SYMBOLS", "Flow", "reber_experiment", "string_success"]
