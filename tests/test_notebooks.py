"""Every notebook in ``notebooks/`` runs top to bottom in a fresh ``python3`` kernel.

One test per notebook. Each runs in its own temporary working directory (so a notebook that
writes files leaves nothing in the checkout) under a budget for the whole notebook: every
cell's timeout is what is left of that budget. A failing cell fails the test with the cell's
source and traceback. Warnings raised inside the kernel are printed there, not turned into
errors: pytest's ``filterwarnings = error`` governs this process only.
"""

import math
import re
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from helpers import optimized_env

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
# Each notebook takes well under a minute on 2 CPU cores; the slack is for slow or busy machines.
NOTEBOOK_BUDGET_S = 300
# 07 compiles and trains ten models (about 4.5 min on 2 idle cores)
BUDGET_S = {"07_modern_lstms": 600}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _execute(path: Path, cwd: Path) -> tuple[object, float]:
    nb = nbformat.read(path, as_version=4)
    budget = BUDGET_S.get(path.stem, NOTEBOOK_BUDGET_S)
    deadline = time.monotonic() + budget
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout_func=lambda cell: max(1, math.ceil(deadline - time.monotonic())),
        resources={"metadata": {"path": str(cwd)}},
    )
    t0 = time.monotonic()
    try:
        client.execute(env=optimized_env())  # notebooks run more than they compile
    except nbclient.exceptions.CellTimeoutError as e:
        pytest.fail(f"{path.name} ran past its {budget} s budget: {e}", pytrace=False)
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{ANSI.sub('', str(e))}", pytrace=False)
    return nb, time.monotonic() - t0


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


# tests/test_notebooks_modern.py runs these: a module of their own goes to the other xdist
# worker (`--dist loadscope`), so the longest notebook does not queue behind the others
OWN_MODULE = ("07_modern_lstms",)
HERE = [p for p in NOTEBOOKS if p.stem not in OWN_MODULE]


@pytest.mark.slow
@pytest.mark.parametrize("path", HERE, ids=[p.stem for p in HERE])
def test_notebook_runs(path, tmp_path):
    check_notebook(path, tmp_path)


def check_notebook(path: Path, tmp_path: Path) -> None:
    """Runs ``path`` in a fresh kernel; fails on an error, a timeout or a cell never run."""
    nb, seconds = _execute(path, tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert seconds < BUDGET_S.get(path.stem, NOTEBOOK_BUDGET_S)
