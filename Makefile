# `make run` serves the dashboard, `make test` runs every test, `make bench` runs the benchmarks.
# Each creates .venv from the pinned requirements first if it is missing or out of date.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: run test bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run dashboard/app.py --server.port $(PORT)

# tests time models while other tests' processes run: wait at most 1 s for quiet (the default is 10 s)
test: $(STAMP)
	COMPRESSION_LAB_QUIET_WAIT_S=$${COMPRESSION_LAB_QUIET_WAIT_S:-1} $(PY) -m pytest

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "# $$f" >&2; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .lab .pytest_cache
