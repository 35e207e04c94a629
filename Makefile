# Two commands do everything on a fresh machine (both idempotent):
#   make train   set up, then train the LunarLander preset until solved (rlkit train lunarlander)
#   make test    set up (test tools and services included), then lint, type-check and run the test suite
# make demo      set up, then solve CartPole in seconds (rlkit train cartpole --seed 0)
# The messages of `make train` and `make demo`, from the benchmark JSON (python bench/refresh_docs.py):
# results:make-messages
TRAIN_LINES := 'Training LunarLander-v3 until solved, at most 500,000 steps (Ctrl-C saves a' 'checkpoint). How long depends on the machine: on the reference machine (env' '26,900 steps/s, matmul 5,950/s on that machine) seeds 0-4 took 25.0-82.1 s of' 'training (median 48.1 s; 5 of 5 solved).'
DEMO_LINES := 'Training CartPole-v1 (seed 0) until solved: mean >= 475 over 100 episodes. On' 'the reference machine (env 130,000 steps/s, matmul 5,930/s on that machine)' 'seed 0 solved at step 10,000 after 4.7 s of training.'
# /results:make-messages
PYTHON ?= python3
PIP := PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-script-location
# Installed already? (the first `make demo` or `make train` installs torch, SB3, gymnasium...: about a minute)
INSTALLED := $(shell $(PYTHON) -c "import importlib.metadata as m; m.version('rlkit'); import stable_baselines3, gymnasium, optuna" 2>/dev/null && echo yes)

.PHONY: setup setup-dev system-deps train demo lint typecheck pytest test

setup: .setup.stamp

# Installs again only when pyproject.toml changed since the last install (pip's editable build takes a while).
.setup.stamp: pyproject.toml
ifneq ($(INSTALLED),yes)
	@echo "First run: installing rlkit and its dependencies (torch, Stable-Baselines3, gymnasium...; about a minute, once)."
endif
	@$(PIP) -e .
	@touch $@

setup-dev:
	$(PIP) -e '.[dev]'

system-deps:
	bash .ci/system-deps

train: setup
	@printf '%s\n' $(TRAIN_LINES)
	$(PYTHON) -m rlkit train lunarlander

demo: setup
	@printf '%s\n' $(DEMO_LINES)
	$(PYTHON) -m rlkit train cartpole --seed 0

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest

test: setup-dev system-deps lint typecheck pytest
