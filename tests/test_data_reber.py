"""The Reber generators against the grammar's definition, checked by an independent regex."""

import re

import jax
import numpy as np
import pytest

from lstm_jax.data import (
    REBER_SYMBOLS,
    continual_reber,
    embedded_reber_strings,
    encode_reber,
    reber_next_symbols,
)

# The Reber grammar as a regular expression, derived by hand from its graph: from node 4,
# (X T* V P)* loops back to 4, then S or X T* V V ends the string.
_FROM_4 = r"(?:XT*VP)*(?:S|XT*VV)"
REBER = rf"B(?:TS*X{_FROM_4}|PT*V(?:V|P{_FROM_4}))E"
EMBEDDED = re.compile(rf"B(?:T{REBER}T|P{REBER}P)E")
STREAM = re.compile(rf"(?:B(?:T{REBER}T|P{REBER}P)E)+")


def _chars(xs) -> str:
    return "".join(REBER_SYMBOLS[i] for i in np.asarray(xs).argmax(-1))


def test_the_regex_is_the_grammar():
    # examples of Reber and non-Reber strings from the literature (Fahlman 1991's set)
    for s in ("BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPVPXVPXVPXVVE", "BTSXXVPSE"):
        assert re.fullmatch(REBER, s), s
    for s in ("BTSSPXSE", "BPTVVB", "BTXXVVSE", "BPVSPSE", "BTSSSE"):
        assert not re.fullmatch(REBER, s), s


def test_every_embedded_string_is_accepted_by_the_grammar():
    strings = embedded_reber_strings(0, 2000)
    assert all(EMBEDDED.fullmatch(s) for s in strings)
    assert {s[1] for s in strings} == {"T", "P"}  # both branches occur
    assert len(set(strings)) > 100 and max(map(len, strings)) > 20


def test_next_symbols_are_the_grammars():
    # BT BPVVE TE: after each proper prefix, the symbols that may follow
    want = ["TP", "B", "TP", "TV", "PV", "E", "T", "E"]
    got = reber_next_symbols("BTBPVVETE")
    assert ["".join(REBER_SYMBOLS[i] for i in np.flatnonzero(r)) for r in got] == want
    # the same sets by brute force: every continuation seen in many sampled strings
    strings = embedded_reber_strings(1, 3000)
    seen: dict[str, set] = {}
    for s in strings:
        for t in range(1, len(s)):
            seen.setdefault(s[:t], set()).add(s[t])
    for s in strings[:50]:
        for t, row in enumerate(reber_next_symbols(s)):
            allowed = {REBER_SYMBOLS[i] for i in np.flatnonzero(row)}
            assert seen[s[: t + 1]] <= allowed


def test_reber_next_symbols_rejects_a_non_grammatical_string():
    with pytest.raises(ValueError, match=r"`reber_next_symbols`: 'BTBTSSPXSETE' leaves"):
        reber_next_symbols("BTBTSSPXSETE")


def test_encode_pads_and_masks():
    xs, targets, mask = encode_reber(["BTBPVVETE", "BPBTXSEPE"])
    assert xs.shape == targets.shape == (2, 8, 7) and mask.shape == (2, 8)
    assert _chars(xs[0]) == "BTBPVVET" and mask.sum() == 16
    np.testing.assert_array_equal(targets[1], reber_next_symbols("BPBTXSEPE"))


def test_continual_stream_never_resets_and_is_grammatical():
    xs, targets, state = continual_reber(0, 5000)
    stream = _chars(xs)
    # a concatenation of complete embedded strings ("EB" occurs only between two of them),
    # then the prefix of the next one
    complete = stream[: stream.rfind("EB") + 1]
    assert STREAM.fullmatch(complete), complete[:80]
    assert complete.count("EB") > 300
    # the targets are the next-symbol sets of the stream itself, across string boundaries
    boundary = [i for i in range(len(stream) - 1) if stream[i : i + 2] == "EB"]
    for i in boundary[:20]:
        assert _chars(targets[i : i + 1]) == "B" and targets[i].sum() == 1  # after E comes B
    # drawing the stream in chunks, threading the state, continues the same grammar
    chunks, q = [], None
    for k in range(10):
        c, _, q = continual_reber(jax.random.key(k), 137, q)
        chunks.append(_chars(c))
    joined = "".join(chunks)
    assert STREAM.fullmatch(joined[: joined.rfind("EB") + 1])
    assert int(state) in range(19)


def test_continual_targets_match_the_next_symbol_sets():
    xs, targets, _ = continual_reber(3, 400)
    stream = _chars(xs)
    first = stream.find("EB", stream.find("E") + 1) + 1  # start of the second string
    end = stream.find("EB", first) + 1  # one past its final E
    np.testing.assert_array_equal(
        np.asarray(targets[first : end - 1]), reber_next_symbols(stream[first:end])
    )
