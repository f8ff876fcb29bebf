"""The modern-LSTM experiment: models sized to a parameter count, curves, the table."""

import numpy as np
import pytest

from lstm_jax.cli.experiments import modern
from lstm_jax.experiments import main


@pytest.mark.parametrize("name", modern.MODELS)
def test_every_model_is_sized_to_the_target(name):
    model, n = modern.matched(name, 20_000, 64, 2)
    assert n == modern.count_params(model) and abs(n - 20_000) < 0.15 * 20_000
    wider = modern.build(name, model.width + 4, 64, 2)
    assert modern.count_params(wider) > n  # the search is over a monotone count


def test_equal_time_reads_the_curve():
    c = modern.Curve("m", 8, 100, np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]),
                     np.array([0.1, 0.5, 0.9]))  # fmt: skip
    assert modern.at_time(c, 2.5) == 0.5 and modern.at_time(c, 3.0) == 0.9
    assert np.isnan(modern.at_time(c, 0.5))
    table = modern.format_table("mqar", [c, c._replace(model="n", seconds=c.seconds / 2)])
    assert "| m | 8 | 100 | 1000.0 | 0.900 | 0.100 |" in table  # budget 1.5 s: m at its 1 s mark


@pytest.mark.slow
def test_command_line(capsys):
    # notebook 07 trains all five models on both tasks; here two models, a few steps
    results = main(["modern", "--quick", "--steps", "4", "--params", "4000", "--tasks",
                    "mqar,charlm", "--models", "LSTM,minLSTM"])  # fmt: skip
    out = capsys.readouterr().out
    assert [c.model for c in results["mqar"]] == ["LSTM", "minLSTM"]
    for task in ("mqar", "charlm"):
        for c in results[task]:
            assert c.steps[-1] == 4 and np.isfinite(c.metric).all()
    assert 0 <= results["mqar"][0].metric[-1] <= 1 and results["charlm"][0].metric[-1] > 1
    assert "Beck et al. 2024" in out and "| LSTM |" in out and "bits/char" in out
    with pytest.raises(ValueError, match=r"`--models` must name items of"):
        main(["modern", "--models", "LSTM,transformer"])
