"""The option groups of :func:`lstm_jax.fit`: :class:`FitConfig` (how the loop walks the data)
and :class:`Checkpointing` (where and when it saves, and whether it resumes). Both are frozen
dataclasses, checked when built, so a bad option is refused before anything is traced."""

from __future__ import annotations

import dataclasses
import os

import jax

from lstm_jax.core.validate import check_bool, check_float, check_int
from lstm_jax.training.checks import check_clip_norm

_OPEN_UNIT = {"low": 0.0, "high": 1.0, "low_open": True, "high_open": True}  # (0, 1)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How :func:`fit` walks the data, beyond epochs and batch size.

    Attributes:
      val_fraction: instead of ``val_data``, hold out the *last* fraction of ``train_data``
        (chronological for ordered windows; shuffle first for a random split); in (0, 1).
      shuffle: shuffle the examples every epoch.
      seed: fixes the batch order (with the epoch).
      clip_norm: clip gradients to this global L2 norm (``optax.clip_by_global_norm``); > 0.
      max_steps: stop after this many optimiser steps in total (saving a checkpoint).
      mesh: train data-parallel (and model-sharded) on this device mesh, from
        :func:`lstm_jax.sharding.make_mesh`; ``batch_size`` must divide by its ``data`` axis.
        ``None``: one device.
    """

    val_fraction: float | None = None
    shuffle: bool = True
    seed: int = 0
    clip_norm: float | None = None
    max_steps: int | None = None
    mesh: jax.sharding.Mesh | None = None

    def __post_init__(self):
        if self.val_fraction is not None:
            check_float("FitConfig", "val_fraction", self.val_fraction, **_OPEN_UNIT)
        check_bool("FitConfig", "shuffle", self.shuffle)
        check_int("FitConfig", "seed", self.seed, minimum=0)
        check_clip_norm("FitConfig", self.clip_norm)
        if self.max_steps is not None:
            check_int("FitConfig", "max_steps", self.max_steps)
        if self.mesh is not None and not isinstance(self.mesh, jax.sharding.Mesh):
            raise TypeError(
                "`FitConfig`: `mesh` must be a jax.sharding.Mesh (`lstm_jax.sharding."
                f"make_mesh()`) or None; got {type(self.mesh).__name__}."
            )


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Where and when :func:`fit` saves its checkpoint, and whether it resumes from it.

    Attributes:
      path: the checkpoint file, written at every epoch end (atomically).
      save_every: also save every this many optimiser steps.
      resume: continue from ``path`` if it exists (bit-for-bit, even mid-epoch).
      config: JSON settings stored in the checkpoint (e.g. the model sizes).
    """

    path: str | os.PathLike
    save_every: int | None = None
    resume: bool = False
    config: dict | None = None

    def __post_init__(self):
        if not isinstance(self.path, (str, os.PathLike)):
            raise TypeError(
                "`Checkpointing`: `path` must be a file path (str or os.PathLike); got "
                f"{type(self.path).__name__}."
            )
        if self.save_every is not None:
            check_int("Checkpointing", "save_every", self.save_every)
        check_bool("Checkpointing", "resume", self.resume)
        if self.config is not None and not isinstance(self.config, dict):
            raise TypeError(
                f"`Checkpointing`: `config` must be a dict; got {type(self.config).__name__}."
            )
