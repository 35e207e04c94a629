#!/usr/bin/env bash
# Pong on one GPU in under 8 minutes: train, stop at the time budget, print env steps/s and the
# real game score reached (JSON from bench/atari_summary.py). For a session that the `device`
# tool lends a GPU to; CUDA is required unless DEVICE says otherwise (the tests run it tiny on CPU).
#
#   bash bench/gpu_pong.sh                       # 420 s of training on cuda, then the summary
#   BACKEND=sb3 N_ENVS=1 bash bench/gpu_pong.sh  # the same on SB3's Atari wrappers, one env
#   PRESET=rainbow bash bench/gpu_pong.sh        # the Rainbow preset (envs/rainbow.yaml) instead
#
# Settings: the pong preset (Nature CNN, Zoo's Atari values, frame buffer on the GPU: its
# frame_buffer_storage is auto) on ale-py's threaded vector env with N_ENVS envs, one gradient step
# per 4 transitions as the preset (train_freq 1, gradient_steps N_ENVS/4), learning from 10k steps,
# epsilon down to 0.01 over 100k steps. The run stops at BUDGET_S seconds (SIGINT: a checkpoint
# without the replay buffer is saved; the run can be resumed with --without-buffer).
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET_S=${BUDGET_S:-420}
STEPS=${STEPS:-3000000}
DEVICE=${DEVICE:-cuda}
BACKEND=${BACKEND:-ale}
N_ENVS=${N_ENVS:-8}
OUT=${OUT:-runs/gpu-pong}
PRESET=${PRESET:-pong}
EXTRA=${EXTRA:-}
if [ "$DEVICE" = cuda ] && ! python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: no CUDA device here; run on a GPU machine, or set DEVICE=cpu for a (slow) try" >&2
  exit 2
fi
if [ -e "$OUT/run" ]; then
  echo "error: $OUT/run exists; remove it or set OUT to another folder" >&2
  exit 2
fi
mkdir -p "$OUT"
GRAD=$(( N_ENVS >= 4 ? N_ENVS / 4 : 1 ))
TRAIN_FREQ=$(( N_ENVS >= 4 ? 1 : 4 / N_ENVS ))
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
set +e
# shellcheck disable=SC2086  # EXTRA is a list of --set options
timeout --signal=INT --kill-after=120 "$BUDGET_S" rlkit train "$PRESET" --device "$DEVICE" --seed 0 -q \
  --run-dir "$OUT/run" --steps "$STEPS" \
  --set atari.backend="$BACKEND" --set n_envs="$N_ENVS" \
  --set train_freq="$TRAIN_FREQ" --set gradient_steps="$GRAD" \
  --set learning_starts=10000 --set exploration_fraction="$(python -c "print(min(1.0, 100000 / $STEPS))")" \
  --set eval_freq=0 --set checkpoint_freq=0 --set checkpoint_replay_buffer=false $EXTRA
code=$?
set -e
if [ "$code" -ne 0 ] && [ "$code" -ne 130 ] && [ "$code" -ne 124 ]; then
  echo "error: training failed (exit $code)" >&2
  exit "$code"
fi
python bench/atari_summary.py "$OUT/run"
