# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo test lint bench bootstrap mutation-check

bootstrap:
	@scripts/bootstrap

# A glute session on the simulated gun, ten times faster than real time (under a minute).
# Without a keyboard (stdin from /dev/null) head changes go on by themselves.
demo: bootstrap
	.venv/bin/gunctl run glute --sim --yes --time-scale 10 </dev/null

test: bootstrap
	@scripts/bootstrap-ha >/dev/null
	.venv/bin/pytest -q

lint: bootstrap
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: bootstrap
	.venv/bin/python -m bench.supervisor

# Break each safety mechanism in turn; the tests must catch every break (about a minute).
mutation-check: bootstrap
	.venv/bin/python scripts/mutation_check.py
