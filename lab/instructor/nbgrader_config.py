# The instructor Lab (`make lab-instructor`, JUPYTER_CONFIG_PATH=lab/instructor): formgrader and
# Validate read this course's nbgrader settings (course root = this checkout, gradebook and
# submissions in work/), the same as `python -m grader` and
# `nbgrader ... --NbGrader.config_file=grader/nbgrader_config`.
load_subconfig("../../grader/nbgrader_config.py")  # noqa: F821  (provided by traitlets)
