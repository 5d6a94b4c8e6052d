#!/usr/bin/env bash
# Train the shipped experts: PPO after a supervised warm start, `cpu` preset, seed 0 (what `make experts` runs).
# Resumable: rerun after any interruption and each run continues from its last checkpoint.
#
#   scripts/train_experts.sh [PYTHON_BIN_DIR] [JOBS]      # defaults: .venv/bin 2
#
# Each run uses one thread; JOBS runs go at once. Runs live in runs/make-experts/<dim>, logs beside them;
# a finished expert is written to experts/<dim> (replacing the shipped one). OUT_ROOT=dir writes the
# experts there instead (to compare before shipping).
set -euo pipefail
BIN=${1:-.venv/bin}
JOBS=${2:-2}
OUT_ROOT=${OUT_ROOT:-experts}
# informative: its reward grows with distinct content words, so the warm start keeps the best answer whether or
# not it finished and PPO does not penalise an answer that uses the whole 256-token budget (with the defaults,
# finished-only candidates and the missing-EOS penalty taught it shorter answers: held-out distinct words 63.2 vs
# the base's 62.8)
# expert: no warm start (prompting does not move it, so there is nothing to distil); PPO from the base with GAE
# lam 1, the critic held near 0 (value_learning_rate), each prompt's mean base reward subtracted (reward_baseline),
# the k3 KL estimator, and 192-token rollouts: long enough that it learns to stay fluent to the end of its answer,
# short enough for 24 steps in about an hour (README "Shipped experts", thirteenth run)
EXPERT="--set warm_start=false --set lam=1.0 --set learning_rate=1e-3 --set value_learning_rate=1e-5"
EXPERT+=" --set kl_coef=0.01 --set kl_estimator=k3 --set missing_eos_penalty=0 --set max_new_tokens=192"
EXPERT+=" --set reward_baseline.prompts=64 --set reward_baseline.max_new_tokens=192 --steps 24"
declare -A EXTRA=([informative]="--set warm_start.finished_only=false --set missing_eos_penalty=0" [expert]="$EXPERT")
DIMS=${DIMS:-concise informative friendly unfriendly expert elementary}
mkdir -p runs/make-experts
run_one() {
  local d=$1
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$BIN/soups" train-expert --dim "$d" --algo ppo --preset cpu ${EXTRA[$d]:-} \
    --run-dir "runs/make-experts/$d" --out "$OUT_ROOT/$d" --resume --force --quiet \
    > "runs/make-experts/$d.log" 2>&1 && echo "train_experts: $d done" || { echo "train_experts: $d FAILED (runs/make-experts/$d.log)"; return 1; }
}
export BIN OUT_ROOT
printf '%s\n' $DIMS | xargs -P "$JOBS" -I{} bash -c "$(declare -A -p EXTRA); $(declare -f run_one); run_one {}"
