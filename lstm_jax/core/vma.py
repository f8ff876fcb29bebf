"""Carries that vary over the same mesh axes as the steps that update them.

Inside ``jax.shard_map`` every value's type records the manual mesh axes it varies over: a
batch shard of ``xs`` varies over the data axis, a replicated weight does not. ``jax.lax.scan``
requires the carry's type to be the same before and after a step, so a zero initial carry
(which varies over nothing) fed to a step that mixes it with the sharded ``xs`` is rejected
("carry input and carry output must have equal types"). Every loop of the library therefore
starts from a carry cast, with ``jax.lax.pcast(..., to="varying")``, to vary over every axis the
step's output varies over. Outside ``shard_map`` nothing varies and the cast is the identity,
so the compiled program is unchanged.
"""

from __future__ import annotations

import jax


def _varying(x) -> frozenset:
    """The manual mesh axes ``x`` (an array or an abstract value) varies over."""
    aval = x if isinstance(x, jax.ShapeDtypeStruct) else jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return frozenset(getattr(mat, "varying", ()) or ())
    return frozenset(getattr(aval, "vma", ()) or ())


def varying_axes(*trees) -> frozenset:
    """The union of the manual mesh axes the leaves of ``trees`` vary over (empty outside
    ``shard_map``)."""
    axes = frozenset()
    for leaf in jax.tree.leaves(trees):
        if hasattr(leaf, "shape"):
            axes |= _varying(leaf)
    return axes


def vary_over(tree, axes: frozenset):
    """``tree`` with every leaf cast to vary over ``axes`` too (a no-op when it already does)."""
    if not axes:
        return tree

    def cast(leaf):
        missing = tuple(sorted(axes - _varying(leaf)))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(cast, tree)


def vary_like(tree, *refs):
    """``tree`` cast to vary over every axis any leaf of ``refs`` varies over.

    For a loop's initial carry, ``refs`` are the values one step reads (the step's output
    varies over their union), or the abstract output of one step from ``jax.eval_shape``.
    """
    return vary_over(tree, varying_axes(*refs))
