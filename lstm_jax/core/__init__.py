"""The leaf of the library: argument checks, array helpers, activations, initialisers, dtype rules
and the cell protocol. Nothing here imports any other part of ``lstm_jax``."""
