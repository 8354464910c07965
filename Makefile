# curvlab developer commands. Each target sets up what it needs from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
QUICK ?= 1

VISION_VENV ?= .venv-vision
VISION_PY := $(VISION_VENV)/bin/python
VISION_STAMP := $(VISION_VENV)/.installed

.PHONY: setup test test-vision docs docs-check lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check curvlab tests tests_vision examples benchmarks
	$(PY) -m pytest -n 2 -q

# torchvision and timm models, in their own environment (see constraints-vision.txt)
$(VISION_STAMP): pyproject.toml constraints-vision.txt
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_PY) -m pip install --quiet --upgrade pip
	$(VISION_PY) -m pip install --quiet -c constraints-vision.txt -e ".[vision]" pytest
	touch $(VISION_STAMP)

test-vision: $(VISION_STAMP)
	$(VISION_PY) -m pytest -q -p no:cacheprovider tests_vision

docs: $(STAMP)
	$(MAKE) -C docs html PYTHON=$(abspath $(PY))

# the built site in headless Chromium at 1400 px: content-column overflow, broken images,
# console errors, assets loaded from the network (needs chromium and chromium-driver;
# SCREENSHOTS=DIR saves a full-page PNG of each page opened)
docs-check: $(STAMP)
	$(PY) docs/check_site.py $(if $(SCREENSHOTS),--screenshots $(SCREENSHOTS),)

lint: $(STAMP)
	$(PY) -m ruff check curvlab tests tests_vision examples benchmarks

bench: $(STAMP)
	$(PIP) install --quiet -c constraints.txt --no-deps pyhessian curvlinops-for-pytorch hessian-eigenthings torch-optimizer pytorch-ranger backpack-for-pytorch einops einconv unfoldNd linear_operator jaxtyping
	$(PY) -m benchmarks.run $(if $(filter 1,$(QUICK)),--quick,)

clean:
	rm -rf $(VENV) $(VISION_VENV) docs/_build docs/auto_examples docs/api/generated
