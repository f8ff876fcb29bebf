"""lstm_jax: functional LSTM, GRU and RNN layers for JAX.

Cells are hashable configs with pure ``init``, ``initial_carry`` and step functions; params and
carries are NamedTuple pytrees; sequences run through ``jax.lax.scan``.
"""

from lstm_jax._attention import AdditiveAttention, AttentionParams
from lstm_jax._convlstm import ConvLSTMCell, ConvLSTMParams
from lstm_jax._dense import Dense, DenseParams
from lstm_jax._gru import GRUCell, GRUGates, GRUParams
from lstm_jax._lstm import (
    LSTMCell,
    LSTMGates,
    LSTMLayerNorm,
    LSTMParams,
    LSTMState,
    Peepholes,
    lstm_equations,
)
from lstm_jax._scan import scan
from lstm_jax._sequence_ops import dropout, last_step, reverse_padded, sequence_mask
from lstm_jax._simple_rnn import SimpleRNNCell, SimpleRNNParams
from lstm_jax._stacked import GRU, LSTM, LayerParams, LayerState, SimpleRNN, StackedRNN

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
    "AttentionParams",
    "ConvLSTMCell",
    "ConvLSTMParams",
    "Dense",
    "DenseParams",
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
    "Peepholes",
    "SimpleRNN",
    "SimpleRNNCell",
    "SimpleRNNParams",
    "StackedRNN",
    "dropout",
    "last_step",
    "lstm_equations",
    "reverse_padded",
    "scan",
    "sequence_mask",
]
