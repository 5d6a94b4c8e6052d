"""`soups scale-expert`: the scaled expert, loaded by PEFT itself, is the base + alpha x s B A of the source in a
float64 reference; only lora_B changes; the history is kept; bad input is a one-line error and nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers import assert_one_line_error, make_lora_expert, make_tiny_llama, run_cli
from tests.merge.reference import exact_reference, expert_deltas


@pytest.fixture(scope="module")
def base(tmp_path_factory, default_base):
    return make_tiny_llama(tmp_path_factory.mktemp("scale") / "base", dtype="float32", tie=False,
                           tokenizer_from=default_base)


@pytest.fixture(scope="module")
def expert(base, tmp_path_factory):
    """rsLoRA with a rank pattern, so the scale is not one alpha/r for all modules; with an expert.json history."""
    path = make_lora_expert(base, tmp_path_factory.mktemp("scale") / "e", r=4, alpha=8, rslora=True,
                            targets=("q_proj", "v_proj", "down_proj"), rank_pattern={"down_proj": 2}, seed=3)
    (path / "expert.json").write_text(json.dumps({"dimension": "friendly", "algorithm": "ppo",
                                                  "stages": [{"stage": "ppo", "steps": 12}]}))
    return path


def _peft_merged(base: Path, adapter: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter)
    return model.merge_and_unload().state_dict()


@pytest.mark.parametrize("alpha", [1.3, 0.5])
def test_peft_loads_the_scaled_expert_as_the_base_plus_alpha_times_the_delta(base, expert, tmp_path, alpha):
    out = tmp_path / "scaled"
    res = run_cli("scale-expert", expert, "--alpha", alpha, "--out", out)
    assert res.code == 0, res.err
    base_sd = load_file(str(base / "model.safetensors"))
    ref = exact_reference(base_sd, [expert_deltas(expert)], [alpha])  # from the source's own files, in float64
    merged = _peft_merged(base, out)
    assert len(ref) == 3 * 2  # three targets in two layers
    for name, want in ref.items():
        got = merged[name].double()
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), name
        assert not torch.allclose(got, exact_reference(base_sd, [expert_deltas(expert)], [1.0])[name], atol=1e-3)
    # only lora_B changed: A and the config byte for byte; the history kept, a `scale` stage added
    src, dst = load_file(str(expert / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert sorted(src) == sorted(dst)
    for k in src:
        assert torch.equal(dst[k], src[k]) if ".lora_A." in k else torch.equal(dst[k], src[k] * alpha), k
    assert (out / "adapter_config.json").read_bytes() == (expert / "adapter_config.json").read_bytes()
    meta = json.loads((out / "expert.json").read_text())
    assert meta["dimension"] == "friendly" and meta["algorithm"] == "ppo"
    assert [s["stage"] for s in meta["stages"]] == ["ppo", "scale"]
    assert meta["stages"][-1]["alpha"] == alpha and meta["stages"][-1]["from"] == str(expert.absolute())
    from soups.merge.provenance import expert_sha256

    assert meta["stages"][-1]["from_sha256"] == expert_sha256(expert)


def test_bf16_weights_are_rounded_once_and_stay_bf16(expert, tmp_path):
    half = tmp_path / "bf16"
    half.mkdir()
    (half / "adapter_config.json").write_bytes((expert / "adapter_config.json").read_bytes())
    save_file({k: v.bfloat16() for k, v in load_file(str(expert / "adapter_model.safetensors")).items()},
              str(half / "adapter_model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "scaled"
    assert run_cli("scale-expert", half, "--alpha", 3, "--out", out).code == 0
    src, dst = load_file(str(half / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    for k in src:
        want = src[k] if ".lora_A." in k else (src[k].double() * 3).float().bfloat16()
        assert dst[k].dtype == torch.bfloat16 and torch.equal(dst[k], want), k


def test_bad_input_is_one_line_and_loses_nothing(expert, tmp_path):
    out = tmp_path / "scaled"
    assert_one_line_error(run_cli("scale-expert", expert, "--alpha", 0, "--out", out), "--alpha", "(0, 100]")
    assert_one_line_error(run_cli("scale-expert", expert, "--alpha", "nan", "--out", out), "--alpha")
    assert_one_line_error(run_cli("scale-expert", expert, "--alpha", 2, "--out", expert), "--out", "source")
    assert_one_line_error(run_cli("scale-expert", tmp_path / "nowhere", "--alpha", 2, "--out", out), "nowhere")
    assert not out.exists()
    assert run_cli("scale-expert", expert, "--alpha", 2, "--out", out).code == 0
    before = (out / "adapter_model.safetensors").read_bytes()
    assert_one_line_error(run_cli("scale-expert", expert, "--alpha", 4, "--out", out), "--force")
    assert (out / "adapter_model.safetensors").read_bytes() == before  # not overwritten
    assert run_cli("scale-expert", expert, "--alpha", 4, "--out", out, "--force").code == 0
    assert (out / "adapter_model.safetensors").read_bytes() != before
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_bytes((expert / "adapter_config.json").read_bytes())
    torch.save(load_file(str(expert / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    assert_one_line_error(run_cli("scale-expert", pickled, "--alpha", 2, "--out", tmp_path / "p2"), "pickle")


def test_inspect_shows_the_history_with_the_scale(expert, tmp_path):
    assert run_cli("scale-expert", expert, "--alpha", 1.3, "--out", tmp_path / "s").code == 0
    res = run_cli("inspect", tmp_path / "s")
    assert res.code == 0 and "stages: ppo -> scale x1.3" in res.out, res.out
