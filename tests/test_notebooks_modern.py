"""Notebook 07 runs top to bottom (see tests/test_notebooks.py; its own module so that it runs
on another pytest-xdist worker than the other notebooks)."""

import pytest
from test_notebooks import NOTEBOOKS, OWN_MODULE, check_notebook

MINE = [p for p in NOTEBOOKS if p.stem in OWN_MODULE]


@pytest.mark.slow
@pytest.mark.parametrize("path", MINE, ids=[p.stem for p in MINE])
def test_notebook_runs(path, tmp_path):
    check_notebook(path, tmp_path)
