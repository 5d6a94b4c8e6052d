"""Train one preference expert: a LoRA adapter on the base, optimised against a dimension's reward.

The recipe, in order (torchtune style, one readable class):
  setup     resolve base, dimension, reward, prompts and config; refuse a non-empty --out early
  evaluate  the base's reward on held-out prompts ("before"; cached in the run dir for --resume)
  warm      optional supervised warm start (soups.train.warmstart): the base's best prompted answers,
            distilled into the LoRA, evaluated on the held-out prompts ("warm_start" stage)
  train     TRL PPO (default, as in the paper), RLOO or GRPO via soups.train.trl_backend,
            with a rich progress bar, metrics.jsonl and checkpoints every `save_every` steps
  finish    held-out reward "after", fluency vs the base, then adapter + expert.json, atomically

Launch: `soups train-expert --dim concise`, or unchanged under `accelerate launch -m soups train-expert ...`.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soups.errors import ConfigError
from soups.io.atomic import atomic_dir, atomic_write_text, check_output
from soups.train.config import RewardBaseline, TrainConfig, WarmStart, load_config

log = logging.getLogger(__name__)


@dataclass
class ExpertRun:
    """What to train: the CLI fills this from flags; library users can pass `reward`/`prompts` directly."""

    dim: str
    base: str | Path = "default"
    config: Path | None = None
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    run_dir: Path | None = None
    resume: bool = False
    force: bool = False
    prompts: str | Path | list[str] | None = None  # training prompts: file, or list; default: the shipped set
    heldout: list[str] | None = None  # held-out prompts; default: the shipped held-out set
    reward: Callable[..., list[float]] | None = None  # default: soups.rewards.get_reward(dim)
    statement: str | None = None  # preference statement for the warm start; default: the dimension's
    callbacks: list = field(default_factory=list)  # extra transformers TrainerCallbacks
    progress: bool = True


class ExpertRecipe:
    def __init__(self, run: ExpertRun):
        self.run = run

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

        from soups.base import fingerprint, resolve_base
        from soups.train import trl_backend as backend

        r = self.run
        self.cfg: TrainConfig = load_config(r.config, r.preset, r.overrides)
        self.init_from = self._read_init_adapter()
        self.dimension = None
        if r.reward is None:
            from soups.dimensions import load_dimension
            from soups.rewards import get_reward

            self.dimension = load_dimension(r.dim)
            r.reward = get_reward(self.dimension)
            r.dim = self.dimension.name  # `--dim my_dims/x.yaml`: expert.json, run dir and titles use its name
        self.run_dir = Path(r.run_dir or Path("runs") / f"{r.dim}-{self.cfg.algo}-s{self.cfg.seed}").absolute()
        self.out = Path(r.out or self.run_dir / "expert").absolute()
        check_output(self.out, r.force)
        self.train_prompts = self._prompts(r.prompts, "train", "--prompts")
        self.plain_of: dict[str, str] = {}  # statement_mix: {prompt as trained on: its plain prompt}
        self.mix_dim = self.dimension  # statement_mix's statements: the dimension's (named, with a reward in code)
        if self.cfg.statement_mix and self.mix_dim is None:
            from soups.dimensions import load_dimension

            self.mix_dim = load_dimension(r.dim)
        self.heldout = self._prompts(r.heldout, "heldout", "--heldout")[: self.cfg.eval_prompts]
        self.base_dir = resolve_base(r.base)
        self.base_info = {"name": str(r.base) if str(r.base) == "default" else str(Path(r.base).absolute()),
                          "fingerprint": fingerprint(self.base_dir)}
        self._prepare_run_dir()
        set_seed(self.cfg.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(self.base_dir, dtype=getattr(torch, self.cfg.dtype))
        from peft import get_peft_model

        from soups.hardware import resolve_autocast

        self.use_bf16 = resolve_autocast(self.cfg.autocast, "cuda" if torch.cuda.is_available() else "cpu")
        if self.use_bf16:
            backend.fp32_head(base)  # logits (hence PPO's log-ratios) stay float32 under bf16 autocast
        self.lora = backend.lora_config(self.cfg, n_layers=base.config.num_hidden_layers)
        self.policy = get_peft_model(base, self.lora)
        self.ref_adapter: str | None = None
        self.stages: list[dict[str, Any]] = []
        if self.init_from is not None:
            self._init_adapter(self.init_from)

    def _read_init_adapter(self):
        """cfg.init_adapter, read and validated (headers only) before the run dir or the base is touched."""
        if not self.cfg.init_adapter:
            return None
        from soups.errors import AdapterError
        from soups.io.adapter import load_adapter

        if self.cfg.warm_start is not None:
            raise ConfigError("init_adapter and warm_start both set the starting LoRA; set warm_start=false "
                              "or drop init_adapter")
        try:
            return load_adapter(Path(self.cfg.init_adapter))
        except AdapterError as e:
            raise ConfigError(f"init_adapter: {e}") from None

    def _init_adapter(self, adapter) -> None:
        """Load `adapter`'s LoRA weights into the trainable adapter: it must adapt the same modules with the same
        ranks and scales as this run's LoRA."""
        from peft import set_peft_model_state_dict
        from peft.tuners.lora import LoraLayer
        from safetensors.torch import load_file

        from soups.io.adapter import WEIGHTS_NAME

        mine = {n.removeprefix("base_model.model."): (m.r["default"], round(float(m.scaling["default"]), 9))
                for n, m in self.policy.named_modules() if isinstance(m, LoraLayer)}
        theirs = {n: (m.rank, round(float(m.scale), 9)) for n, m in adapter.modules.items()}
        if mine != theirs:
            name = sorted(set(mine) ^ set(theirs)) or sorted(n for n in mine if mine[n] != theirs[n])
            (r, sc), (my_r, my_sc) = theirs.get(name[0], (None, None)), mine.get(name[0], (None, None))
            raise ConfigError(f"init_adapter {adapter.path}: module {name[0]}: r {r} (this run: {my_r}), scale {sc} "
                              f"(this run: {my_sc}); train with the adapter's lora settings (its expert.json "
                              "config) or drop init_adapter")
        set_peft_model_state_dict(self.policy, load_file(str(adapter.path / WEIGHTS_NAME)))
        self.stages.append({"stage": "init_adapter", "path": str(adapter.path.absolute()),
                            "from": adapter.meta.get("algorithm"), "steps": adapter.meta.get("steps_done"),
                            "config": adapter.meta.get("config"), "stages": adapter.meta.get("stages", [])})

    def _prompts(self, spec, split: str, flag: str) -> list[str]:
        if isinstance(spec, list):
            prompts = spec
        else:
            from soups.prompts import load_prompts

            prompts = load_prompts(spec if spec is not None else split)
        if len(prompts) < 2:
            raise ConfigError(f"{flag}: need at least 2 prompts, got {len(prompts)}")
        return list(prompts)

    def _prepare_run_dir(self) -> None:
        from soups.train.trl_backend import last_checkpoint

        r, meta_path = self.run, self.run_dir / "run.json"
        meta = {"dimension": r.dim, "base": self.base_info, "config": self.cfg.model_dump(exclude={"steps"})}
        self.resume_from, self.start_step = None, 0
        if r.resume and meta_path.is_file():
            old = self._read_meta(meta_path)
            if old != meta:
                raise ConfigError(f"--resume: {meta_path} was made with another dimension, base or config; "
                                  "use the same flags, or drop --resume and pass --force to start over")
            found = last_checkpoint(self.cfg.algo, self.run_dir)
            if found:
                self.resume_from, self.start_step = found
                log.warning("resuming %s from step %d", self.run_dir, self.start_step)
        elif (self.run_dir / "checkpoints").is_dir() and any((self.run_dir / "checkpoints").iterdir()):
            if not r.force:
                raise ConfigError(f"run dir {self.run_dir} has checkpoints: pass --resume to continue it, "
                                  "or --force to start over")
            shutil.rmtree(self.run_dir / "checkpoints")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path, json.dumps(meta, indent=2), force=True)
        from soups.train.progress import metric_lines

        metrics = self.run_dir / "metrics.jsonl"  # torn lines of a killed run are dropped (with a warning)
        keep = [ln for ln, row in metric_lines(metrics) if self.resume_from and row["step"] <= self.start_step]
        atomic_write_text(metrics, "".join(ln + "\n" for ln in keep), force=True)

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any] | None:
        """run.json, with config fields added since it was written filled with their defaults; None if unreadable."""
        try:
            old = json.loads(path.read_text())
            old["config"] = TrainConfig(**{**old["config"], "steps": 1}).model_dump(exclude={"steps"})
        except (ValueError, TypeError, KeyError) as e:
            log.warning("%s: unreadable (%s); it will be rewritten", path, e)
            return None
        return old

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, adapters: bool) -> dict[str, Any]:
        """Held-out completions (adapters on/off), their rewards and the base's perplexity on them."""
        import contextlib

        from soups.hardware import autocast
        from soups.train.heldout import generate, perplexity

        ctx = contextlib.nullcontext() if adapters else self.policy.disable_adapter()
        with ctx, autocast(self.use_bf16):
            comps = generate(self.policy, self.tokenizer, self.heldout, max_new_tokens=self.cfg.max_new_tokens,
                             temperature=self.cfg.temperature, seed=self.cfg.seed + 1)
        with self.policy.disable_adapter(), autocast(self.use_bf16):
            ppl = perplexity(self.policy, self.tokenizer, self.heldout, comps)
        rewards = [float(x) for x in self.run.reward(comps, prompts=self.heldout)]
        return {"rewards": rewards, "ppl": ppl, "samples": comps[:3]}

    def reward_config(self) -> dict[str, Any] | None:
        """The dimension's reward as trained against (kind, scorer, params), or None for a reward passed in code."""
        return self.dimension.reward.model_dump(mode="json") if self.dimension is not None else None

    def before(self) -> dict[str, Any]:
        cache = self.run_dir / "before.json"
        key = {"heldout": self.heldout, "seed": self.cfg.seed, "max_new_tokens": self.cfg.max_new_tokens,
               "reward": self.reward_config()}
        if cache.is_file():
            data = json.loads(cache.read_text())
            if data.get("key") == key:
                return data["result"]
        result = self.evaluate(adapters=False)
        atomic_write_text(cache, json.dumps({"key": key, "result": result}), force=True)
        return result

    # ------------------------------------------------------------------ base answers
    def _stage_dir(self, name: str, key: dict) -> Path:
        """`<run-dir>/<name>`, emptied first when its key.json (the settings it was made with) differs from `key`."""
        path = self.run_dir / name
        key_path = path / "key.json"
        if path.is_dir() and (not key_path.is_file() or json.loads(key_path.read_text()) != key):
            log.warning("%s: made with other settings; starting this stage over", path)
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(key_path, json.dumps(key), force=True)
        return path

    def _first_prompts(self, n: int) -> list[str]:
        """The first `n` training prompts in the run's (seeded) shuffled order."""
        import random

        prompts = list(self.train_prompts)
        random.Random(self.cfg.seed).shuffle(prompts)
        return prompts[:n]

    def _mixed(self, prompts: list[str]) -> list[str]:
        """`prompts`, a share cfg.statement_mix of them carrying a combination's statements (soups.train.mix)."""
        if not self.cfg.statement_mix:
            return prompts
        from soups.dimensions import list_dimensions
        from soups.train.mix import mix_statements

        mix = mix_statements(prompts, self.mix_dim, list_dimensions(), self.cfg.statement_mix, self.cfg.seed)
        self.plain_of.update(mix)  # called once per run: for reward_baseline's prompts, else for PPO's
        carried = [m for m, p in mix.items() if m != p]
        self.stages.append({"stage": "statement_mix", "share": self.cfg.statement_mix, "prompts": len(mix),
                            "with_statements": len(carried), "example": carried[0] if carried else None})
        return list(mix)

    def _reward(self, completions: list[str], prompts: list[str] | None = None, **kw: Any) -> list[float]:
        """The dimension's reward, always on the plain prompt (a mixed prompt's statements are not the question)."""
        plain = None if prompts is None else [self.plain_of.get(p, p) for p in prompts]
        return self.run.reward(completions, prompts=plain, **kw)

    def _base_answers(self, prompts: list[str], statement: str, settings: WarmStart | RewardBaseline, path: Path,
                      stage: str, flag: str) -> tuple[list[dict], str]:
        """The base's sampled answers (rows {prompt, answers, finished}, cached in `path`) and the engine used."""
        from soups.train import warmstart

        with self.policy.disable_adapter():
            return warmstart.base_answers(self.base_dir, prompts, statement, settings, self.cfg.seed, path,
                                          title=f"{self.run.dim} {stage}: answers", flag=flag, show=self.run.progress,
                                          model=self.policy, tokenizer=self.tokenizer, use_bf16=self.use_bf16)

    def reward_baseline(self) -> dict[str, float] | None:
        """Per-prompt baseline (cfg.reward_baseline): the mean reward of the base's plain answers to each prompt."""
        rb = self.cfg.reward_baseline
        if rb is None:
            return None
        if self.cfg.algo != "ppo":
            raise ConfigError(f"reward_baseline is implemented for ppo only (rloo and grpo have group baselines); "
                              f"drop it or use --algo ppo, not {self.cfg.algo}")
        key = {"reward_baseline": rb.model_dump(), "seed": self.cfg.seed, "base": self.base_info}
        if self.cfg.statement_mix:  # joins the key only when on, so earlier runs keep their cache
            key["statement_mix"] = self.cfg.statement_mix
        bdir = self._stage_dir("reward_baseline", key)
        t0 = time.time()
        rows, engine = self._base_answers(self._mixed(self._first_prompts(rb.prompts)), "", rb,
                                          bdir / "answers.jsonl", "reward baseline", "reward_baseline.engine")
        baseline = {}
        for r in rows:
            scores = self._reward(r["answers"], prompts=[r["prompt"]] * len(r["answers"]))
            baseline[r["prompt"]] = float(sum(scores) / len(scores))
        values = sorted(baseline.values())
        self.stages.append({"stage": "reward_baseline", "config": rb.model_dump(), "prompts": len(baseline),
                            "mean": round(sum(values) / len(values), 4), "min": round(values[0], 4),
                            "max": round(values[-1], 4), "engine": engine,
                            "generate_time_s": round(time.time() - t0, 1)})
        return baseline

    # ------------------------------------------------------------------ warm start
    def warm_start(self) -> dict[str, Any] | None:
        """Supervised warm start (cfg.warm_start): candidates, selection, distillation, held-out check.

        Afterwards a frozen copy of the warm-started LoRA ("reference") is PPO's KL reference, and the
        trainable adapter continues from the same weights."""
        ws = self.cfg.warm_start
        if ws is None:
            return None
        from safetensors.torch import load_file

        from soups.train import warmstart
        from soups.train.heldout import bootstrap_ci
        from soups.train.progress import StageBar

        statement = self.run.statement or ws.statement or getattr(self.dimension, "statement", None)
        if not ws.prompted:
            statement = ""  # the base's own answers to the plain prompts: best-of-n by the reward
        elif not statement:
            raise ConfigError(f"warm_start needs the dimension's preference statement; {self.run.dim} has none "
                              "(or set warm_start.prompted=false)")
        # `prompted` joins the key only when off, so runs started before the field existed keep their cache
        wdir = self._stage_dir("warm_start", {
            "warm_start": ws.model_dump(exclude={"prompted", "statement"} if ws.prompted else {"statement"}),
            "statement": statement,
            "seed": self.cfg.seed, "base": self.base_info, "lora": self.cfg.lora.model_dump()})
        prompts = self._first_prompts(ws.prompts)
        t0 = time.time()
        rows, engine = self._base_answers(prompts, statement, ws, wdir / "candidates.jsonl", "warm start",
                                          "warm_start.engine")
        data = warmstart.select(rows, self.run.reward, ws.keep, ws.finished_only)
        if len(data) < 2:
            raise ConfigError(f"warm_start: only {len(data)} finished answers among {len(rows)} prompts; "
                              "raise warm_start.max_new_tokens or warm_start.samples")
        t1 = time.time()
        with StageBar(f"{self.run.dim} warm start: distil", total=1, show=self.run.progress) as bar:
            history = warmstart.distil(self.policy, self.tokenizer, data, ws, self.cfg.seed, wdir / "adapter",
                                       self.use_bf16, progress=lambda i, n, loss: bar.update(i, n, f"loss {loss:.3f}"))
        t2 = time.time()
        cache = wdir / "heldout.json"
        if cache.is_file():
            heldout = json.loads(cache.read_text())
        else:
            heldout = self.evaluate(adapters=True)
            atomic_write_text(cache, json.dumps(heldout), force=True)
        self.policy.add_adapter("reference", self.lora)
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.policy, load_file(str(wdir / "adapter" / "adapter_model.safetensors")),
                                  adapter_name="reference")
        self.policy.set_adapter("default")  # trainable again; "reference" frozen
        self.ref_adapter = "reference"
        stage = {
            "stage": "warm_start", "config": ws.model_dump(), "prompts": len(rows), "kept": len(data),
            "picked_reward_mean": round(sum(d["reward"] for d in data) / len(data), 4),
            "candidate_reward_mean": round(sum(d["mean_reward"] for d in data) / len(data), 4),
            "epochs": history, "heldout_reward": bootstrap_ci(heldout["rewards"]),
            "samples": heldout["samples"], "engine": engine, "generate_time_s": round(t1 - t0, 1),
            "train_time_s": round(t2 - t1, 1),
        }
        self.stages.append(stage)
        self.warm = heldout
        return stage

    # ------------------------------------------------------------------ train
    def train(self, baseline: dict[str, float] | None = None) -> None:
        """RL updates; with `baseline` (reward_baseline) PPO samples only its prompts, maximising reward - baseline."""
        from soups.train import trl_backend as backend
        from soups.train.progress import StepLogger

        cfg, algo = self.cfg, self.cfg.algo
        offset = self.start_step if algo == "ppo" else 0  # PPO's own step counter restarts on resume
        if algo != "ppo" and cfg.greedy_share:
            raise ConfigError(f"greedy_share is implemented for ppo only; drop it or use --algo ppo, not {algo}")
        if algo != "ppo" and self.ref_adapter:
            raise ConfigError(f"warm_start is implemented for ppo only; drop warm_start or use --algo ppo, not {algo}")
        logger = StepLogger(self.run_dir / "metrics.jsonl", total=cfg.steps, start=self.start_step,
                            kl_stop=cfg.kl_stop, show=self.run.progress, title=f"{self.run.dim} [{algo}]")

        def on_step(step: int, objs: dict) -> None:
            step += offset
            if algo == "ppo" and (step % cfg.save_every == 0 or step == cfg.steps):
                backend.save_ppo_checkpoint(self.run_dir, step, objs)

        bridge = backend.make_callback(lambda s, m: logger.log(s + offset, m), on_step)
        callbacks = [bridge, *self.run.callbacks]
        import importlib.util

        tb = importlib.util.find_spec("tensorboard") is not None
        with logger:
            if self.start_step >= cfg.steps:  # already trained that far: take the checkpoint's adapter as is
                from peft import set_peft_model_state_dict
                from safetensors.torch import load_file

                set_peft_model_state_dict(self.policy, load_file(str(self.resume_from / "adapter_model.safetensors")))
            elif algo == "ppo":
                prompts = list(baseline) if baseline else self._mixed(self.train_prompts)
                self.policy = backend.train_ppo(self.policy, self.tokenizer, self.base_dir, cfg, self._reward,
                                                prompts, self.run_dir, callbacks, self.resume_from,
                                                self.start_step, tb, use_bf16=self.use_bf16,
                                                ref_adapter=self.ref_adapter, baseline=baseline)
            else:
                self.policy = backend.train_group(algo, self.policy, self.tokenizer, cfg, self.run.reward,
                                                  self.run.dim, self.train_prompts, self.run_dir, callbacks,
                                                  self.resume_from, tb)
        self.stopped_early = logger.stopped_early
        self.steps_done = logger.last_step

    # ------------------------------------------------------------------ finish
    def finish(self, before: dict, after: dict, t0: float) -> dict[str, Any]:
        import soups
        from soups.train.curves import curve_rows
        from soups.train.heldout import bootstrap_ci, fluency
        from soups.train.progress import read_metrics

        metrics = read_metrics(self.run_dir / "metrics.jsonl")
        step_times = [m["step_time_s"] for m in metrics if "step_time_s" in m]
        info = {
            "dimension": self.run.dim,
            "statement": getattr(self.dimension, "statement", None),
            "base": self.base_info,
            "algorithm": self.cfg.algo,
            "reward_config": self.reward_config(),
            "config": self.cfg.model_dump(),
            "stages": [*self.stages, {"stage": self.cfg.algo, "steps": self.steps_done,
                                      "heldout_reward": bootstrap_ci(after["rewards"])}],
            "autocast_bf16": self.use_bf16,
            "steps_done": self.steps_done,
            "stopped_early_kl": self.stopped_early,
            "heldout_prompts": len(self.heldout),
            "reward": {"before": bootstrap_ci(before["rewards"]), "after": bootstrap_ci(after["rewards"])},
            "fluency": fluency(before["ppl"], after["ppl"]),
            "samples": {"before": before["samples"], "after": after["samples"]},
            "curve": curve_rows(metrics),
            "wall_time_s": round(time.time() - t0, 1),
            "train_time_s": round(sum(step_times), 1),
            "sec_per_step": round(sum(step_times) / len(step_times), 2) if step_times else None,
            "rollout_tokens_per_s": round(sum(m.get("rollout_tokens", 0) for m in metrics) / sum(step_times), 2)
            if step_times and sum(step_times) > 0 else None,
            "cpu_sec_per_step": round(sum(m.get("cpu_s", 0) for m in metrics) / len(metrics), 2) if metrics else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "soups_version": soups.__version__,
        }
        with atomic_dir(self.out, force=self.run.force) as tmp:
            self.policy.peft_config["default"].base_model_name_or_path = self.base_info["name"]
            self.policy.save_pretrained(tmp, safe_serialization=True, selected_adapters=["default"])
            (tmp / "README.md").unlink(missing_ok=True)  # PEFT's stub card names a local path
            (tmp / "expert.json").write_text(json.dumps(info, indent=2) + "\n")
        return info

    def __call__(self) -> dict[str, Any]:
        from accelerate import PartialState

        t0 = time.time()
        self.setup()
        before = self.before()
        self.warm_start()
        self.train(self.reward_baseline())
        after = self.evaluate(adapters=True)
        if not PartialState().is_main_process:
            return {}
        return {**self.finish(before, after, t0), "out": str(self.out)}


def train_expert(dim: str, **kw: Any) -> dict[str, Any]:
    """Train an expert for `dim` (see ExpertRun for options); returns the expert.json content."""
    return ExpertRecipe(ExpertRun(dim=dim, **kw))()
