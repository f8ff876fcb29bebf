"""The order in which the benchmarks call their entries, round by round.

Every benchmark here interleaves its entries: each round calls each entry once, so load on a
shared machine falls on all of them alike. The order is shuffled afresh each round, from a
seeded generator (the same orders in every run). A rotation would keep each entry's neighbours
fixed, and what one entry leaves behind (freed memory handed back to the system, a cold cache)
would then always fall on the same next one: rotated, lstm_jax's default LSTM ran right after
torch in every round but the first, and its forward timed 8-14 % slower than the same program
through ``scan`` (benchmarks/RESULTS.md, 2026-12-04, night).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def round_orders(items: Sequence[T], rounds: int, seed: int = 0) -> Iterator[list[T]]:
    """Yields ``rounds`` orders of ``items``, each a fresh seeded shuffle."""
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(items)
        rng.shuffle(order)
        yield order
