"""Merge benchmark: `soups merge` against the physical limit's parts and the PEFT path, in one run.

Why: the merge should cost little more than reading the base, computing the deltas and writing
the result, and far less than PEFT's load-everything path. Every figure is a whole process
(start-up included), timed from outside; runs alternate and medians are quoted, so the ratios
hold on a noisy machine. Peak memory is the high-water mark of RssAnon (anonymous memory, not
mapped file pages), sampled from /proc while the process runs.

Launch: `make bench` (or `.venv/bin/python bench/merge.py [--repeats 3] [--layers 32] [--no-double]`).
Builds a random Llama base (hidden 1024, 32 layers, about 0.9 GB in bf16) and 3 experts (r=16 on
all seven projections) under .bench/, then prints a table and the ratios against the targets.
The helpers here (base and expert builders, the timer, the commands) are shared with bench/scale.py.
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
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".bench"
PY = sys.executable
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def make_base(
    path: Path,
    layers: int,
    hidden: int = 1024,
    inter: int = 2816,
    vocab: int = 32000,
    *,
    heads: int = 16,
    tie: bool = True,
    shard_size: str = "5GB",
) -> Path:
    """A random Llama base (bf16), streamed to safetensors one tensor at a time by soups' own shard writer.

    Memory stays at a few tensors whatever the size; a base over `shard_size` is sharded with an index,
    as on the Hub. Each tensor's values come from its own seed (its name), so they do not depend on order.
    """
    import torch

    from soups.io.checkpoint import OutTensor, parse_size, write_shards

    if (path / "config.json").is_file():
        return path
    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def rnd(name: str, shape: tuple[int, ...]):
        def produce():
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            return torch.empty(shape, dtype=torch.bfloat16).normal_(0, 0.02, generator=g).view(torch.uint16).numpy()

        return OutTensor(name, "BF16", shape, produce=produce)

    def ones(name: str):
        return OutTensor(
            name,
            "BF16",
            (hidden,),
            produce=lambda: torch.ones(hidden, dtype=torch.bfloat16).view(torch.uint16).numpy(),
        )

    plan = [rnd("model.embed_tokens.weight", (vocab, hidden)), ones("model.norm.weight")]
    if not tie:
        plan.append(rnd("lm_head.weight", (vocab, hidden)))
    for i in range(layers):
        p = f"model.layers.{i}."
        plan += [rnd(p + f"self_attn.{n}.weight", (hidden, hidden)) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        plan += [rnd(p + "mlp.gate_proj.weight", (inter, hidden)), rnd(p + "mlp.up_proj.weight", (inter, hidden))]
        plan += [rnd(p + "mlp.down_proj.weight", (hidden, inter))]
        plan += [ones(p + "input_layernorm.weight"), ones(p + "post_attention_layernorm.weight")]
    write_shards(tmp, plan, shard_size=parse_size(shard_size))
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "vocab_size": vocab,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tie,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
    os.sync()
    os.rename(tmp, path)
    return path


def base_files(base: Path) -> list[Path]:
    """The base's weight files (one, or the shards)."""
    return sorted(base.glob("*.safetensors"))


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


class OverLimit(Exception):
    """A benchmarked process passed its memory limit and was stopped: how long it ran, its peak RssAnon."""

    def __init__(self, wall: float, peak: int, limit: int) -> None:
        super().__init__(f"stopped after {wall:.1f} s at {peak / 2**30:.1f} GiB RssAnon (limit {limit / 2**30:.1f})")
        self.wall, self.peak, self.limit = wall, peak, limit


def timed(cmd: list[str], env: dict | None = None, mem_limit: int | None = None) -> tuple[float, int]:
    """Wall seconds of a whole process and its RssAnon high-water mark in bytes (sampled every ~2 ms).

    With `mem_limit` (bytes), a process whose RssAnon passes it is killed and OverLimit is raised.
    """
    peak = 0
    over = threading.Event()
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
            if mem_limit is not None and peak > mem_limit and not over.is_set():
                over.set()
                proc.kill()
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if over.is_set():
        raise OverLimit(wall, peak, mem_limit)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return wall, peak


def script(body: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(body)]


STARTUP = script("import torch, safetensors.torch")  # what a full merge imports before its first byte


def soups_merge(base: Path, experts: list[Path], out: Path, *extra: str) -> list[str]:
    """The `soups merge` command line for the benchmark's soup (equal weights over the experts)."""
    ex = ",".join(map(str, experts))
    weights = ",".join("1" * len(experts))
    return [
        PY,
        "-m",
        "soups",
        "merge",
        "--base",
        str(base),
        "--experts",
        ex,
        "--weights",
        weights,
        "--out",
        str(out),
        "--force",
        *extra,
    ]


def copy_and_sync(base: Path, dest: Path) -> list[str]:
    """Copy the base's weight files into `dest` and fsync them: the I/O part of the physical limit."""
    files = " ".join(str(f) for f in base_files(base))
    copies = " ".join(str(dest / f.name) for f in base_files(base))
    return ["sh", "-c", f"mkdir -p {dest} && cp {files} {dest}/ && sync {copies}"]


def peft_commands(base: Path, experts: list[Path], full_out: Path, adapter_out: Path) -> dict[str, list[str]]:
    """PEFT's path to the same soup: load the base and experts, `cat` them, then merge+save or save the adapter."""
    names = [f"e{i}" for i in range(len(experts))]
    lines = [
        "import torch, shutil",
        "from transformers import AutoModelForCausalLM",
        "from peft import PeftModel",
        f"m = AutoModelForCausalLM.from_pretrained({str(base)!r}, dtype=torch.bfloat16)",
        f"p = PeftModel.from_pretrained(m, {str(experts[0])!r}, adapter_name='e0')",
        *(f"p.load_adapter({str(e)!r}, adapter_name={n!r})" for n, e in zip(names[1:], experts[1:])),
        f"p.add_weighted_adapter({names!r}, {[1 / len(experts)] * len(experts)!r}, 'soup', combination_type='cat')",
    ]
    full = [
        "p.set_adapter('soup')",
        f"shutil.rmtree({str(full_out)!r}, ignore_errors=True)",
        f"p.merge_and_unload(adapter_names=['soup']).save_pretrained({str(full_out)!r})",
    ]
    adapter = [
        f"shutil.rmtree({str(adapter_out)!r}, ignore_errors=True)",
        f"p.save_pretrained({str(adapter_out)!r}, selected_adapters=['soup'])",
    ]
    return {
        "PEFT full (load, cat, merge_and_unload, save)": [PY, "-c", "\n".join(lines + full)],
        "PEFT adapter (load, cat, save adapter)": [PY, "-c", "\n".join(lines + adapter)],
    }


def matmul_seconds(experts: list[Path], scale: float) -> float:
    """The delta matmuls alone (no I/O): the minimal compute, one (out x 3r) @ (3r x in) product per module with
    the factors stacked and scaled beforehand, into an output buffer reused per shape (no page faults counted);
    timed inside a fresh process, start-up and loading excluded."""
    cmd = script(f"""
        import json, time, torch
        from safetensors.torch import load_file
        sds = [load_file(p + "/adapter_model.safetensors") for p in {[str(e) for e in experts]!r}]
        pairs = [(torch.cat([sd[k.replace(".lora_A.", ".lora_B.")] for sd in sds], 1),
                  torch.cat([sd[k] * {scale!r} for sd in sds], 0)) for k in sds[0] if ".lora_A." in k]
        del sds
        outs = {{(b.shape[0], a.shape[1]): torch.empty(b.shape[0], a.shape[1]) for b, a in pairs}}
        t = time.perf_counter()
        for b, a in pairs:
            torch.mm(b, a, out=outs[(b.shape[0], a.shape[1])])
        print(json.dumps({{"s": time.perf_counter() - t}}))
        """)
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)["s"]


OUTPUTS = {
    "copy base + sync": "copy",
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
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    base_file = base / "model.safetensors"

    cmds = {
        "start-up (import torch, safetensors)": STARTUP,
        "copy base + sync": copy_and_sync(base, scratch / "copy"),
        "soups merge (full)": soups_merge(base, experts, scratch / "full"),
        "soups merge --format adapter": soups_merge(base, experts, scratch / "adapter", "--format", "adapter"),
        **peft_commands(base, experts, scratch / "peft_full", scratch / "peft_adapter"),
    }

    results: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
    mm: list[float] = []
    for rep in range(args.repeats + 1):  # the first round warms the page cache and is not counted
        for name, cmd in cmds.items():
            clean(scratch, name)
            r = timed(cmd)
            if rep:
                results[name].append(r)
        s = matmul_seconds(experts, 2.0 / 3)
        if rep:
            mm.append(s)
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

    print("\n" + accuracy(base, experts, scratch / "full", scratch / "adapter", (0, 7, 31)))
    if not args.no_double:
        big = make_base(WORK / f"base-{2 * args.layers}", 2 * args.layers)
        bex = [make_expert(WORK / f"expert{i}-{2 * args.layers}", big, seed=i) for i in range(3)]
        big_size = (big / "model.safetensors").stat().st_size
        _, peak_big = timed(soups_merge(big, bex, scratch / "full2"))
        print(
            f"\npeak RssAnon of soups merge (full): {mem['soups merge (full)'] / 1e6:.0f} MB at "
            f"{size / 1e9:.2f} GB, {peak_big / 1e6:.0f} MB at {big_size / 1e9:.2f} GB "
            f"(ratio {peak_big / mem['soups merge (full)']:.2f}; flat means ~1.0)"
        )
    shutil.rmtree(scratch, ignore_errors=True)


def accuracy(base: Path, experts: list[Path], full: Path | None, adapter: Path | None, layers) -> str:
    """Relative error against a float64 reference on a sample of modules (sharded or single-file outputs)."""
    import torch

    from soups.io.checkpoint import TensorReader, read_index

    indexes = {p: read_index(p) for p in (base, full, adapter) if p is not None}
    with TensorReader() as reader:

        def get(model_dir: Path, key: str):
            return torch.from_numpy(reader.f32(indexes[model_dir].tensors[key])).double()

        def lora(e: Path, mod: str, ab: str):
            return torch.from_numpy(reader.f32(read_index(e).tensors[f"base_model.model.{mod}.lora_{ab}.weight"]))

        worst_full, floor, worst_ad = 0.0, 0.0, 0.0
        for layer in layers:
            for proj, blk in (("q_proj", "self_attn"), ("down_proj", "mlp")):
                mod = f"model.layers.{layer}.{blk}.{proj}"
                if f"{mod}.weight" not in indexes[base].tensors:
                    continue
                W = get(base, f"{mod}.weight")
                delta = sum(lora(e, mod, "B").double() @ lora(e, mod, "A").double() for e in experts) * (2.0 / 3)
                ref = W + delta
                if full is not None:
                    out = get(full, f"{mod}.weight")
                    worst_full = max(worst_full, float((out - ref).norm() / ref.norm()))
                    floor = max(floor, float((ref.to(torch.bfloat16).double() - ref).norm() / ref.norm()))
                if adapter is not None:
                    d = lora(adapter, mod, "B").double() @ lora(adapter, mod, "A").double()
                    worst_ad = max(worst_ad, float((d - delta).norm() / delta.norm()))
    return (
        f"relative error vs float64 reference: full {worst_full:.2e} (bf16 rounding floor {floor:.2e}); "
        f"adapter delta {worst_ad:.2e} (target < 1e-6)"
    )


if __name__ == "__main__":
    main()
