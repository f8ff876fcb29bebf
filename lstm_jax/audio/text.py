"""Transcripts as CTC labels: class 0 is the blank, character ``i`` of the alphabet is ``i + 1``."""

from __future__ import annotations

from collections.abc import Sequence

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"  # space, apostrophe, lowercase letters


def normalize_transcript(text: str) -> str:
    """Lowercases and squeezes runs of whitespace to one space."""
    return " ".join(text.lower().split())


def encode_transcript(text: str, alphabet: str = ALPHABET, *, where: str = "text") -> list[int]:
    """Labels of ``text`` (normalised first); raises naming ``where`` for unknown characters.

    Examples:
      >>> encode_transcript("Two one")
      [22, 25, 17, 1, 17, 16, 7]
    """
    text = normalize_transcript(text)
    bad = sorted({c for c in text if c not in alphabet})
    if bad:
        raise ValueError(
            f"{where}: the transcript {text!r} has characters outside the alphabet "
            f"{alphabet!r}: {bad}. Spell numbers and symbols out as words."
        )
    if not text:
        raise ValueError(f"{where}: the transcript is empty.")
    return [alphabet.index(c) + 1 for c in text]


def decode_labels(labels: Sequence[int], alphabet: str = ALPHABET) -> str:
    """The text of CTC labels (blanks, index 0, are skipped)."""
    return "".join(alphabet[k - 1] for k in labels if 0 < k <= len(alphabet))
