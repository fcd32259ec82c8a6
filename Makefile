# The README's commands. `make run` and `make test` install what they need first.
.PHONY: install run test check lint types perf

install:
	@scripts/install

run: install
	.venv/bin/teambot serve

# Every change passes the same gate: lint, format, types over all five packages, the layering
# arrows (an upward import fails), then the tests. `.ci/run` runs exactly this.
test: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types: install
	.venv/bin/mypy

check: test

perf: install
	.venv/bin/python -m pytest tests/perf -q -s -p no:cacheprovider
