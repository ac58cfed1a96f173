# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo test lint bench bootstrap

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	.venv/bin/gunctl profiles show glute

test: bootstrap
	.venv/bin/pytest -q

lint: bootstrap
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: bootstrap
	.venv/bin/python -m bench
