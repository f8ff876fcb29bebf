"""Data for lstm_jax: long-memory benchmarks, synthetic tasks, windows, series and text.

Everything here works offline: synthetic generators are pure functions of a PRNG key, and the
real series and the text corpus ship inside the package.
"""

from lstm_jax.data.batching import batch_order, pad_sequences
from lstm_jax.data.lags import lag_adding_problem, lag_multiplication_problem, two_sequence_lag
from lstm_jax.data.reber import (
    REBER_SYMBOLS,
    continual_reber,
    embedded_reber_strings,
    encode_reber,
    reber_next_symbols,
)
from lstm_jax.data.recall import Recall, mqar
from lstm_jax.data.series import BUILTIN, Series, load_csv, load_series
from lstm_jax.data.speech import SpeechCorpus, Utterance, load_speech, load_speech_folder
from lstm_jax.data.synthetic import (
    adding_problem,
    copy_task,
    copy_task_baseline,
    sine_classification,
    synthetic_series,
)
from lstm_jax.data.text import Vocab, build_vocab, load_text, text_stream
from lstm_jax.data.windows import (
    Normalizer,
    denormalize,
    fit_normalizer,
    normalize,
    sliding_windows,
    split_series,
    split_windows,
)

__all__ = [
    "BUILTIN",
    "Normalizer",
    "Recall",
    "Series",
    "SpeechCorpus",
    "Utterance",
    "Vocab",
    "batch_order",
    "build_vocab",
    "denormalize",
    "fit_normalizer",
    "load_csv",
    "load_series",
    "load_speech",
    "load_speech_folder",
    "load_text",
    "mqar",
    "normalize",
    "pad_sequences",
    "sliding_windows",
    "split_series",
    "split_windows",
    "adding_problem",
    "copy_task",
    "copy_task_baseline",
    "sine_classification",
    "synthetic_series",
    "text_stream",
    "REBER_SYMBOLS",
    "continual_reber",
    "embedded_reber_strings",
    "encode_reber",
    "reber_next_symbols",
    "lag_adding_problem",
    "lag_multiplication_problem",
    "two_sequence_lag",
]
