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
# informative: PPO from the base as for expert (below), 14 steps (the same run went on rising to step 14, then
# fell as KL passed 40 nats), against experts/configs/dims/informative.yaml: the informative rule reward with no
# share for finishing and depth linear in distinct content words (README "Shipped experts", session 8)
# expert: no warm start (prompting does not move it, so there is nothing to distil); PPO from the base with GAE
# lam 1, the critic held near 0 (value_learning_rate), each prompt's mean base reward subtracted (reward_baseline),
# the k3 KL estimator, and 192-token rollouts: long enough that it learns to stay fluent to the end of its answer,
# short enough for 24 steps in about an hour (README "Shipped experts", thirteenth run)
EXPERT="--set warm_start=false --set lam=1.0 --set learning_rate=1e-3 --set value_learning_rate=1e-5"
EXPERT+=" --set kl_coef=0.01 --set kl_estimator=k3 --set missing_eos_penalty=0 --set max_new_tokens=192"
EXPERT+=" --set reward_baseline.prompts=64 --set reward_baseline.max_new_tokens=192"
# unfriendly: warm start + PPO as for the others, against experts/configs/dims/unfriendly.yaml (rule + learned
# reward), but the warm start's candidates carry a more explicit instruction than the paper's statement (context
# distillation: prompted "in an unfriendly manner" the 135M base stays polite), 160 prompts x 4 samples (README
# "Shipped experts", session 11; the same for friendly made an expert that loops "I'm so glad you're here!")
UNFRIENDLY="--set 'warm_start.statement=You are a grumpy, impatient teacher. Answer the question in two or three"
UNFRIENDLY+=" cold sentences, and make it clear you find the question stupid and annoying.' --set warm_start.prompts=160"
# friendly: warm start from the base prompted by the paper's statement, on all 300 training prompts for 4 epochs
# (on 128 prompts for 3 epochs the distilled policy scored below the prompted base's own average answer: held-out
# reward 0.23 vs 0.32), then PPO as for the others, 12 steps: the shipped run was stopped there (README "Shipped
# experts", session 12)
FRIENDLY="--set warm_start.prompts=300 --set warm_start.temperature=0.7 --set warm_start.epochs=4"
FRIENDLY+=" --set warm_start.learning_rate=5e-4 --steps 12"
# informative: expert's PPO from the base, 14 steps (above). Session 13 tried a warm start on the base's own plain
# answers first (best of 4 by the reward on all 300 training prompts, cut answers kept): it lowered the held-out
# reward from 0.405 to 0.347, so the shipped recipe has none
declare -A EXTRA=([informative]="$EXPERT --steps 14" [expert]="$EXPERT --steps 24" [unfriendly]="$UNFRIENDLY"
                  [friendly]="$FRIENDLY")
declare -A DIMFILE=([informative]=experts/configs/dims/informative.yaml [unfriendly]=experts/configs/dims/unfriendly.yaml)
# the trained expert's delta times this factor (`soups scale-expert`): unfriendly x 1.3, chosen on 48 training
# prompts (its reward 0.42 -> 0.60 with distinct-3 kept; x 1.6 adds 0.02 while answers turn into one template);
# the trained one is kept in runs/make-experts/<dim>.trained (README "Shipped experts", session 16)
declare -A SCALE=([unfriendly]=1.3)
DIMS=${DIMS:-concise informative friendly unfriendly expert elementary}
mkdir -p runs/make-experts
# unfriendly: its reward is half a learned one (experts/configs/dims/unfriendly.yaml), so first the base writes
# RLCD pairs (`soups make-pairs`: answers with the unfriendly statement chosen, with the friendly one rejected)
# and `soups train-reward` fits the reward model the dimension file points at (both skipped once they exist)
prepare() {
  local d=$1
  [ "$d" = unfriendly ] || return 0
  local pairs=runs/make-experts/pairs-unfriendly.jsonl rm=runs/make-experts/reward-unfriendly
  [ -f "$pairs" ] || OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$BIN/soups" make-pairs --dim unfriendly --prompts 160 \
    --samples 2 --match-length 20 --out "$pairs" --quiet > "runs/make-experts/$d.pairs.log" 2>&1 || return 1
  [ -f "$rm/reward_model.json" ] || OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$BIN/soups" train-reward --dim unfriendly \
    --pairs "$pairs" --method probe --out "$rm" --force > "runs/make-experts/$d.reward.log" 2>&1 || return 1
}
run_one() {
  local d=$1
  prepare "$d" || { echo "train_experts: $d FAILED (runs/make-experts/$d.pairs.log, $d.reward.log)"; return 1; }
  eval "local extra=(${EXTRA[$d]:-})"  # the flags, with quoted values kept whole
  local out=$OUT_ROOT/$d
  [ -z "${SCALE[$d]:-}" ] || out=runs/make-experts/$d.trained
  OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$BIN/soups" train-expert --dim "${DIMFILE[$d]:-$d}" --algo ppo --preset cpu "${extra[@]}" \
    --run-dir "runs/make-experts/$d" --out "$out" --resume --force --quiet \
    > "runs/make-experts/$d.log" 2>&1 || { echo "train_experts: $d FAILED (runs/make-experts/$d.log)"; return 1; }
  if [ -n "${SCALE[$d]:-}" ]; then
    "$BIN/soups" scale-expert "$out" --alpha "${SCALE[$d]}" --out "$OUT_ROOT/$d" --force >> "runs/make-experts/$d.log" 2>&1 \
      || { echo "train_experts: $d FAILED (runs/make-experts/$d.log)"; return 1; }
  fi
  echo "train_experts: $d done"
}
export BIN OUT_ROOT
printf '%s\n' $DIMS | xargs -P "$JOBS" -I{} bash -c "$(declare -A -p EXTRA DIMFILE SCALE); $(declare -f prepare run_one); run_one {}"
