"""README's speech section: its Python block runs as written and its numbers hold."""

import jax
import numpy as np
from test_readme import block, run


def test_the_speech_block():
    ns = run(block("from lstm_jax import audio"), jax=jax)
    feats, lengths, labels = ns["feats"], ns["lengths"], ns["labels"]
    assert feats.shape == (1, int(lengths[0]), 40) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[0].mean(0), 0.0, atol=1e-4)
    assert ns["audio"].decode_labels(labels) == ns["u"].text
    assert ns["masked"].shape == feats.shape and (np.asarray(ns["masked"]) == 0).any()
