"""Data for lstm_jax: long-memory benchmarks, synthetic tasks, windows, series and text.

Everything here works offline: synthetic generators are pure functions of a PRNG key, and the
real series and the text corpus ship inside the package.
"""

from lstm_jax.data._synthetic import (
    adding_problem,
    copy_task,
    copy_task_baseline,
    sine_classification,
    synthetic_series,
)

__all__ = [
    "adding_problem",
    "copy_task",
    "copy_task_baseline",
    "sine_classification",
    "synthetic_series",
]
