"""Where arrays live during training: the one place that puts state and batches on devices.

:func:`fit` sends every train state and every batch through :func:`place` before the jitted
step sees it. Today that is ``jax.device_put`` onto the default device; distributing a run
over several devices changes this function only.
"""

from __future__ import annotations

from typing import Any, Literal

import jax


def place(tree: Any, role: Literal["state", "batch"]) -> Any:
    """Puts ``tree`` (the train state, or one batch) on the device(s) the step runs on."""
    del role  # a single device: state and batches go to the same place
    return jax.device_put(tree)
