"""Soup builds (soups/serve/builds.py): cached by content, bounded, and the cache is where adapters load from."""

from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import load_file


def test_soup_adapters_are_cached_by_content(world, tmp_path, monkeypatch):
    from soups.errors import WeightsError
    from soups.serve.builds import build_adapter, max_rank_for_experts
    from soups.serve.users import user_soup

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    exp = [str(e) for e in world["experts"]]
    a, ra = build_adapter(user_soup("a", "1,3", exp), world["base"])
    b, rb = build_adapter(user_soup("b", "2,6", exp), world["base"])  # same soup average
    c, rc = build_adapter(user_soup("c", {str(world["experts"][1].name): 1}, exp), world["base"])
    assert a == b and a != c and a.parent == tmp_path / "home" / "serve" / "adapters"
    assert (ra, rc) == (12, 4) and max_rank_for_experts(exp) == 16
    stamp = (a / "adapter_model.safetensors").stat().st_mtime_ns
    build_adapter(user_soup("a2", [1, 3], exp), world["base"])
    assert (a / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(WeightsError, match="user eve: weights 1,2,3: 3 weight"):
        user_soup("eve", "1,2,3", exp)


def test_merged_checkpoints_are_the_full_soup_and_pruned_least_recently_used_first(world, tmp_path, monkeypatch):
    """build_checkpoint = W + sum_i w_i s_i B_i A_i (float64 reference here); prune keeps `keep` and the newest."""
    import torch

    from soups.serve.builds import build_checkpoint, cache_dir, prune
    from soups.serve.users import user_soup

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    exp = [str(e) for e in world["experts"]]
    full = build_checkpoint(user_soup("a", "1,3", exp), world["base"])
    assert full.parent == cache_dir("models") and (full / "config.json").is_file()
    base = load_file(world["base"] / "model.safetensors")
    merged = load_file(full / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj"
    want = base[f"{name}.weight"].double()
    for e, w in zip(world["experts"], (0.25, 0.75)):
        cfg = json.loads((e / "adapter_config.json").read_text())
        t = load_file(e / "adapter_model.safetensors")
        key = f"base_model.model.{name}"
        B, A = t[f"{key}.lora_B.weight"].double(), t[f"{key}.lora_A.weight"].double()  # noqa: N806
        want += w * cfg["lora_alpha"] / cfg["r"] * B @ A
    torch.testing.assert_close(merged[f"{name}.weight"].double(), want, rtol=0, atol=1e-6)
    others = [build_checkpoint(user_soup("x", w, exp), world["base"]) for w in ("1,0", "0,1", "1,1")]
    os.utime(others[0], ns=(1, 1))  # the least recently used
    assert prune(cache_dir("models"), keep={full.name}, limit=2) == [others[0].name]
    assert sorted(p.name for p in cache_dir("models").iterdir()) == sorted([full.name, others[1].name, others[2].name])


def test_only_adapters_built_in_the_cache_count_as_in_cache(world, tmp_path, monkeypatch):
    from soups.serve.builds import build_adapter, in_cache
    from soups.serve.users import user_soup

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    a, _ = build_adapter(user_soup("a", "1,1", [str(e) for e in world["experts"]]), world["base"])
    assert in_cache(a) == a.resolve() and in_cache(str(a) + "/../" + a.name) == a.resolve()
    (tmp_path / "link").symlink_to(world["experts"][0])
    paths = (world["experts"][0], tmp_path / "link", a.parent, a / "adapter_config.json", tmp_path / "nope", "")
    for outside in paths:
        assert in_cache(outside) is None, outside
    (a.parent / "evil").symlink_to(world["experts"][0])  # a link inside the cache to an adapter outside it
    assert in_cache(a.parent / "evil") is None
