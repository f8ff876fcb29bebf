"""Helpers shared by the converters: array copies, cell compatibility, params validation."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.core.activations import ACTIVATIONS, resolve_activation
from lstm_jax.core.checks import Problems, check_params
from lstm_jax.layers.stacked import LayerParams, StackedRNN

CELLS = (LSTMCell, GRUCell, SimpleRNNCell)


def as_jax(a: Any, dtype=None) -> jnp.ndarray:
    """A JAX copy of a NumPy-convertible array (a torch tensor goes through NumPy first)."""
    return jnp.asarray(np.array(a), dtype=dtype)


def activation_name(fn: Any) -> str | None:
    """The registry name of an activation (a name or one of the registered callables)."""
    resolved = resolve_activation(fn, "activation_name", "fn")
    return next((name for name, f in ACTIVATIONS.items() if f is resolved), None)


def check_plain_cell(
    where: str,
    arg: str,
    cell: Any,
    peer: str,
    allow_proj: bool,
    any_activation: bool = False,
    reset_before_ok: bool = False,
) -> None:
    """Raises ValueError naming every option of ``cell`` that ``peer`` cannot express."""
    p = Problems(where)
    if not isinstance(cell, CELLS):
        raise TypeError(
            f"`{where}`: `{arg}` must be a LSTMCell, GRUCell or SimpleRNNCell (or a StackedRNN "
            f"of one); got {type(cell).__name__}."
        )
    bad = []
    fixed = isinstance(cell, (LSTMCell, GRUCell)) and not any_activation
    if fixed and activation_name(cell.gate_activation) != "sigmoid":
        bad.append(f"gate_activation={cell.gate_activation!r}")
    if fixed and activation_name(cell.activation) != "tanh":
        bad.append(f"activation={cell.activation!r}")
    if isinstance(cell, LSTMCell):
        for name, default in (("forget_gate", True), ("peephole", False), ("layer_norm", False)):
            if getattr(cell, name) != default:
                bad.append(f"{name}={getattr(cell, name)!r}")
        if cell.proj_size is not None and not allow_proj:
            bad.append(f"proj_size={cell.proj_size!r}")
    if isinstance(cell, GRUCell) and not cell.reset_after and not reset_before_ok:
        bad.append("reset_after=False")
    for b in bad:
        p.value(f"`{arg}` has {b}, which {peer} cannot express.")
    p.raise_if_any()


def check_layer_params(where: str, layer: StackedRNN, params: Any) -> list[int]:
    """Validates stacked params; returns each layer's input size."""
    p = Problems(where)
    ok = (
        isinstance(params, tuple)
        and len(params) == layer.num_layers
        and all(isinstance(lp, LayerParams) for lp in params)
    )
    if not ok:
        p.type(
            f"`params` must be a tuple of {layer.num_layers} LayerParams "
            f"(from `layer.init`); got {type(params).__name__}."
        )
        p.raise_if_any()
    sizes = []
    for k, lp in enumerate(params):
        sizes.append(_check_named(p, layer.cell, lp.forward, f"params[{k}].forward"))
        if layer.bidirectional != (lp.backward is not None):
            p.value(f"`params` must hold backward cells iff bidirectional={layer.bidirectional}.")
        elif lp.backward is not None:
            _check_named(p, layer.cell, lp.backward, f"params[{k}].backward")
    p.raise_if_any()
    return sizes


def check_cell_params(where: str, cell: Any, params: Any) -> int:
    """Validates one cell's params; returns their input size."""
    p = Problems(where)
    size = check_params(p, cell, params, cell.params_type)
    p.raise_if_any()
    return size


def _check_named(p: Problems, cell: Any, params: Any, name: str) -> int | None:
    """``check_params`` with its messages naming ``name`` instead of ``params``."""
    sub = Problems(p.where)
    size = check_params(sub, cell, params, cell.params_type)
    p.type_errors += [m.replace("`params", f"`{name}", 1) for m in sub.type_errors]
    p.value_errors += [m.replace("`params", f"`{name}", 1) for m in sub.value_errors]
    return size
