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
import math
import os
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
    columns: Sequence[str | int] | str | int | None = None,
    *,
    index_column: str | int | None = None,
    period: int | None = None,
) -> Series:
    """Reads a numeric series from a CSV file (UTF-8, with a header row).

    Nothing is dropped silently: every data row becomes a step, and every column read must
    hold a finite number (that fits float32) in every row. A cell that is not one, a blank line
    between rows, or a row with another number of cells than the header is refused with the
    file, the row and the column. Trailing blank lines and a UTF-8 byte-order mark are ignored.

    Args:
      path: the CSV file.
      columns: the columns to read, by name or 0-based position (one name or position reads
        one column); default every column other than ``index_column``. Name the columns to
        leave others (e.g. text notes) unread.
      index_column: a column of step labels (e.g. dates), kept as strings.
      period: the seasonal period, if known (used by the seasonal-naive baseline).

    Raises:
      ValueError: naming the file, row and column of a value that is not a finite number, a
        column that does not exist, or a file that is not UTF-8 CSV text.
    """
    path, wanted = _check_csv_args(path, columns)
    header, body, lines = _read_rows(path)
    idx_col = None if index_column is None else _column(path, header, index_column)
    if wanted is None:
        cols = [j for j in range(len(header)) if j != idx_col]
        if not cols:
            raise ValueError(f"{path}: no column to read besides the index column {header}.")
    else:
        cols = [_column(path, header, c) for c in wanted]
    values = np.empty((len(body), len(cols)), np.float32)
    for i, row in enumerate(body):
        for k, j in enumerate(cols):
            values[i, k] = _number(path, lines[i], header[j], row[j], wanted is None)
    index = (
        [r[idx_col] for r in body] if idx_col is not None else [str(i) for i in range(len(body))]
    )
    return Series(values, [header[j] for j in cols], index, path.stem, period)


_F32_MAX = float(np.finfo(np.float32).max)


def _check_csv_args(path, columns):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`load_csv`: `path` must be a file path (str or os.PathLike); got "
            f"{type(path).__name__}."
        )
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file not found: {path}")
    if isinstance(columns, (str, int, np.integer)) and not isinstance(columns, bool):
        columns = [columns]  # one column by name or position
    if columns is not None:
        if not isinstance(columns, Sequence) or not all(
            isinstance(c, (str, int, np.integer)) and not isinstance(c, bool) for c in columns
        ):
            raise TypeError(
                "`load_csv`: `columns` must be a column name or position, or a list of them; "
                f"got {columns!r}."
            )
        if len(columns) == 0:
            raise ValueError("`load_csv`: `columns` is empty; name at least one column.")
    return path, columns


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and each row's line number; refuses text that is not UTF-8 CSV."""
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drops a BOM
            reader = csv.reader(f)
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    except csv.Error as e:
        raise ValueError(f"{path} is not CSV text (line {len(lines) + 1}: {e}).") from None
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()  # trailing blank lines
        lines.pop()
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header row and at least one data row.")
    header = [h.strip() for h in rows[0]]
    for row, line in zip(rows[1:], lines[1:], strict=True):
        if not any(c.strip() for c in row):
            raise ValueError(f"{path}: row {line} is blank; remove it or fill in the step.")
        if len(row) != len(header):
            raise ValueError(
                f"{path}: row {line} has {len(row)} cells but the header has {len(header)} "
                f"columns {header}."
            )
    return header, rows[1:], lines[1:]


def _number(path: Path, line: int, name: str, cell: str, every_column: bool) -> float:
    try:
        v = float(cell)
    except ValueError:
        hint = (
            " Name the columns to read with `columns=` (the command: --columns), and a column "
            "of dates or labels with `index_column=` (--index-column)."
            if every_column
            else ""
        )
        raise ValueError(
            f"{path}: row {line}, column {name!r}: {cell!r} is not a number.{hint}"
        ) from None
    if not math.isfinite(v) or abs(v) > _F32_MAX:
        raise ValueError(
            f"{path}: row {line}, column {name!r}: {cell!r} is not a finite float32 number "
            f"(|x| <= {_F32_MAX:.4g}); fill or drop missing values first."
        )
    return v


def _column(path, header: list[str], c: str | int) -> int:
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(header):
        return int(c)
    if isinstance(c, str) and header.count(c) > 1:
        where = [j for j, h in enumerate(header) if h == c]
        raise ValueError(f"{path}: column {c!r} appears {len(where)} times (positions {where}); "
                         "name it by position.")  # fmt: skip
    if isinstance(c, str) and c in header:
        return header.index(c)
    if isinstance(c, str) and c.isdigit() and int(c) < len(header):
        return int(c)
    raise ValueError(f"{path}: no column {c!r}; the columns are {header}.")
