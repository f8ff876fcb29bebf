"""The embedded Reber grammar and its continual stream (Hochreiter & Schmidhuber 1997, exp. 1;
Gers, Schmidhuber & Cummins 2000).

The Reber grammar is a finite automaton over the seven symbols ``B T P S X V E``: a string
starts with ``B``, walks the graph below taking each of two out-going edges with probability
1/2, and ends with ``E``::

    node 0 -B-> 1;  1 -T-> 2, 1 -P-> 3;  2 -S-> 2, 2 -X-> 4;  3 -T-> 3, 3 -V-> 5;
    4 -X-> 3, 4 -S-> 6;  5 -P-> 4, 5 -V-> 6;  6 -E-> end

An *embedded* Reber string is ``B T <Reber string> T E`` or ``B P <Reber string> P E``: to
predict the second-to-last symbol a model must remember the second one across the whole inner
string. The *continual* stream concatenates embedded strings with no marker of where one ends
that a model could use to reset itself: after the final ``E`` comes the next string's ``B``.

Both generators walk one automaton with 19 states (start, branch, the inner Reber nodes once
per branch, the remembered branch symbol, the final ``E``); a state's possible next symbols are
the labels of its out-going edges, which is what a perfect next-symbol predictor outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.data.keys import as_key, check_count

REBER_SYMBOLS = "BTPSXVE"
_S = {s: i for i, s in enumerate(REBER_SYMBOLS)}
_INNER = {  # Reber node -> ((symbol, next node), ...); node 7 is "inner string finished"
    0: (("B", 1),),
    1: (("T", 2), ("P", 3)),
    2: (("S", 2), ("X", 4)),
    3: (("T", 3), ("V", 5)),
    4: (("X", 3), ("S", 6)),
    5: (("P", 4), ("V", 6)),
    6: (("E", 7),),
}
START, BRANCH, FINAL_E = 0, 1, 18  # automaton states; inner node k of branch b is 2 + 8b + k


def _edges() -> dict[int, tuple[tuple[str, int], ...]]:
    """State -> out-going ``(symbol, next state)``; the final ``E`` leads back to START."""
    edges = {START: (("B", BRANCH),), BRANCH: (("T", 2), ("P", 10)), FINAL_E: (("E", START),)}
    for b, branch in enumerate("TP"):
        for node, out in _INNER.items():
            edges[2 + 8 * b + node] = tuple((s, 2 + 8 * b + n) for s, n in out)
        edges[2 + 8 * b + 7] = ((branch, FINAL_E),)  # the remembered T or P
    return edges


_EDGES = _edges()
N_STATES = len(_EDGES)  # 19
# (N_STATES, 2) tables; a state with one edge repeats it in column 1
EDGE_SYMBOL = np.array([[_S[out[0][0]], _S[out[-1][0]]] for _, out in sorted(_EDGES.items())])
EDGE_NEXT = np.array([[out[0][1], out[-1][1]] for _, out in sorted(_EDGES.items())])
# (N_STATES, 7) the possible next symbols of each state, multi-hot
POSSIBLE = np.zeros((N_STATES, len(REBER_SYMBOLS)), np.float32)
for _state, _out in _EDGES.items():
    for _sym, _ in _out:
        POSSIBLE[_state, _S[_sym]] = 1.0


def embedded_reber_strings(seed: int, n: int) -> list[str]:
    """``n`` embedded Reber strings, e.g. ``"BTBPVVETE"``, drawn with ``numpy`` from ``seed``."""
    check_count("embedded_reber_strings", "n", n)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        state, chars = START, []
        while True:
            col = int(rng.integers(2))
            chars.append(REBER_SYMBOLS[EDGE_SYMBOL[state, col]])
            state = int(EDGE_NEXT[state, col])
            if state == START:
                break
        out.append("".join(chars))
    return out


def reber_next_symbols(string: str) -> np.ndarray:
    """``(len(string) - 1, 7)`` multi-hot: the symbols that may follow each proper prefix.

    Raises:
      ValueError: when ``string`` leaves the embedded Reber grammar.
    """
    state, rows = START, []
    for t, ch in enumerate(string):
        cols = [c for c in range(2) if REBER_SYMBOLS[EDGE_SYMBOL[state, c]] == ch]
        if not cols:
            raise ValueError(
                f"`reber_next_symbols`: {string!r} leaves the embedded Reber grammar at "
                f"position {t} ({ch!r}); allowed there: "
                f"{sorted({REBER_SYMBOLS[s] for s in EDGE_SYMBOL[state]})}."
            )
        state = int(EDGE_NEXT[state, cols[0]])
        rows.append(POSSIBLE[state])
    return np.stack(rows[:-1])


def encode_reber(strings: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strings -> next-symbol prediction data, zero-padded to the longest string.

    Returns:
      ``(xs, targets, mask)``: ``xs`` ``(n, T, 7)`` one-hot symbols ``0 .. L-2`` of each
      string, ``targets`` ``(n, T, 7)`` the possible next symbols after each, ``mask``
      ``(n, T)`` 1.0 on the ``L - 1`` real steps; ``T`` is the longest ``L - 1``.
    """
    T = max(len(s) for s in strings) - 1
    xs = np.zeros((len(strings), T, len(REBER_SYMBOLS)), np.float32)
    targets = np.zeros_like(xs)
    mask = np.zeros((len(strings), T), np.float32)
    for i, s in enumerate(strings):
        L = len(s) - 1
        xs[i, np.arange(L), [_S[c] for c in s[:-1]]] = 1.0
        targets[i, :L] = reber_next_symbols(s)
        mask[i, :L] = 1.0
    return xs, targets, mask


def continual_reber(key_or_seed, length: int, state=None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``length`` symbols of the continual embedded Reber stream, continuing from ``state``.

    The stream never resets: pass the returned state back in and the next call continues the
    same stream, so chunks of a long stream can be drawn one at a time (truncated BPTT). Runs
    under ``jit`` (``length`` static) and ``vmap`` over keys and states.

    Args:
      key_or_seed: a PRNG key or an int seed.
      length: number of symbols.
      state: ``()`` int32 automaton state to continue from; None starts a new stream.

    Returns:
      ``(xs, targets, state)``: ``xs`` ``(length, 7)`` one-hot symbols, ``targets``
      ``(length, 7)`` multi-hot possible next symbols after each, and the final state.

    Examples:
      >>> from lstm_jax.data import REBER_SYMBOLS, continual_reber
      >>> xs, targets, state = continual_reber(0, 40)
      >>> "".join(REBER_SYMBOLS[i] for i in xs.argmax(-1))[:2], xs.shape, targets.shape
      ('BT', (40, 7), (40, 7))
    """
    key = as_key("continual_reber", key_or_seed)
    check_count("continual_reber", "length", length)
    state = jnp.asarray(START if state is None else state, jnp.int32)
    bits = jax.random.bernoulli(key, 0.5, (length,)).astype(jnp.int32)  # (length,)
    sym_table, next_table = jnp.asarray(EDGE_SYMBOL), jnp.asarray(EDGE_NEXT)

    def step(q, bit):
        q_next = next_table[q, bit]
        return q_next, (sym_table[q, bit], q_next)

    state, (symbols, states) = jax.lax.scan(step, state, bits)  # (), (length,) twice
    xs = jax.nn.one_hot(symbols, len(REBER_SYMBOLS), dtype=jnp.float32)  # (length, 7)
    return xs, jnp.asarray(POSSIBLE)[states], state
