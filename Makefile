# Two commands do everything: `make demo` and `make test` (each sets up first when needed); `make lint` checks style and types.
.PHONY: setup test test-all lint demo bench clean
PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

# ruff (ruff.toml) and mypy (mypy.ini); both run, and either failing fails.
lint: setup
	@rc=0; .venv/bin/ruff check . || rc=1; $(PY) -m mypy || rc=1; exit $$rc

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

demo: setup
	.venv/bin/rtfm demo

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf .venv build demo_out .pytest_cache .mypy_cache .ruff_cache
