"""The adding problem at a small budget: the LSTM beats the 1/6 baseline, the tanh RNN does not."""

import numpy as np
import pytest

from lstm_jax.cli.experiments.adding import (
    ADDING_BASELINE,
    AddingResult,
    adding_experiment,
    format_table,
)
from lstm_jax.experiments import main


@pytest.mark.slow
def test_lstm_solves_the_adding_problem_and_the_tanh_rnn_does_not():
    rnn, lstm = adding_experiment(("rnn", "lstm"), T=50, hidden=16, steps=500, batch=32, seed=0)
    assert (rnn.name, lstm.name) == ("tanh RNN", "LSTM")
    assert lstm.test_mse.shape == (1,) and lstm.train_loss.shape == (500, 1)
    assert float(lstm.test_mse[0]) < 0.1 * ADDING_BASELINE  # measured 0.006
    assert float(rnn.test_mse[0]) > 0.9 * ADDING_BASELINE  # measured 0.178


def test_baseline_is_the_variance_of_a_sum_of_two_uniforms():
    from lstm_jax.data import adding_problem

    _, ys = adding_problem(0, 20000, 10)
    np.testing.assert_allclose(np.mean((np.asarray(ys) - 1.0) ** 2), ADDING_BASELINE, rtol=0.03)


def test_table_and_command_line(capsys):
    results = main(["adding", "--T", "6", "--hidden", "4", "--steps", "2", "--batch", "4",
                    "--seeds", "2", "--cells", "gru"])  # fmt: skip
    out = capsys.readouterr().out
    assert [r.name for r in results] == ["GRU"]
    assert results[0].test_mse.shape == (2,)
    assert "Adding problem, T=6" in out and "+-" in out and "0.167" in out
    table = format_table([AddingResult("X", np.array([1 / 12]), np.zeros((1, 1)), 1.0)])
    assert table.splitlines()[1].split()[:4] == ["X", "0.0833", "0.167", "0.500"]


def test_unknown_cell():
    with pytest.raises(ValueError, match=r"`adding_experiment`: `cells` must be names from"):
        adding_experiment(("lstm", "transformer"))


def test_the_application_runs_the_experiments(capsys):
    from lstm_jax.cli import main as app

    args = ["--T", "6", "--hidden", "4", "--steps", "2", "--batch", "4", "--cells", "gru"]
    assert app(["experiments", "adding", *args]) == 0
    assert "Adding problem, T=6" in capsys.readouterr().out
    assert app(["experiments", "no-such-experiment"]) == 2
    assert "invalid choice: 'no-such-experiment'" in capsys.readouterr().err
