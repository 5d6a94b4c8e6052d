"""Training config: typed, validated on load, all problems reported together.

A config YAML (torchtune style, e.g. `experts/configs/ppo.yaml`) holds the base settings at top
level plus named `presets` (`cpu`, `paper`, ...) that override them; CLI flags override both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soups.config import experts_dir
from soups.errors import ConfigError

ALGOS = ("ppo", "rloo", "grpo")


class LoraSettings(BaseModel):
    """The expert's LoRA adapter (what `soups merge` consumes)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    targets: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1, description="modules to adapt")
    last_layers: int | None = Field(None, gt=0, description="adapt only the last N decoder layers (None: all); "
                                    "backpropagation then stops there, which makes a CPU step much cheaper")


class WarmStart(BaseModel):
    """Supervised warm start before RL: the base's own best-of-n answers to training prompts that carry the
    dimension's statement (appended to the user message, as the paper prompts; or not, `prompted: false`),
    picked by the reward, are distilled into the LoRA (trained on the prompts *without* the statement). PPO
    then starts from it, with this warm-started policy as its KL reference."""

    model_config = ConfigDict(extra="forbid")
    prompts: int = Field(160, gt=1, description="training prompts to answer (the first N of the shuffled set)")
    samples: int = Field(4, gt=0, description="answers sampled per prompt; the best by the reward is kept")
    prompted: bool = Field(True, description="append the dimension's statement to the candidates' prompts (false: "
                           "the base's own plain answers, best-of-n by the reward, for a dimension that prompting "
                           "does not move)")
    statement: str | None = Field(None, description="the instruction appended to the candidates' prompts instead of "
                                  "the dimension's statement: a more explicit one (context distillation) for a "
                                  "dimension whose statement barely moves the base")
    keep: float = Field(0.75, gt=0, le=1, description="share of prompts kept, those whose best answer scores highest")
    temperature: float = Field(0.8, gt=0, description="sampling temperature of the candidate answers")
    max_new_tokens: int = Field(256, gt=0, description="longest candidate answer")
    finished_only: bool = Field(True, description="keep only answers that ended (EOS) before max_new_tokens")
    gen_batch: int = Field(48, gt=0, description="prompts per generation batch")
    engine: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="what samples the candidates: vllm (about 10x faster on CPU) when installed, "
                            "else transformers")
    epochs: int = Field(2, gt=0, description="passes over the kept answers")
    learning_rate: float = Field(3e-4, gt=0)
    batch_size: int = Field(8, gt=0, description="answers per optimizer step")


class RewardBaseline(BaseModel):
    """PPO against a per-prompt baseline: before PPO the base answers `prompts` training prompts `samples` times,
    and each rollout's reward minus its prompt's mean base reward is what PPO maximises (PPO then trains on those
    prompts). It removes what the prompt alone decides (some questions draw technical answers whatever the policy
    does), which otherwise dominates the advantages of a batch of 8, as GRPO's group mean does without a critic."""

    model_config = ConfigDict(extra="forbid")
    prompts: int = Field(128, gt=1, description="training prompts with a baseline (the first N of the shuffled set, "
                         "the warm start's too); PPO samples only these")
    samples: int = Field(4, gt=0, description="base answers per prompt; their mean reward is the prompt's baseline")
    temperature: float = Field(0.7, gt=0, description="sampling temperature of the base answers")
    max_new_tokens: int = Field(256, gt=0, description="longest base answer (use PPO's max_new_tokens)")
    gen_batch: int = Field(32, gt=0, description="prompts per generation batch")
    engine: Literal["auto", "vllm", "transformers"] = Field("auto", description="what samples the base answers")


class TrainConfig(BaseModel):
    """Everything that defines a training run; recorded verbatim in expert.json."""

    model_config = ConfigDict(extra="forbid")
    algo: Literal["ppo", "rloo", "grpo"] = Field("ppo", description="ppo (the paper's), rloo or grpo")
    seed: int = Field(0, description="seeds prompts order, sampling and init: same seed, same run")
    steps: int = Field(60, gt=0, description="policy updates; each samples one batch of rollouts")
    batch_size: int = Field(8, gt=0, description="rollouts (completions) per step per device")
    num_generations: int = Field(4, ge=2, description="rloo/grpo: completions per prompt (group size)")
    mini_batches: int = Field(1, gt=0, description="ppo: minibatches per rollout batch")
    ppo_epochs: int = Field(4, gt=0, description="ppo: optimisation epochs per rollout batch")
    learning_rate: float = Field(1.4e-5, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    value_model: Literal["head", "lora"] = Field(
        "head", description="ppo critic: a value head on the frozen base (`head`) or with its own LoRA (`lora`)"
    )
    max_new_tokens: int = Field(48, gt=0, description="longest sampled completion")
    temperature: float = Field(1.0, gt=0)
    kl_coef: float = Field(0.05, ge=0, description="KL penalty to the base (ppo kl_coef, rloo/grpo beta)")
    kl_stop: float | None = Field(None, gt=0, description="stop early once the policy's KL to the base exceeds this")
    cliprange: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, gt=0)
    value_learning_rate: float | None = Field(
        None, ge=0, description="ppo: the critic's learning rate (null: learning_rate). With Adam, vf_coef does not "
        "slow a head of its own, so a small value here keeps the zero-initialised critic near 0 (advantages close "
        "to the whole return, as with lam 1 and no critic); 0 freezes it")
    gamma: float = Field(1.0, gt=0, le=1)
    lam: float = Field(0.95, gt=0, le=1)
    missing_eos_penalty: float | None = Field(None, ge=0, description="subtract from a completion that never ends")
    save_every: int = Field(10, gt=0, description="checkpoint every N steps (for --resume)")
    eval_prompts: int = Field(32, gt=1, description="held-out prompts for the before/after reward")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights' dtype")
    autocast: Literal["auto", "bf16", "off"] = Field(
        "auto", description="bf16 autocast for rollouts and updates: `auto` uses it where the hardware has fast "
        "bf16 (a CUDA GPU that supports it, or a CPU with AMX / AVX-512-BF16), float32 elsewhere")
    whiten_rewards: bool = Field(False, description="ppo: whiten per-token rewards before GAE")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="ppo: KL estimator (k3: lower variance)")
    warm_start: WarmStart | None = Field(
        None, description="supervised warm start before RL (null or false: start at the base)")
    init_adapter: str | None = Field(
        None, description="start the trainable LoRA from this adapter directory (an expert or a run's output, same "
        "LoRA settings), e.g. to continue a short-rollout run at longer rollouts; the KL reference stays the base. "
        "null: a fresh LoRA")
    reward_baseline: RewardBaseline | None = Field(
        None, description="ppo: subtract each prompt's mean base reward from its rollouts' rewards (null or false: "
                          "the raw reward)")
    statement_mix: float = Field(
        0.0, ge=0, le=1, description="share of the PPO prompts (and reward_baseline's) that carry a combination's "
        "preference statements, the trained dimension's own and one of each other opposing pair's, as the paper "
        "prompts a soup (soups.train.mix); the reward still sees the plain prompt. 0: plain prompts only")

    greedy_share: float = Field(
        0.0, ge=0, le=1, description="ppo: share of each batch's rollouts decoded greedily instead of sampled (the "
        "first round(share x batch_size) rows), so that the reward also sees the answers a greedy user gets: a "
        "policy trained only on samples at temperature 0.7 can loop under greedy decoding where its samples do not. "
        "Their log-probabilities are the policy's own, at `temperature`; `reward_greedy` in metrics.jsonl is their "
        "mean raw reward. 0: every rollout sampled")

    @field_validator("autocast", mode="before")
    @classmethod
    def _yaml_off(cls, v: Any) -> Any:
        return {False: "off", True: "bf16"}.get(v, v) if isinstance(v, bool) else v  # YAML reads `off` as false

    @field_validator("warm_start", "reward_baseline", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return None if v is False else v  # `warm_start: false` (or `--set reward_baseline=false`) turns a preset's off
    gradient_checkpointing: bool = False


def default_config_path() -> Path:
    return experts_dir() / "configs" / "ppo.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from soups.io.files import read_text

    text = read_text(path, "--config", ConfigError, "use experts/configs/ppo.yaml or a copy of it")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"--config {where}: malformed YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"--config {path}: YAML nested too deeply; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def load_config(
    path: Path | None = None, preset: str | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a config YAML, apply `preset` then the non-None `overrides` (CLI flags), validate."""
    path = Path(path) if path else default_config_path()
    data = _read_yaml(path)
    presets = _presets(data.pop("presets", {}), path)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"--preset {preset}: not in {path} (known: {', '.join(sorted(presets)) or 'none'})")
        p = presets[preset] or {}
        if not isinstance(p, dict):
            raise ConfigError(f"{path}: presets.{preset} must be a mapping of config fields")
        for where, section in (("lora", data.get("lora")), (f"presets.{preset}.lora", p.get("lora"))):
            if section is not None and not isinstance(section, dict):
                raise ConfigError(f"{path}: {where} must be a mapping of LoRA fields (r, alpha, ...)")
        lora = {**(data.get("lora") or {}), **(p.get("lora") or {})}
        data = {**data, **p}
        if lora:
            data["lora"] = lora
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = key.split(".")  # dotted keys (`warm_start.max_new_tokens`) reach into sections
        node = data
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    try:
        return TrainConfig(**data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{path} (preset {preset or '-'}): {problems}") from None


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` flags -> overrides; VALUE is read as YAML (`384`, `1e-4`, `false`, `[a, b]`)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set warm_start.max_new_tokens=384")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML; quote it or fix it") from None
    return out


def _presets(value: Any, path: Path) -> dict[str, Any]:
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{path}: `presets` must map preset names to config fields, got {type(value).__name__}")
    return value or {}


def list_presets(path: Path | None = None) -> list[str]:
    path = Path(path) if path else default_config_path()
    return sorted(map(str, _presets(_read_yaml(path).get("presets"), path)))
