"""Flax NNX modules backed by the functional core: swap ``from flax import nnx`` cells for these.

``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``, ``RNN`` and ``Bidirectional``
take the same constructor arguments with the same defaults, hold the same submodules
(``nnx.Linear`` under Flax's names) and ``nnx`` state, and follow the same call conventions,
dtype promotion, ``seq_lengths`` semantics and RNG handling as their ``flax.nnx`` namesakes
(Flax's ``(c, h)`` LSTM carry included), while each step runs in :class:`lstm_jax.LSTMCell` &
co. and a sequence of them in :func:`lstm_jax.scan`. The one addition is
``RNN(mask_padding=True)``, this library's variable-length rule. Needs ``flax``; not imported by
``import lstm_jax``.
"""

from lstm_jax.nnx.bidirectional import Bidirectional
from lstm_jax.nnx.gru import GRUCell, SimpleCell
from lstm_jax.nnx.lstm import LSTMCell, OptimizedLSTMCell
from lstm_jax.nnx.rnn import RNN

__all__ = ["RNN", "Bidirectional", "GRUCell", "LSTMCell", "OptimizedLSTMCell", "SimpleCell"]
