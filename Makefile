.PHONY: setup demo test bench

setup:
	./scripts/setup.sh

demo:
	.venv/bin/tastebud demo

test:
	.venv/bin/python -m pytest -q -n auto --dist loadfile

bench:
	.venv/bin/python bench/import_bench.py
