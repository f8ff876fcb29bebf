"""StableHLO through ``jax.export``: the JAX-native way to serve a trained model.

:func:`to_stablehlo` traces ``layer.apply`` with symbolic ``batch`` and ``time`` dimensions and
the params baked in as constants, and writes ``jax.export``'s serialised artefact (StableHLO
bytecode plus its calling convention). :func:`load_stablehlo` reads it back, in any process,
with only ``jax`` installed: no lstm_jax, no Python model code. XLA compiles it on first call
for whatever batch and time it is given. The serialised form is stable across JAX versions
within ``jax.export``'s compatibility window (six months backward).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.export.model import (
    as_recurrent_model,
    export_input_size,
    input_file,
    output_path,
)


def to_stablehlo(
    layer: Any,
    params: Any,
    path: str | Path | None = None,
    *,
    input_size: int | None = None,
    lengths: bool | None = None,
    platforms: tuple[str, ...] | None = None,
) -> bytes:
    """Serialises ``xs -> layer.apply(params, xs)[1]`` (and ``lengths`` when asked for).

    Args:
      layer: as for :func:`lstm_jax.export.to_onnx`.
      params: its params (baked into the artefact).
      path: where to write the bytes (None: only return them).
      input_size: features of ``xs`` (read from the params when None; when given, it
        must equal theirs).
      lengths: take a second argument, int32 ``(batch,)`` valid lengths. None: only for the
        command's ``Classifier``.
      platforms: backends to lower for (default: this process's backend), e.g.
        ``("cpu", "cuda")``.

    Returns:
      The serialised ``jax.export.Exported``; ``load_stablehlo`` turns it back into a function.

    Examples:
      >>> import jax, jax.numpy as jnp, lstm_jax as lj
      >>> rnn = lj.LSTM(8)
      >>> serve = load_stablehlo(to_stablehlo(rnn, rnn.init(jax.random.key(0), 3)))
      >>> serve(jnp.ones((2, 5, 3))).shape, serve(jnp.ones((7, 40, 3))).shape  # any B and T
      ((2, 5, 8), (7, 40, 8))
    """
    if lengths is None:
        lengths = type(layer).__name__ == "Classifier"
    model, mparams = as_recurrent_model(layer, params)
    rnn = model.rnn
    b, t = jax.export.symbolic_shape("batch, time")
    if model.vocab_size is not None:
        x_spec = jax.ShapeDtypeStruct((t, b) if rnn.time_major else (b, t), jnp.int32)
    else:
        size = export_input_size("to_stablehlo", input_size, mparams)
        shape = (t, b, size) if rnn.time_major else (b, t, size)
        x_spec = jax.ShapeDtypeStruct(shape, mparams.rnn[0].forward.w_x.dtype)
    specs = [x_spec] + ([jax.ShapeDtypeStruct((b,), jnp.int32)] if lengths else [])

    def infer(xs, *lens):
        return model.apply(mparams, xs, lengths=lens[0] if lens else None)[1]

    exported = jax.export.export(jax.jit(infer), platforms=platforms)(*specs)
    blob = exported.serialize()
    if path is not None:
        output_path(path).write_bytes(blob)
    return bytes(blob)


def load_stablehlo(source: str | Path | bytes):
    """The function serialised by :func:`to_stablehlo` (a path or the bytes), ready to call:
    ``fn(xs)`` or ``fn(xs, lengths)``."""
    if isinstance(source, (bytes, bytearray)):
        blob, what = source, "the bytes given"
    else:
        path = input_file("load_stablehlo", source)
        blob, what = path.read_bytes(), str(path)
    try:
        exported = jax.export.deserialize(bytearray(blob))
    except Exception as e:  # flatbuffers raises struct.error, IndexError, ... on foreign bytes
        raise ValueError(
            f"`load_stablehlo`: cannot read {what} as a serialised jax.export artefact (what "
            f"`to_stablehlo` writes): {type(e).__name__}: {e}"
        ) from e
    return exported.call
