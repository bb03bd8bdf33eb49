# rssd: the two commands of the README.
#   make lab   create .venv (when missing), install rssd with its dev extras, open JupyterLab on notebooks/
#   make test  the same set-up, then: notebooks carry no outputs, ruff, pytest tests/, nbval over notebooks/
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rssd-installed
# Open a browser only where there is a screen to show it on (a server gets the URL printed instead).
BROWSER_FLAG := $(if $(or $(DISPLAY),$(WAYLAND_DISPLAY),$(filter Darwin,$(shell uname -s))),,--no-browser)
# Jupyter refuses to run as root unless told to (containers, Binder-like images often run as root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_IP ?= 127.0.0.1
LAB_PORT ?= 8888

.PHONY: lab test venv check-notebooks lint unit nbval bench gpu-check notebooks clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

lab: $(STAMP)
	@echo "JupyterLab on notebooks/: open the http://$(LAB_IP):$(LAB_PORT)/lab?token=... URL printed below."
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ip=$(LAB_IP) --port=$(LAB_PORT) $(BROWSER_FLAG) $(ROOT_FLAG)

check-notebooks: $(STAMP)
	$(VENV)/bin/nbstripout --verify $(wildcard notebooks/*.ipynb)

lint: $(STAMP)
	$(VENV)/bin/ruff check rssd tests benchmarks notebooks doc tools

unit: $(STAMP)
	$(PY) -m pytest tests/

nbval: $(STAMP)
	RSSD_SMOKE=1 MPLBACKEND=Agg $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=300 -p no:randomly notebooks/

test: check-notebooks lint unit nbval

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# On a GPU server: correctness on CUDA against the CPU, then speed (<= 8 min); JSON in runs/gpu_check.json.
# Without CUDA it runs at smoke sizes on the CPU (seconds). Pass options with GPU_CHECK_ARGS="--device cuda:1".
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --out runs/gpu_check.json $(GPU_CHECK_ARGS)

# "Run All" of every notebook at full size, headless (papermill): executed copies, PNGs and times.csv in
# runs/notebooks/. Full size trains for tens of minutes on a CPU; NOTEBOOKS_ARGS="--smoke 01 04" for a quick pass.
notebooks: $(STAMP)
	$(PY) tools/run_notebooks.py --out runs/notebooks $(NOTEBOOKS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis runs
