"""A token embedding: a lookup table from integer ids to feature vectors.

For ids of shape ``(...)`` and a table of shape ``(V, F)``::

    y[...] = table[ids[...]]                  (..., F)

the row lookup of PyTorch's ``nn.Embedding``, Keras' ``Embedding`` and Flax's ``nn.Embed``.
The gradient with respect to the table is a scatter-add of the output's cotangent into the rows
that were read; rows never read get zero gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.checks import Problems, check_shapes, check_size, is_array, is_concrete
from lstm_jax.core.initializers import Initializer, resolve_initializer


class EmbeddingParams(NamedTuple):
    table: jax.Array  # (V, F), row v is the vector of id v


def _normal(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Embedding:
    """``apply(params, ids) -> table[ids]``: integer ids ``(...)`` to vectors ``(..., F)``.

    Args:
      vocab_size: ``V``, the number of ids; valid ids are ``0 .. V-1``.
      features: ``F``, the size of each vector.
      embedding_init: how ``init`` draws the table; the default draws every entry from
        ``N(0, 1)``, as PyTorch's ``nn.Embedding`` and Flax's ``nn.Embed`` do. A name from
        the library's initialisers (``"glorot_uniform"``, ``"uniform"``, ...) or a callable
        ``(key, shape, dtype) -> array``.
      param_dtype: dtype ``init`` draws the table in. Outputs have the table's dtype (a
        lookup computes nothing, so there is no compute dtype).

    Ids out of ``[0, V)`` are a ``ValueError`` when ``ids`` is concrete (eager calls, or a
    constant under ``jit``). Under ``jit`` the values are unknown; an out-of-range id then gets
    a row of NaN, never another id's row (JAX's indexing would silently clamp it).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from lstm_jax import Embedding
      >>> embed = Embedding(vocab_size=11, features=4)
      >>> params = embed.init(jax.random.key(0))
      >>> embed.apply(params, jnp.array([[3, 1, 10], [0, 0, 2]])).shape
      (2, 3, 4)
    """

    vocab_size: int
    features: int
    embedding_init: str | Initializer = _normal
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        check_size("Embedding", "vocab_size", self.vocab_size)
        check_size("Embedding", "features", self.features)
        self._initializer()  # a bad name fails at construction, not at init

    def _initializer(self) -> Initializer:
        return resolve_initializer(
            self.embedding_init, self.features, "Embedding", "embedding_init"
        )

    def init(self, key: jax.Array, input_size: int | None = None) -> EmbeddingParams:
        """The ``(vocab_size, features)`` table.

        ``input_size`` is accepted so the layer has the same ``init(key, input_size)`` shape
        as the others; if given it must equal ``vocab_size``.
        """
        if input_size is not None and input_size != self.vocab_size:
            raise ValueError(
                f"`Embedding.init`: `input_size` must be None or vocab_size={self.vocab_size}; "
                f"got {input_size!r}."
            )
        shape = (self.vocab_size, self.features)
        return EmbeddingParams(table=self._initializer()(key, shape, self.param_dtype))

    @property
    def output_size(self) -> int:
        return self.features

    def apply(self, params: EmbeddingParams, ids: jax.Array) -> jax.Array:
        """``ids: (...)`` integers in ``[0, V)`` -> ``(..., F)`` in the table's dtype."""
        self._check(params, ids)
        valid = (ids >= 0) & (ids < self.vocab_size)  # (...)
        rows = jnp.take(params.table, jnp.clip(ids, 0, self.vocab_size - 1), axis=0)
        nan = jnp.full_like(rows, jnp.nan)
        return jnp.where(valid[..., None], rows, nan)  # (..., F)

    def attend(self, params: EmbeddingParams, x: jax.Array) -> jax.Array:
        """``x @ table.T``: ``(..., F) -> (..., V)`` scores against every id's vector.

        An output layer tied to the embedding (Press & Wolf 2017; Flax's ``Embed.attend``).
        Computed in the promoted dtype of ``x`` and the table.
        """
        p = Problems("Embedding.attend")
        self._check_table(p, params)
        if not is_array(x) or not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < 1:
            p.type(
                f"`x` must be a floating array of shape (..., {self.features}); got {_describe(x)}."
            )
        elif x.shape[-1] != self.features:
            p.value(f"`x` must have {self.features} features; got x.shape={x.shape}.")
        p.raise_if_any()
        with jax.numpy_dtype_promotion("standard"):  # the documented rule, also in strict mode
            dt = jnp.result_type(x.dtype, params.table.dtype)
        return jnp.matmul(x.astype(dt), params.table.T.astype(dt))

    def _check_table(self, p: Problems, params: Any) -> bool:
        if not isinstance(params, EmbeddingParams):
            p.type(
                f"`params` must be an EmbeddingParams (from `Embedding.init`); got "
                f"{type(params).__name__}."
            )
            return False
        why = f"Embedding({self.vocab_size}, {self.features})"
        check_shapes(p, "params", params, EmbeddingParams((self.vocab_size, self.features)), why)
        return True

    def _check(self, params: Any, ids: Any) -> None:
        p = Problems("Embedding.apply")
        self._check_table(p, params)
        if not is_array(ids) or not jnp.issubdtype(ids.dtype, jnp.integer):
            p.type(
                f"`ids` must be an integer array of token ids in [0, {self.vocab_size}); got "
                f"{_describe(ids)}. Cast it, e.g. `ids.astype(jnp.int32)`, if it holds whole "
                "numbers."
            )
        elif is_concrete(ids) and ids.size:
            values = np.asarray(ids)  # concrete: plain NumPy, no trace
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >= self.vocab_size:
                p.value(
                    f"`ids` must lie in [0, vocab_size={self.vocab_size}); got values from {lo} "
                    f"to {hi}."
                )
        p.raise_if_any()


def _describe(x: Any) -> str:
    if is_array(x):
        return f"dtype={x.dtype}, shape={tuple(x.shape)}"
    return type(x).__name__
