# Set-up and everyday commands. On a fresh machine only python3 (>= 3.11) and pip are needed:
#   make demo   create .venv if missing, install, run the demo
#   make test   create .venv if missing, install, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# nbgrader runs the venv's `alembic` executable, so the venv's bin/ goes first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: venv install demo test bench lock

venv: $(VENV)/bin/python

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: '$(PYTHON)' is missing or older than Python 3.11; install Python 3.11+ and run 'make PYTHON=python3.11' (or newer)." >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { rm -rf $(VENV); echo "error: '$(PYTHON) -m venv' failed; install the venv module (Debian/Ubuntu: apt install python3-venv)." >&2; exit 1; }

install: $(STAMP)

# Reinstalls only when the dependency list or the lock changes; the package itself is editable.
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e ".[test]"
	@touch $@

# The library trains a network; then the grader builds, grades three made-up students, reports.
demo: install
	$(BIN)/python -m course.demo
	$(BIN)/python -m grader.demo

# One BLAS thread: on a small shared machine threaded BLAS makes small matmuls several times slower.
test: export OMP_NUM_THREADS ?= 1
test: export OPENBLAS_NUM_THREADS ?= 1
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	@set -e; for f in bench/[!_]*.py; do echo "== $$f"; $(BIN)/python "$$f"; done

# Re-resolve the dependencies in a throwaway venv (so nothing installed by hand, such as
# torch for the benchmarks, leaks into the lock) and pin the result.
lock:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q -e ".[test]"; \
	{ echo "# Pinned resolution of deeptrain-course[test] (runtime + test dependencies), tested by CI."; \
	  echo "# 'make install' installs with it: pip install -c constraints.txt -e \".[test]\"."; \
	  echo "# Regenerate with 'make lock' (fresh venv, newest allowed versions); instructors can commit"; \
	  echo "# this file at the start of a semester to freeze every student's environment."; \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -Eiv '^torch([=@ ]|$$)'; \
	} > constraints.txt.new; \
	mv constraints.txt.new constraints.txt; echo "wrote constraints.txt"
