"""The merge engine against an independent float64 reference, PEFT's own loading and merging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soups.merge.engine import merge
from tests.helpers import make_lora_expert, make_tiny_llama
from tests.merge.reference import exact_reference, expert_deltas, linear_reference, rounding_tolerance


@pytest.fixture(scope="module")
def bases(tmp_path_factory, default_base):
    root = tmp_path_factory.mktemp("bases")
    return {
        "bf16": make_tiny_llama(root / "bf16", dtype="bfloat16", tie=True, tokenizer_from=default_base),
        "fp32": make_tiny_llama(root / "fp32", dtype="float32", tie=False, tokenizer_from=default_base),
    }


@pytest.fixture(scope="module")
def experts(tmp_path_factory, bases):
    """Three experts with different ranks, alphas, targets; one rsLoRA, one with rank/alpha patterns."""
    root = tmp_path_factory.mktemp("experts")
    base = bases["fp32"]
    return [
        make_lora_expert(base, root / "e1", r=4, alpha=8, targets=("q_proj", "v_proj"), seed=1),
        make_lora_expert(
            base, root / "e2", r=8, alpha=4, targets=("q_proj", "o_proj", "down_proj"), rslora=True, seed=2
        ),
        make_lora_expert(
            base,
            root / "e3",
            r=2,
            alpha=4,
            targets=("k_proj", "up_proj"),
            seed=3,
            rank_pattern={"layers.0.self_attn.k_proj": 3},
            alpha_pattern={"layers.1.mlp.up_proj": 10},
        ),
    ]


def _scales_e3() -> dict[str, float]:
    # written from the construction above: r=2, alpha=4, layer-0 k_proj rank 3, layer-1 up_proj alpha 10
    return {"model.layers.0.self_attn.k_proj": 4 / 3, "model.layers.1.mlp.up_proj": 10 / 2}


def _deltas(experts):
    return [expert_deltas(experts[0]), expert_deltas(experts[1]), expert_deltas(experts[2], _scales_e3())]


def _load_dir(path: Path) -> dict[str, torch.Tensor]:
    sd = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        sd.update(load_file(str(f)))
    return sd


@pytest.mark.parametrize("kind", ["bf16", "fp32"])
def test_full_exact_matches_float64_reference(tmp_path, bases, experts, kind):
    base = bases[kind]
    weights = [1.0, 2.0, 1.0]
    merge(experts=[str(e) for e in experts], weights=weights, base=str(base), out=tmp_path / "soup")
    out, base_sd = _load_dir(tmp_path / "soup"), _load_dir(base)
    w = [x / sum(weights) for x in weights]
    ref = exact_reference(base_sd, _deltas(experts), w)
    assert set(out) == set(base_sd)
    dtype = base_sd["model.embed_tokens.weight"].dtype
    tol = rounding_tolerance(dtype)
    for name, t in out.items():
        assert t.dtype == dtype
        if name in ref:
            err = (t.double() - ref[name]).abs()
            assert bool((err <= tol * ref[name].abs() + 1e-6).all()), (name, float(err.max()))
            assert not torch.equal(t, base_sd[name]), name  # the delta really landed
        else:
            assert torch.equal(t, base_sd[name]), f"untouched {name} changed"
    raw_in = (base / "model.safetensors").read_bytes()
    emb = out["model.embed_tokens.weight"].contiguous().view(torch.uint8).numpy().tobytes()
    assert emb in raw_in  # byte-identical copy


def test_full_output_loads_tied_and_complete(tmp_path, bases, experts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merge(experts=[str(e) for e in experts], weights=[1, 1, 1], base=str(bases["bf16"]), out=tmp_path / "soup")
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "soup", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "lm_head.weight" not in _load_dir(tmp_path / "soup")
    tok = AutoTokenizer.from_pretrained(tmp_path / "soup")
    assert tok.chat_template  # tokenizer and chat template copied
    card = (tmp_path / "soup" / "README.md").read_text()
    assert card.startswith("---\n") and "personalized-soups" in card and "base_model:" in card
    rec = json.loads((tmp_path / "soup" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == pytest.approx([1 / 3] * 3)
    assert all(len(e["sha256"]) == 64 for e in rec["experts"])


def test_adapter_output_peft_merge_matches_reference_and_peft_cat(tmp_path, bases, experts):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = bases["fp32"]
    weights = [0.5, 0.3, 0.2]
    res = merge(
        experts=[str(e) for e in experts], weights=weights, base=str(base), out=tmp_path / "ad", format="adapter"
    )
    assert res.rank == 4 + 8 + 3 and res.max_lora_rank == 16
    cfg = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert cfg["r"] == cfg["lora_alpha"] == 15 and cfg["peft_type"] == "LORA" and not cfg["use_dora"]
    sd = load_file(str(tmp_path / "ad" / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in sd)
    assert all(t.dtype == torch.float32 for t in sd.values())

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), tmp_path / "ad")
    merged = model.merge_and_unload().state_dict()
    ref = exact_reference(_load_dir(base), _deltas(experts), weights)
    for name, r in ref.items():
        assert float((merged[name].double() - r).abs().max()) < 1e-6, name

    # PEFT's own concatenation of the same experts (without rank patterns, which its cat ignores)
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), experts[0], adapter_name="e1"
    )
    peft.load_adapter(experts[1], adapter_name="e2")
    peft.add_weighted_adapter(["e1", "e2"], [0.6, 0.4], "cat", combination_type="cat")
    peft.set_adapter("cat")
    theirs = peft.merge_and_unload(adapter_names=["cat"]).state_dict()
    merge(
        experts=[str(experts[0]), str(experts[1])],
        weights=[0.6, 0.4],
        base=str(base),
        out=tmp_path / "ad2",
        format="adapter",
    )
    ours = (
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), tmp_path / "ad2")
        .merge_and_unload()
        .state_dict()
    )
    for name in ref:
        if "k_proj" in name or "up_proj" in name:
            continue
        assert torch.allclose(ours[name], theirs[name], atol=1e-6), name


def test_linear_is_per_matrix_averaging(tmp_path, bases):
    base = bases["fp32"]
    es = [
        make_lora_expert(base, tmp_path / f"l{i}", r=4, alpha=8, targets=("q_proj", "v_proj"), seed=10 + i)
        for i in range(3)
    ]
    merge(experts=[str(e) for e in es], weights=[1, 1, 2], base=str(base), out=tmp_path / "lin", method="linear")
    ref = linear_reference(_load_dir(base), [expert_deltas(e) for e in es], [0.25, 0.25, 0.5])
    out = _load_dir(tmp_path / "lin")
    for name, r in ref.items():
        assert float((out[name].double() - r).abs().max()) < 1e-6, name
    exact = exact_reference(_load_dir(base), [expert_deltas(e) for e in es], [0.25, 0.25, 0.5])
    assert any(float((out[n].double() - exact[n]).abs().max()) > 1e-4 for n in ref)  # cross terms differ

    merge(
        experts=[str(e) for e in es],
        weights=[1, 1, 2],
        base=str(base),
        out=tmp_path / "lin_ad",
        method="linear",
        format="adapter",
    )
    assert json.loads((tmp_path / "lin_ad" / "adapter_config.json").read_text())["r"] == 4


def test_svd_full_rank_equals_exact_and_reports_energy(tmp_path, bases, experts):
    base = bases["fp32"]
    ex = [str(e) for e in experts]
    merge(experts=ex, weights=[1, 1, 1], base=str(base), out=tmp_path / "exact")
    full = merge(experts=ex, weights=[1, 1, 1], base=str(base), out=tmp_path / "svd", method="svd", rank=15)
    a, b = _load_dir(tmp_path / "exact"), _load_dir(tmp_path / "svd")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=2e-6), name
    assert min(full.report["energy"].values()) > 1 - 1e-6
    low = merge(
        experts=ex, weights=[1, 1, 1], base=str(base), out=tmp_path / "svd2", method="svd", rank=2, format="adapter"
    )
    assert low.rank == 2 and min(low.report["energy"].values()) < 1.0
    # the rank-2 truncation is the best rank-2 approximation of the exact delta (Eckart-Young)
    sd = load_file(str(tmp_path / "svd2" / "adapter_model.safetensors"))
    ref = exact_reference(_load_dir(base), _deltas(experts), [1 / 3] * 3)
    name = "model.layers.0.self_attn.q_proj"
    delta = ref[f"{name}.weight"] - _load_dir(base)[f"{name}.weight"].double()
    approx = (
        sd[f"base_model.model.{name}.lora_B.weight"].double() @ sd[f"base_model.model.{name}.lora_A.weight"].double()
    )
    s = torch.linalg.svdvals(delta)
    assert float(torch.linalg.norm(delta - approx)) == pytest.approx(float(s[2:].square().sum().sqrt()), rel=1e-4)


def test_sharded_output_and_determinism(tmp_path, bases, experts):
    from transformers import AutoModelForCausalLM

    spec = dict(experts=[str(e) for e in experts], weights=[1, 0, 1], base=str(bases["bf16"]), shard_size="60KB")
    merge(out=tmp_path / "a", **spec)
    merge(out=tmp_path / "b", **spec)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "model.safetensors.index.json" in files and any(f.startswith("model-00002-of-") for f in files)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    rec = json.loads((tmp_path / "a" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == [0.5, 0.0, 0.5]
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "a", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_dtype_override_and_no_normalize(tmp_path, bases, experts):
    base = bases["bf16"]
    merge(experts=[str(experts[0])], weights=[0.5], base=str(base), out=tmp_path / "s", dtype="float32",
          normalize=False)
    out, base_sd = _load_dir(tmp_path / "s"), _load_dir(base)
    ref = exact_reference(base_sd, [expert_deltas(experts[0])], [0.5])
    assert all(t.dtype == torch.float32 for t in out.values())
    for name, r in ref.items():
        assert float((out[name].double() - r).abs().max()) < 1e-6
    assert json.loads((tmp_path / "s" / "config.json").read_text()).get("dtype", "float32") == "float32"
