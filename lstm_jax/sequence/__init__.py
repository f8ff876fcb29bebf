"""Running a cell over time: :func:`lstm_jax.scan`, the hand-derived LSTM derivative
(:func:`lstm_jax.lstm_scan`) and the length masks every sequence function shares."""
