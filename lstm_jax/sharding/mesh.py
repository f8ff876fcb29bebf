"""Meshes, layouts and sharded steps: the single-process half of :mod:`lstm_jax.sharding`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lstm_jax.core.checks import Problems

DATA = "data"  # mesh axis the batch is split over
MODEL = "model"  # mesh axis large params are split over
MIN_SIZE = 2**14  # default: leaves of >= 16384 elements (64 KiB in float32) split over `model`


def make_mesh(data: int | None = None, model: int = 1, devices: Sequence | None = None) -> Mesh:
    """A ``(data, model)`` mesh over the first ``data * model`` of ``devices``.

    Args:
      data: size of the ``data`` axis; default ``len(devices) // model`` (all devices).
      model: size of the ``model`` axis (1: pure data parallelism).
      devices: default ``jax.devices()``, i.e. every process's devices after
        :func:`initialize_distributed`.

    Returns:
      A :class:`jax.sharding.Mesh` with ``Auto`` axes, so XLA places the collectives.

    Raises:
      ValueError: when the sizes are not positive ints or ask for more devices than exist.
    """
    devices = list(jax.devices() if devices is None else devices)
    p = Problems("make_mesh")
    for name, value in [("data", data), ("model", model)]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            p.type(f"`{name}` must be a positive int; got {type(value).__name__}.")
        elif value is not None and value < 1:
            p.value(f"`{name}` must be a positive int; got {value}.")
    p.raise_if_any()
    if data is None:
        if len(devices) % model:
            p.value(
                f"`model`={model} does not divide the {len(devices)} devices; pass `data` "
                f"too, or a `model` size that divides {len(devices)}."
            )
        data = len(devices) // model
    if data * model > len(devices):
        p.value(
            f"a mesh of data={data} x model={model} needs {data * model} devices; only "
            f"{len(devices)} available ({devices[0].platform})."
        )
    p.raise_if_any()
    return jax.make_mesh(
        (data, model),
        (DATA, MODEL),
        axis_types=(AxisType.Auto,) * 2,
        devices=devices[: data * model],
    )


def mesh_for(devices: int | str | None = None, model: int = 1) -> Mesh | None:
    """The mesh for ``fit(mesh=...)`` from a device count: ``None`` when that is one device.

    ``lstm-jax train --devices N --model-parallel M`` calls this: ``N`` devices in all
    (``"all"``: every device), ``M`` of them along ``model``, ``N / M`` along ``data``.

    Raises:
      ValueError: when ``model`` does not divide ``devices`` or more devices are asked for
        than exist.
    """
    n = jax.device_count() if devices == "all" else 1 if devices is None else devices
    p = Problems("mesh_for")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        p.value(f"`devices` must be a positive int or 'all'; got {devices!r}.")
    elif isinstance(model, bool) or not isinstance(model, int) or model < 1 or n % model:
        p.value(f"`model`={model!r} must be a positive int that divides devices={n}.")
    p.raise_if_any()
    return None if n == 1 else make_mesh(n // model, model)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (examples) axis split over ``data``; other axes whole on each device."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def state_shardings(tree: Any, mesh: Mesh, *, min_size: int = MIN_SIZE) -> Any:
    """The layout rule for params / optimiser state: a pytree of :class:`NamedSharding`.

    A leaf is split over ``model`` on its last axis when the mesh's ``model`` axis has size
    ``m > 1``, the leaf has at least ``min_size`` elements and its last axis divides by ``m``;
    every other leaf is replicated. Works on arrays and ``jax.ShapeDtypeStruct`` alike.
    """
    m = mesh.shape[MODEL]

    def rule(leaf):
        shape = tuple(np.shape(leaf))
        if m > 1 and len(shape) >= 1 and int(np.prod(shape)) >= min_size and shape[-1] % m == 0:
            return NamedSharding(mesh, P(*([None] * (len(shape) - 1)), MODEL))
        return replicated(mesh)

    return jax.tree.map(rule, tree)


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    """``x`` as a global array with ``sharding``; each process supplies the same full value."""
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) else np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_state(state: Any, mesh: Mesh, *, min_size: int = MIN_SIZE) -> Any:
    """Places a train state (or any params pytree) on ``mesh`` by :func:`state_shardings`."""
    return jax.tree.map(_put, state, state_shardings(state, mesh, min_size=min_size))


def _check_batch(batch: Any, divisor: int, where: str, what: str) -> None:
    p = Problems(where)
    leaves = jax.tree_util.tree_flatten_with_path(batch)[0]
    if not leaves:
        p.value("`batch` has no arrays.")
    sizes = set()
    for path, leaf in leaves:
        name = f"batch{jax.tree_util.keystr(path)}"
        if np.ndim(leaf) == 0:
            p.value(f"`{name}` is a scalar; every batch leaf needs a leading examples axis.")
            continue
        n = np.shape(leaf)[0]
        sizes.add(n)
        if n % divisor:
            p.value(
                f"`{name}` has {n} examples, not a multiple of {divisor} ({what}); got "
                f"{name}.shape={np.shape(leaf)}. Use a batch size divisible by {divisor}, or "
                "drop / pad the last batch."
            )
    if len(sizes) > 1:
        p.value(f"the batch leaves disagree on the number of examples: {sorted(sizes)}.")
    p.raise_if_any()


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Splits a global batch over the ``data`` axis (every process passes the same batch).

    Args:
      batch: pytree of arrays ``(B, ...)`` sharing the leading axis.
      mesh: from :func:`make_mesh`.

    Raises:
      ValueError: when ``B`` is not a multiple of the ``data`` axis size.
    """
    d = mesh.shape[DATA]
    _check_batch(batch, d, "shard_batch", f"the {d} devices on the mesh's `data` axis")
    return jax.tree.map(lambda x: _put(x, batch_sharding(mesh)), batch)


def _local_data_positions(mesh: Mesh) -> int:
    """How many positions of the ``data`` axis hold a device of this process."""
    data_axis = mesh.axis_names.index(DATA)
    local = {d.id for d in jax.local_devices()}
    rows = {idx[data_axis] for idx, d in np.ndenumerate(mesh.devices) if d.id in local}
    return max(len(rows), 1)


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Assembles a global batch from each process's own rows.

    Every process passes its ``(B_local, ...)`` slice; the result is a global array of
    ``(B_local * processes, ...)`` split over ``data``, built by
    :func:`jax.make_array_from_process_local_data` (on one process: ``local_batch`` itself).

    Raises:
      ValueError: when ``B_local`` is not a multiple of this process's ``data`` positions.
    """
    k = _local_data_positions(mesh)
    _check_batch(local_batch, k, "global_batch", f"this process's {k} positions on `data`")
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def shard_step(
    step: Callable[[Any, Any], tuple[Any, dict]],
    mesh: Mesh,
    *,
    donate: bool = True,
    min_size: int = MIN_SIZE,
) -> Callable[[Any, Any], tuple[Any, dict]]:
    """Turns a pure ``step(state, batch) -> (state, metrics)`` into a jitted SPMD step.

    The state is constrained to :func:`state_shardings` on the way in and out (so its layout
    never drifts between steps), the batch to :func:`batch_sharding` and the metrics to
    replicated; XLA partitions the rest (the gradient mean becomes an all-reduce over
    ``data``). A batch whose size does not divide by the ``data`` axis runs replicated
    (same numbers, no parallelism); :func:`shard_batch` refuses such batches up front.

    Args:
      step: e.g. ``make_train_step(loss_fn, optimizer)``.
      mesh: from :func:`make_mesh`.
      donate: donate the input state's buffers to the output state.
      min_size: see :func:`state_shardings`.
    """

    def constrain_state(state):
        return jax.lax.with_sharding_constraint(
            state, state_shardings(state, mesh, min_size=min_size)
        )

    def sharded(state, batch):
        state, metrics = step(constrain_state(state), _constrain_batch(batch, mesh))
        return constrain_state(state), jax.lax.with_sharding_constraint(metrics, replicated(mesh))

    return jax.jit(sharded, donate_argnums=(0,) if donate else ())


def shard_eval_step(
    eval_step: Callable[[Any, Any], dict], mesh: Mesh
) -> Callable[[Any, Any], dict]:
    """Jits ``eval_step(params, batch) -> metrics`` with the batch split over ``data``.

    The params keep the layout they arrive with (from :func:`shard_state`); the metrics come
    back replicated.
    """

    def sharded(params, batch):
        metrics = eval_step(params, _constrain_batch(batch, mesh))
        return jax.lax.with_sharding_constraint(metrics, replicated(mesh))

    return jax.jit(sharded)


def _constrain_batch(batch: Any, mesh: Mesh) -> Any:
    """Inside ``jit``: split each leaf over ``data`` when it divides, else replicate it."""
    d = mesh.shape[DATA]

    def constrain(x):
        ok = np.ndim(x) >= 1 and np.shape(x)[0] % d == 0
        return jax.lax.with_sharding_constraint(x, batch_sharding(mesh) if ok else replicated(mesh))

    return jax.tree.map(constrain, batch)


def data_parallel_loss(loss_fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """``loss_fn`` computed per ``data`` shard with :func:`jax.shard_map`, then averaged.

    Under :func:`shard_step` alone XLA partitions the whole step, which is exact for any loss;
    but on CPU (the only backend this was measured on) it all-reduces the weight gradients
    inside the backward scan, once per time step. Wrapped by this function, each device
    differentiates its own shard of the batch, the backward scan accumulates locally, and the
    gradients are averaged once per step (``pmean`` over ``data``; ``model`` stays with XLA).

    Only for losses that are a **mean over equally weighted examples** (like ``jnp.mean`` of
    squared errors): the mean of per-shard means equals the global mean only then. A loss
    normalised by a batch-wide count (a masked mean over variable lengths) changes meaning;
    use :func:`shard_step` alone for it. With a key, each shard folds in its ``data`` index,
    so dropout masks differ across shards (and from a one-device run). A batch whose size
    does not divide by the ``data`` axis runs ``loss_fn`` unwrapped.

    Args:
      loss_fn: ``loss_fn(params, batch[, key]) -> loss`` or ``(loss, metrics)``.
      mesh: from :func:`make_mesh`.

    Returns:
      A loss function with the same signature, for :func:`lstm_jax.make_train_step`.
    """
    d = mesh.shape[DATA]

    def local(params, batch, *key):
        if key:
            key = (jax.random.fold_in(key[0], jax.lax.axis_index(DATA)),)
        return jax.lax.pmean(loss_fn(params, batch, *key), DATA)

    def wrapped(params, batch, *key):
        if any(np.ndim(x) < 1 or np.shape(x)[0] % d for x in jax.tree.leaves(batch)):
            return loss_fn(params, batch, *key)
        specs = (P(), P(DATA)) + (P(),) * len(key)
        # check_vma=False: `loss_fn` is the user's and may run loops of its own from zero
        # carries that do not vary over `data` (the library's loops cast theirs, see
        # core/vma.py), which the check would refuse.
        per_shard = jax.shard_map(
            local, mesh=mesh, in_specs=specs, out_specs=P(), axis_names={DATA}, check_vma=False
        )
        return per_shard(params, batch, *key)

    return wrapped


def place_on_mesh(tree: Any, role: str, mesh: Mesh, *, min_size: int = MIN_SIZE) -> Any:
    """What ``fit(mesh=...)`` does with a state or a batch: lay it out on ``mesh``.

    ``role="state"``: :func:`shard_state`. ``role="batch"``: :func:`shard_batch`, except that
    a batch whose size does not divide by the ``data`` axis (the last, partial batch of an
    epoch) is replicated instead, which computes the same numbers without the speed-up.
    """
    if role == "state":
        return shard_state(tree, mesh, min_size=min_size)
    sizes = {np.shape(x)[0] for x in jax.tree.leaves(tree) if np.ndim(x) >= 1}
    if all(n % mesh.shape[DATA] == 0 for n in sizes):
        return shard_batch(tree, mesh)
    return jax.tree.map(lambda x: _put(x, replicated(mesh)), tree)
