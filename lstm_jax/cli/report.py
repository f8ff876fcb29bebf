"""What a run of the ``lstm-jax`` command leaves behind: a summary table, metrics files and
plots (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from lstm_jax.checkpoint import atomic_write_bytes


def format_table(rows: list[tuple]) -> str:
    """A plain-text table; the first row is the header, floats get 4 significant digits."""
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if j == 0 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:]])


def write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_plain) + "\n").encode())


def write_history_csv(path: Path, history: dict) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = list(history)
    writer.writerow(keys)
    for i in range(len(history[keys[0]])):
        writer.writerow([history[k][i] if i < len(history[k]) else "" for k in keys])
    atomic_write_bytes(path, buf.getvalue().encode())


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(path: Path, history: dict, title: str) -> None:
    """Train (and validation) loss per epoch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["loss"], label="train")
    if "val_loss" in history:
        ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title=title, yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_forecast(path: Path, truth, preds: dict, title: str, ylabel: str) -> None:
    """Truth against one-step forecasts (or a continuation) on the test split."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.asarray(truth)[:, 0], label="truth", color="black", linewidth=1.5)
    for name, p in preds.items():
        ax.plot(np.asarray(p)[:, 0], label=name, linewidth=1)
    ax.set(xlabel="test step", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_continuation(path: Path, history_values, future, title: str, ylabel: str) -> None:
    """The end of a series followed by a multi-step forecast."""
    plt = pyplot()
    h, f = np.asarray(history_values)[:, 0], np.asarray(future)[:, 0]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.arange(len(h)), h, label="observed", color="black")
    ax.plot(np.arange(len(h) - 1, len(h) + len(f)), np.r_[h[-1], f], label="forecast")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_text(path: Path, text: str, title: str) -> None:
    """A text sample rendered as a figure (the first lines)."""
    plt = pyplot()
    lines = text.splitlines()[:30]
    fig = plt.figure(figsize=(8, 0.25 * len(lines) + 1))
    fig.text(0.02, 0.98, "\n".join(lines), va="top", family="monospace", fontsize=9)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
