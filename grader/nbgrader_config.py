"""nbgrader configuration of this course, for nbgrader's own commands and formgrader:

    nbgrader autograde 01_autodiff --NbGrader.config_file=grader/nbgrader_config

(or symlink this file as ``nbgrader_config.py`` in the course root, where nbgrader and
formgrader look for it). The settings come from :func:`grader.config.nbgrader_config`, as for
the ``python -m grader`` commands: course root = this checkout, working area = ROOT/work; and
grading kernels get the same environment (the root first on PYTHONPATH).
"""
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from grader.config import Course, kernel_env, nbgrader_config  # noqa: E402

os.environ.update(kernel_env(_ROOT))  # kernels started by nbgrader inherit it
c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)
c.merge(nbgrader_config(Course.at(_ROOT)))
