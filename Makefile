# Two commands do all the set-up on a fresh machine:
#   make lab    create .venv, install, open JupyterLab on notebooks/
#   make test   create .venv, install, run every test and every notebook (fast mode)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.labkit-installed
# The read-only dataset mirror beside the checkout, when there is one (CI and offline machines).
SHARED_DATA := $(abspath ../shared/datasets)
export LABKIT_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: lab test test-fast test-browser notebooks benchmark install clean student bundle

# Jupyter refuses to run as root (containers, some cloud machines) unless told it is on purpose.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# What `make lab` serves, and extra options for it; tests/test_browser.py passes a copy of a notebook, a port, a
# token and --no-browser, e.g. make lab LAB_ROOT=/tmp/lab LAB_ARGS="--no-browser --port=8899".
LAB_ROOT ?= notebooks
LAB_ARGS ?=

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(LAB_ROOT) $(ROOT_FLAG) $(LAB_ARGS)

test: $(STAMP)
	LABKIT_FAST=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env -p no:cacheprovider --durations=25

test-fast: $(STAMP)  # the unit tests only, without the notebooks
	LABKIT_FAST=1 HF_HUB_OFFLINE=1 $(PY) -m pytest tests -p no:cacheprovider

test-browser: $(STAMP)  # only the real-browser test of the lab (needs /usr/bin/chromium; make test runs it too)
	LABKIT_FAST=1 HF_HUB_OFFLINE=1 $(PY) -m pytest tests/test_browser.py -s -p no:cacheprovider

notebooks: $(STAMP)  # re-run every notebook in full mode and store its outputs (what the repository shows)
	LABKIT_FAST=0 $(PY) scripts/run_notebooks.py notebooks/*.ipynb

student: $(STAMP)  # workshop: student copies (answer cells blanked, their outputs removed) in build/student/notebooks/
	$(PY) -m labkit.course.workshop student

bundle: $(STAMP)  # workshop: build/labkit-course.zip (labkit + student notebooks + data card); FULL=1 for the full notebooks
	$(PY) -m labkit.course.workshop bundle $(if $(FULL),--full,)

benchmark: $(STAMP)
	$(PY) benchmarks/losses.py

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml scripts/install-torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	bash scripts/install-torch.sh $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
