"""Bad input to `soups merge`: exit code 2, one line naming the culprit and the fix, nothing at --out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import assert_one_line_error, make_lora_expert, make_tiny_llama, run_cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory, default_base):
    root = tmp_path_factory.mktemp("bad")
    base = make_tiny_llama(root / "base", tokenizer_from=default_base)
    other = make_tiny_llama(root / "other", hidden=32, tokenizer_from=default_base)
    e1 = make_lora_expert(base, root / "e1", r=4, seed=1)
    e2 = make_lora_expert(base, root / "e2", r=2, targets=("o_proj",), seed=2)
    return root, base, other, e1, e2


def check_bad(args, out: Path, *words) -> str:
    """The merge fails with one line naming `words`, and leaves nothing at `out` (no temporary directory either)."""
    err = assert_one_line_error(run_cli(*args, "--out", out), *words)
    assert not out.exists() or not any(out.iterdir())
    assert not list(out.parent.glob(f".{out.name}.tmp-*")), "temporary directory left behind"
    return err


def test_weight_errors(setup, tmp_path):
    _, base, _, e1, e2 = setup
    common = ["merge", "--base", base, "--experts", f"{e1},{e2}"]
    check_bad([*common, "--weights", "1,0,1"], tmp_path / "o", "3 weight", "2 expert")
    check_bad([*common, "--weights", "1,nan"], tmp_path / "o", "nan", "finite")
    check_bad([*common, "--weights", "inf,1"], tmp_path / "o", "inf")
    check_bad([*common, "--weights", "0,0"], tmp_path / "o", "all weights are zero")
    check_bad([*common, "--weights", "1,x"], tmp_path / "o", "'x'", "not a number")
    check_bad([*common, "--weights", "e9=1"], tmp_path / "o", "unknown expert 'e9'", "e1, e2")


def test_missing_and_mismatched_experts(setup, tmp_path):
    root, base, other, e1, _ = setup
    check_bad(
        ["merge", "--base", base, "--experts", f"{e1},{root}/nope", "--weights", "1,1"],
        tmp_path / "o",
        "nope",
        "not found",
    )
    # shapes from another base
    e_other = make_lora_expert(other, tmp_path / "eo", r=2, seed=5)
    check_bad(
        ["merge", "--base", base, "--experts", e_other, "--weights", "1"],
        tmp_path / "o",
        "eo",
        "trained on another base",
    )
    # fingerprint recorded in expert.json names another base
    e_fp = tmp_path / "efp"
    shutil.copytree(e1, e_fp)
    (e_fp / "expert.json").write_text(json.dumps({"dimension": "concise", "base": {"fingerprint": "sha256:0000"}}))
    check_bad(
        ["merge", "--base", base, "--experts", e_fp, "--weights", "1"], tmp_path / "o", "sha256:0000", "base"
    )


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"use_dora": True}, ["dora"]),
        ({"bias": "lora_only"}, ["bias"]),
        ({"modules_to_save": ["lm_head"]}, ["modules_to_save"]),
    ],
)
def test_unsupported_adapter_features(setup, tmp_path, kwargs, words):
    _, base, _, _, _ = setup
    bad = make_lora_expert(base, tmp_path / "bad", r=2, seed=7, **kwargs)
    check_bad(["merge", "--base", base, "--experts", bad, "--weights", "1"], tmp_path / "o", "bad", *words)


def test_non_lora_adapter(setup, tmp_path):
    from peft import IA3Config, get_peft_model
    from transformers import AutoModelForCausalLM

    _, base, _, _, _ = setup
    m = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), IA3Config(target_modules=["q_proj"], feedforward_modules=[])
    )
    m.save_pretrained(tmp_path / "ia3")
    check_bad(
        ["merge", "--base", base, "--experts", tmp_path / "ia3", "--weights", "1"],
        tmp_path / "o",
        "IA3",
        "LoRA",
    )


def test_missing_or_truncated_files(setup, tmp_path):
    _, base, _, e1, _ = setup
    no_w = tmp_path / "now"
    shutil.copytree(e1, no_w)
    (no_w / "adapter_model.safetensors").unlink()
    check_bad(
        ["merge", "--base", base, "--experts", no_w, "--weights", "1"],
        tmp_path / "o",
        "adapter_model.safetensors",
        "missing",
    )
    trunc = tmp_path / "trunc"
    shutil.copytree(e1, trunc)
    data = (trunc / "adapter_model.safetensors").read_bytes()
    (trunc / "adapter_model.safetensors").write_bytes(data[: len(data) - 100])
    check_bad(["merge", "--base", base, "--experts", trunc, "--weights", "1"], tmp_path / "o", "truncated")
    tbase = tmp_path / "tbase"
    shutil.copytree(base, tbase)
    data = (tbase / "model.safetensors").read_bytes()
    (tbase / "model.safetensors").write_bytes(data[: len(data) // 2])
    check_bad(
        ["merge", "--base", tbase, "--experts", e1, "--weights", "1"],
        tmp_path / "o",
        "model.safetensors",
        "truncated",
    )


def test_pickle_needs_opt_in(setup, tmp_path):
    from safetensors.torch import load_file

    _, base, _, e1, _ = setup
    pk = tmp_path / "pk"
    pk.mkdir()
    shutil.copy(e1 / "adapter_config.json", pk)
    torch.save(load_file(str(e1 / "adapter_model.safetensors")), pk / "adapter_model.bin")
    check_bad(
        ["merge", "--base", base, "--experts", pk, "--weights", "1"],
        tmp_path / "o",
        "adapter_model.bin",
        "--allow-pickle",
    )
    res = run_cli("merge", "--base", base, "--experts", pk, "--weights", "1", "--allow-pickle",
                  "--out", tmp_path / "ok_pk")
    assert res.code == 0, res.err
    assert run_cli("merge", "--base", base, "--experts", e1, "--weights", "1", "--out", tmp_path / "ok_st").code == 0
    assert (tmp_path / "ok_pk" / "model.safetensors").read_bytes() == (
        tmp_path / "ok_st" / "model.safetensors"
    ).read_bytes()


def test_output_options(setup, tmp_path):
    _, base, _, e1, e2 = setup
    common = ["merge", "--base", base, "--experts", f"{e1},{e2}", "--weights", "1,1"]
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_one_line_error(run_cli(*common, "--out", out), "--force")
    assert (out / "keep.txt").read_text() == "precious"
    assert_one_line_error(run_cli(*common, "--out", out, "--force"), "not a soups output")  # --force: soups' only
    assert (out / "keep.txt").read_text() == "precious"
    soup = tmp_path / "soup"
    assert run_cli(*common, "--out", soup).code == 0
    assert run_cli(*common[:-1], "1,2", "--out", soup, "--force").code == 0  # a soup is replaced
    assert json.loads((soup / "soup.json").read_text())["experts"][1]["weight_raw"] == 2
    check_bad([*common, "--method", "magic"], tmp_path / "o", "magic", "exact, linear, svd")
    check_bad([*common, "--format", "gguf"], tmp_path / "o", "--format", "gguf", "'full' or 'adapter'")
    check_bad([*common, "--method", "linear"], tmp_path / "o", "linear", "--method exact")
    check_bad([*common, "--method", "svd"], tmp_path / "o", "--rank")
    check_bad([*common, "--dtype", "int8"], tmp_path / "o", "int8")


def test_cli_prints_vllm_rank_and_recipe_overrides(setup, tmp_path):
    _, base, _, e1, e2 = setup
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {base}\nmethod: exact\nformat: full\nexperts:\n  {e1}: 1\n  {e2}: 3\n")
    assert run_cli("merge", "--recipe", recipe, "--format", "adapter", "--out", tmp_path / "ad").code == 0
    rec = json.loads((tmp_path / "ad" / "soup.json").read_text())
    assert rec["format"] == "adapter" and [e["weight"] for e in rec["experts"]] == [0.25, 0.75]
    printed = run_cli("merge", "--recipe", recipe, "--weights", "1,1", "--format", "adapter",
                      "--out", tmp_path / "ad2").out
    assert "--max-lora-rank 8" in printed  # rank 4 + 2 = 6 -> vLLM's next accepted value
    rec = json.loads((tmp_path / "ad2" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == [0.5, 0.5]  # the flag overrode the recipe's weights


def test_recipe_errors_are_gathered(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: exact\nformat: gguf\nrank: 0\nbogus: 1\n")
    assert_one_line_error(run_cli("merge", "--recipe", bad, "--out", tmp_path / "o"), "format", "rank", "bogus",
                          "experts")
    bad.write_text("experts: [unclosed\n")
    assert_one_line_error(run_cli("merge", "--recipe", bad, "--out", tmp_path / "o"), "bad.yaml line", "invalid YAML")


def test_sigkill_leaves_no_output(tmp_path, default_base):
    """A merge killed midway (SIGKILL) leaves no --out; the next run cleans up and succeeds."""
    base = make_tiny_llama(tmp_path / "big", hidden=512, layers=8, tokenizer_from=None, vocab_size=32000)
    e = make_lora_expert(base, tmp_path / "e", r=8, targets=("q_proj", "v_proj", "up_proj", "down_proj"))
    out = tmp_path / "soup"
    cmd = [
        sys.executable,
        "-m",
        "soups",
        "merge",
        "--base",
        str(base),
        "--experts",
        str(e),
        "--weights",
        "1",
        "--out",
        str(out),
        "--shard-size",
        "20MB",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(5):  # kill while the temporary directory is being filled
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            tmps = list(tmp_path.glob(".soup.tmp-*"))
            if tmps and any(p.suffix == ".safetensors" for p in tmps[0].iterdir()):
                break
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
    assert proc.returncode == -signal.SIGKILL, "merge finished before it could be killed"
    assert not out.exists()
    assert list(tmp_path.glob(".soup.tmp-*")), "expected the killed run's hidden temporary directory"
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert (out / "model.safetensors.index.json").is_file()
    assert not list(tmp_path.glob(".soup.tmp-*"))
