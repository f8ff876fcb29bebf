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
TRAINING = {
    "TrainState", "init_train_state", "make_train_step", "make_eval_step", "fit", "FitResult",
    "make_tbptt_step", "fit_tbptt", "stream_chunks", "reset_carry", "save_params", "load_params",
    "init_ensemble", "make_ensemble_step", "train_ensemble", "lstm_scan", "ConvLSTMCell", "Cell",
    "FitConfig", "Checkpointing", "Callback", "EarlyStopping", "ProgressBar", "TensorBoard",
    "TrainInfo",
}  # fmt: skip
SUBMODULES = {
    "lstm_jax.interop": {"from_torch", "to_torch", "from_keras", "to_keras", "from_flax",
                         "to_flax"},
    "lstm_jax.nnx": {"LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell", "RNN",
                     "Bidirectional"},
    "lstm_jax.sharding": {"make_mesh", "shard_state", "shard_batch", "shard_step", "global_batch",
                          "initialize_distributed", "save_sharded", "restore_sharded"},
    "lstm_jax.data": {"load_series", "load_text", "load_csv", "sliding_windows", "adding_problem",
                      "copy_task", "pad_sequences", "load_speech", "load_speech_folder",
                      "two_sequence_lag", "lag_adding_problem", "lag_multiplication_problem",
                      "embedded_reber_strings", "continual_reber", "reber_next_symbols"},
    "lstm_jax.audio": {"read_audio", "log_mel", "spec_augment", "ctc_loss", "greedy_decode",
                       "prefix_beam_search", "beam_decode", "cer", "wer", "FeatureConfig"},
    "lstm_jax.diagnostics": {"input_gradient_flow", "state_gradient_flow", "gate_statistics"},
    "lstm_jax.checkpoint": {"save_checkpoint", "load_checkpoint", "CheckpointError"},
    "lstm_jax.export": {"to_onnx", "from_onnx", "to_stablehlo", "load_stablehlo",
                        "RecurrentModel"},
}  # fmt: skip


def test_core_names_are_exported():
    assert CORE | TRAINING <= set(lj.__all__)
    assert list(lj.__all__) == sorted(lj.__all__)
    for name in lj.__all__:
        assert hasattr(lj, name), name


def test_seq2seq_names_are_exported():
    names = {"Embedding", "EmbeddingParams", "BahdanauAttention", "BahdanauParams",
             "LuongAttention", "LuongParams", "bidirectional_final"}  # fmt: skip
    assert names <= set(lj.__all__)


def test_modern_lstm_names_are_exported():
    names = {"sLSTMCell", "sLSTMParams", "sLSTMState", "mLSTMCell", "mLSTMParams", "mLSTMState",
             "minLSTMCell", "minGRUCell", "MinRNNParams", "parallel_scan"}  # fmt: skip
    assert names <= set(lj.__all__)


def test_xlstm_block_names_are_exported():
    names = {"xLSTMStack", "xLSTMStackParams", "xLSTMLM", "xLSTMLMParams", "mLSTMBlock",
             "mLSTMBlockParams", "sLSTMBlock", "sLSTMBlockParams"}  # fmt: skip
    assert names <= set(lj.__all__)


@pytest.mark.parametrize("module", sorted(SUBMODULES))
def test_submodule_names_are_exported(module):
    import importlib

    mod = importlib.import_module(module)
    assert SUBMODULES[module] <= set(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


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
        return config.apply(params, xs)[1]
    return lj.scan(config, params, xs)[1]


def test_params_are_plain_pytrees():
    params = lj.LSTM(4, num_layers=2, bidirectional=True).init(jax.random.key(0), 3)
    leaves = jax.tree.leaves(params)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    doubled = jax.tree.map(lambda a: 2 * a, params)
    assert isinstance(doubled[1].backward, lj.LSTMParams)
