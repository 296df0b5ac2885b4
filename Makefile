# Every target sets up its own virtual environment with pip (uv/poetry would download torch again).
# The environment is pinned by constraints.txt and rebuilt only when it or pyproject.toml changes,
# so a second `make test` starts testing within seconds.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-quick test-slow test-faults test-browser test-gpu lint format bench bench-gpu docs docs-serve clean help

help:
	@echo "make demo       set up and run the embedded synthetic benchmark (CPU, minutes)"
	@echo "make test       set up and run the test suite (slow tests excluded)"
	@echo "make test-quick the inner loop: no slow tests, no tests that start processes"
	@echo "make test-slow  run only the tests marked slow"
	@echo "make test-faults  the slow fault tests (signals to training processes, torchrun)"
	@echo "make test-browser  the app page in headless chromium (apt-get installs it as root)"
	@echo "make test-gpu   run the tests that need a CUDA GPU (fails when CUDA is not usable)"
	@echo "make lint       ruff check + format check"
	@echo "make bench      run the benchmarks in benchmarks/"
	@echo "make bench-gpu  GPU throughput (ViT-B/16, 8 frames, bf16): benchmarks/gpu.py"
	@echo "make docs       build the documentation site into build/site (offline, warnings as errors)"
	@echo "make docs-serve serve the documentation with live reload (http://127.0.0.1:8000/)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,text,docs,serve]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m text4vis demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow and not process" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Preemption: a training subprocess signalled mid-step, and a 2-process torchrun training
# signalled on one rank (measured 83 s + 173 s on the shared 2-core VM under load).
test-faults: $(STAMP)
	$(PY) -m pytest -m slow tests/test_faults_preemption.py $(PYTEST_ARGS)

# The page of `text4vis app` in a real browser: Debian's chromium driven by Playwright (which never
# downloads a browser of its own). Installs chromium with apt-get when it is missing (needs root,
# as in CI); the test fails instead of skipping here. Screenshots: build/screenshots/.
test-browser: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "chromium is missing: sudo apt-get install -y chromium (or run as root)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	mkdir -p build/screenshots
	TEXT4VIS_REQUIRE_BROWSER=1 TEXT4VIS_SCREENSHOT_DIR=build/screenshots \
	  $(PY) -m pytest -m browser tests/test_app_browser.py $(PYTEST_ARGS)
# Fails first, with the reason (e.g. a driver too old for the CUDA wheels), when CUDA is not
# usable; then a gpu test that finds no GPU fails instead of skipping (TEXT4VIS_REQUIRE_GPU=1).
# The 2-GPU tests skip on one GPU. CUBLAS_WORKSPACE_CONFIG lets cuBLAS run deterministically for
# the exact-resume test. -rP prints what the GPU tests report (GPU-vs-CPU differences).
test-gpu: $(STAMP)
	$(PY) -m text4vis.runtime
	CUBLAS_WORKSPACE_CONFIG=:4096:8 TEXT4VIS_REQUIRE_GPU=1 $(PY) -m pytest -m gpu -rP $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/data.py
	$(PY) benchmarks/contrastive_step.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/search_reload.py
	$(PY) benchmarks/cpu_inference.py
	$(PY) benchmarks/optimizer_step.py

# Fails first, with the reason, when CUDA is not usable (never hours of ViT-B/16 on the CPU).
bench-gpu: $(STAMP)
	$(PY) -m text4vis.runtime
	$(PY) benchmarks/gpu.py --device cuda

# The site: MkDocs + Material + mkdocstrings (the `docs` extra), see mkdocs.yml. --strict makes
# every warning (a broken link or anchor, a missing page, an API name that moved) an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
