"""Checkpoints and params files: msgpack, checksummed, written atomically; never pickle.

A file is ``MAGIC (8 bytes) | SHA-256 of the payload (32 bytes) | payload``, where the payload
is a msgpack map (``flax.serialization.msgpack_serialize``) of the pytree's leaves as arrays,
their key paths (``jax.tree_util.keystr``), and JSON text for the run's config and metadata.
Only arrays, strings and numbers are stored, so loading runs no code. Every leaf keeps its exact
dtype (float64, int64, bool, bfloat16, ...; leaves of other kinds, such as strings, are refused
when saving). Loading needs a template pytree ``like`` with the same structure; every leaf is
checked against it (path, shape, dtype), a mismatch is refused with the list of differences,
and each leaf comes back as the kind of its template leaf (a JAX array, a NumPy array or a
Python number), so a float64 NumPy leaf is not narrowed to JAX's default float32.

Writes go to a temporary file in the same directory, are flushed and ``fsync``-ed, then
renamed over the target with ``os.replace`` (atomic on POSIX): a save interrupted half-way
leaves the previous file intact. A temporary file left by a killed save (``.NAME.tmp-PID``,
whose process no longer runs) is removed by the next save to the same file.
"""

from __future__ import annotations

import glob
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
    _write(_as_path("save_checkpoint", path), "checkpoint", tree, config, meta)


def load_checkpoint(path, like: Any) -> Checkpoint:
    """Reads a file written by :func:`save_checkpoint` into the structure of ``like``.

    Raises:
      CheckpointError: (a ``ValueError``) when the file is missing, not a checkpoint,
        corrupted (checksum, or a payload of the wrong structure), or its leaves differ from
        ``like`` in path, shape or dtype.
      TypeError: when ``path`` is not a path.
    """
    path = _as_path("load_checkpoint", path)
    payload = _read(path, "checkpoint")
    tree = _restore(path, payload, like)
    return Checkpoint(tree, _json(path, payload, "config"), _json(path, payload, "meta"))


def read_checkpoint_info(path) -> tuple[dict, dict]:
    """``(config, meta)`` of a checkpoint, without a template (to rebuild the model first)."""
    path = _as_path("read_checkpoint_info", path)
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
    _write(_as_path("save_params", path), "params", params, config, None)


def load_params(path, like: Any) -> Any:
    """Reads params saved by :func:`save_params` into the structure of the template ``like``.

    ``like`` is any params pytree of the expected model (e.g. ``layer.init(key, input_size)``);
    only its structure, shapes and dtypes are used.

    Raises:
      CheckpointError: (a ``ValueError``) naming every leaf whose path, shape or dtype differs.
      TypeError: when ``path`` is not a path.
    """
    path = _as_path("load_params", path)
    return _restore(path, _read(path, "params"), like)


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file, ``fsync`` and ``os.replace``."""
    path = _as_path("atomic_write_bytes", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
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


def _as_path(where: str, path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`{where}`: `path` must be a file path (str or os.PathLike); got "
            f"{type(path).__name__}."
        )
    return Path(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Deletes ``.NAME.tmp-PID`` files of ``path`` whose writing process no longer runs."""
    prefix = f".{path.name}.tmp-"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = tmp.name[len(prefix) :]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover - removed concurrently, or read-only
                pass


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, OverflowError):
        return True  # it exists (another user's), or the platform cannot tell: keep the file
    return True


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


def _write(path: Path, kind: str, tree: Any, config: Any, meta: Any) -> None:
    where = f"save_{kind}"
    keys, leaves = _flatten(tree)
    pairs = enumerate(zip(keys, leaves, strict=True))
    arrays = {str(i): _storable(where, k, leaf) for i, (k, leaf) in pairs}
    for name, value in (("config", config), ("meta", meta)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"`{where}`: `{name}` must be a dict; got {type(value).__name__}.")
    try:
        config_text, meta_text = json.dumps(config or {}), json.dumps(meta or {})
    except (TypeError, ValueError) as e:
        raise TypeError(f"`{where}`: `config` and `meta` must be JSON-serialisable: {e}") from e
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


def _storable(where: str, key: str, leaf: Any) -> np.ndarray:
    """The leaf as a NumPy array of a numeric or bool dtype; refuses anything else."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        raise TypeError(
            f"`{where}`: leaf `tree{key}` is a PRNG key array; store "
            "`jax.random.key_data(key)` and rebuild it with `jax.random.wrap_key_data`."
        )
    a = np.asarray(jax.device_get(leaf))
    if a.dtype != np.bool_ and not jax.numpy.issubdtype(a.dtype, np.number):
        raise TypeError(
            f"`{where}`: leaf `tree{key}` must be an array or number of a numeric or bool dtype; "
            f"got {type(leaf).__name__} with dtype {a.dtype}. Put strings and other settings "
            "in `config`/`meta` (JSON)."
        )
    return a


def _read(path: Path, kind: str) -> dict:
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
    _check_payload(path, content)
    if content.get("kind") != kind:
        raise CheckpointError(
            f"{path} holds a {content.get('kind')!r} file, not a {kind!r} file; use "
            f"`load_{content.get('kind')}`."
        )
    return content


def _check_payload(path: Path, content: Any) -> None:
    """Refuses a payload (whose checksum matched) that is not what :func:`_write` writes."""

    def bad(what: str):
        return CheckpointError(
            f"{path} is corrupted (its checksum matches but {what}); it was not written by "
            "lstm_jax. Use an earlier copy."
        )

    if not isinstance(content, dict):
        raise bad(f"the payload is a {type(content).__name__}, not a map")
    need = {"version": int, "kind": str, "keys": list, "leaves": dict, "config": str, "meta": str}
    missing = [k for k in need if k not in content]
    if missing:
        raise bad(f"the payload lacks {missing}")
    wrong = [
        f"{k} ({type(content[k]).__name__})"
        for k, t in need.items()
        if not isinstance(content[k], t)
    ]
    if wrong:
        raise bad(f"these fields have the wrong type: {', '.join(wrong)}")
    if content["version"] != 1:
        raise bad(f"it has format version {content['version']!r}; this version reads 1")
    keys, leaves = content["keys"], content["leaves"]
    if not all(isinstance(k, str) for k in keys) or sorted(leaves) != sorted(
        map(str, range(len(keys)))
    ):
        raise bad(f"its {len(keys)} leaf paths and {len(leaves)} leaves do not match")
    not_arrays = [k for k, v in leaves.items() if not isinstance(v, np.ndarray)]
    if not_arrays:
        raise bad(f"leaves {sorted(not_arrays, key=int)[:5]} are not arrays")


def _json(path, payload: dict, field: str) -> dict:
    try:
        value = json.loads(payload[field])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupted (bad {field}: {e}).") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} is corrupted (its {field} is not a JSON object).")
    return value


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
    return jax.tree.unflatten(treedef, [_like(a, t) for a, t in zip(saved, leaves, strict=True)])


def _like(a: np.ndarray, template: Any) -> Any:
    """The saved array as the kind of its template leaf: a JAX array, a NumPy array or
    scalar, or a Python number (so no dtype is narrowed by JAX's default float32/int32)."""
    if isinstance(template, jax.Array):
        return jax.numpy.asarray(a)
    if isinstance(template, np.generic):
        return a[()]
    if isinstance(template, (bool, int, float, complex)):
        return a.item()
    return a


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
