# Set-up and everyday commands. On a fresh machine only python3 (>= 3.11) and pip are needed:
#   make demo   create .venv if missing, install, run the demo
#   make test   create .venv if missing, install, run the whole test suite
#   make lab    create .venv if missing, install, start the student JupyterLab on notebooks/
#               (make lab LAB_ARGS="--no-browser --port=9999": options for `jupyter lab`)
#   make lab-instructor   the same Lab with nbgrader's instructor UI (formgrader, ...)
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (auto: one per CPU; tests/_schedule.py says who runs
# what). PYTEST_WORKERS=0 runs the suite in one process, for debugging (pdb, -s, print).
PYTEST_WORKERS ?= auto
LAB_ARGS ?=
# The student JupyterLab set-up (lab/student/), written into .venv by lab/start.py.
LAB_STAMP := $(VENV)/.lab-student
LAB_FILES := lab/start.py $(shell find lab/student -type f ! -name '*.pyc' 2>/dev/null)

# nbgrader runs the venv's `alembic` executable, so the venv's bin/ goes first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: venv install demo test smoke bench lock lab lab-instructor

venv: $(VENV)/bin/python

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: '$(PYTHON)' is missing or older than Python 3.11; install Python 3.11+ and run 'make PYTHON=python3.11' (or newer)." >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { rm -rf $(VENV); echo "error: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: apt install python3-venv)." >&2; exit 1; }

install: $(STAMP) $(LAB_STAMP)

# Reinstalls only when the dependency list or the lock changes; the package itself is editable.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[test]"
	@touch $@

# The environment is the student's by default: nbgrader's instructor plugins and server
# extensions off (Validate stays), no news prompt, one BLAS thread per kernel (lab/start.py
# says what goes where). Rewritten when lab/ changes or after a reinstall.
$(LAB_STAMP): $(LAB_FILES) $(STAMP)
	$(BIN)/python lab/start.py --apply
	@touch $@

# JupyterLab on notebooks/, as a student gets it; LAB_ARGS go to `jupyter lab`.
lab: install
	$(BIN)/python lab/start.py $(LAB_ARGS)

# The instructor's Lab on the course root: lab/instructor/ first on JUPYTER_CONFIG_PATH turns
# the Nbgrader menu, Formgrader, Create Assignment and the course/assignment lists back on.
lab-instructor: install
	$(BIN)/python lab/start.py --instructor $(LAB_ARGS)

# The library trains a network; then the grader builds, grades three made-up students, reports.
demo: install
	$(BIN)/python -m course.demo
	$(BIN)/python -m grader.demo

# One BLAS thread: on a small shared machine threaded BLAS makes small matmuls several times slower.
test: export OMP_NUM_THREADS ?= 1
test: export OPENBLAS_NUM_THREADS ?= 1
test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# A quick part of the suite: the library, the grader's units and one assignment graded by real
# nbgrader. CI runs it on the oldest Python of the machine as well, in its own venv:
#   make smoke PYTHON=/usr/bin/python3 VENV=.venv-oldest
SMOKE_TESTS := tests/test_packaging.py tests/test_backend.py tests/test_autodiff.py \
  tests/test_optim.py tests/test_nn.py tests/test_train.py tests/test_grader_units.py
smoke: export OMP_NUM_THREADS ?= 1
smoke: export OPENBLAS_NUM_THREADS ?= 1
smoke: install
	$(BIN)/python -m grader check 01_autodiff
	$(BIN)/python -m pytest -q $(SMOKE_TESTS) $(PYTEST_ARGS)

bench: install
	@set -e; for f in bench/[!_]*.py; do echo "== $$f"; $(BIN)/python "$$f"; done

# Re-lock with uv (installed into a throwaway venv; installing from the lock needs only pip):
# one universal resolution of pyproject.toml for every Python from LOCK_PYTHON up and every OS,
# with environment markers where a release fits only some of them. It reads pyproject.toml,
# not an environment, so nothing installed by hand (torch for the benchmarks) leaks in. Pins
# that still fit are kept; `make lock UPGRADE=1` moves every pin to the newest allowed release.
# LOCK_PYTHON is the oldest Python that pyproject's requires-python admits (a test checks).
LOCK_PYTHON := 3.11.0
UV_VERSION ?= 0.13.9
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q "uv==$(UV_VERSION)"; \
	if [ -f constraints.txt ]; then cp constraints.txt "$$tmp/lock.txt"; fi; \
	"$$tmp/venv/bin/uv" pip compile pyproject.toml --extra test --extra cluster --universal \
	  --python-version $(LOCK_PYTHON) --no-header --annotation-style line --quiet \
	  $(if $(UPGRADE),--upgrade) -o "$$tmp/lock.txt"; \
	{ echo "# Pinned resolution of deeptrain-course[test,cluster] (runtime, test and cluster dependencies),"; \
	  echo "# tested by CI. 'make install' installs with it: pip install -c constraints.txt -e \".[test]\"."; \
	  echo "# One file for every supported Python (CPython $(LOCK_PYTHON) and newer) and every OS: a universal"; \
	  echo "# lock. A release that fits only some Pythons or OSes gets an environment marker, and another"; \
	  echo "# release covers the rest (e.g. soupsieve 4 needs Python 3.11.5+; 3.11.0-3.11.4 get an older"; \
	  echo "# one); pip uses only the lines whose marker matches. Regenerate with 'make lock' (uv pip compile"; \
	  echo "# --universal; it keeps the pins that still fit, 'make lock UPGRADE=1' takes the newest allowed"; \
	  echo "# releases). Instructors can commit this file at the start of a semester to freeze every"; \
	  echo "# student's environment."; \
	  cat "$$tmp/lock.txt"; \
	} > constraints.txt.new; \
	mv constraints.txt.new constraints.txt; echo "wrote constraints.txt"
