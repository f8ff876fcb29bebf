"""Where arrays live during training: the one place that puts state and batches on devices.

:func:`fit` sends every train state and every batch through :func:`place` before the jitted
step sees it: ``jax.device_put`` onto the default device, or, with a device mesh
(``fit(config=FitConfig(mesh=...))``), the layout rules of :mod:`lstm_jax.sharding`.
:func:`jit_steps` compiles the train and eval steps for the same placement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
from jax.sharding import Mesh

from lstm_jax import sharding


def place(tree: Any, role: Literal["state", "batch"], mesh: Mesh | None = None) -> Any:
    """Puts ``tree`` (the train state, or one batch) on the device(s) the step runs on."""
    if mesh is None:  # a single device: state and batches go to the same place
        return jax.device_put(tree)
    return sharding.place_on_mesh(tree, role, mesh)


def jit_steps(
    train_step: Callable, eval_step: Callable, mesh: Mesh | None, batch_size: int
) -> tuple[Callable, Callable]:
    """Jitted ``(train_step, eval_step)``; the train state is donated.

    With ``mesh``, the train step is :func:`lstm_jax.sharding.shard_step` and evaluation
    batches are split over the ``data`` axis inside the jitted eval step.

    Raises:
      ValueError: when ``batch_size`` is not a multiple of the mesh's ``data`` axis size.
    """
    if mesh is None:
        return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
    d = mesh.shape[sharding.DATA]
    if batch_size % d:
        raise ValueError(
            f"`fit`: `batch_size`={batch_size} is not a multiple of the {d} devices on the "
            f"mesh's `data` axis; use e.g. batch_size={d * max(1, round(batch_size / d))}."
        )
    return sharding.shard_step(train_step, mesh), sharding.shard_eval_step(eval_step, mesh)
