"""Connectionist temporal classification: loss with lengths, greedy and prefix beam decoding.

A CTC model emits, at every frame, a distribution over ``K`` classes: the blank (index
``blank``, 0 here) and the labels. A *path* is one class per frame; collapsing it (merge
repeats, then drop blanks) gives a labelling, and the probability of a labelling is the sum over
every path that collapses to it (Graves et al. 2006). A labelling of ``L`` labels with ``r``
adjacent repeats needs at least ``L + r`` frames (a blank must separate the repeats):
:func:`ctc_min_frames`.

References:
  Graves et al. 2006, "Connectionist Temporal Classification: Labelling Unsegmented Sequence
  Data with Recurrent Neural Networks", ICML.
  Hannun et al. 2014, "First-Pass Large Vocabulary Continuous Speech Recognition using
  Bi-Directional Recurrent DNNs" (the prefix beam search), arXiv:1408.2873.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.core.checks import Problems, is_concrete


def ctc_loss(logits, logit_lengths, labels, label_lengths, *, blank: int = 0) -> jax.Array:
    """Negative log-likelihood of each labelling, ``-log p(labels | logits)``: ``(B,)``.

    A wrapper of ``optax.ctc_loss`` that takes lengths instead of paddings.

    Args:
      logits: ``(B, T, K)`` unnormalised scores (log-softmax is applied inside).
      logit_lengths: ``(B,)`` int valid frames of each sequence.
      labels: ``(B, L)`` int labels in ``[0, K)``, not ``blank``; padding past the length is
        ignored.
      label_lengths: ``(B,)`` int valid labels.
      blank: the blank class.

    Returns:
      ``(B,)`` losses in nats. An infeasible labelling (fewer frames than
      :func:`ctc_min_frames`) gets a huge loss (about 1e5), not ``inf``; filter such examples
      out first.
    """
    p = Problems("ctc_loss")
    if getattr(logits, "ndim", None) != 3:
        p.value(f"`logits` must be (B, T, K); got shape {getattr(logits, 'shape', None)}.")
    if getattr(labels, "ndim", None) != 2:
        p.value(f"`labels` must be (B, L) ints; got shape {getattr(labels, 'shape', None)}.")
    p.raise_if_any()
    (b, t, _), length = logits.shape, labels.shape[1]
    for name, x in (("logit_lengths", logit_lengths), ("label_lengths", label_lengths)):
        if jnp.shape(x) != (b,):
            p.value(f"`{name}` must have shape ({b},), one per sequence; got {jnp.shape(x)}.")
    if labels.shape[0] != b:
        p.value(f"`labels` has {labels.shape[0]} rows but `logits` has {b} sequences.")
    p.raise_if_any()
    _check_ctc_values(p, logits.shape[-1], t, labels, logit_lengths, label_lengths, blank)
    logit_pad = (jnp.arange(t)[None, :] >= jnp.asarray(logit_lengths)[:, None]).astype(logits.dtype)
    label_pad = (jnp.arange(length)[None, :] >= jnp.asarray(label_lengths)[:, None]).astype(
        logits.dtype
    )
    return optax.ctc_loss(logits, logit_pad, labels, label_pad, blank_id=blank)


def _check_blank(p: Problems, blank, k: int) -> None:
    if not isinstance(blank, (int, np.integer)) or isinstance(blank, bool) or not 0 <= blank < k:
        p.value(f"`blank` must be a class index in [0, K={k}); got {blank!r}.")


def _check_ctc_values(p, k, t, labels, logit_lengths, label_lengths, blank):
    """Refuses labels and lengths that optax would turn into a silently wrong loss (a label past
    the classes reads another class's score, a length past the array is clipped). Values are
    checked when concrete; under ``jit`` only the shapes are."""
    _check_blank(p, blank, k)
    p.raise_if_any()
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        p.type(f"`labels` must be integer class indices; got dtype={jnp.result_type(labels)}.")
    for name, x in (("logit_lengths", logit_lengths), ("label_lengths", label_lengths)):
        if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
            p.type(f"`{name}` must be integers; got dtype={jnp.result_type(x)}.")
    p.raise_if_any()
    if not all(is_concrete(x) for x in (labels, logit_lengths, label_lengths)):
        return
    labels = np.asarray(labels)
    for name, x, hi in (
        ("logit_lengths", logit_lengths, t),
        ("label_lengths", label_lengths, labels.shape[1]),
    ):
        x = np.asarray(x)
        if x.size and (x.min() < 0 or x.max() > hi):
            p.value(f"`{name}` must lie in [0, {hi}]; got values from {x.min()} to {x.max()}.")
    p.raise_if_any()
    valid = np.arange(labels.shape[1])[None, :] < np.asarray(label_lengths)[:, None]
    used = labels[valid]
    if used.size and (used.min() < 0 or used.max() >= k):
        p.value(
            f"`labels` must lie in [0, K={k}) within `label_lengths`; got values from "
            f"{used.min()} to {used.max()}."
        )
    elif (used == blank).any():
        row = int(np.nonzero((labels == blank) & valid)[0][0])
        p.value(
            f"`labels` must not contain the blank ({blank}) within `label_lengths`; row {row} does."
        )
    p.raise_if_any()


def ctc_min_frames(labels: Sequence[int]) -> int:
    """Fewest frames a CTC path for ``labels`` can have: ``len(labels)`` plus one blank per
    adjacent repeat.

    Examples:
      >>> ctc_min_frames([3, 1, 1, 4])
      5
    """
    labels = list(labels)
    return len(labels) + sum(a == b for a, b in zip(labels[:-1], labels[1:], strict=True))


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """CTC's many-to-one map: merge adjacent repeats, then drop blanks.

    Examples:
      >>> collapse([0, 3, 3, 0, 3, 1, 1, 0])
      [3, 3, 1]
    """
    out, prev = [], None
    for k in path:
        if k != prev and k != blank:
            out.append(int(k))
        prev = k
    return out


def greedy_decode(logits, lengths=None, *, blank: int = 0) -> list[list[int]]:
    """Best path decoding: the most likely class per frame, collapsed.

    Args:
      logits: ``(B, T, K)`` scores (or log-probabilities).
      lengths: optional ``(B,)`` valid frames.

    Returns:
      One label list per sequence.
    """
    logits = _batch_logits("greedy_decode", logits, lengths, blank)
    best = np.asarray(jnp.argmax(logits, axis=-1))  # (B, T)
    lengths = [best.shape[1]] * best.shape[0] if lengths is None else np.asarray(lengths)
    return [collapse(row[: int(n)], blank) for row, n in zip(best, lengths, strict=True)]


def _batch_logits(where, logits, lengths, blank):
    """``logits`` as a ``(B, T, K)`` array, with ``lengths`` ``(B,)`` ints in ``[0, T]``."""
    p = Problems(where)
    logits = jnp.asarray(logits)
    if logits.ndim != 3:
        hint = " (add a batch axis: `logits[None]`)" if logits.ndim == 2 else ""
        p.value(f"`logits` must be (B, T, K); got shape {logits.shape}{hint}.")
        p.raise_if_any()
    b, t, k = logits.shape
    _check_blank(p, blank, k)
    if lengths is not None:
        n = np.asarray(lengths)
        if n.shape != (b,):
            p.value(f"`lengths` must have shape ({b},), one per sequence; got {n.shape}.")
        elif not np.issubdtype(n.dtype, np.integer):
            p.type(f"`lengths` must be integers; got dtype={n.dtype}.")
        elif n.size and (n.min() < 0 or n.max() > t):
            p.value(f"`lengths` must lie in [0, T={t}]; got values from {n.min()} to {n.max()}.")
    p.raise_if_any()
    return logits


def prefix_beam_search(log_probs, beam_width: int = 8, *, blank: int = 0):
    """Most probable labelling by CTC prefix beam search (no language model).

    Keeps, per prefix, the probability of its paths ending in a blank and in its last label, so
    paths that collapse to the same prefix are summed (unlike a beam over paths). With a beam
    as wide as the number of prefixes it is exact.

    Args:
      log_probs: ``(T, K)`` per-frame log-probabilities of one sequence (log-softmax them
        first).
      beam_width: prefixes kept after every frame.

    Returns:
      ``(labels, log_prob)``: the best prefix found (a list of ints) and its log-probability.
    """
    lp = np.asarray(log_probs, np.float64)
    if lp.ndim != 2:
        raise ValueError(f"`prefix_beam_search`: `log_probs` must be (T, K); got {lp.shape}.")
    if beam_width < 1:
        raise ValueError(f"`prefix_beam_search`: `beam_width` must be >= 1; got {beam_width}.")
    p = Problems("prefix_beam_search")
    _check_blank(p, blank, lp.shape[1])
    p.raise_if_any()
    ninf = -np.inf
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, ninf)}  # prefix -> (p_blank, p_label)
    for frame in lp:
        nxt: dict[tuple, list[float]] = {}

        def add(prefix, which, value, nxt=nxt):
            entry = nxt.setdefault(prefix, [ninf, ninf])
            entry[which] = np.logaddexp(entry[which], value)

        for prefix, (pb, pl) in beams.items():
            total = np.logaddexp(pb, pl)
            add(prefix, 0, total + frame[blank])
            for k in range(lp.shape[1]):
                if k == blank:
                    continue
                if prefix and prefix[-1] == k:
                    add(prefix + (k,), 1, pb + frame[k])  # a repeat needs a blank between
                    add(prefix, 1, pl + frame[k])  # the same label continued
                else:
                    add(prefix + (k,), 1, total + frame[k])
        ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_width]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    best, (pb, pl) = max(beams.items(), key=lambda kv: np.logaddexp(*kv[1]))
    return list(best), float(np.logaddexp(pb, pl))


def beam_decode(logits, lengths=None, beam_width: int = 8, *, blank: int = 0):
    """:func:`prefix_beam_search` over a batch: ``(B, T, K)`` logits -> one label list each."""
    logits = _batch_logits("beam_decode", logits, lengths, blank)
    lp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    lengths = [lp.shape[1]] * lp.shape[0] if lengths is None else np.asarray(lengths)
    return [
        prefix_beam_search(row[: int(n)], beam_width, blank=blank)[0]
        for row, n in zip(lp, lengths, strict=True)
    ]
