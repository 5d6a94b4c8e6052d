"""`soups train-expert` and `soups train-reward`: thin wrappers over soups.train."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from soups.cli import app
from soups.cli.options import MAX_BATCH, SEED_MAX


@app.command("train-expert")
def train_expert_cmd(
    dim: str = typer.Option(..., "--dim", help="Dimension to train (a name from `soups dims`, or a YAML path)."),
    base: str = typer.Option("default", "--base", help="`default` (embedded SmolLM2-135M-Instruct) or a model dir."),
    config: Optional[Path] = typer.Option(None, "--config", help="Training YAML [default: experts/configs/ppo.yaml]."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Preset in the config: `cpu` or `paper` "
                                         "[default: `cpu` without a GPU, else `paper`]."),
    algo: Optional[str] = typer.Option(None, "--algo", help="ppo (the paper's, default), rloo or grpo."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1_000_000,
                                        help="Policy updates (overrides the config)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, max=SEED_MAX,
                                       help="Random seed (overrides the config)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Expert dir [default: runs/<dim>-<algo>-s<seed>/expert]."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Checkpoints + metrics.jsonl "
                                           "[default: runs/<dim>-<algo>-s<seed>]."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Training prompts (JSONL or text) "
                                           "[default: the shipped training set]."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out / restart a run with checkpoints."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override any config field, KEY=VALUE "
                                             "(dotted for sections; repeatable): --set max_new_tokens=384."),
) -> None:
    """Train a LoRA expert for one preference dimension against its reward (PPO, RLOO or GRPO via TRL).

    Writes a PEFT adapter plus expert.json (reward before/after on held-out prompts, fluency,
    config, wall time) to --out; metrics.jsonl and checkpoints go to --run-dir.

    Examples:

        soups train-expert --dim concise
        soups train-expert --dim friendly --algo grpo --steps 40 --out experts/friendly --force
        soups train-expert --dim informative --set max_new_tokens=384 --set warm_start.max_new_tokens=384
        accelerate launch --num_processes 8 -m soups train-expert --dim concise --preset paper
    """
    import torch

    from soups.io.files import check_writable
    from soups.train.config import parse_set
    from soups.train.expert import train_expert

    for path, flag in ((out, "--out"), (run_dir, "--run-dir")):  # before any model is loaded
        if path is not None:
            check_writable(path, flag)

    if algo is not None and algo not in ("ppo", "rloo", "grpo"):
        from soups.errors import ConfigError

        raise ConfigError(f"--algo {algo}: unknown; use ppo, rloo or grpo")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if preset is None:  # the hardware's preset, when the config has one
        from soups.train.config import list_presets

        auto = "paper" if torch.cuda.is_available() else "cpu"
        preset = auto if auto in list_presets(config) else None
    info = train_expert(
        dim, base=base, config=config, preset=preset,
        overrides={**parse_set(set_ or []), **{k: v for k, v in {"algo": algo, "steps": steps, "seed": seed}.items()
                                                if v is not None}},  # a flag not given leaves --set's value
        out=out, run_dir=run_dir, prompts=prompts, resume=resume, force=force, progress=not quiet,
    )
    if info:
        b, a = info["reward"]["before"], info["reward"]["after"]
        typer.echo(f"{info['dimension']} [{info['algorithm']}]: reward {b['mean']:.3f} -> {a['mean']:.3f} "
                   f"(95% CI {a['ci95'][0]:.3f}..{a['ci95'][1]:.3f}), fluency ratio {info['fluency']['ratio']}, "
                   f"{info['wall_time_s']:.0f}s -> {info['out']}")


@app.command("train-reward")
def train_reward_cmd(
    dim: str = typer.Option(..., "--dim", help="Dimension the pairs express (recorded in reward_model.json)."),
    pairs: Path = typer.Option(..., "--pairs", help="JSONL of {\"prompt\", \"chosen\", \"rejected\"}."),
    base: str = typer.Option("default", "--base", help="`default` or a model dir: the policy's base."),
    out: Optional[Path] = typer.Option(None, "--out", help="Reward model dir [default: runs/reward-<dim>]."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.01, max=1000, help="Passes over the training pairs."),
    lr: float = typer.Option(2e-4, "--lr", min=1e-9, max=1.0, help="Learning rate (LoRA)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH, help="Pairs per step."),
    eval_frac: float = typer.Option(0.2, "--eval-frac", min=0.05, max=0.8,
                                    help="Share of pairs held out for the accuracy."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed (split, init, order)."),
    method: str = typer.Option("lora", "--method", help="lora: LoRA + score head (TRL's RewardTrainer); probe: "
                               "frozen base, only the score head, fitted by logistic regression (fast on a CPU)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
) -> None:
    """Train a Bradley-Terry reward model (LoRA on the base + a score head, TRL's RewardTrainer) on pairs.

    Reports held-out pair accuracy; writes a HF sequence-classification model dir with
    reward_model.json, usable as `reward: {kind: model, path: DIR}` in a dimension YAML.

    Example:

        soups train-reward --dim friendly --pairs pairs.jsonl --out rewards/friendly
        soups train-reward --dim unfriendly --pairs pairs.jsonl --method probe --out rewards/unfriendly
    """
    from soups.train.reward_model import train_reward_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    meta = train_reward_model(dim, pairs, base=base, out=out or Path("runs") / f"reward-{dim}", epochs=epochs,
                              lr=lr, batch_size=batch_size, eval_frac=eval_frac, seed=seed, method=method,
                              force=force, progress=True)
    typer.echo(json.dumps(meta, indent=2))


@app.command("make-pairs")
def make_pairs_cmd(
    dim: str = typer.Option(..., "--dim", help="Dimension whose statement gives `chosen` (its `opposite`'s gives "
                            "`rejected`): a name from `soups dims` or a YAML path."),
    out: Path = typer.Option(..., "--out", help="Pairs JSONL to write ({\"prompt\", \"chosen\", \"rejected\"})."),
    base: str = typer.Option("default", "--base", help="`default` or a model dir: the base that answers."),
    prompts: int = typer.Option(256, "--prompts", min=4, max=1_000_000,
                                help="Training prompts to answer (the first N of the seeded shuffle)."),
    prompts_file: Optional[Path] = typer.Option(None, "--prompts-file", help="Prompts (JSONL or text) "
                                                "[default: the shipped training set]."),
    samples: int = typer.Option(1, "--samples", min=1, max=64, help="Pairs sampled per prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, max=32768, help="Longest answer."),
    temperature: float = typer.Option(0.7, "--temperature", min=0.01, max=10.0, help="Sampling temperature."),
    engine: str = typer.Option("auto", "--engine", help="auto (vllm when installed), vllm or transformers."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed (prompt order, sampling)."),
    keep_unfinished: bool = typer.Option(False, "--keep-unfinished", help="Also keep pairs where an answer hit "
                                         "--max-new-tokens (by default both must end with EOS)."),
    match_length: Optional[int] = typer.Option(None, "--match-length", min=1, max=100_000, help="Cut both answers "
                                               "to the shorter one's word count and keep pairs of at least this many "
                                               "words, finished or not (the pair differs in tone, not length)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Build preference pairs from the base itself (RLCD): its answer with the dimension's statement is
    `chosen`, its answer with the opposite's statement `rejected`, both for the plain prompt.

    Feed them to `soups train-reward` for a learned reward; answers are cached beside --out, so a killed run
    resumes when rerun with the same flags.

    Example:

        soups make-pairs --dim unfriendly --prompts 256 --out pairs/unfriendly.jsonl
        soups make-pairs --dim unfriendly --match-length 20 --out pairs/unfriendly.jsonl --force
        soups train-reward --dim unfriendly --pairs pairs/unfriendly.jsonl --out rewards/unfriendly
    """
    from soups.train.pairs import make_pairs

    if engine not in ("auto", "vllm", "transformers"):
        raise typer.BadParameter(f"{engine!r}: use auto, vllm or transformers", param_hint="--engine")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    info = make_pairs(dim, out=out, base=base, prompts=prompts, samples=samples, max_new_tokens=max_new_tokens,
                      temperature=temperature, engine=engine, seed=seed, prompts_file=prompts_file,
                      finished_only=not keep_unfinished, match_length=match_length, force=force,
                      progress=not quiet)
    typer.echo(json.dumps(info, indent=2))
