"""The `lstm-jax` command end to end on tiny settings, its outputs, and its error handling."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lstm_jax.cli import main

TINY = ["--no-progress", "--epochs", "2", "--hidden", "8", "--window", "24"]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_train_forecast_writes_every_output(forecast_run):
    names = {p.name for p in forecast_run.iterdir()}
    assert {
        "checkpoint.msgpack",
        "params.msgpack",
        "metrics.json",
        "history.csv",
        "loss.png",
        "forecast.png",
    } <= names
    metrics = json.loads((forecast_run / "metrics.json").read_text())
    assert metrics["config"]["window"] == 24 and metrics["history"]["epoch"] == [1, 2]
    assert set(metrics["test"]) >= {"test_rmse_model", "test_rmse_naive", "test_mae_model"}
    rows = (forecast_run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,loss") and len(rows) == 3


def test_evaluate_reproduces_the_training_metrics(forecast_run, capsys, tmp_path):
    code, out, _ = run(["evaluate", forecast_run, "--out", tmp_path, "--no-plot"], capsys)
    assert code == 0 and "test RMSE" in out
    train_m = json.loads((forecast_run / "metrics.json").read_text())["test"]
    eval_m = json.loads((tmp_path / "evaluation.json").read_text())["test"]
    assert eval_m == train_m


def test_forecast_writes_future_values(forecast_run, capsys, tmp_path):
    code, out, _ = run(["forecast", forecast_run, "--steps", "5", "--out", tmp_path], capsys)
    assert code == 0 and "+5" in out
    rows = (tmp_path / "forecast.csv").read_text().splitlines()
    assert rows[0] == "step,sst" and len(rows) == 6
    values = np.array([float(r.split(",")[1]) for r in rows[1:]])
    assert np.all((values > 15.0) & (values < 32.0))  # El Nino SST stays within 19-30 C
    assert (tmp_path / "forecast_future.png").stat().st_size > 1000


@pytest.mark.slow
def test_train_from_a_user_csv_with_column_choice(tmp_path, capsys):
    t = np.arange(200)
    rows = ["date,noise,y"] + [f"d{i},{np.sin(i):.4f},{np.sin(i / 5):.4f}" for i in t]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    code, out, _ = run(
        [
            "train",
            *TINY,
            "--data",
            tmp_path / "s.csv",
            "--index-column",
            "date",
            "--columns",
            "noise,y",
            "--target",
            "y",
            "--out",
            tmp_path / "r",
            "--no-plot",
        ],
        capsys,
    )
    assert code == 0, out
    cfg = json.loads((tmp_path / "r" / "metrics.json").read_text())["config"]
    assert cfg["columns"] == ["noise", "y"] and cfg["target"] == [1]
    assert len(cfg["normalizer"]["mean"]) == 2


@pytest.mark.slow
def test_charlm_train_and_generate(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("to be or not to be, that is the question. " * 30)
    code, out, _ = run(
        ["train", "--task", "charlm", *TINY, "--text", tmp_path / "t.txt", "--out", tmp_path],
        capsys,
    )
    assert code == 0 and "bits per char" in out
    assert len((tmp_path / "sample.txt").read_text()) == 601
    args = ["generate", tmp_path, "--prompt", "to be", "--length", "30", "--temperature", "0"]
    code, out, _ = run(args, capsys)
    first = (tmp_path / "generated.txt").read_text()
    assert code == 0 and first.startswith("to be") and len(first) == 35


@pytest.mark.slow
@pytest.mark.parametrize(("task", "key"), [("classify", "test_accuracy"), ("adding", "test_mse")])
def test_synthetic_tasks(tmp_path, capsys, task, key):
    argv = ["train", "--task", task, *TINY, "--n-examples", "64", "--out", tmp_path, "--no-plot"]
    code, _, _ = run(argv, capsys)
    assert code == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["test"][key] >= 0.0


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(forecast_run, tmp_path, capsys):
    # Bit-for-bit equality with an uninterrupted run is tested on `fit` in test_train.py.
    shutil.copy(forecast_run / "checkpoint.msgpack", tmp_path / "checkpoint.msgpack")
    code, out, _ = run(
        ["train", "--resume", "--epochs", "3", "--out", tmp_path, "--no-plot", "--no-progress"],
        capsys,
    )
    assert code == 0 and "trained 3 epochs" in out
    part = json.loads((forecast_run / "metrics.json").read_text())["history"]
    full = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert full["epoch"] == [1, 2, 3] and full["loss"][:2] == part["loss"]
    assert full["step"][2] == 3 * full["step"][0]


@pytest.mark.slow
def test_default_train_beats_the_naive_baseline(tmp_path, capsys):
    # The default model and data (LSTM(50), windows of 100 El Nino months); fewer epochs.
    code, out, _ = run(
        ["train", "--epochs", "8", "--out", tmp_path, "--no-progress", "--no-plot"], capsys
    )
    assert code == 0 and "naive (last value)" in out
    test = json.loads((tmp_path / "metrics.json").read_text())["test"]
    assert test["test_rmse_model"] < 0.8 * test["test_rmse_naive"]
    assert test["test_rmse_model"] < test["test_rmse_seasonal_naive"]


def one_line_error(code, err, want_code, match):
    assert code == want_code
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert match in err, err


@pytest.mark.parametrize(
    ("argv", "code", "match"),
    [
        (["train", "--task", "poetry"], 2, "argument --task: invalid choice: 'poetry'"),
        (["train", "--epochs", "0"], 2, "expected a positive integer, got '0'"),
        (["train", "--lr", "-1"], 2, "argument --lr: expected a finite number >= 0"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        (["train", "--data", "/nonexistent.csv"], 1, "CSV file not found: /nonexistent.csv"),
        (["train", "--task", "charlm", "--text", "/no.txt"], 1, "text file not found: /no.txt"),
        (["train", "--task", "adding", "--text", "x"], 1, "--text applies to --task charlm"),
        (["evaluate", "/nonexistent"], 1, "checkpoint file not found"),
        (["train", "--columns", "sst"], 1, "--columns/--index-column choose what to read from a"),
    ],
)
def test_bad_arguments_and_files(argv, code, match, capsys):
    one_line_error(*run(argv, capsys)[::2], code, match)


def test_bad_csv_value_names_row_and_column(tmp_path, capsys):
    (tmp_path / "s.csv").write_text("a,b\n1,2\n3,oops\n")
    code, _, err = run(["train", "--data", tmp_path / "s.csv", "--columns", "b"], capsys)
    one_line_error(code, err, 1, "row 3, column 'b': 'oops' is not a number")


def test_resume_without_checkpoint(tmp_path, capsys):
    code, _, err = run(["train", "--resume", "--out", tmp_path], capsys)
    one_line_error(code, err, 1, "--resume: no checkpoint at")


def test_corrupted_checkpoint_and_wrong_task(forecast_run, tmp_path, capsys):
    code, _, err = run(["generate", forecast_run], capsys)
    one_line_error(code, err, 1, "holds a 'forecast' model; this needs a 'charlm' one")
    data = bytearray((forecast_run / "checkpoint.msgpack").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "checkpoint.msgpack").write_bytes(bytes(data))
    code, _, err = run(["evaluate", tmp_path], capsys)
    one_line_error(code, err, 1, "is corrupted (checksum mismatch")


def test_console_script_reports_one_line(tmp_path):
    exe = shutil.which("lstm-jax")
    cmd = [exe] if exe else [sys.executable, "-m", "lstm_jax.cli"]
    proc = subprocess.run(
        [*cmd, "forecast", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"lstm-jax: error: checkpoint file not found: {tmp_path / 'checkpoint.msgpack'}"
    ]
