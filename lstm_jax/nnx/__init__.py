"""Flax NNX modules backed by the functional core: swap ``from flax import nnx`` cells for these.

``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``, ``RNN`` and ``Bidirectional``
take the same constructor arguments, hold the same ``nnx.Param`` tree and follow the same call
conventions as their ``flax.nnx`` namesakes (Flax's ``(c, h)`` LSTM carry included), while the
maths runs in :class:`lstm_jax.LSTMCell` & co. and :func:`lstm_jax.scan`. Needs ``flax``; not
imported by ``import lstm_jax``.
"""

from lstm_jax.nnx.bidirectional import Bidirectional
from lstm_jax.nnx.gru import GRUCell, SimpleCell
from lstm_jax.nnx.lstm import LSTMCell, OptimizedLSTMCell
from lstm_jax.nnx.rnn import RNN

__all__ = ["RNN", "Bidirectional", "GRUCell", "LSTMCell", "OptimizedLSTMCell", "SimpleCell"]
