"""The public namespace and the static-config contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj

CORE = {
    "AdditiveAttention", "AttentionParams", "Dense", "DenseParams", "GRU", "GRUCell", "GRUGates",
    "GRUParams", "LSTM", "LSTMCell", "LSTMGates", "LSTMLayerNorm", "LSTMParams", "LSTMState",
    "LayerParams", "LayerState", "Peepholes", "SimpleRNN", "SimpleRNNCell", "SimpleRNNParams",
    "StackedRNN", "dropout", "last_step", "lstm_equations", "reverse_padded", "scan",
    "sequence_mask",
}  # fmt: skip


def test_core_names_are_exported():
    assert CORE <= set(lj.__all__)
    for name in lj.__all__:
        assert hasattr(lj, name), name


def test_core_does_not_import_frameworks():
    import subprocess
    import sys

    code = "import sys, lstm_jax; print(sorted(m for m in ('torch', 'keras', 'flax', 'tensorflow', 'equinox', 'haiku') if m in sys.modules))"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    "config",
    [lj.LSTMCell(4, peephole=True), lj.GRUCell(4), lj.SimpleRNNCell(4), lj.LSTM(4, num_layers=2)],
    ids=lambda c: type(c).__name__,
)
def test_configs_are_hashable_static_arguments(config):
    assert hash(config) == hash(type(config)(**vars(config)))
    with pytest.raises(AttributeError):
        config.num_layers = 3  # frozen

    @jax.jit
    def run(params, xs):
        return _apply(config, params, xs)

    params = config.init(jax.random.key(0), 2)
    xs = jnp.ones((3, 5, 2))
    np.testing.assert_allclose(run(params, xs), _apply(config, params, xs), rtol=1e-6)
    f = jax.jit(_apply, static_argnums=0)
    np.testing.assert_allclose(f(config, params, xs), run(params, xs), rtol=1e-6)


def _apply(config, params, xs):
    if isinstance(config, lj.StackedRNN):
        return config.apply(params, xs)[0]
    return lj.scan(config, params, xs)[1]


def test_params_are_plain_pytrees():
    params = lj.LSTM(4, num_layers=2, bidirectional=True).init(jax.random.key(0), 3)
    leaves = jax.tree.leaves(params)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    doubled = jax.tree.map(lambda a: 2 * a, params)
    assert isinstance(doubled[1].backward, lj.LSTMParams)
