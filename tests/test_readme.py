"""README's Python examples run as written, so the documentation cannot drift from the code.

Blocks are found by their first line. A block that is a fragment gets the names it uses
(``key``, ``x``, ...) from the test; the signature block of ``scan`` and the 8-device mesh
block are not executed (the multi-device path is tested in ``test_sharding.py``).
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import lstm_jax as lj

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def block(first_line_start: str, nth: int = 0) -> str:
    found = [b for b in BLOCKS if b.startswith(first_line_start)]
    assert len(found) > nth, f"README has no python block starting with {first_line_start!r}"
    return found[nth]


def run(code: str, **names) -> dict:
    namespace = dict(names)
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


@pytest.mark.loose_promotion  # optax.adam's update mixes a Python float with its int32 count
def test_the_model_in_15_lines_trains():
    ns = run(block("import jax, jax.numpy as jnp, optax", 0))
    x = jax.random.normal(jax.random.key(1), (8, 100, 1))
    y = jnp.sum(x[:, -5:, 0], axis=1, keepdims=True)
    params, opt_state = ns["params"], ns["opt_state"]
    losses = []
    for _ in range(30):
        params, opt_state, loss = ns["step"](params, opt_state, x, y)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_the_cell_protocol_block():
    ns = run(block("cell = lj.LSTMCell"), lj=lj, key=jax.random.key(0), x=jnp.ones((32, 3)))
    assert ns["y"].shape == (32, 8) and ns["carry"].c.shape == (32, 8)
    # the block's last line takes a second step from the updated carry
    assert ns["gates"].h.shape == (32, 8) and ns["gates"].f.shape == (32, 8)


def test_the_layers_block():
    lengths = jnp.array([6, 3])
    ns = run(
        block("rnn = lj.LSTM"),
        lj=lj,
        key=jax.random.key(0),
        xs=jnp.ones((2, 6, 16)),
        lengths=lengths,
        dropout_key=jax.random.key(1),
    )
    assert ns["ys"].shape == (2, 6, 128)
    assert not np.any(np.asarray(ns["ys"])[1, 3:])  # padded steps are zero


@pytest.mark.slow
def test_the_keras_example_on_el_nino_trains():
    ns = run(block("import jax, jax.numpy as jnp, optax", 1))
    history = ns["result"].history
    assert len(history["val_loss"]) == 40 and min(history["val_loss"]) < history["val_loss"][0]


def test_the_diagnostics_block():
    cell = lj.LSTMCell(8)
    params = cell.init(jax.random.key(0), 2)
    ns = run(
        block("from lstm_jax.diagnostics import"),
        cell=cell,
        params=params,
        xs=jnp.ones((3, 12, 2)),
        plt=plt,
    )
    assert sorted(ns["stats"]) == ["f", "i", "o"]
    assert ns["flow"].norm.shape[-1] == 12
    plt.close("all")


def test_the_torch_interop_block():
    pytest.importorskip("torch")
    ns = run(block("import jax.numpy as jnp\nimport torch"))
    assert ns["ys"].shape == (4, 10, 16)  # bidirectional, proj_size 8 each way
    assert type(ns["model2"]).__name__ == "LSTM"


def test_the_nnx_drop_in_block():
    ns = run(block("import jax.numpy as jnp\nfrom flax import nnx"))
    assert ns["ys"].shape == (4, 10, 32)
    assert jax.tree.leaves(ns["grads"])


def test_the_shard_map_block():
    ns = run(block("from jax.sharding import PartitionSpec as P"), jax=jax, jnp=jnp, lj=lj)
    layer, params = ns["layer"], ns["params"]
    xs = jnp.ones((8, 20, 3))
    want = jax.grad(lambda p: jnp.sum(layer.apply(p, xs)[1] ** 2))(params)
    for got, ref in zip(jax.tree.leaves(ns["grads"]), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
