"""lstm_jax: functional LSTM, GRU and RNN layers for JAX.

Cells are hashable configs with pure ``init``, ``initial_carry`` and step functions; params and
carries are NamedTuple pytrees; sequences run through ``jax.lax.scan``.
"""

from lstm_jax.cells.convlstm import ConvLSTMCell, ConvLSTMParams
from lstm_jax.cells.gru import GRUCell, GRUGates, GRUParams
from lstm_jax.cells.lstm import (
    LSTMCell,
    LSTMGates,
    LSTMLayerNorm,
    LSTMParams,
    LSTMState,
    Peepholes,
    lstm_equations,
)
from lstm_jax.cells.minrnn import MinRNNParams, minGRUCell, minLSTMCell
from lstm_jax.cells.mlstm import mLSTMCell, mLSTMParams, mLSTMState
from lstm_jax.cells.simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax.cells.slstm import sLSTMCell, sLSTMParams, sLSTMState
from lstm_jax.checkpoint import load_params, save_params
from lstm_jax.compile_cache import enable_compile_cache
from lstm_jax.core.protocol import Cell
from lstm_jax.cpu_malloc import tune_cpu_malloc
from lstm_jax.layers.attention import (
    AdditiveAttention,
    AttentionParams,
    BahdanauAttention,
    BahdanauParams,
    LuongAttention,
    LuongParams,
)
from lstm_jax.layers.dense import Dense, DenseParams
from lstm_jax.layers.embedding import Embedding, EmbeddingParams
from lstm_jax.layers.stacked import (
    GRU,
    LSTM,
    LayerParams,
    LayerState,
    SimpleRNN,
    StackedRNN,
    bidirectional_final,
)
from lstm_jax.layers.xlstm import xLSTMLM, xLSTMLMParams, xLSTMStack, xLSTMStackParams
from lstm_jax.layers.xlstm_blocks import (
    mLSTMBlock,
    mLSTMBlockParams,
    sLSTMBlock,
    sLSTMBlockParams,
)
from lstm_jax.sequence.lstm_scan import lstm_scan
from lstm_jax.sequence.masks import dropout, last_step, reverse_padded, sequence_mask
from lstm_jax.sequence.parallel import parallel_scan
from lstm_jax.sequence.scan import scan
from lstm_jax.training.callbacks import (
    Callback,
    EarlyStopping,
    ProgressBar,
    TensorBoard,
    TrainInfo,
)
from lstm_jax.training.ensemble import init_ensemble, make_ensemble_step, train_ensemble
from lstm_jax.training.fit import Checkpointing, FitConfig, FitResult, fit
from lstm_jax.training.step import TrainState, init_train_state, make_eval_step, make_train_step
from lstm_jax.training.tbptt import fit_tbptt, make_tbptt_step, reset_carry, stream_chunks

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
    "AttentionParams",
    "BahdanauAttention",
    "BahdanauParams",
    "Callback",
    "Cell",
    "Checkpointing",
    "ConvLSTMCell",
    "ConvLSTMParams",
    "Dense",
    "DenseParams",
    "EarlyStopping",
    "Embedding",
    "EmbeddingParams",
    "FitConfig",
    "FitResult",
    "GRU",
    "GRUCell",
    "GRUGates",
    "GRUParams",
    "LSTM",
    "LSTMCell",
    "LSTMGates",
    "LSTMLayerNorm",
    "LSTMParams",
    "LSTMState",
    "LayerParams",
    "LayerState",
    "LuongAttention",
    "LuongParams",
    "MinRNNParams",
    "Peepholes",
    "ProgressBar",
    "SimpleRNN",
    "SimpleRNNCell",
    "SimpleRNNParams",
    "StackedRNN",
    "TensorBoard",
    "TrainInfo",
    "TrainState",
    "bidirectional_final",
    "dropout",
    "enable_compile_cache",
    "fit",
    "fit_tbptt",
    "init_ensemble",
    "init_train_state",
    "last_step",
    "load_params",
    "lstm_equations",
    "lstm_scan",
    "mLSTMBlock",
    "mLSTMBlockParams",
    "mLSTMCell",
    "mLSTMParams",
    "mLSTMState",
    "make_ensemble_step",
    "make_eval_step",
    "make_tbptt_step",
    "make_train_step",
    "minGRUCell",
    "minLSTMCell",
    "parallel_scan",
    "reset_carry",
    "reverse_padded",
    "sLSTMBlock",
    "sLSTMBlockParams",
    "sLSTMCell",
    "sLSTMParams",
    "sLSTMState",
    "save_params",
    "scan",
    "sequence_mask",
    "stream_chunks",
    "train_ensemble",
    "tune_cpu_malloc",
    "xLSTMLM",
    "xLSTMLMParams",
    "xLSTMStack",
    "xLSTMStackParams",
]
