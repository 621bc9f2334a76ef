# Two commands do everything: `make demo` and `make test` (each sets up first when needed).
.PHONY: setup test test-all demo bench clean
PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

demo: setup
	.venv/bin/rtfm demo

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf .venv build demo_out .pytest_cache
