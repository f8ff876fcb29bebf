"""CTC: the loss against a brute-force sum over every path, greedy and prefix beam decoding on
hand-made logits, the exact best labelling on small cases; error rates; transcripts."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.audio import (
    ALPHABET,
    beam_decode,
    cer,
    collapse,
    ctc_loss,
    ctc_min_frames,
    decode_labels,
    edit_distance,
    encode_transcript,
    greedy_decode,
    prefix_beam_search,
    wer,
)

X64 = bool(jax.config.read("jax_enable_x64"))


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    return (
        z
        - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - z.max(-1, keepdims=True)
    )


def brute_force_probs(logits):
    """``{labelling: probability}`` by enumerating all K^T paths of one ``(T, K)`` sequence."""
    lp = _log_softmax(logits)
    t, k = lp.shape
    out = {}
    for path in itertools.product(range(k), repeat=t):
        lab = tuple(collapse(path))
        out[lab] = out.get(lab, 0.0) + np.exp(sum(lp[i, c] for i, c in enumerate(path)))
    return out


@pytest.mark.slow
@pytest.mark.x64
@pytest.mark.loose_promotion  # optax.ctc_loss mixes float32 constants into float64 inputs
def test_ctc_loss_matches_brute_force_with_lengths():
    rng = np.random.default_rng(0)
    dtype = jnp.float64 if X64 else jnp.float32
    logits = rng.standard_normal((4, 6, 3)) * 2  # (B, T, K), blank = 0
    t_len = np.array([6, 5, 4, 3])
    labels = np.array([[1, 1, 2], [2, 1, 0], [1, 0, 0], [2, 2, 0]])  # repeats need blanks
    l_len = np.array([3, 2, 1, 2])
    got = ctc_loss(jnp.asarray(logits, dtype), t_len, jnp.asarray(labels), l_len)
    for b in range(4):
        probs = brute_force_probs(logits[b, : t_len[b]])
        ref = -np.log(probs[tuple(labels[b, : l_len[b]])])
        np.testing.assert_allclose(float(got[b]), ref, rtol=1e-9 if X64 else 1e-5)
    assert got.dtype == dtype


def test_ctc_loss_of_an_infeasible_labelling_is_huge():
    logits = jnp.zeros((1, 3, 3))
    assert ctc_min_frames([1, 1, 1]) == 5
    assert float(ctc_loss(logits, jnp.array([3]), jnp.array([[1, 1, 1]]), jnp.array([3]))[0]) > 1e4


@pytest.mark.slow
def test_ctc_loss_gradients_are_finite_and_jit():
    logits = jax.random.normal(jax.random.key(0), (2, 8, 5))
    labels, ll, tl = jnp.array([[1, 2, 2], [3, 0, 0]]), jnp.array([3, 1]), jnp.array([8, 5])
    g = jax.jit(jax.grad(lambda z: jnp.sum(ctc_loss(z, tl, labels, ll))))(logits)
    assert bool(jnp.all(jnp.isfinite(g))) and bool(jnp.all(g[1, 5:] == 0))  # padding: no grad


def test_ctc_loss_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`ctc_loss`: `logits` must be \(B, T, K\)"):
        ctc_loss(jnp.zeros((3, 4)), jnp.array([3]), jnp.zeros((1, 2), jnp.int32), jnp.array([1]))
    with pytest.raises(ValueError, match=r"`logit_lengths` must have shape \(2,\)"):
        ctc_loss(jnp.zeros((2, 4, 3)), jnp.array([4]), jnp.zeros((2, 2), jnp.int32), jnp.ones(2))


@pytest.mark.parametrize(
    "labels, logit_lengths, label_lengths, blank, match",
    [
        # optax reads a label past the classes as another class: a negative "loss"
        ([[7, 1]], [4], [2], 0, r"`labels` must lie in \[0, K=3\) within `label_lengths`"),
        ([[1, 0]], [4], [2], 0, r"must not contain the blank \(0\) within `label_lengths`"),
        ([[1, 2]], [6], [2], 0, r"`logit_lengths` must lie in \[0, 4\]; got values from 6"),
        ([[1, 2]], [4], [3], 0, r"`label_lengths` must lie in \[0, 2\]"),
        ([[1, 2]], [4], [2], 3, r"`blank` must be a class index in \[0, K=3\); got 3"),
    ],
)
def test_ctc_loss_refuses_values_that_would_give_a_wrong_loss(
    labels, logit_lengths, label_lengths, blank, match
):
    logits = jnp.zeros((1, 4, 3))
    args = jnp.array(labels), jnp.array(label_lengths)
    with pytest.raises(ValueError, match=match):
        ctc_loss(logits, jnp.array(logit_lengths), *args, blank=blank)
    # padding past a label length is not read, and may hold anything
    loss = ctc_loss(logits, jnp.array([4]), jnp.array([[1, -5]]), jnp.array([1]))
    assert np.isfinite(loss).all() and float(loss[0]) > 0
    # under jit only the shapes are checked: the values are not known while tracing
    good = jnp.array([4]), jnp.array([[1, 2]]), jnp.array([2])
    np.testing.assert_allclose(jax.jit(ctc_loss)(logits, *good), ctc_loss(logits, *good))


def test_decoders_name_a_bad_shape_length_or_blank():
    with pytest.raises(
        ValueError,
        match=r"`greedy_decode`: `logits` must be \(B, T, K\); got "
        r"shape \(10, 5\) \(add a batch axis",
    ):
        greedy_decode(jnp.zeros((10, 5)))
    with pytest.raises(ValueError, match=r"`beam_decode`: `lengths` must have shape \(2,\)"):
        beam_decode(jnp.zeros((2, 10, 5)), jnp.array([1, 2, 3]))
    with pytest.raises(ValueError, match=r"`greedy_decode`: `lengths` must lie in \[0, T=10\]"):
        greedy_decode(jnp.zeros((2, 10, 5)), jnp.array([3, 11]))
    with pytest.raises(ValueError, match=r"`greedy_decode`: `blank` must be a class index"):
        greedy_decode(jnp.zeros((2, 10, 5)), blank=7)
    with pytest.raises(ValueError, match=r"`prefix_beam_search`: `blank` must be a class index"):
        prefix_beam_search(jnp.zeros((10, 5)), blank=-1)


def _onehot_logits(path, k, confidence=10.0):
    return np.eye(k)[list(path)] * confidence  # (T, K)


def test_greedy_decoding_on_hand_made_logits():
    # frames say: a a _ a b b _ (a=1, b=2): repeats merge, the blank separates the two a's
    logits = np.stack([_onehot_logits([1, 1, 0, 1, 2, 2, 0], 3), _onehot_logits([0] * 7, 3)])
    assert greedy_decode(logits, [7, 7]) == [[1, 1, 2], []]
    assert greedy_decode(logits, [3, 7]) == [[1], []]  # lengths cut the frames


def test_beam_search_sums_paths_where_greedy_takes_the_best_one():
    # Two frames over {blank, a}: p(a)=0.4 at each frame. Greedy picks blank, blank -> "".
    # But p("a") = 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64 > p("") = 0.36.
    lp = np.log(np.array([[0.6, 0.4], [0.6, 0.4]]))
    assert greedy_decode(lp[None]) == [[]]
    labels, score = prefix_beam_search(lp, beam_width=4)
    assert labels == [1] and np.isclose(score, np.log(0.64))


def test_prefix_beam_search_finds_the_exact_best_labelling():
    rng = np.random.default_rng(1)
    for _ in range(5):
        logits = rng.standard_normal((5, 3)) * 1.5
        probs = brute_force_probs(logits)
        best = max(probs, key=probs.get)
        labels, score = prefix_beam_search(_log_softmax(logits), beam_width=64)
        assert tuple(labels) == best and np.isclose(score, np.log(probs[best]))


def test_beam_decode_batches_and_agrees_with_greedy_on_peaked_logits():
    logits = np.stack([_onehot_logits([3, 0, 3, 3, 1], 4), _onehot_logits([2, 2, 2, 0, 0], 4)])
    assert beam_decode(logits, [5, 5], 4) == greedy_decode(logits, [5, 5]) == [[3, 3, 1], [2]]


def test_prefix_beam_search_errors():
    with pytest.raises(ValueError, match=r"`log_probs` must be \(T, K\)"):
        prefix_beam_search(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="`beam_width` must be >= 1; got 0"):
        prefix_beam_search(np.zeros((2, 3)), 0)


def test_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], [1, 2]) == 2
    assert cer(["one two", "six"], ["one tw", "sex"]) == pytest.approx(2 / 10)
    assert wer(["one two three", "six"], ["one three", "six six"]) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="`cer`: 2 references but 1 hypotheses"):
        cer(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="`wer`: pass lists of transcripts"):
        wer("one", "one")


def test_transcripts_round_trip_and_reject_unknown_characters():
    labels = encode_transcript("  Seven  EIGHT ")
    assert decode_labels(labels) == "seven eight" and min(labels) >= 1
    assert len(ALPHABET) == 28
    with pytest.raises(ValueError, match=r"clip.wav: the transcript '4 two' has characters "):
        encode_transcript("4 two", where="clip.wav")
