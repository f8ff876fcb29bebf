"""SpecAugment-style masking (Park et al. 2019) drawn from an explicit PRNG key.

Each utterance gets ``freq_masks`` bands of ``0..freq_width`` consecutive mel channels and
``time_masks`` spans of ``0..time_width`` consecutive frames (inside its valid length) set to
``value`` (0: the mean of utterance-normalised features). Time warping is not implemented.

References:
  Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
  Recognition", Interspeech.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _spans(key, n_masks: int, width: int, size, axis_len: int) -> jax.Array:
    """``(axis_len,)`` bool: inside any of ``n_masks`` random spans of ``0..width`` within
    ``[0, size)``."""
    k_w, k_s = jax.random.split(key)
    w = jax.random.randint(k_w, (n_masks,), 0, width + 1)  # (n_masks,)
    start = jax.random.uniform(k_s, (n_masks,)) * jnp.maximum(size - w, 0).astype(jnp.float32)
    start = start.astype(jnp.int32)
    pos = jnp.arange(axis_len)[None, :]  # (1, L)
    return jnp.any((pos >= start[:, None]) & (pos < (start + w)[:, None]), axis=0)


def spec_augment(
    key: jax.Array,
    feats: jax.Array,
    lengths: jax.Array | None = None,
    *,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 10,
    value: float = 0.0,
) -> jax.Array:
    """Masks ``(..., T, M)`` features: independent masks per utterance, a pure function of key.

    Args:
      key: PRNG key.
      feats: ``(..., T, M)`` features.
      lengths: optional ``...``-shaped valid frame counts; time masks stay inside them.
      freq_masks, freq_width: number and largest width of frequency masks.
      time_masks, time_width: number and largest width of time masks.
      value: what masked entries are set to.

    Returns:
      ``(..., T, M)`` masked features.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.ones((3, 50, 40))
      >>> y = spec_augment(jax.random.key(0), x)
      >>> bool((y == spec_augment(jax.random.key(0), x)).all()), float(y.mean()) < 1.0
      (True, True)
    """
    feats = jnp.asarray(feats)
    batch, (t, m) = feats.shape[:-2], feats.shape[-2:]
    if lengths is None:
        lengths = jnp.full(batch, t, jnp.int32)
    flat_len = jnp.reshape(jnp.asarray(lengths, jnp.int32), (-1,))  # (B,)
    keys = jax.random.split(key, flat_len.shape[0])

    def one(k, length):
        k_f, k_t = jax.random.split(k)
        f = _spans(k_f, freq_masks, freq_width, jnp.int32(m), m)  # (M,)
        s = _spans(k_t, time_masks, time_width, length, t)  # (T,)
        return s[:, None] | f[None, :]  # (T, M)

    mask = jax.vmap(one)(keys, flat_len).reshape(feats.shape)
    return jnp.where(mask, jnp.asarray(value, feats.dtype), feats)
