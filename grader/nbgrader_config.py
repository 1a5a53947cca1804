"""nbgrader configuration of this course, for nbgrader's own commands and formgrader:

    nbgrader generate_assignment 01_autodiff --NbGrader.config_file=grader/nbgrader_config

(or symlink this file as ``nbgrader_config.py`` in the course root, where nbgrader and
formgrader look for it). The settings come from :func:`grader.config.nbgrader_config`, as for
the ``python -m grader`` commands: course root = this checkout, working area = ROOT/work.
Autograding is the one exception: ``nbgrader autograde`` (and formgrader's Autograde button)
would run the hidden checks inside the student's kernel: ``nbgrader autograde`` stops as it
loads this file, and formgrader's button gets an autograde whose only step refuses before
anything runs or a grade is saved (nbgrader then removes that student's autograded folder, so
the next ``python -m grader autograde`` grades the submission again).
"""
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from grader.config import STOCK_AUTOGRADE_REFUSED, Course, RefuseStockAutograde, kernel_env, nbgrader_config  # noqa: E402

if sys.argv[1:2] == ["autograde"]:  # `nbgrader autograde`: stop before it touches anything
    sys.exit(f"nbgrader autograde: {STOCK_AUTOGRADE_REFUSED}")
os.environ.update(kernel_env(_ROOT))  # kernels started by nbgrader inherit it
c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)
c.merge(nbgrader_config(Course.at(_ROOT)))
c.Autograde.sanitize_preprocessors = []
c.Autograde.autograde_preprocessors = [RefuseStockAutograde]
