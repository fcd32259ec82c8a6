# The README's commands. `make run` and `make test` install what they need first.
.PHONY: install run test check lint types perf

install:
	@scripts/install

run: install
	.venv/bin/teambot serve

test: install
	.venv/bin/python -m pytest -q

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types: install
	.venv/bin/mypy

check: lint types test

perf: install
	.venv/bin/python -m pytest tests/perf -q -s -p no:cacheprovider
