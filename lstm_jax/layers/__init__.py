"""Layers built on the sequence functions: stacked and bidirectional RNNs, dense and attention
heads, embeddings. Every ``apply`` that runs a sequence returns ``(carry, ys)``."""
