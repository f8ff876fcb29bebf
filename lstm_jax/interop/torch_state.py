"""Reading a PyTorch ``state_dict``: the part of a whole model's under a prefix, the module kind
and sizes it implies, and every missing, unexpected or mis-shaped entry, reported together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lstm_jax.core.checks import Problems

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
    return np.asarray(t)


def under_prefix(where: str, sd: Mapping, prefix: str) -> dict:
    """The entries of ``sd`` whose key starts with ``prefix``, with the prefix removed.

    ``prefix`` names a submodule of a whole model, e.g. ``"encoder.lstm."`` for the keys
    ``encoder.lstm.weight_ih_l0``, ...; a missing final dot is added.
    """
    if prefix and not prefix.endswith("."):
        prefix += "."
    sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not sub:
        raise ValueError(
            f"`{where}`: no entry of `peer` starts with `prefix={prefix!r}`; the state dict "
            f"holds the modules {module_prefixes(sd)}."
        )
    return sub


def module_prefixes(sd: Mapping, limit: int = 12) -> list[str]:
    """The distinct module paths (``"encoder.lstm."``, ...) in the keys of a state dict."""
    found = sorted({k[: k.rindex(".") + 1] for k in sd if "." in k})
    return found[:limit] + (["..."] if len(found) > limit else [])


def infer_config(where, mode, is_cell, sd):
    sfx = "" if is_cell else "_l0"
    if f"weight_hh{sfx}" not in sd or f"weight_ih{sfx}" not in sd:
        hint = ""
        if any("." in k for k in sd):
            hint = (
                " It looks like a whole model's state dict: pass `prefix=` naming the module, "
                f"one of {module_prefixes(sd)}."
            )
        keys = sorted(sd)
        shown = keys[:8] + (["..."] if len(keys) > 8 else [])
        raise ValueError(
            f"`{where}`: `peer` must hold `weight_ih{sfx}` and `weight_hh{sfx}`; got keys "
            f"{shown}.{hint}"
        )
    w_hh, w_ih = sd[f"weight_hh{sfx}"], sd[f"weight_ih{sfx}"]
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ValueError(f"`{where}`: `peer['weight_hh{sfx}']` and `weight_ih` must be matrices.")
    proj = sd.get(f"weight_hr{sfx}")
    if mode is None:
        ratio, rem = divmod(w_hh.shape[0], w_hh.shape[1])
        mode = "LSTM" if proj is not None else {4: "LSTM", 3: "GRU", 1: "RNN"}.get(ratio)
        if mode is None or (rem and proj is None):
            raise ValueError(
                f"`{where}`: cannot tell the module kind from `peer['weight_hh{sfx}']` of shape "
                f"{w_hh.shape}: expected (4H, H) (LSTM), (3H, H) (GRU) or (H, H) (RNN)."
            )
    H = w_hh.shape[0] // GATES[mode]
    num_layers = 1
    while f"weight_ih_l{num_layers}" in sd:
        num_layers += 1
    return {
        "mode": mode,
        "input_size": w_ih.shape[1],
        "hidden_size": H,
        "proj_size": None if proj is None else proj.shape[0],
        "num_layers": num_layers,
        "bidirectional": f"weight_ih{sfx}_reverse" in sd,
        "bias": f"bias_ih{sfx}" in sd,
    }


def expected_shapes(is_cell, cfg):
    mode = cfg["mode"]
    G, H, P = GATES[mode], cfg["hidden_size"], cfg["proj_size"] or cfg["hidden_size"]
    dirs = ["", "_reverse"] if cfg["bidirectional"] else [""]
    shapes, size = {}, cfg["input_size"]
    for k in [None] if is_cell else range(cfg["num_layers"]):
        for d in dirs:
            s = "" if k is None else f"_l{k}{d}"
            shapes[f"weight_ih{s}"] = (G * H, size)
            shapes[f"weight_hh{s}"] = (G * H, P)
            if cfg["bias"]:
                shapes[f"bias_ih{s}"] = shapes[f"bias_hh{s}"] = (G * H,)
            if cfg["proj_size"] is not None:
                shapes[f"weight_hr{s}"] = (P, H)
        size = P * len(dirs)
    return shapes


def check_state_dict(where, sd, expected):
    p = Problems(where)
    for k in sorted(set(expected) - set(sd)):
        p.value(f"`peer` lacks `{k}` (expected shape {expected[k]}).")
    for k in sorted(set(sd) - set(expected)):
        p.value(f"`peer` has an unexpected entry `{k}`.")
    for k in sorted(set(sd) & set(expected)):
        if tuple(sd[k].shape) != expected[k]:
            p.value(f"`peer['{k}']` must have shape {expected[k]}; got {tuple(sd[k].shape)}.")
    p.raise_if_any()
