"""Expert training (soups/train): config validation, PPO end to end on a tiny model, --resume,
real learning on a toy reward, RLOO/GRPO, CLI errors, and `accelerate launch`.

The tiny model is a random 2-layer Llama with the default base's tokenizer and a "confident"
output head (final norm weight 4), so that its next-token distribution is peaked enough for a
policy gradient to move it in a few steps. The toy reward (share of letters among the
completion's characters) is written here, independently of soups.rewards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soups.errors import ConfigError, OutputExistsError
from soups.train.config import TrainConfig, default_config_path, list_presets, load_config
from tests.helpers import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [f"Tell me something about topic number {i}." for i in range(64)]
FAST = {"max_new_tokens": 8, "batch_size": 4, "eval_prompts": 8, "ppo_epochs": 2, "save_every": 2,
        "learning_rate": 1e-2, "kl_coef": 0.0, "warm_start": False, "autocast": "off"}


def letter_share(completions: list[str], prompts=None, **_) -> list[float]:
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def _train(base: Path, tmp: Path, name: str, **kw):
    from soups.train.expert import train_expert

    overrides = {**FAST, **kw.pop("overrides", {})}
    return train_expert("toy", base=base, prompts=PROMPTS[:48], heldout=PROMPTS[48:], reward=letter_share,
                        out=tmp / f"{name}-out", run_dir=tmp / f"{name}-run", preset="cpu", overrides=overrides,
                        progress=False, **kw)


# ----------------------------------------------------------------------------- config
def test_shipped_config_and_presets_validate():
    assert {"cpu", "paper"} <= set(list_presets())
    for preset in [None, *list_presets()]:
        assert isinstance(load_config(None, preset), TrainConfig)
    paper = load_config(None, "paper")
    assert (paper.lora.r, paper.lora.alpha, paper.lora.dropout) == (16, 32, 0.05)
    assert (paper.learning_rate, paper.batch_size, paper.ppo_epochs, paper.kl_stop) == (1.4e-5, 16, 8, 0.1)
    assert load_config(None, "cpu", {"algo": "grpo", "steps": 3, "seed": None}).algo == "grpo"
    assert default_config_path().read_text().startswith("# ")  # torchtune-style header


def test_config_errors_name_file_field_and_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: ppo\nlora: {r: 4\nsteps: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: malformed YAML"):
        load_config(bad)
    bad.write_text("algo: sgd\nlora: {r: 0}\nstepz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "algo='sgd'" in msg and "lora.r=0" in msg and "stepz" in msg  # all problems, together
    with pytest.raises(ConfigError, match=r"--preset gpu: not in .*known: cpu, paper"):
        load_config(None, "gpu")


# ----------------------------------------------------------------------------- end to end
def test_ppo_end_to_end_expert_loads_and_merges(confident_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from soups.base import fingerprint

    info = _train(confident_base, tmp_path, "e2e", overrides={"steps": 2})
    out = Path(info["out"])
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "expert.json"]
    meta = json.loads((out / "expert.json").read_text())
    assert meta["dimension"] == "toy" and meta["algorithm"] == "ppo" and meta["steps_done"] == 2
    assert meta["base"]["fingerprint"] == fingerprint(confident_base)
    for when in ("before", "after"):
        r = meta["reward"][when]
        assert r["n"] == 8 and r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    assert meta["fluency"]["base_ppl_on_expert_outputs"] > 1 and meta["wall_time_s"] > 0
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == load_config(None, "cpu").lora.r
    rows = [json.loads(ln) for ln in (tmp_path / "e2e-run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all("reward" in r and "kl" in r for r in rows)
    # the adapter is a real, non-zero LoRA that PEFT loads on the base
    base = AutoModelForCausalLM.from_pretrained(confident_base, dtype=torch.float32)
    x = torch.tensor([[5, 6, 7, 8]])
    ref = base(x).logits
    model = PeftModel.from_pretrained(base, out)
    assert not torch.allclose(model(x).logits, ref)
    # and `soups merge` accepts it
    from soups.merge.engine import merge

    res = merge(experts=[out], weights=[1.0], base=str(confident_base), format="adapter", out=tmp_path / "soup")
    assert (Path(res.out) / "adapter_model.safetensors").is_file()
    with pytest.raises(OutputExistsError):  # never overwrite without force
        _train(confident_base, tmp_path, "e2e", overrides={"steps": 2})


class _Interrupt:
    """A TrainerCallback that kills the run (KeyboardInterrupt) at the end of step `at`."""

    def __init__(self, at: int):
        from transformers import TrainerCallback

        at_step = at

        class Cb(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step >= at_step:
                    raise KeyboardInterrupt

        self.cb = Cb()


def test_resume_continues_from_checkpoint(confident_base, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(confident_base, tmp_path, "res", overrides={"steps": 4}, callbacks=[_Interrupt(3).cb])
    run = tmp_path / "res-run"
    assert not (tmp_path / "res-out").exists()  # no partial expert
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-000002"]
    with pytest.raises(ConfigError, match="--resume"):  # a run with checkpoints is not silently restarted
        _train(confident_base, tmp_path, "res", overrides={"steps": 4})
    with pytest.raises(ConfigError, match="another dimension, base or config"):
        _train(confident_base, tmp_path, "res", overrides={"steps": 4, "learning_rate": 1e-3}, resume=True)
    info = _train(confident_base, tmp_path, "res", overrides={"steps": 4}, resume=True)
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # step 3 of the killed run is replaced, not duplicated
    assert info["steps_done"] == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002", "step-000004"]


@pytest.mark.slow
@pytest.mark.parametrize("autocast", ["off", "bf16"])
def test_ppo_learns_a_toy_reward(confident_base, tmp_path, autocast):
    # bf16: the whole PPO loop runs in one autocast context, which must not keep serving stale LoRA weights
    info = _train(confident_base, tmp_path, "learn", overrides={"steps": 8, "batch_size": 8, "ppo_epochs": 4,
                                                           "eval_prompts": 16, "save_every": 100,
                                                           "autocast": autocast})
    before, after = info["reward"]["before"], info["reward"]["after"]
    assert after["mean"] > before["mean"] + 0.05, (before, after)
    assert after["ci95"][0] > before["mean"]
    rows = [json.loads(ln) for ln in (tmp_path / "learn-run" / "metrics.jsonl").read_text().splitlines()]
    first, last = sum(r["reward"] for r in rows[:3]) / 3, sum(r["reward"] for r in rows[-3:]) / 3
    assert last > first


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_rloo_and_grpo_train_the_same_expert_format(confident_base, tmp_path, algo):
    info = _train(confident_base, tmp_path, algo, overrides={"algo": algo, "steps": 2, "num_generations": 2})
    out = Path(info["out"])
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "expert.json"]
    assert json.loads((out / "expert.json").read_text())["algorithm"] == algo
    assert (tmp_path / f"{algo}-run" / "checkpoints" / "checkpoint-2").is_dir()


# ----------------------------------------------------------------------------- CLI
def test_cli_bad_input_is_one_line_exit_2(confident_base, tmp_path):
    assert_one_line_error(run_cli("train-expert", "--dim", "nosuchdim", "--base", confident_base,
                                  "--out", tmp_path / "o"), "nosuchdim", "concise")
    assert_one_line_error(run_cli("train-expert", "--dim", "concise", "--algo", "sgd"), "--algo sgd")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    assert_one_line_error(run_cli("train-expert", "--dim", "concise", "--base", confident_base, "--out", full),
                          "--force")
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": \n')
    assert_one_line_error(run_cli("train-expert", "--dim", "concise", "--base", confident_base, "--prompts", bad,
                                  "--out", tmp_path / "o2"), "prompts.jsonl:2")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_runs_unchanged_under_accelerate_launch(confident_base, tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in {**FAST, "steps": 1, "eval_prompts": 4}.items()))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:8]))
    out = tmp_path / "expert"
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--cpu", "--num_processes", "1",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "soups", "train-expert",
           "--dim", "concise", "--base", str(confident_base), "--config", str(cfg),
           "--prompts", str(prompts), "--out", str(out), "--run-dir", str(tmp_path / "run"), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((out / "expert.json").read_text())
    assert meta["dimension"] == "concise" and meta["steps_done"] == 1
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("value_lr", [0.0, None])
def test_value_learning_rate_sets_the_critics_own_step(confident_base, tmp_path, value_lr):
    """value_learning_rate 0 leaves the zero-initialised critic at exactly 0 while the policy still learns;
    unset, the critic trains at the policy's rate (and leaves 0)."""
    from safetensors.torch import load_file

    name = f"vlr-{value_lr}"
    _train(confident_base, tmp_path, name, overrides={"steps": 2, "value_learning_rate": value_lr})
    ckpt = tmp_path / f"{name}-run" / "checkpoints" / "step-000002"
    critic = load_file(str(ckpt / "value_model.safetensors"))
    assert list(critic) == ["score.weight"]
    moved = float(critic["score.weight"].abs().max())
    assert (moved == 0.0) if value_lr == 0.0 else (moved > 1e-4), moved
    lora_b = [t for n, t in load_file(str(ckpt / "adapter_model.safetensors")).items() if "lora_B" in n]
    assert lora_b and max(float(t.abs().max()) for t in lora_b) > 1e-4  # the policy moved in both cases


def test_init_adapter_starts_the_trainable_lora_from_an_adapter(confident_base, tmp_path):
    """init_adapter: the run starts from the adapter's weights (at a vanishing learning rate it ends there, while a
    fresh run ends at LoRA's zero B); the stage is recorded; mismatched LoRA settings or a warm start are errors."""
    import torch
    from safetensors.torch import load_file

    first = Path(_train(confident_base, tmp_path, "first", overrides={"steps": 2})["out"])
    start = load_file(str(first / "adapter_model.safetensors"))
    assert max(float(t.abs().max()) for n, t in start.items() if "lora_B" in n) > 1e-4
    tiny = {"steps": 1, "learning_rate": 1e-12, "value_learning_rate": 0.0}
    info = _train(confident_base, tmp_path, "cont", overrides={**tiny, "init_adapter": str(first)})
    end = load_file(str(Path(info["out"]) / "adapter_model.safetensors"))
    assert sorted(end) == sorted(start)
    assert all(torch.allclose(end[k], start[k], atol=1e-6) for k in start)
    first_meta = json.loads((first / "expert.json").read_text())
    assert info["stages"][0] == {"stage": "init_adapter", "path": str(first.absolute()), "from": "ppo", "steps": 2,
                                 "config": first_meta["config"], "stages": first_meta["stages"]}
    assert [s["stage"] for s in info["stages"][0]["stages"]][-1] == "ppo"  # the adapter's own history, nested
    fresh = load_file(str(Path(_train(confident_base, tmp_path, "fresh", overrides=tiny)["out"])
                          / "adapter_model.safetensors"))
    assert max(float(t.abs().max()) for n, t in fresh.items() if "lora_B" in n) < 1e-6
    with pytest.raises(ConfigError, match=r"init_adapter .*first.*r 16 \(this run: 4\)"):
        _train(confident_base, tmp_path, "bad-r", overrides={**tiny, "init_adapter": str(first), "lora.r": 4})
    with pytest.raises(ConfigError, match="init_adapter and warm_start"):
        _train(confident_base, tmp_path, "bad-ws", overrides={**tiny, "init_adapter": str(first),
                                                               "warm_start": {"prompts": 4}})
    with pytest.raises(ConfigError, match=r"init_adapter: .*missing"):
        _train(confident_base, tmp_path, "bad-dir", overrides={**tiny, "init_adapter": str(tmp_path / "nowhere")})


def test_a_dimension_given_as_a_yaml_path_is_recorded_by_its_name(confident_base, tmp_path):
    from soups.train.expert import train_expert

    dim = tmp_path / "my_dims" / "terse.yaml"
    dim.parent.mkdir()
    text = (ROOT / "experts" / "concise.yaml").read_text().replace("name: concise", "name: terse")
    dim.write_text(text.replace("scorer: concise", "scorer: concise\n  params: {n0: 20}"))
    info = train_expert(str(dim), base=confident_base, prompts=PROMPTS[:8], heldout=PROMPTS[48:52],
                        out=tmp_path / "out", run_dir=tmp_path / "run", preset="cpu",
                        overrides={**FAST, "steps": 1, "eval_prompts": 4}, progress=False)
    meta = json.loads((Path(info["out"]) / "expert.json").read_text())
    assert meta["dimension"] == "terse"  # not the file's path
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dimension"] == "terse"
    # the reward it was trained against, params included, and the before-training cache is keyed by it
    assert meta["reward_config"] == {"kind": "rule", "scorer": "concise", "params": {"n0": 20}}
    assert json.loads((tmp_path / "run" / "before.json").read_text())["key"]["reward"] == meta["reward_config"]
