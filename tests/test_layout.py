"""The package's layout is its architecture: imports point one way, private names stay private,
and ``import lstm_jax`` loads neither the application nor any optional heavy dependency."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lstm_jax"

# A component may import only components of a lower rank (and itself). The flat
# lstm_jax/__init__.py re-exports from every library component but the application.
RANK = {
    "core": 0,
    "cpu_malloc": 0,
    "compile_cache": 0,
    "cells": 1,
    "checkpoint": 1,
    "audio": 1,
    "sequence": 2,
    "data": 2,
    "layers": 3,
    "diagnostics": 4,
    "sharding": 4,
    "training": 5,
    "interop": 6,
    "nnx": 6,
    "export": 6,
    "cli": 7,  # the lstm-jax application
    "experiments": 8,  # only the `python -m lstm_jax.experiments` entry into cli
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("lstm_jax", *parts)).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(tree):
    """``(target module, imported names)`` of every lstm_jax import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lstm_jax"):
            names = [a.name for a in node.names]
            target = node.module
            if target == "lstm_jax" and names[0] in RANK:  # `from lstm_jax import sharding`
                target = f"lstm_jax.{names[0]}"
            yield target, names
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lstm_jax"):
                    yield a.name, []


def test_every_component_has_a_rank():
    found = {_component(m) for m, _ in _modules()} - {"__init__"}
    assert found <= set(RANK), f"give these a rank in tests/test_layout.py: {found - set(RANK)}"


def test_imports_point_one_way():
    wrong = []
    for module, tree in _modules():
        me = _component(module)
        for target, _ in _imports(tree):
            other = _component(target)
            if me == "__init__" or other == me:
                continue
            if other == "__init__" or RANK[other] >= RANK[me]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_module_imports_a_private_name_from_another():
    wrong = [
        f"{module} imports {name} from {target}"
        for module, tree in _modules()
        for target, names in _imports(tree)
        for name in names
        if name.startswith("_")
    ]
    assert not wrong, "\n".join(wrong)


HEAVY = {"tqdm", "matplotlib", "flax", "torch", "onnx", "onnxruntime", "librosa", "keras"}


def test_import_lstm_jax_loads_neither_the_application_nor_optional_dependencies():
    code = (
        "import sys, lstm_jax; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | "
        "{m for m in sys.modules if m.startswith('lstm_jax.cli')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert not loaded & HEAVY, f"`import lstm_jax` loaded {sorted(loaded & HEAVY)}"
    assert not {m for m in loaded if m.startswith("lstm_jax.cli")}
