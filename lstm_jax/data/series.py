"""Real time series shipped with the package, and series read from a user's CSV file.

Built-in series (all public domain; the numbers are copied from the datasets bundled with
statsmodels 0.15, ``statsmodels.datasets.elnino`` and ``statsmodels.datasets.co2``):

- ``"elnino"``: monthly mean sea surface temperature (degrees C) of the Pacific Ocean in the
  Nino 1+2 region (0-10 S, 90-80 W), January 1950 to December 2010, 732 months. Source: NOAA
  National Weather Service, Climate Prediction Center, ERSST.V3B. Public domain (a work of the
  US government). Seasonal period 12.
- ``"co2"``: weekly atmospheric CO2 (ppmv) at Mauna Loa Observatory, Hawaii, March 1958 to
  December 2001, 2284 weeks (59 missing weeks filled by linear interpolation). Source: Keeling &
  Whorf (2004), Carbon Dioxide Information Analysis Center, Oak Ridge National Laboratory, US
  Department of Energy. Public domain. Seasonal period 52.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

BUILTIN = {
    # name: (file, seasonal period, description)
    "elnino": ("elnino.csv", 12, "Nino 1+2 sea surface temperature, monthly 1950-2010 (NOAA)"),
    "co2": ("co2_weekly.csv", 52, "Mauna Loa atmospheric CO2, weekly 1958-2001 (CDIAC)"),
}


class Series(NamedTuple):
    """A time series with its column names and the label of every step."""

    values: np.ndarray  # (N, F) float32
    columns: list[str]  # F names
    index: list[str]  # N step labels (dates), or row numbers
    name: str
    period: int | None  # seasonal period in steps, when known


def load_series(name: str = "elnino") -> Series:
    """A built-in real series by name (``"elnino"`` or ``"co2"``); needs no download."""
    if name not in BUILTIN:
        raise ValueError(
            f"`load_series`: unknown series {name!r}; choose one of {sorted(BUILTIN)}."
        )
    file, period, _ = BUILTIN[name]
    with resources.as_file(resources.files("lstm_jax.data") / file) as path:
        series = load_csv(path, index_column=0)
    return series._replace(name=name, period=period)


def load_csv(
    path,
    columns: Sequence[str | int] | None = None,
    *,
    index_column: str | int | None = None,
    period: int | None = None,
) -> Series:
    """Reads a numeric series from a CSV file with a header row.

    Args:
      path: the CSV file.
      columns: the columns to read, by name or 0-based position; default every column that
        parses as numbers (other than ``index_column``).
      index_column: a column of step labels (e.g. dates), kept as strings.
      period: the seasonal period, if known (used by the seasonal-naive baseline).

    Raises:
      ValueError: naming the file, row and column of a value that is not a number, or a
        column that does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file not found: {path}")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header row and at least one data row.")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    idx_col = None if index_column is None else _column(path, header, index_column)
    if columns is None:
        cols = [j for j in range(len(header)) if j != idx_col and _numeric(body, j)]
        if not cols:
            raise ValueError(f"{path}: no numeric column found; name one with `columns`.")
    else:
        cols = [_column(path, header, c) for c in columns]
    values = np.empty((len(body), len(cols)), np.float32)
    for i, row in enumerate(body):
        for k, j in enumerate(cols):
            try:
                values[i, k] = float(row[j])
            except (ValueError, IndexError):
                cell = row[j] if j < len(row) else ""
                raise ValueError(
                    f"{path}: row {i + 2}, column {header[j]!r}: {cell!r} is not a number."
                ) from None
    index = (
        [r[idx_col] for r in body] if idx_col is not None else [str(i) for i in range(len(body))]
    )
    return Series(values, [header[j] for j in cols], index, path.stem, period)


def _column(path, header: list[str], c: str | int) -> int:
    if isinstance(c, int) and 0 <= c < len(header):
        return c
    if isinstance(c, str) and c in header:
        return header.index(c)
    if isinstance(c, str) and c.isdigit() and int(c) < len(header):
        return int(c)
    raise ValueError(f"{path}: no column {c!r}; the columns are {header}.")


def _numeric(body, j: int) -> bool:
    try:
        for row in body[:20]:
            float(row[j])
    except (ValueError, IndexError):
        return False
    return True
