"""README's "Deploying" examples run as written."""

import numpy as np
import pytest
from test_readme import block, run

pytest.importorskip("onnxruntime")


@pytest.mark.slow
def test_deploying_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run(block("import jax, numpy as np, onnxruntime as ort"))
    assert float(np.abs(ns["y_onnx"] - ns["y_jax"]).max()) < 1e-5
    assert (tmp_path / "classifier.onnx").stat().st_size > 10_000
    back = ns["layer"].apply(ns["params_back"], ns["xs"], lengths=ns["lengths"])[1]
    np.testing.assert_allclose(back, ns["y_jax"], atol=1e-5)
    ns = run(block("from lstm_jax.export import load_stablehlo"), **ns)
    np.testing.assert_allclose(ns["serve"](ns["xs"], ns["lengths"]), ns["y_jax"], atol=1e-6)
