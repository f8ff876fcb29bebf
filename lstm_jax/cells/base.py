"""What the built-in cells share, written once: option checks, naming, validation, dtypes.

A user's cell needs none of this (see :class:`lstm_jax.Cell`); the built-in cells subclass
:class:`CellBase` so that every one of them validates its options, names itself in messages,
checks one step's arguments and applies the dtype rule of :mod:`lstm_jax.core.dtypes` the same
way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.core.activations import Activation, resolve_activation
from lstm_jax.core.checks import check_size, check_step
from lstm_jax.core.dtypes import compute_dtypes
from lstm_jax.core.initializers import Initializer, resolve_initializer
from lstm_jax.core.validate import check_bool, check_dtype, check_float, check_int, check_key


class CellBase:
    """Mixin for the built-in cells (frozen dataclasses with ``hidden_size`` and dtypes).

    Subclasses declare which of their fields are sizes, flags, floats, activations and
    initialisers (``_SIZES``, ``_FLAGS``, ...); ``__post_init__`` checks them all and stores sizes
    as plain ints, so ``LSTMCell(np.int64(8)) == LSTMCell(8)``.
    """

    feature_axes = 1  # one step's x is (..., input_size)
    _SIZES: tuple[str, ...] = ("hidden_size",)
    _OPTIONAL_SIZES: tuple[str, ...] = ()
    _FLAGS: tuple[str, ...] = ()
    _FLOATS: tuple[str, ...] = ()
    _ACTIVATIONS: tuple[str, ...] = ()
    _INITIALIZERS: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = type(self).__name__
        for name in self._SIZES:
            _set(self, name, check_int(where, name, getattr(self, name)))
        for name in self._OPTIONAL_SIZES:
            if getattr(self, name) is not None:
                _set(self, name, check_int(where, name, getattr(self, name)))
        for name in self._FLAGS:
            _set(self, name, check_bool(where, name, getattr(self, name)))
        for name in self._FLOATS:
            _set(self, name, check_float(where, name, getattr(self, name)))
        for name in self._ACTIVATIONS:
            resolve_activation(getattr(self, name), where, name)
        for name in self._INITIALIZERS:
            resolve_initializer(getattr(self, name), self.hidden_size, where, name)
        _set(self, "dtype", check_dtype(where, "dtype", self.dtype))
        _set(
            self,
            "param_dtype",
            check_dtype(where, "param_dtype", self.param_dtype, allow_none=False),
        )

    @property
    def output_size(self) -> int:
        """The size of ``y`` (and of ``h``)."""
        return self.hidden_size

    @property
    def compute_dtype(self) -> Any:
        """The dtype of the matrix products' operands when set; else ``param_dtype``'s."""
        return self.param_dtype if self.dtype is None else self.dtype

    def short_repr(self) -> str:
        return f"{type(self).__name__}(hidden_size={self.hidden_size})"

    def activation_of(self, name: str) -> Activation:
        """The activation in field ``name``, resolved."""
        return resolve_activation(getattr(self, name), type(self).__name__, name)

    def initializer_of(self, name: str) -> Initializer:
        """The initialiser in field ``name``, resolved for this cell's hidden size."""
        return resolve_initializer(getattr(self, name), self.hidden_size, type(self).__name__, name)

    def init_args(self, key: Any, input_size: Any) -> tuple[jax.Array, int]:
        """``init``'s arguments checked: one PRNG key and a positive int input size."""
        where = f"{type(self).__name__}.init"
        return check_key(where, "key", key), check_int(where, "input_size", input_size)

    def check(self, params: Any, carry: Any, x: Any, where: str) -> None:
        """Raises a clear error unless params, carry and one step's ``x`` fit this cell."""
        check_step(self, self.params_type, params, carry, x, where)

    def step_dtypes(self, params: Any, x: jax.Array) -> tuple[Any, Any]:
        """``(operand dtype, result dtype)`` of this step (rule: :mod:`lstm_jax.core.dtypes`)."""
        return compute_dtypes(self.dtype, params.w_x, x)


def cast_floats(tree: Any, dtype: Any) -> Any:
    """Every floating leaf of ``tree`` cast to ``dtype`` (a no-op where it already is)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclass: normalise a field in __post_init__


FORGET_GATES = ("sigmoid", "exp")


def check_heads(where: str, hidden_size: Any, num_heads: Any, forget_gate: Any) -> None:
    """The options the xLSTM cells share: sizes, heads dividing ``hidden_size``, forget gate."""
    check_size(where, "hidden_size", hidden_size)
    check_size(where, "num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(
            f"`{where}`: `num_heads` must divide `hidden_size` (each head owns "
            f"hidden_size / num_heads units); got hidden_size={hidden_size}, "
            f"num_heads={num_heads}."
        )
    if forget_gate not in FORGET_GATES:
        raise ValueError(
            f"`{where}`: `forget_gate` must be one of {FORGET_GATES}; got {forget_gate!r}."
        )
