"""Recurrent cells, one per file. Each is a hashable config implementing :class:`lstm_jax.Cell`:
``init(key, input_size)``, ``initial_carry(batch_shape)`` and one step
``cell(params, carry, x) -> (carry, y)``. Cells import only :mod:`lstm_jax.core`."""
