# Two commands do everything on a fresh machine (both idempotent):
#   make train   set up, then train the LunarLander preset (rlkit train lunarlander): about 5 min on 2 cores
#   make test    set up (test tools and services included), then lint, type-check and run the test suite
# make demo      set up, then solve CartPole in seconds (rlkit train cartpole --seed 0)
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
	@echo "Training LunarLander-v3 for 100,000 steps: about 5 minutes on a 2-core machine (Ctrl-C saves a checkpoint)."
	$(PYTHON) -m rlkit train lunarlander

demo: setup
	@echo "Training CartPole until solved (mean >= 475 over 100 episodes): 10,000 steps, seconds."
	$(PYTHON) -m rlkit train cartpole --seed 0

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest

test: setup-dev system-deps lint typecheck pytest
