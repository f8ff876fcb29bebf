"""Experiment 2 of Hochreiter & Schmidhuber (1997): noise-free and noisy long time lags.

The sequences ``(x, a_1, ..., a_{p-1}, x)`` and ``(y, a_1, ..., a_{p-1}, y)`` over ``p + 1``
one-hot symbols (2a); in 2b the middle is drawn at random for every sequence, so only the
first symbol predicts the last. The model reads the first ``p`` symbols and predicts the last
(softmax over the ``p + 1`` symbols); the paper predicts every next symbol, but only the last
prediction needs the lag. A run solves lag ``p`` when it predicts the last symbol of every
test sequence (the two sequences of 2a; 1000 fresh ones of 2b).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.cli.experiments.paper import (
    Row,
    Timer,
    evaluate,
    gradient_flow,
    lstm_1997,
    tanh_rnn,
    train,
)
from lstm_jax.data.lags import two_sequence_lag

PAPER = {
    False: "p=100: LSTM 100% of 18 trials after 5,040 sequences; BPTT and RTRL 0% after "
    "> 5,000,000 (RTRL already fails at p=10)",
    True: "p=100, random middle (the paper's 'no local regularities'): LSTM 100% of 18 trials "
    "after 5,680 sequences",
}


def lag_experiment(
    ps: Sequence[int], *, noisy: bool, steps, batch, seeds, lr, key, hidden=(8, 16), test=1000
):
    """For each lag ``p``, trains the 1997 LSTM and a tanh RNN; returns ``(row, flows, solved)``.

    ``solved[name]`` is ``(len(ps), N)`` bool.
    """

    def loss_of(logits, b):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits[:, -1], b[1]))

    solved = {"LSTM": [], "tanh RNN": []}
    flows = []
    with Timer() as timer:
        for p in ps:
            xs_test, labels = two_sequence_lag(jax.random.fold_in(key, p), test, p, noisy=noisy)
            for name, cell in (("LSTM", lstm_1997(hidden[0])), ("tanh RNN", tanh_rnn(hidden[1]))):
                run = train(
                    cell,
                    p + 1,
                    p + 1,
                    loss_of,
                    lambda k, p=p: two_sequence_lag(k, batch, p, noisy=noisy),
                    steps=steps,
                    seeds=seeds,
                    lr=lr,
                    key=key,
                )
                pred = evaluate(run, xs_test)[:, :, -1].argmax(-1)  # (N, test)
                solved[name].append((pred == np.asarray(labels)).all(-1))
                if p == max(ps):
                    label = f"lag 2{'b' if noisy else 'a'} p={p}, {name}"
                    flows.append(gradient_flow(label, run, xs_test[:8]))
    solved = {k: np.stack(v) for k, v in solved.items()}
    kind, exp = ("Noisy", "2b") if noisy else ("Noise-free", "2a")
    row = Row(
        f"{kind} long time lag (H&S 1997, exp. {exp})",
        PAPER[noisy],
        "; ".join(f"{name}: {_solved(ps, s, seeds)}" for name, s in solved.items()),
        seeds,
        f"{steps} x {batch}",
        timer.seconds,
        bool(solved["LSTM"][-1].mean() >= 0.5),
        bool(solved["tanh RNN"][-1].sum() == 0),
    )
    return row, flows, solved


def longest_solved(ps: Sequence[int], solved: np.ndarray) -> int | None:
    """The longest lag solved by a majority of runs, with every shorter one solved too."""
    best = None
    for p, s in zip(ps, solved, strict=True):
        if s.mean() <= 0.5:
            break
        best = p
    return best


def _solved(ps, solved, seeds) -> str:
    runs = ", ".join(f"p={p} {int(s.sum())}/{seeds}" for p, s in zip(ps, solved, strict=True))
    best = longest_solved(ps, solved)
    return f"solves up to p={best} ({runs})" if best else f"solves none ({runs})"


__all__ = ["PAPER", "lag_experiment", "longest_solved"]
