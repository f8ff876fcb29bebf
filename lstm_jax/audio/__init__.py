"""Speech input and CTC output: audio files, log-mel features, SpecAugment, CTC loss and
decoding, error rates. A leaf beside ``data``: it depends on ``lstm_jax.core`` only, and
imports ``soundfile`` and SciPy inside the functions that read or resample files."""

from lstm_jax.audio.augment import spec_augment
from lstm_jax.audio.ctc import (
    beam_decode,
    collapse,
    ctc_loss,
    ctc_min_frames,
    greedy_decode,
    prefix_beam_search,
)
from lstm_jax.audio.features import (
    FeatureConfig,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    normalize_utterance,
    power_spectrogram,
    utterance_features,
)
from lstm_jax.audio.metrics import cer, edit_distance, wer
from lstm_jax.audio.text import ALPHABET, decode_labels, encode_transcript, normalize_transcript
from lstm_jax.audio.wav import Audio, read_audio, resample_audio, write_wav

__all__ = [
    "ALPHABET",
    "Audio",
    "FeatureConfig",
    "beam_decode",
    "cer",
    "collapse",
    "ctc_loss",
    "ctc_min_frames",
    "decode_labels",
    "edit_distance",
    "encode_transcript",
    "greedy_decode",
    "hz_to_mel",
    "log_mel",
    "mel_filterbank",
    "mel_to_hz",
    "normalize_transcript",
    "normalize_utterance",
    "power_spectrogram",
    "prefix_beam_search",
    "read_audio",
    "resample_audio",
    "spec_augment",
    "utterance_features",
    "wer",
    "write_wav",
]
