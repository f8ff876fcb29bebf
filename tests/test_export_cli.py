"""``lstm-jax export`` end to end, and StableHLO reloaded and run in a fresh process."""

import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.cli import main
from lstm_jax.export import RecurrentModel, load_stablehlo, to_stablehlo

TINY = ["--no-progress", "--no-plot", "--epochs", "1", "--hidden", "6", "--window", "12"]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def largest_difference(out: str) -> float:
    return float(re.search(r"largest \|.* - JAX\| over \d+ test examples: (\S+)", out).group(1))


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("classify")
    argv = ["train", "--task", "classify", *TINY, "--n-examples", "64", "--out", out]
    assert main([str(a) for a in argv]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_export_a_classifier_run(classify_run, tmp_path, capsys, fmt):
    pytest.importorskip("onnxruntime")
    target = tmp_path / f"m.{fmt}"
    code, out, err = run(["export", classify_run, "--format", fmt, "--out", target], capsys)
    assert code == 0, err
    assert target.stat().st_size > 1000 and f"wrote {target}" in out
    assert largest_difference(out) < 1e-5


@pytest.mark.slow
def test_export_default_path_and_bad_run(classify_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    code, out, _ = run(["export", classify_run], capsys)
    assert code == 0 and (classify_run / "model.onnx").exists()
    code, _, err = run(["export", tmp_path / "missing"], capsys)
    assert code == 1 and err.startswith("lstm-jax: error:")
    code, _, err = run(["export", classify_run, "--format", "tflite"], capsys)
    assert code == 2 and "invalid choice: 'tflite'" in err


@pytest.mark.slow
def test_export_a_charlm_run(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    (tmp_path / "t.txt").write_text("to be or not to be, that is the question. " * 20)
    argv = ["train", "--task", "charlm", *TINY, "--text", tmp_path / "t.txt", "--out", tmp_path]
    assert run(argv, capsys)[0] == 0
    code, out, err = run(["export", tmp_path, "--format", "onnx"], capsys)
    assert code == 0, err
    assert largest_difference(out) < 1e-5


FRESH = """
import sys, numpy as np, jax
from jax import export
fn = export.deserialize(bytearray(open(sys.argv[1], "rb").read())).call
xs = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(fn(xs, np.array([9, 1, 4], np.int32))))
print(sorted(m for m in sys.modules if m.startswith("lstm_jax")))
"""


@pytest.mark.slow
def test_stablehlo_runs_in_a_fresh_process_without_lstm_jax(tmp_path):
    model = RecurrentModel(lj.LSTM(5, num_layers=2, bidirectional=True), lj.Dense(2), "last")
    params = model.init(jax.random.key(0), 3)
    to_stablehlo(model, params, tmp_path / "m.stablehlo", lengths=True)
    xs = np.random.default_rng(0).normal(size=(3, 9, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", xs)
    cmd = [
        sys.executable,
        "-c",
        FRESH,
        tmp_path / "m.stablehlo",
        tmp_path / "x.npy",
        tmp_path / "y",
    ]
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"  # only jax was needed
    want = model.apply(params, jnp.asarray(xs), lengths=jnp.array([9, 1, 4], jnp.int32))[1]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: lj.GRU(4),  # on CPU a narrow GRU runs through `scan`
        lambda: lj.LSTM(4),  # the hand-derived rule
        lambda: lj.LSTM(4, peephole=True),  # `scan` (the rule has no peepholes)
        # chunkwise `parallel_scan` at a known length; a symbolic one keeps the recurrence
        lambda: lj.StackedRNN(lj.mLSTMCell(4, num_heads=2), bidirectional=True),
    ],
    ids=["gru-scan", "lstm-rule", "lstm-peephole-scan", "mlstm"],
)
def test_stablehlo_has_symbolic_batch_and_time(make):
    """Both paths (the rule and `scan`, whose step checks compare shapes holding symbolic
    dimensions) export with a symbolic batch and time."""
    rnn = make()
    params = rnn.init(jax.random.key(0), 2)
    fn = load_stablehlo(to_stablehlo(rnn, params))
    for B, T in [(1, 3), (5, 17)]:
        xs = jax.random.normal(jax.random.key(B), (B, T, 2))
        np.testing.assert_allclose(fn(xs), rnn.apply(params, xs)[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"(?i)shape|dimension"):
        fn(jnp.ones((2, 3, 5)))  # 5 features, not 2


def test_load_stablehlo_names_a_missing_or_foreign_artefact(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`load_stablehlo`: .*nope.bin: no such file"):
        load_stablehlo(tmp_path / "nope.bin")
    with pytest.raises(ValueError, match=r"`load_stablehlo`: cannot read the bytes given as a "):
        load_stablehlo(b"garbage")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"`load_stablehlo`: cannot read .*junk.bin as a "):
        load_stablehlo(tmp_path / "junk.bin")


def test_to_stablehlo_writes_into_a_new_directory_and_checks_input_size(tmp_path):
    layer = lj.GRU(4)
    params = layer.init(jax.random.key(0), 3)
    path = tmp_path / "a" / "b" / "gru.bin"
    to_stablehlo(layer, params, path)
    x = jnp.ones((2, 5, 3))
    np.testing.assert_allclose(load_stablehlo(path)(x), layer.apply(params, x)[1], atol=1e-6)
    with pytest.raises(ValueError, match=r"`to_stablehlo`: `input_size`=0 does not match"):
        to_stablehlo(layer, params, input_size=0)
    with pytest.raises(TypeError, match=r"`to_stablehlo`: `input_size` must be a positive int"):
        to_stablehlo(layer, params, input_size=3.0)
