"""Optional speed package: fast paths registered in :func:`course.backend.kernel`.

``course.backend`` imports this package on the first kernel lookup. Without it (the student
edition leaves it out) every call reaches the readable code in ``course`` or the student's
function, and the numbers stay the same up to rounding.

* :mod:`course.fast.numpy`: fused in-place SGD and Adam/AdamW steps, batch norm forward and
  backward with reused scratch buffers, softmax cross-entropy with its gradient, scatter-add;
  large arrays go on to
* :mod:`course.fast.jit`: the same kernels compiled with Numba (the optional extra ``fast``;
  ``jit.available`` says whether it is installed), one pass over memory each;
* :mod:`course.fast.cupy`: the same optimizer steps as CUDA kernels, scatter-add;
* :mod:`course.fast.flat`: one contiguous parameter buffer per dtype for the optimizers.
"""
from __future__ import annotations

from . import cupy, flat, jit, numpy

__all__ = ["cupy", "flat", "jit", "numpy"]
