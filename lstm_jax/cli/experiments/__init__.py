"""The experiments' command, ``python -m lstm_jax.experiments NAME [options]``
(also ``lstm-jax experiments NAME [options]``).

Each experiment is a module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args)``; listing it in ``EXPERIMENTS`` makes it a subcommand.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from lstm_jax.cli.experiments import adding, modern, reproduce

EXPERIMENTS = (adding, reproduce, modern)


def main(argv: Sequence[str] | None = None, prog: str = "python -m lstm_jax.experiments") -> Any:
    """Parses ``argv`` (default ``sys.argv[1:]``), runs that experiment, returns its result."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Experiments behind the article's claims, with their results printed.",
    )
    sub = parser.add_subparsers(dest="experiment", required=True)
    for module in EXPERIMENTS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return args.run(args)


__all__ = ["EXPERIMENTS", "main"]
