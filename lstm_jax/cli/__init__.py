"""The ``lstm-jax`` command: train, evaluate, forecast and generate with the built-in tasks.

``lstm-jax train`` with no arguments trains the Keras example's model, ``LSTM(50)`` over
windows of 100 steps plus ``Dense(1)``, with adam on the mean squared error, on the built-in
El Nino sea-temperature series, and compares its test error with naive baselines. Every
subcommand prints one line on stderr and exits non-zero on bad arguments or files.

Compiled programs are kept on disk between runs (:mod:`lstm_jax.compile_cache`), so a second
run with the same model and shapes skips compiling; ``--no-compile-cache`` or
``LSTM_JAX_COMPILE_CACHE=0`` turns that off, and ``LSTM_JAX_CACHE_DIR`` moves the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from lstm_jax.checkpoint import CheckpointError
from lstm_jax.cli import commands
from lstm_jax.cli import export as export_command
from lstm_jax.compile_cache import cache_settings, enable_compile_cache, restore_cache_settings

TASKS = ("forecast", "charlm", "classify", "adding", "speech")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2 (argparse's convention)
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lstm-jax", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    tr = sub.add_parser("train", help="train a model on a built-in task (default: forecast)")
    tr.add_argument("--task", choices=TASKS, default="forecast")
    tr.add_argument(
        "--data",
        help="forecast: built-in series (elnino, co2) or a CSV file; "
        "speech: a folder of WAV files with a manifest.csv (file,text[,speaker,split])",
    )
    tr.add_argument("--columns", help="forecast: comma-separated CSV columns to read")
    tr.add_argument(
        "--target", help="forecast: comma-separated columns to predict (default: first)"
    )
    tr.add_argument("--index-column", help="forecast: CSV column of dates/labels to skip")
    tr.add_argument("--text", help="charlm: a UTF-8 text file (default: built-in Macbeth)")
    tr.add_argument("--window", type=_positive, help="steps per example (forecast: 100)")
    tr.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    tr.add_argument("--hidden", type=_positive, help="hidden units (forecast: 50)")
    tr.add_argument("--layers", type=_positive, default=1)
    tr.add_argument("--epochs", type=_positive)
    tr.add_argument("--batch-size", type=_positive)
    tr.add_argument("--lr", type=_positive_float, help="adam learning rate")
    tr.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    tr.add_argument("--clip-norm", type=_positive_float, help="clip gradients to this L2 norm")
    tr.add_argument("--patience", type=_positive, help="early stopping patience in epochs")
    tr.add_argument("--n-examples", type=_positive, help="classify/adding: training examples")
    tr.add_argument("--subsample", type=_positive, help="speech: frames per encoder step (3)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", help="output directory (default: runs/<task>)")
    tr.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.msgpack")
    tr.add_argument(
        "--devices", type=_devices, default=1, help="devices to train on: a count or 'all'"
    )
    tr.add_argument(
        "--model-parallel",
        type=_positive,
        default=1,
        help="of --devices, how many share each large weight matrix (default 1: data-parallel)",
    )
    _common(tr)
    ev = sub.add_parser("evaluate", help="test metrics of a trained checkpoint")
    ev.add_argument("checkpoint", help="a run directory or its checkpoint.msgpack")
    ev.add_argument("--data", help="forecast: evaluate on another CSV with the same columns")
    _common(ev)
    fc = sub.add_parser("forecast", help="forecast the next steps of a series from a checkpoint")
    fc.add_argument("checkpoint", help="a run directory or its checkpoint.msgpack")
    fc.add_argument("--steps", type=_positive, default=12, help="steps ahead (recursive)")
    fc.add_argument("--data", help="a CSV with the training columns (default: training data)")
    _common(fc)
    ge = sub.add_parser("generate", help="sample text from a charlm checkpoint")
    ge.add_argument("checkpoint", help="a run directory or its checkpoint.msgpack")
    ge.add_argument("--prompt", default="MACBETH:\n", help="text to continue")
    ge.add_argument("--length", type=_positive, default=400, help="characters to sample")
    ge.add_argument("--temperature", type=_nonneg_float, default=0.8, help="0 = greedy")
    ge.add_argument("--seed", type=int, default=0)
    _common(ge)
    tc = sub.add_parser("transcribe", help="print the transcript of WAV files (speech run)")
    tc.add_argument("checkpoint", help="a run directory or its checkpoint.msgpack")
    tc.add_argument("files", nargs="+", metavar="FILE.wav", help="recordings to transcribe")
    tc.add_argument("--beam", type=int, default=0, help="prefix beam width (0: greedy)")
    tc.add_argument("--mono", choices=("error", "mean"), default="error", help="stereo files")
    tc.add_argument("--timing", action="store_true", help="print the decoding time on stderr")
    _cache_flag(tc)
    _cache_flag(export_command.add_parser(sub))
    ex = sub.add_parser(
        "experiments",
        help="the papers' experiments: `lstm-jax experiments reproduce [--quick]`, ...",
        add_help=False,
    )
    ex.add_argument("rest", nargs=argparse.REMAINDER, help="an experiment and its options")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    if p.prog.endswith("train"):
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-plot", action="store_true", help="skip the matplotlib figures")
    if not p.prog.endswith("train"):
        p.add_argument("--out", help="output directory (default: the checkpoint's directory)")
    _cache_flag(p)


def _cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile everything afresh and keep nothing on disk "
        "(default: reuse programs compiled by earlier runs; also LSTM_JAX_COMPILE_CACHE=0)",
    )


def _use_compile_cache(args: argparse.Namespace, settings: dict) -> bool:
    """Whether this run should turn the disk cache on: not when asked not to, nor when JAX
    already has a cache directory of its own (``JAX_COMPILATION_CACHE_DIR``)."""
    off = getattr(args, "no_compile_cache", False) or os.environ.get(
        "LSTM_JAX_COMPILE_CACHE", ""
    ).strip().lower() in ("0", "false", "no", "off")
    return not off and settings["jax_compilation_cache_dir"] is None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _devices(text: str) -> int | str:
    return "all" if text == "all" else _positive(text)


def _positive_float(text: str) -> float:
    value = _nonneg_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (0 ok, 1 bad data/files, 2 bad usage)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # `lstm-jax` alone trains the default model
    settings = cache_settings()  # put back afterwards: main() may run inside a larger program
    try:
        args = build_parser().parse_args(argv)
        t0 = time.perf_counter()
        if _use_compile_cache(args, settings):
            with warnings.catch_warnings(record=True) as caught:  # a note, never an error
                warnings.simplefilter("always")
                enable_compile_cache()
            for w in caught:
                note = str(w.message).removeprefix("lstm_jax: ")
                print(f"lstm-jax: note: {note}", file=sys.stderr)
        if args.command == "experiments":
            from lstm_jax.cli import experiments  # loads the experiments only when asked

            experiments.main(args.rest or ["--help"], prog="lstm-jax experiments")
            return 0
        run = export_command.export if args.command == "export" else getattr(commands, args.command)
        run(args)
        if args.command == "train":
            print(f"done in {time.perf_counter() - t0:.1f} s")
        return 0
    except _UsageError as e:
        return _fail(str(e), 2)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except KeyboardInterrupt:
        return _fail("lstm-jax: interrupted (the last checkpoint is intact; use --resume)", 130)
    except (CheckpointError, ValueError, TypeError, OSError, FloatingPointError) as e:
        if os.environ.get("LSTM_JAX_DEBUG"):
            raise
        return _fail(f"lstm-jax: error: {_one_line(e)}", 1)
    except Exception as e:  # noqa: BLE001 - the command never shows a traceback
        if os.environ.get("LSTM_JAX_DEBUG"):
            raise
        msg = f"lstm-jax: internal error: {type(e).__name__}: {_one_line(e)}"
        return _fail(msg + " (set LSTM_JAX_DEBUG=1 for the traceback)", 3)
    finally:
        if cache_settings() != settings:
            restore_cache_settings(settings)


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(line.strip() for line in text.splitlines())


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
