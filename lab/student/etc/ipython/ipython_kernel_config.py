# deeptrain-course: course kernels run BLAS/OpenMP on one thread unless you chose a number.
#
# IPython reads this file from <environment>/etc/ipython/ each time a kernel of this Python
# environment starts (JupyterLab's, `nbgrader validate`'s, VS Code's), before any notebook code
# imports NumPy, which is when OpenBLAS/MKL read these variables. The course's arrays are
# small: on a laptop or a shared 2-core machine, threaded BLAS makes them several times slower
# (assignment 5 took 45-79 s with the default threads, 14 s with one).
#
# To choose another number, set any of the variables below before starting JupyterLab, e.g.
# `OMP_NUM_THREADS=4 jupyter lab` (OpenBLAS and MKL fall back to OMP_NUM_THREADS); if any of
# them is set, this file sets none. Installed by `python lab/start.py` (or `make install`);
# edits here are overwritten there, the copy in the course's lab/student/ is the source.
import os as _os

_BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
if not any(_os.environ.get(_name) for _name in _BLAS_THREAD_VARS):
    for _name in _BLAS_THREAD_VARS:
        _os.environ[_name] = "1"
