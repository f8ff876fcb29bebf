"""The MQAR generator (Arora et al. 2023) against its definition."""

import jax
import numpy as np
import pytest

from lstm_jax.data import mqar


@pytest.mark.parametrize(
    ("vocab", "pairs", "queries", "length"), [(16, 3, None, 12), (64, 8, 5, 40)]
)
def test_every_query_asks_a_listed_key_and_targets_its_value(vocab, pairs, queries, length):
    r = mqar(jax.random.key(1), 300, vocab_size=vocab, pairs=pairs, queries=queries,
             length=length)  # fmt: skip
    Q = pairs if queries is None else queries
    assert r.ids.shape == r.targets.shape == r.mask.shape == (300, length)
    assert r.ids.dtype == r.targets.dtype == np.int32 and r.mask.dtype == np.float32
    half = vocab // 2
    for ids, targets, mask in zip(r.ids, r.targets, r.mask, strict=True):
        keys, values = ids[0 : 2 * pairs : 2], ids[1 : 2 * pairs : 2]
        assert len(set(keys.tolist())) == pairs  # distinct keys
        assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < vocab)).all()
        binding = dict(zip(keys.tolist(), values.tolist(), strict=True))
        asked = np.flatnonzero(mask)
        assert len(asked) == Q and asked.min() >= 2 * pairs  # queries after the context
        assert len(set(ids[asked].tolist())) == Q  # each key asked once at most
        for t in asked:
            assert targets[t] == binding[ids[t]]
        rest = np.setdiff1d(np.arange(2 * pairs, length), asked)
        assert (ids[rest] == 0).all() and (targets[mask == 0] == 0).all()


def test_queries_land_everywhere_and_seeds_repeat():
    a, b = mqar(3, 500, pairs=4, length=40), mqar(3, 500, pairs=4, length=40)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.array_equal(a.ids, mqar(4, 500, pairs=4, length=40).ids)
    assert (a.mask[:, 8:].sum(0) > 0).all()  # every query position is used


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(pairs=40), ValueError, r"`pairs` must be at most vocab_size // 2 - 1 = 31"),
        (dict(pairs=4, queries=5), ValueError, r"`queries` must be at most pairs=4; got 5"),
        (dict(pairs=4, length=11), ValueError, r"`length` must be at least .* = 12; got 11"),
        (dict(pairs=0), ValueError, r"`pairs` must be a positive int"),
        (dict(vocab_size=3.0), TypeError, r"`vocab_size` must be an int >= 4"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        mqar(0, 2, **kwargs)
