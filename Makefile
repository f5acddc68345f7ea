# Two commands are all the set-up on a fresh clone:
#   make demo   -> creates/updates .venv, then runs the main job on the default config
#   make test   -> creates/updates .venv, then runs the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jtwin run configs/building.toml

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -n 2

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
