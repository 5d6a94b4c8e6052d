"""Every TRL-specific line of soups lives here, so the `trl>=1.12,<1.13` pin can move in one place.

PPO is TRL's `trl.experimental.ppo.PPOTrainer` (removed after 1.12): the policy is a LoRA model
(the reference is the same model with its adapters disabled) and the critic is a separate
sequence-classification model (a value head on the frozen base, or with its own LoRA). RLOO and
GRPO are TRL's maintained trainers. All three get rewards from one plain callable
`reward_fn(completions, prompts=...) -> list[float]`: PPO through `CallableRewardModel`, the others
as a TRL reward function.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soups.train.config import TrainConfig

log = logging.getLogger(__name__)
RewardFn = Callable[..., list[float]]
# What the reward saw since the last logged step (PPO logs only its own tensors): response tokens,
# finished (EOS) responses, count, raw reward sum. step_metrics() turns it into per-step figures.
_ROLLOUTS = {"tokens": 0, "finished": 0, "n": 0, "reward": 0.0, "greedy_n": 0, "greedy_reward": 0.0}
# greedy_share: how many leading rows of the batch being scored were decoded greedily (set by _greedy_share_hook;
# train_ppo scores a whole batch in one call, local_rollout_forward_batch_size = batch_size)
_GREEDY = {"rows": 0}


class KLStop(Exception):
    """Raised from a callback to end a PPO run early (its loop ignores `should_training_stop`)."""


# ----------------------------------------------------------------------------- rewards
class CallableRewardModel(nn.Module):
    """Wraps a reward callable so PPO can call it where it expects a reward model.

    With `baseline` (prompt -> mean reward of the base's answers) PPO gets reward minus the prompt's baseline;
    the logged `reward_raw` stays the reward itself."""

    def __init__(self, reward_fn: RewardFn, tokenizer, prompt_of: dict[tuple[int, ...], str],
                 baseline: dict[str, float] | None = None):
        super().__init__()
        self.reward_fn, self.tokenizer, self.prompt_of = reward_fn, tokenizer, prompt_of
        self.baseline = baseline

    def score_batch(self, query_responses: torch.Tensor, pad_id: int, context_length: int):
        from trl.experimental.utils import first_true_indices

        queries, responses = query_responses[:, :context_length], query_responses[:, context_length:]
        prompts = []
        for q in queries.tolist():
            start = next((i for i, t in enumerate(q) if t != pad_id), len(q))  # strip left padding
            prompts.append(self.prompt_of.get(tuple(q[start:]), self.tokenizer.decode(q[start:])))
        completions = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        scores = torch.tensor(self.reward_fn(completions, prompts=prompts), dtype=torch.float32)
        seq_len = first_true_indices(responses == pad_id) - 1 + context_length
        eos = self.tokenizer.eos_token_id
        _ROLLOUTS["tokens"] += int((seq_len - context_length + 1).clamp(min=0).sum())
        _ROLLOUTS["finished"] += int((responses == eos).any(dim=1).sum()) if eos is not None else 0
        _ROLLOUTS["n"] += len(completions)
        _ROLLOUTS["reward"] += float(scores.sum())
        k = min(_GREEDY["rows"], len(completions))
        _ROLLOUTS["greedy_n"] += k
        _ROLLOUTS["greedy_reward"] += float(scores[:k].sum())
        if self.baseline is not None:
            scores = scores - torch.tensor([self.baseline[p] for p in prompts], dtype=torch.float32)
        return None, scores.to(query_responses.device), seq_len


@contextlib.contextmanager
def _ppo_reward_hook() -> Iterator[None]:
    """Route PPO's `get_reward` to CallableRewardModel.score_batch for callable rewards."""
    from trl.experimental.ppo import ppo_trainer as mod

    original = mod.get_reward

    def get_reward(model, query_responses, pad_token_id, context_length):
        if isinstance(model, CallableRewardModel):
            return model.score_batch(query_responses, pad_token_id, context_length)
        return original(model, query_responses, pad_token_id, context_length)

    mod.get_reward = get_reward
    try:
        yield
    finally:
        mod.get_reward = original


def greedy_rows(batch: int, share: float) -> int:
    """How many of a batch's rollouts greedy_share decodes greedily (at least one when the share is on)."""
    return 0 if share <= 0 else min(batch, max(1, round(share * batch)))


@contextlib.contextmanager
def _greedy_share_hook(share: float, temperature: float) -> Iterator[None]:
    """Route PPO's rollout generation so the first greedy_rows() rows of each batch are decoded greedily.

    PPO reads a rollout's log-probabilities from the scores that generation returns, which for sampling are the
    logits divided by the temperature; greedy decoding returns the raw logits, so those are divided here, and every
    row's log-probability is the same policy's at the same temperature (what PPO's updates recompute)."""
    if share <= 0:
        yield
        return
    from transformers import GenerationConfig
    from trl.experimental.ppo import ppo_trainer as mod
    from trl.trainer.utils import pad

    original = mod.batch_generation

    def batch_generation(model, queries, forward_batch_size, pad_token_id, generation_config):
        k = greedy_rows(queries.shape[0], share)
        greedy = GenerationConfig(max_new_tokens=generation_config.max_new_tokens, do_sample=False)
        g_qr, g_logits = original(model, queries[:k], forward_batch_size, pad_token_id, greedy)
        g_logits = g_logits / (temperature + 1e-7)  # as TRL divides the sampled rows' and the updates' logits
        _GREEDY["rows"] = k
        if k == queries.shape[0]:
            return g_qr, g_logits
        s_qr, s_logits = original(model, queries[k:], forward_batch_size, pad_token_id, generation_config)
        # the groups may end at different lengths: right-pad row by row, as TRL's batch_generation pads its chunks
        return pad([*g_qr, *s_qr], padding_value=pad_token_id), pad([*g_logits, *s_logits], padding_value=0)

    mod.batch_generation = batch_generation
    try:
        yield
    finally:
        mod.batch_generation = original
        _GREEDY["rows"] = 0


def trl_reward_func(reward_fn: RewardFn, name: str) -> Callable[..., list[float]]:
    """RLOO/GRPO reward function: TRL passes `prompts`, `completions` and the dataset columns."""

    def reward(prompts, completions, raw_prompt=None, **_: Any) -> list[float]:
        return [float(x) for x in reward_fn(list(completions), prompts=list(raw_prompt or prompts))]

    reward.__name__ = name
    return reward


# ----------------------------------------------------------------------------- metrics
def step_metrics(logs: dict[str, float]) -> dict[str, float]:
    """Normalise the trainers' log keys to reward / kl (+ everything else, unchanged)."""
    out = dict(logs)
    for key, names in (("reward", ("objective/scores", "reward")), ("kl", ("objective/kl", "kl"))):
        for n in names:
            if n in logs:
                out[key] = float(logs[n])
                break
    if _ROLLOUTS["n"]:
        n = _ROLLOUTS["n"]
        out.update(rollout_tokens=_ROLLOUTS["tokens"], response_tokens_mean=_ROLLOUTS["tokens"] / n,
                   eos_rate=_ROLLOUTS["finished"] / n, reward_raw=_ROLLOUTS["reward"] / n)
        if _ROLLOUTS["greedy_n"]:
            out["reward_greedy"] = _ROLLOUTS["greedy_reward"] / _ROLLOUTS["greedy_n"]
        _ROLLOUTS.update(tokens=0, finished=0, n=0, reward=0.0, greedy_n=0, greedy_reward=0.0)
    return out


def make_callback(on_log: Callable[[int, dict], None], on_step: Callable[[int, Any], None]):
    """A transformers TrainerCallback forwarding logs and step ends (with the live objects)."""
    from transformers import TrainerCallback

    class _Bridge(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and any(k in logs for k in ("objective/scores", "reward")):
                on_log(state.global_step, step_metrics(logs))

        def on_step_end(self, args, state, control, **kw):
            on_step(state.global_step, kw)

    return _Bridge()


# ----------------------------------------------------------------------------- models
def lora_config(cfg: TrainConfig, task_type: str = "CAUSAL_LM", n_layers: int | None = None):
    from peft import LoraConfig

    layers = {}
    if cfg.lora.last_layers and n_layers:
        first = max(0, n_layers - cfg.lora.last_layers)
        layers = {"layers_to_transform": list(range(first, n_layers)), "layers_pattern": "layers"}
    return LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.targets), bias="none", task_type=task_type, **layers,
    )


def fp32_head(model: nn.Module) -> None:
    """Run the output projection in float32 under bf16 autocast: bf16 logits are spaced 0.125 apart near
    |20|, which would put noise of that size into PPO's log-probability ratios and the KL."""
    head = model.get_output_embeddings()
    forward = head.forward

    def fp32_forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return forward(x.float())

    head.forward = fp32_forward


def value_model(base_dir: Path, cfg: TrainConfig, dtype: torch.dtype) -> nn.Module:
    """PPO critic: the base with a scalar head; backbone frozen (`head`) or LoRA-adapted (`lora`)."""
    from peft import inject_adapter_in_model
    from transformers import AutoModelForSequenceClassification

    vm = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=dtype)
    for p in vm.parameters():
        p.requires_grad_(False)
    if cfg.value_model == "lora":
        backbone = getattr(vm, vm.base_model_prefix)
        inject_adapter_in_model(lora_config(cfg, "SEQ_CLS", vm.config.num_hidden_layers), backbone)
        for n, p in vm.named_parameters():
            p.requires_grad_("lora_" in n)
    with torch.no_grad():
        vm.score.weight.zero_()  # value 0 at start: GAE begins from the raw rewards
    vm.score.weight.requires_grad_(True)
    return vm


def _common_args(cfg: TrainConfig, run_dir: Path, report_tb: bool) -> dict[str, Any]:
    return dict(
        output_dir=str(run_dir / "checkpoints"), seed=cfg.seed, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1, logging_steps=1, disable_tqdm=True,
        report_to=["tensorboard"] if report_tb else [],
        bf16=cfg.dtype == "bfloat16", fp16=cfg.dtype == "float16", gradient_checkpointing=cfg.gradient_checkpointing,
        temperature=cfg.temperature,
    )


# ----------------------------------------------------------------------------- PPO
def _ppo_save(ckpt: Path, step: int, objs: dict) -> None:
    from safetensors.torch import save_file

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    wrapper = objs["model"]
    wrapper = getattr(wrapper, "module", wrapper)
    wrapper.policy.save_pretrained(tmp, safe_serialization=True)
    vm = {n: p.detach().contiguous().cpu() for n, p in wrapper.value_model.named_parameters() if p.requires_grad}
    save_file(vm, str(tmp / "value_model.safetensors"))
    torch.save({"optimizer": objs["optimizer"].state_dict(), "scheduler": objs["lr_scheduler"].state_dict(),
                "rng": torch.get_rng_state()}, tmp / "trainer_state.pt")
    (tmp / "step.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def _ppo_load(trainer, ckpt: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    wrapper = trainer.accelerator.unwrap_model(trainer.model)
    set_peft_model_state_dict(wrapper.policy, load_file(str(ckpt / "adapter_model.safetensors")))
    wrapper.value_model.load_state_dict(load_file(str(ckpt / "value_model.safetensors")), strict=False)
    # our own file, tensors and plain containers only: the safe (weights_only) loader suffices
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.lr_scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])


def _ppo_optimizer(policy, critic: nn.Module, cfg: TrainConfig, args) -> torch.optim.Optimizer | None:
    """AdamW as the Trainer would build it, with the critic in a group of its own at cfg.value_learning_rate;
    None (the Trainer's own optimizer) when that is unset. The lr scheduler scales both groups alike."""
    if cfg.value_learning_rate is None:
        return None
    groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.learning_rate},
              {"params": [p for p in critic.parameters() if p.requires_grad], "lr": cfg.value_learning_rate}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, weight_decay=args.weight_decay)


def train_ppo(policy, tokenizer, base_dir: Path, cfg: TrainConfig, reward_fn: RewardFn, prompts: list[str],
              run_dir: Path, callbacks: list, resume_from: Path | None, start_step: int, report_tb: bool,
              use_bf16: bool = False, ref_adapter: str | None = None, baseline: dict[str, float] | None = None):
    """Run TRL PPO on a PEFT `policy` for cfg.steps updates (from `start_step` when resuming).

    The KL reference is the base (adapters disabled), or the frozen adapter `ref_adapter` (a warm start).
    With `use_bf16` the whole loop (rollouts, scoring, updates) runs under bf16 autocast. With `baseline`
    (every prompt's mean base reward) PPO maximises the reward minus it (CallableRewardModel)."""
    from datasets import Dataset

    from soups.hardware import autocast
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from soups.chat import render

    templ = [tokenizer(render(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    prompt_of = {tuple(t): p for t, p in zip(templ, prompts)}
    ds = Dataset.from_dict({"input_ids": templ})
    args = PPOConfig(
        **_common_args(cfg, run_dir, report_tb), total_episodes=cfg.steps * cfg.batch_size,
        num_mini_batches=cfg.mini_batches, num_ppo_epochs=cfg.ppo_epochs, response_length=cfg.max_new_tokens,
        local_rollout_forward_batch_size=cfg.batch_size, stop_token="eos", kl_coef=cfg.kl_coef,
        cliprange=cfg.cliprange, vf_coef=cfg.vf_coef, gamma=cfg.gamma, lam=cfg.lam,
        missing_eos_penalty=cfg.missing_eos_penalty, num_sample_generations=0, save_strategy="no",
        per_device_eval_batch_size=1, whiten_rewards=cfg.whiten_rewards, kl_estimator=cfg.kl_estimator,
        **({"model_adapter_name": "default", "ref_adapter_name": ref_adapter} if ref_adapter else {}),
    )
    args.seed = cfg.seed + start_step  # a resumed run draws fresh, but repeatable, batches
    dtype = next(policy.parameters()).dtype
    critic = value_model(base_dir, cfg, dtype)
    trainer = PPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=None,
        reward_model=CallableRewardModel(reward_fn, tokenizer, prompt_of, baseline), train_dataset=ds,
        value_model=critic, eval_dataset=ds.select(range(1)), callbacks=callbacks,
        optimizers=(_ppo_optimizer(policy, critic, cfg, args), None),
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if resume_from is not None:
        _ppo_load(trainer, resume_from)
    trainer.args.num_total_batches = cfg.steps - start_step
    with _ppo_reward_hook(), _greedy_share_hook(cfg.greedy_share, cfg.temperature), contextlib.suppress(KLStop), \
            autocast(use_bf16, str(trainer.accelerator.device)):
        trainer.train()
    return trainer.accelerator.unwrap_model(trainer.model).policy


# ----------------------------------------------------------------------------- RLOO / GRPO
def _group_trainer(algo: str):
    """(Config, Trainer) for rloo/grpo. TRL 1.12 imports vLLM eagerly when it is installed and breaks on
    versions it does not support (it accepts 0.19-0.27.1); we never generate with vLLM, so retry without it."""
    import importlib

    names = ("RLOOConfig", "RLOOTrainer") if algo == "rloo" else ("GRPOConfig", "GRPOTrainer")
    try:
        trl = importlib.import_module("trl")
        return getattr(trl, names[0]), getattr(trl, names[1])
    except (ImportError, RuntimeError) as e:
        if "vllm" not in str(e).lower():
            raise
        log.warning("the installed vLLM is not one TRL supports; using TRL without vLLM (%s)", str(e)[:120])
    import trl.import_utils as iu

    original, iu.is_vllm_available = iu.is_vllm_available, lambda *a, **k: False
    try:
        mod = importlib.import_module(f"trl.trainer.{algo}_trainer")
        cfg = importlib.import_module(f"trl.trainer.{algo}_config")
        return getattr(cfg, names[0]), getattr(mod, names[1])
    finally:
        iu.is_vllm_available = original


def train_group(algo: str, policy, tokenizer, cfg: TrainConfig, reward_fn: RewardFn, name: str,
                prompts: list[str], run_dir: Path, callbacks: list, resume_from: Path | None, report_tb: bool):
    """Run TRL's RLOO or GRPO trainer (group-relative baselines, no critic) on a PEFT `policy`."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    Config, Trainer = _group_trainer(algo)
    if cfg.batch_size % cfg.num_generations:
        from soups.errors import ConfigError

        raise ConfigError(f"batch_size={cfg.batch_size}: must be a multiple of num_generations={cfg.num_generations}")
    from soups.chat import render

    templ = [render(tokenizer, p) for p in prompts]
    ds = Dataset.from_dict({"prompt": templ, "raw_prompt": prompts})
    extra = {"loss_type": "dapo"} if algo == "grpo" else {}
    args = Config(
        **_common_args(cfg, run_dir, report_tb), max_steps=cfg.steps, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens, beta=cfg.kl_coef, num_iterations=1, save_strategy="steps",
        save_steps=cfg.save_every, save_total_limit=2, top_k=0, remove_unused_columns=False, **extra,
    )
    trainer = Trainer(model=policy, reward_funcs=trl_reward_func(reward_fn, name), args=args, train_dataset=ds,
                      processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    with contextlib.suppress(KLStop):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    return trainer.accelerator.unwrap_model(trainer.model)


def last_group_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """Newest `checkpoint-N` written by RLOO/GRPO (HF Trainer layout) and its step."""
    found = sorted((int(p.name.split("-")[1]), p) for p in (run_dir / "checkpoints").glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file())
    return (found[-1][1], found[-1][0]) if found else None


# ----------------------------------------------------------------------------- checkpoints
def save_ppo_checkpoint(run_dir: Path, step: int, objs: dict, keep: int = 2) -> Path:
    """Write `checkpoints/step-N` (policy adapter, critic, optimizer, scheduler, RNG); keep the last `keep`."""
    ckpt = run_dir / "checkpoints" / f"step-{step:06d}"
    _ppo_save(ckpt, step, objs)
    for old in sorted((run_dir / "checkpoints").glob("step-??????"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt


def last_checkpoint(algo: str, run_dir: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint of a run and its step, or None."""
    if algo != "ppo":
        return last_group_checkpoint(run_dir)
    found = sorted(p for p in (run_dir / "checkpoints").glob("step-??????") if (p / "step.json").is_file())
    return (found[-1], json.loads((found[-1] / "step.json").read_text())["step"]) if found else None


# ----------------------------------------------------------------------------- reward model
def train_reward(model, tokenizer, dataset, peft_config, work_dir: Path, *, lr: float, epochs: float,
                 batch_size: int, seed: int, max_length: int):
    """TRL RewardTrainer (Bradley-Terry) with LoRA on a sequence-classification `model`; returns it trained."""
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(
        output_dir=str(work_dir), learning_rate=lr, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
        seed=seed, max_length=max_length, logging_steps=5, save_strategy="no", report_to=[], disable_tqdm=True,
        gradient_accumulation_steps=1, lr_scheduler_type="constant", bf16=torch.cuda.is_available(),
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    shutil.rmtree(work_dir, ignore_errors=True)
    return trainer.accelerator.unwrap_model(trainer.model)
