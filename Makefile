# The two commands of the README: `make demo` and `make test`. Both set up what is missing.
.PHONY: demo test lint bootstrap bootstrap-test bench clean

bootstrap:
	@scripts/bootstrap.sh

bootstrap-test:
	@scripts/bootstrap.sh --test

demo: bootstrap
	.venv/bin/sensornet demo

test: bootstrap-test lint
	.venv/bin/python -m pytest

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

clean:
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
