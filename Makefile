# lift3d — the two commands a new user runs are `make demo` and `make test`.
# Both set the environment up first when needed (scripts/setup.sh: virtualenv, torch,
# Debian's libusb for open3d, the package itself).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lift3d-installed
DEMO   ?= out/demo

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): setup.py scripts/setup.sh
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/lift3d demo --out $(DEMO)

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf out build *.egg-info .pytest_cache
