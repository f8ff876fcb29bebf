"""Error rates of transcripts: Levenshtein distance over characters (CER) or words (WER)."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Fewest insertions, deletions and substitutions turning ``hyp`` into ``ref``.

    Examples:
      >>> edit_distance("kitten", "sitting")
      3
    """
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def _rate(refs: Sequence, hyps: Sequence, split, where: str) -> float:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError(f"`{where}`: pass lists of transcripts, not one string.")
    if len(refs) != len(hyps):
        raise ValueError(f"`{where}`: {len(refs)} references but {len(hyps)} hypotheses.")
    units = sum(len(split(r)) for r in refs)
    if units == 0:
        raise ValueError(f"`{where}`: the references are empty; the rate is undefined.")
    return sum(edit_distance(split(r), split(h)) for r, h in zip(refs, hyps, strict=True)) / units


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate: total character edits over total reference characters.

    Examples:
      >>> cer(["one two"], ["one too"])
      0.14285714285714285
    """
    return _rate(refs, hyps, list, "cer")


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate: total word edits over total reference words (split on whitespace).

    Examples:
      >>> wer(["one two three"], ["one too three"])
      0.3333333333333333
    """
    return _rate(refs, hyps, str.split, "wer")
