# The two commands of the README: `make demo` and `make test`. Both set up what is missing.
.PHONY: demo test lint bootstrap bench clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/sensornet demo

test: bootstrap lint
	.venv/bin/python -m pytest

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports

clean:
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache
