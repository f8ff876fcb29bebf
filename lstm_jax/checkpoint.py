"""Checkpoints and params files: msgpack, checksummed, written atomically; never pickle.

A file is ``MAGIC (8 bytes) | SHA-256 of the payload (32 bytes) | payload``, where the payload
is a msgpack map (``flax.serialization.msgpack_serialize``) of the pytree's leaves as arrays,
their key paths (``jax.tree_util.keystr``), and JSON text for the run's config and metadata.
Only arrays, strings and numbers are stored, so loading runs no code. Loading needs a template
pytree ``like`` with the same structure; every leaf is checked against it (path, shape, dtype)
and a mismatch is refused with the list of differences.

Writes go to a temporary file in the same directory, are flushed and ``fsync``-ed, then
renamed over the target with ``os.replace`` (atomic on POSIX): a save interrupted half-way
leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

MAGIC = b"LSTMJAX\x01"
_HEADER = len(MAGIC) + 32


class CheckpointError(ValueError):
    """A checkpoint or params file is missing, corrupted, or does not fit the template."""


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns."""

    tree: Any  # the restored pytree, with the template's structure
    config: dict  # the JSON config saved with it
    meta: dict  # the JSON metadata saved with it (e.g. data position, history)


def save_checkpoint(path, tree: Any, *, config: dict | None = None, meta: dict | None = None):
    """Atomically writes ``tree`` (e.g. a :class:`TrainState`) with JSON ``config`` and ``meta``.

    Args:
      path: the file to write; its directory is created if needed.
      tree: a pytree of arrays (params, optimiser state, step, ...). PRNG key arrays must be
        stored as ``jax.random.key_data``.
      config: JSON-serialisable settings needed to rebuild the model (sizes, task, ...).
      meta: JSON-serialisable run metadata (data position, metric history, ...).
    """
    _write(path, "checkpoint", tree, config or {}, meta or {})


def load_checkpoint(path, like: Any) -> Checkpoint:
    """Reads a file written by :func:`save_checkpoint` into the structure of ``like``.

    Raises:
      CheckpointError: (a ``ValueError``) when the file is missing, not a checkpoint,
        corrupted (checksum), or its leaves differ from ``like`` in path, shape or dtype.
    """
    payload = _read(path, "checkpoint")
    tree = _restore(path, payload, like)
    return Checkpoint(tree, _json(path, payload, "config"), _json(path, payload, "meta"))


def read_checkpoint_info(path) -> tuple[dict, dict]:
    """``(config, meta)`` of a checkpoint, without a template (to rebuild the model first)."""
    payload = _read(path, "checkpoint")
    return _json(path, payload, "config"), _json(path, payload, "meta")


def save_params(path, params: Any, *, config: dict | None = None) -> None:
    """Atomically writes a params pytree (any model's) to ``path``; exact round trip.

    Examples:
      >>> import jax, tempfile, os
      >>> import lstm_jax as lj
      >>> from lstm_jax.checkpoint import save_params, load_params
      >>> rnn = lj.LSTM(8)
      >>> params = rnn.init(jax.random.key(0), 3)
      >>> path = os.path.join(tempfile.mkdtemp(), "lstm.msgpack")
      >>> save_params(path, params)
      >>> back = load_params(path, like=rnn.init(jax.random.key(1), 3))
      >>> bool((back[0].forward.w_x == params[0].forward.w_x).all())
      True
    """
    _write(path, "params", params, config or {}, {})


def load_params(path, like: Any) -> Any:
    """Reads params saved by :func:`save_params` into the structure of the template ``like``.

    ``like`` is any params pytree of the expected model (e.g. ``layer.init(key, input_size)``);
    only its structure, shapes and dtypes are used.

    Raises:
      CheckpointError: (a ``ValueError``) naming every leaf whose path, shape or dtype differs.
    """
    return _restore(path, _read(path, "params"), like)


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file, ``fsync`` and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _flatten(tree: Any) -> tuple[list[str], list[Any]]:
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p) for p, _ in pairs], [leaf for _, leaf in pairs]


def _write(path, kind: str, tree: Any, config: dict, meta: dict) -> None:
    keys, leaves = _flatten(tree)
    arrays = {str(i): np.asarray(jax.device_get(leaf)) for i, leaf in enumerate(leaves)}
    try:
        config_text, meta_text = json.dumps(config), json.dumps(meta)
    except TypeError as e:
        raise TypeError(f"`save_{kind}`: `config` and `meta` must be JSON-serialisable: {e}") from e
    # flax's msgpack codec (arrays as ext types) is imported here, not at module level, so
    # that `import lstm_jax` does not load Flax.
    from flax.serialization import msgpack_serialize

    payload = msgpack_serialize(
        {
            "version": 1,
            "kind": kind,
            "keys": keys,
            "leaves": arrays,
            "config": config_text,
            "meta": meta_text,
        }
    )
    atomic_write_bytes(path, MAGIC + hashlib.sha256(payload).digest() + payload)


def _read(path, kind: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{kind} file not found: {path}")
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an lstm_jax {kind} file (unknown header).")
    digest, payload = data[len(MAGIC) : _HEADER], data[_HEADER:]
    if len(data) < _HEADER or hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(
            f"{path} is corrupted (checksum mismatch: truncated or modified); use an earlier copy."
        )
    from flax.serialization import msgpack_restore

    try:
        content = msgpack_restore(payload)
    except Exception as e:  # the checksum matched, so this is a foreign writer's file
        raise CheckpointError(f"{path} is corrupted (cannot decode: {e}).") from e
    if content.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {content.get('kind')!r} file, not a {kind!r} file; use "
            f"`load_{content.get('kind')}`."
        )
    return content


def _json(path, payload: dict, field: str) -> dict:
    try:
        return json.loads(payload[field])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupted (bad {field}: {e}).") from e


def _restore(path, payload: dict, like: Any) -> Any:
    keys, leaves = _flatten(like)
    saved_keys = list(payload["keys"])
    saved = [payload["leaves"][str(i)] for i in range(len(saved_keys))]
    problems = []
    if saved_keys != keys:
        missing = [k for k in keys if k not in saved_keys]
        extra = [k for k in saved_keys if k not in keys]
        problems.append(
            f"structure differs from the template: missing {missing[:5]}, unexpected "
            f"{extra[:5]} ({len(saved_keys)} leaves saved, {len(keys)} expected)"
        )
    else:
        for k, a, t in zip(keys, saved, leaves, strict=True):
            shape, dtype = tuple(np.shape(t)), np.dtype(getattr(t, "dtype", np.asarray(t).dtype))
            if a.shape != shape or a.dtype != dtype:
                problems.append(
                    f"{k}: saved {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}"
                )
    if problems:
        raise CheckpointError(
            f"{path} does not match the expected model: " + "; ".join(problems[:8])
        )
    treedef = jax.tree.structure(like)
    return jax.tree.unflatten(treedef, [jax.numpy.asarray(a) for a in saved])


__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write_bytes",
    "load_checkpoint",
    "load_params",
    "read_checkpoint_info",
    "save_checkpoint",
    "save_params",
]
