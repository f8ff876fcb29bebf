"""The dtype rule every cell and head follows, the one ``jax.numpy`` follows.

* The computation runs in the **promoted dtype** of the params and the inputs (standard JAX
  promotion, whatever promotion mode the caller runs under): float64 params and inputs give
  float64 outputs; nothing is downcast silently.
* A cell's or head's ``dtype`` option, when set (e.g. ``jnp.bfloat16``), is the dtype of the
  *operands of its matrix products*; they accumulate in, and every output is returned in, the
  promoted dtype. ``y`` and ``carry.h`` therefore always share a dtype.
* ``param_dtype`` only decides what ``init`` draws (and the dtype of ``initial_carry``; the
  sequence functions cast a default zero carry to the dtype a step computes in).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def promoted(*items: Any) -> np.dtype:
    """The standard-promotion result of the dtypes of ``items`` (arrays or dtypes; None skipped).

    Computed under ``jax.numpy_dtype_promotion("standard")`` so that callers running in strict
    mode get the documented rule instead of a promotion error; the caller then casts
    explicitly.
    """
    dts = [getattr(x, "dtype", x) for x in items if x is not None]
    with jax.numpy_dtype_promotion("standard"):
        return np.dtype(jnp.result_type(*dts))


def compute_dtypes(dtype: Any, *items: Any) -> tuple[np.dtype, np.dtype]:
    """``(operand dtype, result dtype)`` of a product: ``dtype`` (or the promoted one), promoted."""
    out = promoted(*items)
    return (out if dtype is None else np.dtype(dtype)), out
