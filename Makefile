# Two entry points for a fresh machine: `make demo` (main job, built-in defaults) and `make test`.
# Both create the virtual environment on first use and are safe to run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first: the project's torch range is then already met,
	# so pip never pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

test-all: $(STAMP)
	$(PY) -m pytest -n 2 -q -m ''

# Benchmarks (not part of the tests): speed ratios measured in one run.
# bench_scalesim.py needs `bash benchmarks/setup_scalesim_env.sh` once (SCALE-Sim in its own venv).
bench: $(STAMP)
	$(PY) benchmarks/bench_projection.py
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_alexnet_sparse.py
	if [ -x .bench_venv/bin/python ]; then $(PY) benchmarks/bench_scalesim.py; \
	else echo "skipping bench_scalesim.py: run 'bash benchmarks/setup_scalesim_env.sh' first"; fi

clean:
	rm -rf $(VENV) demo_output .pytest_cache
