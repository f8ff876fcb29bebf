"""Data-parallel and sharded training on ``jax.sharding``: meshes, placement, steps, checkpoints.

JAX's SPMD machinery does the work: a 2-D :class:`jax.sharding.Mesh` with axes ``("data",
"model")``, :class:`~jax.sharding.NamedSharding` layouts, and ``jax.jit`` with sharding
constraints; XLA's partitioner inserts every collective (gradient all-reduce over ``data``, the
exchanges a ``model``-sharded layer needs). The layout rules:

* **batch**: the leading (examples) axis of every batch leaf is split over ``data``; the batch
  size must be a multiple of the ``data`` axis size (:func:`shard_batch` raises otherwise).
* **state** (params, optimiser state, step): replicated, except that with a ``model`` axis of
  size ``m > 1`` every leaf with at least ``min_size`` elements whose last axis divides by ``m``
  is split over ``model`` on its last axis (Adam's moments follow their params, as they share
  shapes). For a fused gate matrix ``w_x: (I, 4H)`` (blocks i, f, g, o) that split gives each
  device a *contiguous block of gate columns* (whole gates when ``m`` divides 4), not whole
  hidden units: a device's hidden units would own the strided columns ``{gH + j}``, which a
  tiled sharding of the stored ``(I, 4H)`` array cannot express, and constraining an
  ``(I, 4, H)`` view inside the step makes XLA gather the weights back before the cell's fused
  matmul. So the ``model`` axis divides the memory of params and optimiser state by ``m`` and
  XLA pays with collectives inside every time step of the scan; use it for layers too large
  for one device, not for speed.

Single process: every function works on the local devices. Several processes (GPU hosts, TPU
pod slices): call :func:`initialize_distributed` first on every process, build the mesh from
``jax.devices()`` (all processes' devices) and either give every process the same global batch
(:func:`shard_batch`) or each its own rows (:func:`global_batch`).

    >>> import jax, jax.numpy as jnp, optax
    >>> from lstm_jax import init_train_state, make_train_step
    >>> from lstm_jax.sharding import make_mesh, shard_batch, shard_state, shard_step
    >>> mesh = make_mesh()  # every device on the data axis
    >>> opt = optax.sgd(0.1)
    >>> def loss_fn(w, batch):
    ...     return jnp.mean(jnp.square(batch[0] @ w - batch[1]))
    >>> state = shard_state(init_train_state(jnp.zeros((2, 1)), opt), mesh)
    >>> step = shard_step(make_train_step(loss_fn, opt), mesh)
    >>> batch = shard_batch((jnp.ones((8, 2)), jnp.ones((8, 1))), mesh)
    >>> state, metrics = step(state, batch)
    >>> int(state.step)
    1
"""

from lstm_jax.sharding.distributed import initialize_distributed, restore_sharded, save_sharded
from lstm_jax.sharding.mesh import (
    DATA,
    MIN_SIZE,
    MODEL,
    batch_sharding,
    data_parallel_loss,
    global_batch,
    make_mesh,
    mesh_for,
    place_on_mesh,
    replicated,
    shard_batch,
    shard_eval_step,
    shard_state,
    shard_step,
    state_shardings,
)

__all__ = [
    "DATA",
    "MIN_SIZE",
    "MODEL",
    "batch_sharding",
    "data_parallel_loss",
    "global_batch",
    "initialize_distributed",
    "make_mesh",
    "mesh_for",
    "place_on_mesh",
    "replicated",
    "restore_sharded",
    "save_sharded",
    "shard_batch",
    "shard_eval_step",
    "shard_state",
    "shard_step",
    "state_shardings",
]
