"""The library's training loops: train and eval steps, ``fit``, truncated BPTT, vmapped
ensembles. They know nothing of the ``lstm-jax`` application (:mod:`lstm_jax.cli`)."""
