"""The live soup: rebuilt in memory, it equals float64 merge math and PEFT running the merged adapter from disk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from soups.errors import SoupsError, WeightsError
from soups.playground.session import Settings


def _reference_delta(experts: dict, weights: dict[str, float], module: str) -> np.ndarray | None:
    """float64 sum_i w_i s_i B_i A_i at `module`, from the adapter files (s = alpha / r, or alpha / sqrt(r) rsLoRA)."""
    import json

    total = None
    for name, w in weights.items():
        cfg = json.loads((experts[name] / "adapter_config.json").read_text())
        t = load_file(str(experts[name] / "adapter_model.safetensors"))
        key = f"base_model.model.{module}"
        if f"{key}.lora_A.weight" not in t:
            continue
        A, B = t[f"{key}.lora_A.weight"].astype(np.float64), t[f"{key}.lora_B.weight"].astype(np.float64)
        r = A.shape[0]
        s = cfg["lora_alpha"] / (np.sqrt(r) if cfg.get("use_rslora") else r)
        d = w * s * (B @ A)
        total = d if total is None else total + d
    return total


@pytest.mark.parametrize("weights", [(2.0, 1.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 3.0)])
def test_exact_soup_equals_float64_reference(playground, pg_world, weights):
    _, experts = pg_world
    state = playground.rebuild(Settings(weights))
    applied = {n: w / sum(weights) for n, w in zip(experts, weights)}
    assert state.weights == pytest.approx(applied)
    assert state.rank == sum(r for r, w in zip((4, 2, 4), weights) if w)
    soup, base = dict(playground.soup.model.named_parameters()), dict(playground.base.named_parameters())
    changed = 0
    for name, p in soup.items():
        module = name.removesuffix(".weight")
        ref = _reference_delta(experts, applied, module) if name.endswith(".weight") else None
        if ref is None:  # not targeted by a kept expert: the base's weight (shared, unless some expert targets it)
            assert torch.equal(p, base[name])
            continue
        changed += 1
        got = p.detach().double().numpy() - base[name].detach().double().numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))
    assert changed > 0
    embed = playground.soup.model.get_input_embeddings().weight
    assert embed.data_ptr() == playground.base.get_input_embeddings().weight.data_ptr()  # shared, not copied


@pytest.mark.parametrize("method, rank", [("exact", None), ("svd", 3), ("linear", None)])
def test_soup_logits_equal_peft_on_the_merged_adapter(playground, pg_world, tmp_path, method, rank):
    """The in-memory soup answers as PEFT does with `soups merge --format adapter`'s output, written to disk."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from soups.merge.engine import merge

    base_dir, experts = pg_world
    names = ["concise", "expert"] if method != "linear" else ["concise"]  # linear needs equal ranks and targets
    weights = [1.0 if n in names else 0.0 for n in experts]
    settings = Settings(tuple(weights), method=method, rank=rank)
    playground.rebuild(settings)
    soup = playground.soup_spec(settings, format="adapter")
    merge(soup, tmp_path / "soup")
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                    tmp_path / "soup").eval()
    enc = playground.answerer.chat_ids("Why is the sky blue?")
    with torch.no_grad():
        got, want = playground.soup.model(**enc).logits, ref(**enc).logits
        base = playground.base(**enc).logits
    assert (want - base).abs().max() > 1e-2  # the soup is not the base
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_bad_weights_are_errors(playground):
    with pytest.raises(WeightsError, match="all weights are zero"):
        playground.rebuild(Settings((0.0, 0.0, 0.0)))
    with pytest.raises(WeightsError, match="positive sum"):
        playground.rebuild(Settings((1.0, -2.0, 0.0)))
    with pytest.raises(SoupsError, match="rank"):
        playground.rebuild(Settings((1.0, 1.0, 0.0), method="svd", rank=None))
    state = playground.rebuild(Settings((1.0, -2.0, 0.0), normalize=False))  # task arithmetic keeps v as is
    assert state.weights == {"concise": 1.0, "friendly": -2.0, "expert": 0.0}


def test_an_expert_that_fails_to_load(pg_world, tmp_path):
    """Broken at start or replaced by a broken file later: that slot carries the error, the others still merge."""
    import os
    import shutil

    from soups.playground.session import Playground

    base, experts = pg_world
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text("{not json")
    spare = shutil.copytree(experts["expert"], tmp_path / "spare")
    pg = Playground([str(experts["concise"]), str(broken), str(spare)], base, max_new_tokens=4, threads=1)
    assert [s.ok for s in pg.slots] == [True, False, True]
    assert "broken" in pg.slots[1].error and "adapter_config.json" in pg.slots[1].error
    assert pg.rebuild(Settings((1.0, 5.0, 1.0))).weights == {"concise": 0.5, "spare": 0.5}

    good = (spare / "adapter_model.safetensors").read_bytes()
    (spare / "adapter_model.safetensors").write_bytes(b"\0" * 16)  # retrained... badly
    state = pg.rebuild(Settings((1.0, 0.0, 1.0)))
    assert not pg.slots[2].ok and "spare" in pg.slots[2].error
    assert state.weights == {"concise": 1.0}
    (spare / "adapter_model.safetensors").write_bytes(good)  # fixed: reloaded on the next rebuild
    os.utime(spare / "adapter_model.safetensors", ns=(1, 1))
    assert pg.rebuild(Settings((1.0, 0.0, 1.0))).weights == {"concise": 0.5, "spare": 0.5}
    assert pg.slots[2].ok


def test_a_bfloat16_soup_is_the_float32_merge_rounded_once(pg_world):
    """In bfloat16 (`soups playground --dtype bfloat16`) each targeted weight is W + dW computed
    in float32 and rounded once: within one bf16 step of the float64 reference, equal to it almost everywhere."""
    from soups.playground.session import Playground

    base_dir, experts = pg_world
    pg = Playground([str(p) for p in experts.values()], base_dir, max_new_tokens=4, threads=1, dtype="bfloat16")
    assert pg.base.dtype == torch.bfloat16 and pg.soup.model.dtype == torch.bfloat16
    weights = (2.0, 1.0, 1.0)
    pg.rebuild(Settings(weights))
    applied = {n: w / sum(weights) for n, w in zip(experts, weights)}
    soup, base = dict(pg.soup.model.named_parameters()), dict(pg.base.named_parameters())
    moved = total = 0
    for name, p in soup.items():
        ref = _reference_delta(experts, applied, name.removesuffix(".weight")) if name.endswith(".weight") else None
        if ref is None:
            assert torch.equal(p, base[name])
            continue
        want = torch.from_numpy(base[name].detach().double().numpy() + ref).to(torch.bfloat16)
        assert p.dtype == torch.bfloat16
        torch.testing.assert_close(p.float(), want.float(), rtol=2 ** -7, atol=0)  # at most one bf16 step
        assert (p != want).float().mean() < 0.01  # float32 then bf16 rounds as float64 then bf16 but in ties
        moved += int((p != base[name]).sum())
        total += p.numel()
    assert moved > 0.2 * total  # the deltas are large enough to show in bf16
    with torch.no_grad():
        enc = pg.answerer.chat_ids("Why is the sky blue?")
        assert torch.isfinite(pg.soup.model(**enc).logits).all()
