"""A recurrent stack with an optional pooling step and dense head: what ONNX files carry.

:class:`RecurrentModel` is the shape every exported or imported model takes: token one-hot
(optional) -> :class:`~lstm_jax.StackedRNN` -> pooling (none, the last valid step, or additive
attention) -> :class:`~lstm_jax.Dense` head (optional). The built-in models of the ``lstm-jax``
command are all of this shape, and :func:`as_recurrent_model` rewrites them into it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.layers.attention import AdditiveAttention
from lstm_jax.layers.dense import Dense
from lstm_jax.layers.stacked import StackedRNN
from lstm_jax.sequence.masks import last_step

POOLINGS = (None, "last", "attention")


class RecurrentModelParams(NamedTuple):
    rnn: Any  # tuple of LayerParams, from StackedRNN.init
    head: Any = None  # DenseParams, or None without a head
    attention: Any = None  # AttentionParams when pooling == "attention"


@dataclasses.dataclass(frozen=True)
class RecurrentModel:
    """``xs -> rnn -> pooling -> head``, with ``apply(params, xs, carry=None, *, lengths=None)
    -> (carry, ys)`` like every layer.

    Args:
      rnn: the recurrent stack.
      head: a dense layer on every step (``pooling=None``) or on the pooled features.
      pooling: None (outputs per step, ``(B, T, O)``), ``"last"`` (each example's last valid
        step, :func:`lstm_jax.last_step`) or ``"attention"`` (:class:`AdditiveAttention`).
      attention: the attention config when ``pooling="attention"``.
      vocab_size: if set, inputs are ``(B, T)`` integer tokens, one-hot encoded to this size.
    """

    rnn: StackedRNN
    head: Dense | None = None
    pooling: str | None = None
    attention: AdditiveAttention | None = None
    vocab_size: int | None = None

    def __post_init__(self):
        if not isinstance(self.rnn, StackedRNN):
            raise TypeError(f"`RecurrentModel`: `rnn` must be a StackedRNN; got {self.rnn!r}.")
        if self.pooling not in POOLINGS:
            raise ValueError(
                f"`RecurrentModel`: `pooling` must be one of {POOLINGS}; got {self.pooling!r}."
            )
        if (self.pooling == "attention") != (self.attention is not None):
            raise ValueError(
                "`RecurrentModel`: `attention` must be given exactly when pooling='attention'; "
                f"got pooling={self.pooling!r}, attention={self.attention!r}."
            )

    def init(self, key: jax.Array, input_size: int | None = None) -> RecurrentModelParams:
        size = self.vocab_size if input_size is None else input_size
        k_rnn, k_att, k_head = jax.random.split(key, 3)
        F = self.rnn.output_size
        att = None if self.attention is None else self.attention.init(k_att, F)
        head = None if self.head is None else self.head.init(k_head, F)
        return RecurrentModelParams(self.rnn.init(k_rnn, size), head, att)

    def apply(self, params: RecurrentModelParams, xs, carry=None, *, lengths=None):
        """Returns ``(carry, ys)``: ``ys`` is ``(B, T, O)`` without pooling, else ``(B, O)``."""
        if self.vocab_size is not None:
            xs = jax.nn.one_hot(xs, self.vocab_size, dtype=jnp.float32)  # (B, T, V)
        carry, hs = self.rnn.apply(params.rnn, xs, carry, lengths=lengths)
        if self.rnn.time_major and self.pooling is not None:
            hs = jnp.moveaxis(hs, 0, -2)  # (B, T, F)
        if self.pooling == "last":
            hs = last_step(hs, lengths)  # (B, F)
        elif self.pooling == "attention":
            hs, _ = self.attention.apply(params.attention, hs, lengths)  # (B, F)
        return carry, hs if self.head is None else self.head.apply(params.head, hs)


def as_recurrent_model(layer: Any, params: Any) -> tuple[RecurrentModel, RecurrentModelParams]:
    """``(layer, params)`` as a :class:`RecurrentModel` with the same outputs.

    Takes a :class:`~lstm_jax.StackedRNN`, a :class:`RecurrentModel`, or one of the built-in
    models of the ``lstm-jax`` command (``Forecaster``, ``CharLM``, ``Classifier``: read by their
    fields, so this module does not import the command).
    """
    if isinstance(layer, RecurrentModel):
        return layer, params
    if isinstance(layer, StackedRNN):
        return RecurrentModel(layer), RecurrentModelParams(params)
    kind = type(layer).__name__
    if kind in ("Forecaster", "CharLM", "Classifier") and hasattr(params, "head"):
        out = {"Forecaster": "n_targets", "CharLM": "vocab_size", "Classifier": "n_classes"}[kind]
        model = RecurrentModel(
            layer.rnn,
            Dense(getattr(layer, out)),
            pooling=None if kind == "CharLM" else "last",
            vocab_size=layer.vocab_size if kind == "CharLM" else None,
        )
        return model, RecurrentModelParams(params.rnn, params.head)
    raise TypeError(
        "`to_onnx`: `layer` must be a StackedRNN (lstm_jax.LSTM, GRU, SimpleRNN), a "
        f"RecurrentModel or a built-in model of the lstm-jax command; got {kind}."
    )


def export_input_size(where: str, input_size: Any, mparams: RecurrentModelParams) -> int:
    """The feature count of an exported model's input: the params' own, which ``input_size``
    (when given) must equal; a different count would declare an input the weights cannot take.
    """
    own = int(np.shape(mparams.rnn[0].forward.w_x)[0])
    if input_size is None:
        return own
    if isinstance(input_size, (bool, np.bool_)) or not isinstance(input_size, (int, np.integer)):
        raise TypeError(
            f"`{where}`: `input_size` must be a positive int or None; got {input_size!r} "
            f"({type(input_size).__name__})."
        )
    if input_size != own:
        raise ValueError(
            f"`{where}`: `input_size`={input_size} does not match the params, whose first layer "
            f"takes {own} features; leave it None to use theirs."
        )
    return own


def output_path(path: Any) -> Path:
    """``path`` as a Path whose parent directory exists (created, as ``save_params`` does)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def input_file(where: str, path: Any) -> Path:
    """``path`` as a Path to an existing file, else a ``FileNotFoundError`` naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{where}`: `path` must be a str or Path; got {type(path).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`{where}`: {path}: no such file.")
    return path
