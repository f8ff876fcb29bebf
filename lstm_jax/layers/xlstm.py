"""xLSTM stacks and language model (Beck et al. 2024): mLSTM and sLSTM blocks in a chosen ratio.

``xLSTMStack(E, num_blocks, slstm_at=(...))`` puts an :class:`sLSTMBlock` at each index of
``slstm_at`` and an :class:`mLSTMBlock` everywhere else; the paper's xLSTM[7:1] is 8 blocks with
one sLSTM block (``slstm_at=(1,)`` in its language-model runs). ``apply(params, xs)`` returns
``(carry, ys)``: ``carry`` is the tuple of every block's final cell state (an ``mLSTMState`` or
``sLSTMState`` per block, in order). The blocks' causal convolutions start from zeros; the carry
holds the cell states, not the convolutions' last inputs, so it is not a state to continue a
sequence from.

:class:`xLSTMLM` is Embedding -> stack -> final LayerNorm -> logits, with the output matrix
tied to the embedding (``tie_weights=True``) or its own Dense.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import Problems, check_size, is_array, is_concrete
from lstm_jax.layers.xlstm_blocks import (
    check_embedding,
    check_heads,
    layer_norm,
    mLSTMBlock,
    sLSTMBlock,
)


class xLSTMStackParams(NamedTuple):
    blocks: tuple  # one mLSTMBlockParams or sLSTMBlockParams per block, in order


class xLSTMLMParams(NamedTuple):
    embedding: jax.Array  # (V, E)
    stack: xLSTMStackParams
    norm_scale: jax.Array  # (E,) final LayerNorm scale
    head: jax.Array | None  # (E, V); None when tied to the embedding


@dataclasses.dataclass(frozen=True)
class xLSTMStack:
    """``num_blocks`` residual xLSTM blocks of width ``embedding_dim``.

    Args:
      embedding_dim: ``E``, the width of every block.
      num_blocks: the number of blocks.
      slstm_at: indices (``0 .. num_blocks-1``) of the sLSTM blocks; the others are mLSTM.
      mlstm_heads, slstm_heads: heads of the mLSTM and sLSTM cells.
      conv_kernel: width of every block's causal convolution.
      round_to: the multiple the blocks' inner widths are rounded up to.
      mlstm_form: ``"chunkwise"`` or ``"recurrent"`` (see :class:`mLSTMBlock`).
      chunk_size: the mLSTM's chunk length (None: :func:`lstm_jax.parallel_scan`'s default).
      param_dtype: dtype of the params.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import xLSTMStack
      >>> stack = xLSTMStack(32, num_blocks=3, slstm_at=(1,))
      >>> params = stack.init(jax.random.key(0), 32)
      >>> carry, ys = stack.apply(params, jnp.ones((2, 7, 32)))
      >>> ys.shape, [type(c).__name__ for c in carry]
      ((2, 7, 32), ['mLSTMState', 'sLSTMState', 'mLSTMState'])
    """

    embedding_dim: int
    num_blocks: int
    slstm_at: tuple[int, ...] = ()
    mlstm_heads: int = 4
    slstm_heads: int = 4
    conv_kernel: int = 4
    round_to: int = 64
    mlstm_form: str = "chunkwise"
    chunk_size: int | None = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_size("xLSTMStack", "num_blocks", self.num_blocks)
        at = self.slstm_at
        if not isinstance(at, (tuple, list)) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in at
        ):
            raise TypeError(f"`xLSTMStack`: `slstm_at` must be a tuple of ints; got {at!r}.")
        bad = [i for i in at if not 0 <= i < self.num_blocks]
        if bad or len(set(at)) != len(at):
            raise ValueError(
                f"`xLSTMStack`: `slstm_at` must hold distinct block indices in "
                f"[0, {self.num_blocks}) (num_blocks={self.num_blocks}); got {tuple(at)!r}."
            )
        object.__setattr__(self, "slstm_at", tuple(sorted(at)))
        if at:
            check_heads("xLSTMStack", "slstm_heads", "embedding_dim", self.embedding_dim,
                        self.slstm_heads)  # fmt: skip
        self.blocks  # noqa: B018  (the blocks' own checks run at construction too)

    @property
    def blocks(self) -> tuple:
        m = mLSTMBlock(
            self.embedding_dim, self.mlstm_heads, round_to=self.round_to,
            conv_kernel=self.conv_kernel, form=self.mlstm_form, chunk_size=self.chunk_size,
            param_dtype=self.param_dtype,
        )  # fmt: skip
        s = sLSTMBlock(
            self.embedding_dim, self.slstm_heads, conv_kernel=self.conv_kernel,
            round_to=self.round_to, param_dtype=self.param_dtype,
        )  # fmt: skip
        return tuple(s if i in self.slstm_at else m for i in range(self.num_blocks))

    def init(self, key: jax.Array, input_size: int) -> xLSTMStackParams:
        check_embedding("xLSTMStack.init", self.embedding_dim, input_size)
        keys = jax.random.split(key, self.num_blocks)
        E = self.embedding_dim
        return xLSTMStackParams(tuple(b.init(k, E) for b, k in zip(self.blocks, keys, strict=True)))

    def apply(self, params: xLSTMStackParams, xs: jax.Array):
        """``xs: (..., T, E)`` -> ``(carry: tuple of cell states, ys: (..., T, E))``."""
        if not isinstance(params, xLSTMStackParams) or len(params.blocks) != self.num_blocks:
            raise TypeError(
                f"`xLSTMStack.apply`: `params` must be the xLSTMStackParams of `init` with "
                f"{self.num_blocks} blocks; got {type(params).__name__}."
            )
        carry = []
        for block, p in zip(self.blocks, params.blocks, strict=True):
            c, xs = block.apply(p, xs)
            carry.append(c)
        return tuple(carry), xs


@dataclasses.dataclass(frozen=True)
class xLSTMLM:
    """A language model: token ids ``(..., T)`` -> ``(carry, logits: (..., T, V))``.

    Args:
      vocab_size: ``V``.
      stack: the :class:`xLSTMStack` between the embedding and the head.
      tie_weights: logits ``= LN(h) @ embedding.T`` (True) or a Dense ``(E, V)`` of its own.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import xLSTMLM, xLSTMStack
      >>> lm = xLSTMLM(50, xLSTMStack(32, num_blocks=2, slstm_at=(1,)))
      >>> params = lm.init(jax.random.key(0))
      >>> carry, logits = lm.apply(params, jnp.zeros((2, 9), jnp.int32))
      >>> logits.shape, len(carry)
      ((2, 9, 50), 2)
    """

    vocab_size: int
    stack: xLSTMStack
    tie_weights: bool = True

    def __post_init__(self):
        check_size("xLSTMLM", "vocab_size", self.vocab_size)
        if not isinstance(self.stack, xLSTMStack):
            raise TypeError(
                f"`xLSTMLM`: `stack` must be an xLSTMStack; got {type(self.stack).__name__}."
            )

    def init(self, key: jax.Array, input_size: int | None = None) -> xLSTMLMParams:
        """``input_size``, if given, must equal ``vocab_size`` (the ids' range)."""
        if input_size is not None and input_size != self.vocab_size:
            raise ValueError(
                f"`xLSTMLM.init`: `input_size` must be None or vocab_size={self.vocab_size}; "
                f"got {input_size!r}."
            )
        V, E, dt = self.vocab_size, self.stack.embedding_dim, self.stack.param_dtype
        k_e, k_s, k_h = jax.random.split(key, 3)
        head = None if self.tie_weights else jax.random.normal(k_h, (E, V), dt) / math.sqrt(E)
        return xLSTMLMParams(
            embedding=jax.random.normal(k_e, (V, E), dt) * math.sqrt(2 / (5 * E)),
            stack=self.stack.init(k_s, E),
            norm_scale=jnp.ones((E,), dt),
            head=head,
        )

    def apply(self, params: xLSTMLMParams, ids: jax.Array):
        """``ids: (..., T)`` integers in ``[0, V)`` -> ``(carry, logits: (..., T, V))``."""
        p = Problems("xLSTMLM.apply")
        if not isinstance(params, xLSTMLMParams):
            p.type(f"`params` must be an xLSTMLMParams; got {type(params).__name__}.")
        if not is_array(ids) or not jnp.issubdtype(ids.dtype, jnp.integer) or ids.ndim < 1:
            got = f"dtype={ids.dtype}, shape={ids.shape}" if is_array(ids) else type(ids).__name__
            p.type(f"`ids` must be an integer array (..., T) of token ids; got {got}.")
        elif is_concrete(ids) and ids.size:  # `take` would clip or fill: a silent wrong token
            lo, hi = int(np.min(ids)), int(np.max(ids))
            if lo < 0 or hi >= self.vocab_size:
                p.value(
                    f"`ids` must lie in [0, vocab_size={self.vocab_size}); got values from {lo} "
                    f"to {hi}."
                )
        p.raise_if_any()
        xs = jnp.take(params.embedding, ids, axis=0)  # (..., T, E)
        carry, h = self.stack.apply(params.stack, xs)
        h = layer_norm(h, params.norm_scale)
        w = params.embedding.T if params.head is None else params.head  # (E, V)
        return carry, h @ w.astype(h.dtype)
