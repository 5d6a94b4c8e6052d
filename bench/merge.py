"""Merge benchmark: `soups merge` against the physical limit's parts and the PEFT path, in one run.

Why: the merge should cost little more than reading the base, computing the deltas and writing
the result, and far less than PEFT's load-everything path. Every figure is a whole process
(start-up included), timed from outside; runs alternate and medians are quoted, so the ratios
hold on a noisy machine. Peak memory is the high-water mark of RssAnon (anonymous memory, not
mapped file pages), sampled from /proc while the process runs.

Launch: `make bench` (or `.venv/bin/python bench/merge.py [--repeats 3] [--layers 32] [--no-double]`).
Builds a random Llama base (hidden 1024, 32 layers, about 0.9 GB in bf16) and 3 experts (r=16 on
all seven projections) under .bench/, then prints a table and the ratios against the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".bench"
PY = sys.executable
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make_base(path: Path, layers: int, hidden: int = 1024, inter: int = 2816, vocab: int = 32000) -> Path:
    """A random Llama base written straight to safetensors (bf16, tied embeddings, 2 GB shards)."""
    import torch
    from safetensors.torch import save_file

    if (path / "config.json").is_file():
        return path
    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    tensors = {
        "model.embed_tokens.weight": rnd(vocab, hidden),
        "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[p + f"self_attn.{n}.weight"] = rnd(hidden, hidden)
        tensors[p + "mlp.gate_proj.weight"] = rnd(inter, hidden)
        tensors[p + "mlp.up_proj.weight"] = rnd(inter, hidden)
        tensors[p + "mlp.down_proj.weight"] = rnd(hidden, inter)
        tensors[p + "input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        tensors[p + "post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    os.rename(tmp, path)
    return path


def make_expert(path: Path, base: Path, seed: int, r: int = 16, alpha: int = 32) -> Path:
    """A PEFT-format LoRA expert (r on all seven projections), written directly."""
    import torch
    from safetensors.torch import save_file

    if (path / "adapter_config.json").is_file():
        return path
    cfg = json.loads((base / "config.json").read_text())
    h, m = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {
        "q_proj": (h, h),
        "k_proj": (h, h),
        "v_proj": (h, h),
        "o_proj": (h, h),
        "gate_proj": (m, h),
        "up_proj": (m, h),
        "down_proj": (h, m),
    }
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(cfg["num_hidden_layers"]):
        for n, (out, inp) in shapes.items():
            block = "self_attn" if n in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            mod = f"base_model.model.model.layers.{i}.{block}.{n}"
            sd[f"{mod}.lora_A.weight"] = torch.randn(r, inp, generator=g) * 0.02
            sd[f"{mod}.lora_B.weight"] = torch.randn(out, r, generator=g) * 0.02
    path.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    (path / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": r,
                "lora_alpha": alpha,
                "target_modules": list(PROJ),
                "lora_dropout": 0.0,
                "bias": "none",
                "base_model_name_or_path": str(base),
            }
        )
    )
    return path


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds of a whole process and its RssAnon high-water mark in bytes (sampled every ~2 ms)."""
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()

    def sample():
        nonlocal peak
        status = f"/proc/{proc.pid}/status"
        while not done.is_set():
            try:
                with open(status) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
                            break
            except OSError:
                break
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return wall, peak


OUTPUTS = {
    "copy base + sync": "copy.safetensors",
    "soups merge (full)": "full",
    "soups merge --format adapter": "adapter",
    "PEFT full (load, cat, merge_and_unload, save)": "peft_full",
    "PEFT adapter (load, cat, save adapter)": "peft_adapter",
}


def clean(scratch: Path, name: str) -> None:
    """Remove this command's previous output and flush all dirty pages, so every run starts alike (not timed)."""
    out = scratch / OUTPUTS.get(name, "-")
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.sync()


def script(body: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(body)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per command (after one warm-up)")
    ap.add_argument("--layers", type=int, default=32, help="layers of the base (32: about 0.9 GB in bf16)")
    ap.add_argument("--no-double", action="store_true", help="skip the memory check on a base twice as large")
    args = ap.parse_args()

    WORK.mkdir(exist_ok=True)
    print("preparing the base and experts under .bench/ ...", flush=True)
    base = make_base(WORK / f"base-{args.layers}", args.layers)
    experts = [make_expert(WORK / f"expert{i}-{args.layers}", base, seed=i) for i in range(3)]
    ex = ",".join(map(str, experts))
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    soups = [PY, "-m", "soups"]
    base_file = base / "model.safetensors"

    peft_setup = f"""
            import torch, shutil
            from transformers import AutoModelForCausalLM
            from peft import PeftModel
            m = AutoModelForCausalLM.from_pretrained({str(base)!r}, dtype=torch.bfloat16)
            p = PeftModel.from_pretrained(m, {str(experts[0])!r}, adapter_name="e0")
            p.load_adapter({str(experts[1])!r}, adapter_name="e1")
            p.load_adapter({str(experts[2])!r}, adapter_name="e2")
            p.add_weighted_adapter(["e0", "e1", "e2"], [1/3, 1/3, 1/3], "soup", combination_type="cat")
            """
    cmds = {
        "start-up (import torch, safetensors)": script("import torch, safetensors.torch"),
        "copy base + sync": [
            "sh",
            "-c",
            f"cp {base_file} {scratch}/copy.safetensors && sync {scratch}/copy.safetensors",
        ],
        "soups merge (full)": soups
        + [
            "merge",
            "--base",
            str(base),
            "--experts",
            ex,
            "--weights",
            "1,1,1",
            "--out",
            str(scratch / "full"),
            "--force",
        ],
        "soups merge --format adapter": soups
        + [
            "merge",
            "--base",
            str(base),
            "--experts",
            ex,
            "--weights",
            "1,1,1",
            "--format",
            "adapter",
            "--out",
            str(scratch / "adapter"),
            "--force",
        ],
        "PEFT full (load, cat, merge_and_unload, save)": script(
            peft_setup
            + f"""
            p.set_adapter("soup")
            out = {str(scratch / "peft_full")!r}; shutil.rmtree(out, ignore_errors=True)
            p.merge_and_unload(adapter_names=["soup"]).save_pretrained(out)
            """
        ),
        "PEFT adapter (load, cat, save adapter)": script(
            peft_setup
            + f"""
            out = {str(scratch / "peft_adapter")!r}; shutil.rmtree(out, ignore_errors=True)
            p.save_pretrained(out, selected_adapters=["soup"])
            """
        ),
    }
    # the delta matmuls alone (no I/O): the minimal compute, one (out x 3r) @ (3r x in) product per module with
    # the factors stacked and scaled beforehand; timed inside the process, start-up and loading excluded
    matmul = script(f"""
        import json, time, torch
        from safetensors.torch import load_file
        sds = [load_file(p + "/adapter_model.safetensors") for p in {[str(e) for e in experts]!r}]
        pairs = [(torch.cat([sd[k.replace(".lora_A.", ".lora_B.")] for sd in sds], 1),
                  torch.cat([sd[k] * (2.0 / 3) for sd in sds], 0)) for k in sds[0] if ".lora_A." in k]
        t = time.perf_counter()
        for b, a in pairs:
            d = b @ a
        print(json.dumps({{"s": time.perf_counter() - t}}))
        """)

    results: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
    mm: list[float] = []
    for rep in range(args.repeats + 1):  # the first round warms the page cache and is not counted
        for name, cmd in cmds.items():
            clean(scratch, name)
            r = timed(cmd)
            if rep:
                results[name].append(r)
        out = subprocess.run(matmul, capture_output=True, text=True, check=True).stdout
        if rep:
            mm.append(json.loads(out)["s"])
        print(f"  round {rep}/{args.repeats} done", flush=True)

    med = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    mem = {k: max(m for _, m in v) for k, v in results.items()}
    med["delta matmuls alone (float32, in-process)"] = statistics.median(mm)
    mem["delta matmuls alone (float32, in-process)"] = 0

    size = base_file.stat().st_size
    print(
        f"\nbase: {size / 1e9:.2f} GB bf16 ({args.layers} layers, hidden 1024); 3 experts r=16 on 7 projections; "
        f"median of {args.repeats} runs; machine: {os.cpu_count()} CPUs"
    )
    print(f"{'command':<48} {'wall s':>8} {'peak RssAnon MB':>16}")
    for k in med:
        print(f"{k:<48} {med[k]:>8.2f} {mem[k] / 1e6 if mem[k] else float('nan'):>16.0f}")

    limit = (
        med["start-up (import torch, safetensors)"]
        + med["copy base + sync"]
        + med["delta matmuls alone (float32, in-process)"]
    )
    full, ad = med["soups merge (full)"], med["soups merge --format adapter"]
    adapter_bytes = sum(f.stat().st_size for f in (scratch / "adapter").glob("*.safetensors"))
    write_ad = [
        timed(
            [
                "sh",
                "-c",
                f"{PY} -c 'import torch, safetensors' && head -c {adapter_bytes} /dev/zero > "
                f"{scratch}/w.bin && sync {scratch}/w.bin",
            ]
        )[0]
        for _ in range(args.repeats)
    ]
    ad_limit = statistics.median(write_ad)
    checks = [
        ("full / sum of the limit's parts", full / limit, 1.2),
        ("full / PEFT full path", full / med["PEFT full (load, cat, merge_and_unload, save)"], 0.4),
        ("adapter / (start-up + write its output + sync)", ad / ad_limit, 1.2),
        ("adapter / PEFT adapter path", ad / med["PEFT adapter (load, cat, save adapter)"], 0.3),
    ]
    print(
        f"\nsum of the limit's parts: {limit:.2f} s; adapter's limit (start-up + write {adapter_bytes / 1e6:.0f} MB + "
        f"sync): {ad_limit:.2f} s"
    )
    print(f"{'ratio':<50} {'value':>7} {'target':>7}")
    for name, value, target in checks:
        print(f"{name:<50} {value:>7.2f} {'<= ' + str(target):>7} {'ok' if value <= target else 'MISSED'}")

    accuracy(base, experts, scratch)
    if not args.no_double:
        big = make_base(WORK / f"base-{2 * args.layers}", 2 * args.layers)
        bex = [make_expert(WORK / f"expert{i}-{2 * args.layers}", big, seed=i) for i in range(3)]
        big_size = (big / "model.safetensors").stat().st_size
        _, peak_big = timed(
            soups
            + [
                "merge",
                "--base",
                str(big),
                "--experts",
                ",".join(map(str, bex)),
                "--weights",
                "1,1,1",
                "--out",
                str(scratch / "full2"),
                "--force",
            ]
        )
        print(
            f"\npeak RssAnon of soups merge (full): {mem['soups merge (full)'] / 1e6:.0f} MB at "
            f"{size / 1e9:.2f} GB, {peak_big / 1e6:.0f} MB at {big_size / 1e9:.2f} GB "
            f"(ratio {peak_big / mem['soups merge (full)']:.2f}; flat means ~1.0)"
        )
    shutil.rmtree(scratch, ignore_errors=True)


def accuracy(base: Path, experts: list[Path], scratch: Path) -> None:
    """Relative error against a float64 reference on a sample of modules."""
    import torch
    from safetensors import safe_open

    def get(path, key):
        with safe_open(str(path), "pt") as f:
            return f.get_tensor(key)

    worst_full, floor, worst_ad = 0.0, 0.0, 0.0
    for layer in (0, 7, 31):
        for proj, blk in (("q_proj", "self_attn"), ("down_proj", "mlp")):
            mod = f"model.layers.{layer}.{blk}.{proj}"
            try:
                W = get(base / "model.safetensors", f"{mod}.weight").double()
            except Exception:
                continue
            delta = sum(
                get(e / "adapter_model.safetensors", f"base_model.model.{mod}.lora_B.weight").double()
                @ get(e / "adapter_model.safetensors", f"base_model.model.{mod}.lora_A.weight").double()
                for e in experts
            ) * (2.0 / 3)
            ref = W + delta
            out = get(scratch / "full" / "model.safetensors", f"{mod}.weight").double()
            worst_full = max(worst_full, float((out - ref).norm() / ref.norm()))
            floor = max(floor, float((ref.to(torch.bfloat16).double() - ref).norm() / ref.norm()))
            ad = scratch / "adapter" / "adapter_model.safetensors"
            d = (
                get(ad, f"base_model.model.{mod}.lora_B.weight").double()
                @ get(ad, f"base_model.model.{mod}.lora_A.weight").double()
            )
            worst_ad = max(worst_ad, float((d - delta).norm() / delta.norm()))
    print(
        f"\nrelative error vs float64 reference: full {worst_full:.2e} (bf16 rounding floor {floor:.2e}); "
        f"adapter delta {worst_ad:.2e} (target < 1e-6)"
    )


if __name__ == "__main__":
    main()
