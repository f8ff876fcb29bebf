"""Multi-host start-up and sharded checkpoints (re-exported by :mod:`lstm_jax.sharding`).

Start-up: every process of a multi-host job calls :func:`initialize_distributed` before any
other JAX call; afterwards ``jax.devices()`` lists every process's devices and one mesh spans
them all. Checkpoints: :func:`save_sharded` writes a (possibly sharded) pytree with
orbax-checkpoint, each process writing the shards it holds; :func:`restore_sharded` reads it
back onto any mesh shape, each process reading only what its devices need. orbax is imported
inside these functions, so ``import lstm_jax`` stays free of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from lstm_jax.core.checks import Problems
from lstm_jax.sharding.mesh import MIN_SIZE, state_shardings


def _check_distributed(coordinator_address, num_processes, process_id) -> None:
    p = Problems("initialize_distributed")
    if coordinator_address is not None:
        host, _, port = str(coordinator_address).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            p.value(
                "`coordinator_address` must be 'host:port' (e.g. '10.0.0.1:1234', the "
                f"address of process 0); got {coordinator_address!r}."
            )
    if num_processes is not None and (
        isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1
    ):
        p.value(f"`num_processes` must be a positive int; got {num_processes!r}.")
    elif process_id is not None and (
        isinstance(process_id, bool)
        or not isinstance(process_id, int)
        or not 0 <= process_id < (num_processes or 1)
    ):
        p.value(
            f"`process_id` must be an int in [0, num_processes={num_processes}); "
            f"got {process_id!r}."
        )
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given) and num_processes != 1:
        p.value(
            "pass all of `coordinator_address`, `num_processes` and `process_id`, or none of "
            "them (to let JAX detect the cluster: TPU pods, SLURM, Open MPI, Kubernetes)."
        )
    p.raise_if_any()


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
) -> bool:
    """Joins this process to a multi-host job; a no-op for a single process.

    Call it on every process, before any other JAX call. With no arguments JAX detects the
    cluster (Cloud TPU pods, SLURM, Open MPI, Kubernetes, or the ``JAX_COORDINATOR_ADDRESS``
    environment variable); otherwise pass all three of the address of process 0, the number of
    processes and this process's id.

    Args:
      coordinator_address: ``"host:port"`` of process 0, reachable from every process.
      num_processes: processes in the job; ``1`` returns at once without starting anything.
      process_id: this process's rank in ``[0, num_processes)``.
      local_device_ids: restrict this process to these local devices (e.g. one GPU each).

    Returns:
      ``True`` when ``jax.distributed`` is running (started now or before), ``False`` for the
      single-process no-op.

    Raises:
      ValueError: a malformed address, counts out of range, or only some of the three given.
    """
    _check_distributed(coordinator_address, num_processes, process_id)
    if num_processes == 1:
        return False
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize(
        coordinator_address, num_processes, process_id, local_device_ids=local_device_ids
    )
    return True


def save_sharded(path: str | Path, tree: Any) -> Path:
    """Writes a pytree of (sharded) arrays to the directory ``path`` with orbax-checkpoint.

    Every process calls it with its part of the same global arrays; each writes the shards its
    devices hold (OCDBT/zarr3 format). orbax writes into a temporary directory and renames it
    at the end, so an interrupted save leaves no half-written checkpoint at ``path``. An
    existing ``path`` is replaced.

    Returns:
      The absolute checkpoint directory.
    """
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, tree, force=True)
        ckptr.wait_until_finished()
    return path


def restore_sharded(
    path: str | Path,
    like: Any,
    mesh: Mesh | None = None,
    *,
    shardings: Any = None,
    min_size: int | None = None,
) -> Any:
    """Reads :func:`save_sharded`'s checkpoint onto ``mesh`` (any shape, any device count).

    Args:
      path: the checkpoint directory.
      like: a pytree with the saved structure, shapes and dtypes (arrays or
        ``jax.ShapeDtypeStruct``); only its metadata is used.
      mesh: lay the result out by :func:`~lstm_jax.sharding.state_shardings` on this mesh.
      shardings: instead of ``mesh``, a pytree of shardings matching ``like``.
      min_size: passed to ``state_shardings`` (default its own).

    Raises:
      ValueError: when neither or both of ``mesh`` and ``shardings`` are given, or the
        checkpoint does not exist.
    """
    import orbax.checkpoint as ocp

    if (mesh is None) == (shardings is None):
        raise ValueError("`restore_sharded`: pass exactly one of `mesh` and `shardings`.")
    path = Path(path).absolute()
    if not path.is_dir():
        raise ValueError(f"`restore_sharded`: no checkpoint directory at {path}.")
    if shardings is None:
        shardings = state_shardings(like, mesh, min_size=MIN_SIZE if min_size is None else min_size)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings
    )
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path, target)
