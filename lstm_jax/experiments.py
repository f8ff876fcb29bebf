"""``python -m lstm_jax.experiments``: the experiments' command (it lives in :mod:`lstm_jax.cli`).

Importing :mod:`lstm_jax` does not load it; this module exists for the ``-m`` entry point.
"""

from lstm_jax.cli.experiments import main

if __name__ == "__main__":
    main()
