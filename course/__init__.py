"""deeptrain-course: a small reference library for learning how deep networks are trained.

Public names: :class:`Tensor`, :func:`tensor`, :class:`Parameter`, :func:`no_grad`,
:func:`enable_grad`, :func:`use` (pick the array backend), :func:`to_numpy`; and the
submodules ``ops``, ``losses``, ``gradcheck``, ``init``, ``nn``, ``optim``, ``schedules``,
``train``, ``data``, ``plots`` (matplotlib is imported only when plotting) and ``explore``
(interactive explorers; ipywidgets only when one is shown live); ``analysis``, ``backprop`` and
``symmetry`` hold small closed forms that 06_training_in_practice checks.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import backend, ops
from .autodiff import Parameter, Tensor, enable_grad, grad, no_grad, tensor
from .backend import to_numpy, use

__all__ = [
    "Tensor", "Parameter", "tensor", "no_grad", "enable_grad", "grad", "use", "to_numpy",
    "backend", "ops", "losses", "gradcheck", "init", "nn", "optim", "schedules", "train",
    "data", "plots", "functional", "explore",
]
__version__ = "0.1.0"

_LAZY = {"losses", "gradcheck", "init", "nn", "optim", "schedules", "train", "data", "plots",
         "functional", "testing", "explore", "analysis", "backprop", "symmetry"}


def __getattr__(name: str) -> Any:
    """Import submodules on first use, so ``import course`` stays light."""
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'course' has no attribute {name!r}")
