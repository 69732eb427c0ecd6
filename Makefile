# nncli set-up, demo and tests. Every target is idempotent: run it on a fresh machine or again.
#   make demo   set everything up, then show nncli on the bundled specs and data
#   make test   set everything up, build the docs (warnings are errors), lint (ruff), then run the test suite
#               (slow tests, the docs' examples among them: make test-slow)
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# torchvision's release that matches TORCH_VERSION (torchattacks, the attack tests' reference, needs it)
TORCHVISION_VERSION ?= 0.28.0
DOCS_VENV ?= .venv-docs
PY := $(VENV)/bin/python
NNCLI := $(VENV)/bin/nncli
OUT ?= demo-out
# The built documentation site (ignored by git): make docs, and make test on its way.
SITE ?= site
# What make bench records (one JSON per benchmark) and turns into docs/benchmarks.md.
BENCH_RESULTS ?= bench-results

.PHONY: setup dot demo docs lint test test-slow test-cuda bench bench-report clean

setup: $(VENV)/.nncli-installed $(DOCS_VENV)/.docs-installed dot

# optuna and ray: tests/sweep/test_sweep_backends.py runs Optuna's search and one small real-Ray sweep
# by default (the other Ray tests are slow-marked); users install them only as extras. mlflow:
# tests/tracking/ reads runs back from a real local store (and, slow-marked, a real `mlflow server`).
# torchattacks (the attack-ref extra) is installed on its own, without its dependencies' pins: it
# pins requests~=2.25.1, which mlflow's own dependencies exclude, and it never imports requests; its
# real dependencies (torchvision, scipy, tqdm) are installed next, torchvision pinned to torch's match
# (unpinned, pip tries every newer torchvision against the pinned torch first).
# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build;
# 2.13.0 is the CPU wheel this kind of machine keeps on disk.
$(VENV)/.nncli-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,export,images,optuna,ray,plots,tensorboard,mlflow]" "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "torchattacks>=3.5"
	$(PY) -m pip install --quiet --disable-pip-version-check "torchvision==$(TORCHVISION_VERSION)" scipy tqdm "torch==$(TORCH_VERSION)"
	touch $@

# The documentation site's tools live in a venv of their own: mkdocs-material needs a newer
# `requests` than torchattacks (the attack tests' reference) allows in one environment.
$(DOCS_VENV)/.docs-installed: docs/requirements.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r docs/requirements.txt
	touch $@

# graphviz's `dot` renders diagrams (the Python package only writes DOT source).
dot:
	@if command -v dot >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing graphviz (dot) with apt-get"; \
	  (apt-get install -y -qq graphviz >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null)); \
	else \
	  echo "graphviz's 'dot' is missing; diagrams will be written as .dot only. Install it with one of:"; \
	  echo "  sudo apt-get install graphviz   |   brew install graphviz   |   conda install -c conda-forge graphviz"; \
	fi

demo: setup
	mkdir -p $(OUT)
	$(NNCLI) check specs/lecture-mlp.yaml
	$(NNCLI) params specs/resnet50.yaml --batch-size 32 --max-params 30M
	$(NNCLI) diagram specs/resnet-tiny.yaml -o $(OUT)/resnet-tiny.svg
	$(NNCLI) gradcheck specs/custom-swish.yaml
	$(NNCLI) probe specs/deep-sigmoid.yaml || echo "(probe exits 1 above: the deep sigmoid stack's gradients vanish, as the lecture says)"
	$(NNCLI) train specs/digits-cnn.yaml --out $(OUT)/digits-run --force --plot $(OUT)/digits-curves.png
	$(NNCLI) evaluate $(OUT)/digits-run --split test
	@echo "demo outputs in $(OUT)/: resnet-tiny.svg, digits-run/ (run folder), digits-curves.png"

# --strict fails on any warning (a broken link or anchor, a page left out of the nav). Not
# --quiet: mkdocs then stops counting warnings, and --strict passes whatever happens. The log is
# shown only when the build fails.
docs: setup
	@log=$$(mktemp); if NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --site-dir $(SITE) >$$log 2>&1; \
	then rm -f $$log; echo "docs built in $(SITE)/"; else cat $$log; rm -f $$log; exit 1; fi

# ruff: lint and format, configured in pyproject.toml; a finding fails the run before the tests.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup docs lint
	$(VENV)/bin/pytest -q

test-slow: setup
	$(VENV)/bin/pytest -q -m slow

test-cuda: setup
	$(VENV)/bin/pytest -q -m cuda -rs

# Each script records its figures, the machine and the load in $(BENCH_RESULTS)/<name>.json;
# the report turns them into docs/benchmarks.md.
bench: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[bench]" "torch==$(TORCH_VERSION)"
	for b in tests/benchmarks/bench_*.py; do echo "== $$b"; \
	  NNCLI_BENCH_DIR=$(BENCH_RESULTS) $(PY) $$b || exit 1; done
	$(MAKE) bench-report

bench-report:
	$(PY) tests/benchmarks/report.py --results $(BENCH_RESULTS) --out docs/benchmarks.md

clean:
	rm -rf $(VENV) $(OUT) $(SITE) .pytest_cache .hypothesis *.egg-info
