# The README's commands. `make run` and `make test` install what they need first.
.PHONY: install dev run test check lint types perf

# install: what serving needs (no torch); dev: also torch (CPU), sentence-transformers and the
# test tools, which the vector-equality tests and the checks need
install:
	@scripts/install

dev:
	@scripts/install --dev

run: install
	.venv/bin/teambot serve

# Every change passes the same gate: lint, format, types over all five packages, the layering
# arrows (an upward import fails), then the tests. `.ci/run` runs exactly this.
test: dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q

lint: dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types: dev
	.venv/bin/mypy

check: test

perf: dev
	.venv/bin/python -m pytest tests/perf -q -s -p no:cacheprovider
