"""Test helper: record what type of output gradient a primitive's VJPs receive."""
from __future__ import annotations

from typing import Any


def gradient_types(monkeypatch: Any, prim: Any) -> list[type]:
    """Wrap ``prim``'s registered VJPs (per argument, or its ``argnum`` rule) so that each call
    appends ``type(g)`` to the returned list, then runs the real rule."""
    seen: list[type] = []

    def spy(rule: Any, with_argnum: bool) -> Any:
        def spied(*args: Any, **kwargs: Any) -> Any:
            seen.append(type(args[1] if with_argnum else args[0]))
            return rule(*args, **kwargs)
        return spied

    if prim.vjp_argnum is not None:
        monkeypatch.setattr(prim, "vjp_argnum", spy(prim.vjp_argnum, True))
    else:
        monkeypatch.setattr(prim, "vjps", tuple(None if r is None else spy(r, False) for r in prim.vjps))
    return seen
