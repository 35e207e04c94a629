# Two commands do everything on a fresh machine (both idempotent):
#   make train   set up, then train the LunarLander preset (rlkit train lunarlander)
#   make test    set up (test tools and services included), then lint, type-check and run the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-dev system-deps train demo lint typecheck pytest test

setup:
	$(PIP) -e .

setup-dev:
	$(PIP) -e '.[dev]'

system-deps:
	bash .ci/system-deps

train: setup
	$(PYTHON) -m rlkit train lunarlander

demo: setup
	$(PYTHON) -m rlkit train cartpole --steps 20000 --seed 0

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest

test: setup-dev system-deps lint typecheck pytest
