"""``Bidirectional``: Flax NNX's pair of RNNs, one run forward and one backward, merged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
from flax.nnx import Module, rnglib

from lstm_jax.nnx.rnn import carry_stream

Array = jax.Array
_log = logging.getLogger(__name__)


def _concatenate(a: Array, b: Array) -> Array:
    """The default ``merge_fn``: ``[forward, backward]`` on the feature axis."""
    return jax.numpy.concatenate([a, b], axis=-1)


class Bidirectional(Module):
    """Drop-in for ``flax.nnx.Bidirectional``: a forward and a backward RNN, outputs merged.

    The backward RNN is called with ``reverse=True, keep_order=True`` so both output sequences
    are in input order; ``merge_fn`` (default: concatenation, ``[forward, backward]`` on the
    last axis) joins them leaf by leaf. ``return_carry=True`` returns
    ``((carry_forward, carry_backward), outputs)``. ``reverse`` and ``keep_order`` are taken
    by ``__call__`` and ignored, as in Flax. The same ``rngs`` stream (the call's, else the
    module's) is handed to both RNNs for their default carries.

    Raises:
      TypeError: ``rngs`` is not an ``nnx.Rngs``, ``RngStream`` or bool (as Flax).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from lstm_jax import nnx as ljnnx
      >>> rnn = lambda seed: ljnnx.RNN(ljnnx.GRUCell(3, 4, rngs=nnx.Rngs(seed)))
      >>> bi = ljnnx.Bidirectional(rnn(0), rnn(1))
      >>> bi(jnp.ones((2, 5, 3))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        forward_rnn: Any,
        backward_rnn: Any,
        *,
        merge_fn: Callable[[Array, Array], Array] = _concatenate,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: Any = True,
    ):
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = merge_fn
        self.time_major = time_major
        self.return_carry = return_carry
        self.rngs = None if rngs is False else carry_stream(rngs, "Bidirectional", TypeError)

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Any = None,
        rngs: Any = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,  # ignored, as in Flax
        keep_order: bool | None = None,  # ignored, as in Flax
    ):
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, rnglib.Rngs):
            rngs = rngs.carry
        c_f, c_b = (None, None) if initial_carry is None else initial_carry
        if self.forward_rnn is self.backward_rnn:
            _log.warning("forward_rnn and backward_rnn are the same object: they share params.")
        common = dict(rngs=rngs, seq_lengths=seq_lengths, return_carry=True, time_major=time_major)
        carry_f, ys_f = self.forward_rnn(inputs, initial_carry=c_f, reverse=False, **common)
        carry_b, ys_b = self.backward_rnn(
            inputs, initial_carry=c_b, reverse=True, keep_order=True, **common
        )
        ys = jax.tree.map(self.merge_fn, ys_f, ys_b)
        return ((carry_f, carry_b), ys) if return_carry else ys
