"""Small model assemblies for the built-in tasks: a recurrent stack and a dense head.

Each model is a frozen dataclass (hashable, so safe as a static argument) with pure
``init(key) -> ModelParams`` and ``apply(params, ...)``. The forecaster is the Keras example
``Sequential([LSTM(50, input_shape=(100, 1)), Dense(1)])``, compiled with adam and mse.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lstm_jax.layers.dense import Dense
from lstm_jax.layers.stacked import GRU, LSTM, SimpleRNN, StackedRNN
from lstm_jax.sequence.masks import last_step

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}  # each layer takes its fast path itself


class ModelParams(NamedTuple):
    rnn: Any  # tuple of LayerParams, from StackedRNN.init
    head: Any  # DenseParams


def _stack(cell: str, hidden_size: int, num_layers: int) -> StackedRNN:
    if cell not in CELLS:
        raise ValueError(f"`cell` must be one of {sorted(CELLS)}; got {cell!r}.")
    return CELLS[cell](hidden_size, num_layers)


def init_params(model: Any, seed: int) -> Any:
    """``model.init(jax.random.key(seed))`` as one compiled program.

    Run op by op, a model's initialisation compiles each random draw, split and scaling on its
    own (about 30 small programs, 2.5 s of compiling for ``LSTM(50) + Dense(1)``); jitted it is
    one program (about 1 s less) that the disk cache keeps for the next run. The values are
    the same bit for bit.
    """
    return jax.jit(model.init)(jax.random.key(seed))


def _init(rnn: StackedRNN, head: Dense, key, input_size: int) -> ModelParams:
    k_rnn, k_head = jax.random.split(key)
    return ModelParams(rnn.init(k_rnn, input_size), head.init(k_head, rnn.output_size))


@dataclasses.dataclass(frozen=True)
class Forecaster:
    """``(B, T, F)`` windows -> ``(B, n_targets)`` next values: the last step's hidden state
    through a dense layer."""

    n_features: int = 1
    n_targets: int = 1
    hidden_size: int = 50
    num_layers: int = 1
    cell: str = "lstm"

    @property
    def rnn(self) -> StackedRNN:
        return _stack(self.cell, self.hidden_size, self.num_layers)

    def init(self, key) -> ModelParams:
        return _init(self.rnn, Dense(self.n_targets), key, self.n_features)

    def apply(self, params: ModelParams, xs: jax.Array):
        """Returns ``(carry, predictions (B, n_targets))``."""
        carry, hs = self.rnn.apply(params.rnn, xs)  # (B, T, H)
        return carry, Dense(self.n_targets).apply(params.head, hs[..., -1, :])

    def loss(self, params: ModelParams, batch) -> jax.Array:
        """Mean squared error of ``batch = (xs, ys)``, the Keras ``loss='mse'``."""
        xs, ys = batch
        return jnp.mean(jnp.square(self.apply(params, xs)[1] - ys))


@dataclasses.dataclass(frozen=True)
class CharLM:
    """A character-level language model: one-hot ``(B, T)`` tokens -> ``(B, T, V)`` logits of
    the next token, with the carry exposed for stateful (TBPTT) training and sampling."""

    vocab_size: int
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "lstm"

    @property
    def rnn(self) -> StackedRNN:
        return _stack(self.cell, self.hidden_size, self.num_layers)

    def init(self, key) -> ModelParams:
        return _init(self.rnn, Dense(self.vocab_size), key, self.vocab_size)

    def initial_carry(self, batch_shape=()):
        return self.rnn.initial_carry(batch_shape)

    def apply(self, params: ModelParams, tokens: jax.Array, carry=None):
        """Returns ``(carry, logits (B, T, V))``."""
        xs = jax.nn.one_hot(tokens, self.vocab_size, dtype=jnp.float32)  # (B, T, V)
        carry, hs = self.rnn.apply(params.rnn, xs, carry)  # (B, T, H)
        return carry, Dense(self.vocab_size).apply(params.head, hs)

    def window_loss(self, params: ModelParams, batch) -> jax.Array:
        """Mean next-token cross-entropy of ``batch = (inputs, targets)`` from a zero carry."""
        return self.loss(params, None, batch)[0]

    def sample(self, params: ModelParams, prompt, length: int, key, temperature: float = 1.0):
        """Continues ``prompt`` (``(P,)`` int tokens, ``P >= 1``) by ``length`` sampled tokens.

        Each token is drawn from ``softmax(logits / temperature)``; ``temperature=0`` takes the
        most likely token (greedy). Jit with ``length`` and ``temperature`` static.

        Returns:
          ``(length,)`` int32 tokens.
        """
        carry, logits = self.apply(params, jnp.asarray(prompt)[None, :])  # (1, P, V)

        def body(c, k):
            carry, logits = c  # logits: (V,)
            if temperature > 0:
                tok = jax.random.categorical(k, logits / temperature).astype(jnp.int32)
            else:
                tok = jnp.argmax(logits).astype(jnp.int32)
            carry, new_logits = self.apply(params, tok.reshape(1, 1), carry)
            return (carry, new_logits[0, 0]), tok

        _, tokens = jax.lax.scan(body, (carry, logits[0, -1]), jax.random.split(key, length))
        return tokens

    def loss(self, params: ModelParams, carry, chunk):
        """Mean next-token cross-entropy (nats) of ``chunk = (inputs, targets)``, both
        ``(B, K)``; returns ``(loss, carry)`` as :func:`lstm_jax.make_tbptt_step` expects."""
        inputs, targets = chunk
        carry, logits = self.apply(params, inputs, carry)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.mean(ce), carry


@dataclasses.dataclass(frozen=True)
class Classifier:
    """Padded ``(B, T, F)`` sequences with ``(B,)`` lengths -> ``(B, n_classes)`` logits, read
    from each sequence's own last valid step."""

    n_features: int
    n_classes: int
    hidden_size: int = 32
    num_layers: int = 1
    cell: str = "lstm"

    @property
    def rnn(self) -> StackedRNN:
        return _stack(self.cell, self.hidden_size, self.num_layers)

    def init(self, key) -> ModelParams:
        return _init(self.rnn, Dense(self.n_classes), key, self.n_features)

    def apply(self, params: ModelParams, xs: jax.Array, lengths: jax.Array):
        """Returns ``(carry, logits (B, n_classes))``."""
        carry, hs = self.rnn.apply(params.rnn, xs, lengths=lengths)  # (B, T, H)
        return carry, Dense(self.n_classes).apply(params.head, last_step(hs, lengths))

    def loss(self, params: ModelParams, batch):
        """Cross-entropy of ``batch = (xs, lengths, labels)``, with accuracy as a metric."""
        xs, lengths, labels = batch
        _, logits = self.apply(params, xs, lengths)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        return jnp.mean(ce), {"accuracy": acc}
