# curvlab developer commands. Each target sets up what it needs from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
QUICK ?= 1

.PHONY: setup test docs lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check curvlab tests examples benchmarks
	$(PY) -m pytest -n 2 -q

docs: $(STAMP)
	$(MAKE) -C docs html PYTHON=$(abspath $(PY))

lint: $(STAMP)
	$(PY) -m ruff check curvlab tests examples benchmarks

bench: $(STAMP)
	$(PIP) install --quiet -c constraints.txt --no-deps pyhessian curvlinops-for-pytorch hessian-eigenthings torch-optimizer pytorch-ranger backpack-for-pytorch einops einconv unfoldNd linear_operator jaxtyping
	$(PY) -m benchmarks.run $(if $(filter 1,$(QUICK)),--quick,)

clean:
	rm -rf $(VENV) docs/_build docs/auto_examples docs/api/generated
