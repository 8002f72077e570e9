.PHONY: setup demo test bench

setup:
	./scripts/setup.sh

demo:
	.venv/bin/tastebud demo

test:
	.venv/bin/python -m pytest -q

bench:
	.venv/bin/python bench/import_bench.py
