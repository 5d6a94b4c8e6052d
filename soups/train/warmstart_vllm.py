"""Warm-start candidates through vLLM: the same rows as `warmstart.candidates`, about 10x faster on CPU.

The candidates are the base's own answers (no adapter), so vLLM's offline engine can write them with
its continuous batching and CPU kernels (bench/generate.py: 355 tokens/s in bfloat16 on the embedded
base vs 17-35 for transformers). The engine runs in a child process (`python -m
soups.train.warmstart_vllm SPEC.json`) so that its memory, threads and process state are gone before
the distillation starts in the training process. The child appends one JSONL row per prompt to the
candidates file after each batch and prints `done N` lines, so a killed run resumes where it stopped,
exactly as the transformers path does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from soups.errors import ConfigError


def candidates_vllm(base_dir: Path, prompts: list[str], statement: str, ws, seed: int, path: Path,
                    progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Rows {prompt, answers, finished} for `prompts` (cached in `path`), sampled by vLLM in a child process."""
    from soups.train.warmstart import _read_jsonl, load_rows

    rows = load_rows(path)
    done = {r["prompt"] for r in rows}
    todo = [p for p in prompts if p not in done]
    if todo:
        from soups.eval.generate import generation_dtype

        # bf16 only where the CPU multiplies it natively: elsewhere vLLM emulates it, many times slower than float32
        spec = {"base": str(base_dir), "dtype": generation_dtype(None, Path(base_dir)), "prompts": todo,
                "statement": statement, "samples": ws.samples,
                "temperature": ws.temperature, "max_new_tokens": ws.max_new_tokens, "gen_batch": ws.gen_batch,
                "seed": seed + len(rows), "out": str(path)}
        spec_path = path.with_name("vllm_spec.json")
        spec_path.write_text(json.dumps(spec))
        from soups.vllm_server import cpu_thread_env

        env = os.environ | cpu_thread_env() | {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        log_path = path.with_name("vllm.log")
        with log_path.open("w") as log, subprocess.Popen(
                [sys.executable, "-m", "soups.train.warmstart_vllm", str(spec_path)], stdout=subprocess.PIPE,
                stderr=log, text=True, env=env) as child:
            for line in child.stdout:
                if line.startswith("done ") and progress:
                    progress(len(rows) + int(line.split()[1]), len(prompts))
        if child.returncode != 0:
            tail = log_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
            raise ConfigError(f"warm start: vLLM candidate sampling failed ({tail[0][:200]}); see {log_path}, "
                              "or --set warm_start.engine=transformers")
        rows = _read_jsonl(path)
    keep = set(prompts)
    return [r for r in rows if r["prompt"] in keep]


def _child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    from vllm import LLM, SamplingParams

    from soups.chat import render
    from soups.prompts import with_statements
    from soups.vllm_server import engine_kwargs

    llm = LLM(model=spec["base"], dtype=spec["dtype"], seed=spec["seed"], **engine_kwargs())
    tok = llm.get_tokenizer()
    # no per-request seed: vLLM's CPU runner fails on seeded requests whose prefill is split ("CPU Generator
    # does not use offset"); the engine's seed makes a run repeatable for the same batches
    params = SamplingParams(n=spec["samples"], temperature=spec["temperature"], top_p=1.0, top_k=-1,
                            max_tokens=spec["max_new_tokens"])
    prompts, n = spec["prompts"], 0
    for i in range(0, len(prompts), spec["gen_batch"]):
        batch = prompts[i:i + spec["gen_batch"]]
        texts = [render(tok, with_statements(p, [spec["statement"]])) for p in batch]
        outs = llm.generate(texts, params, use_tqdm=False)
        rows = [{"prompt": p, "answers": [c.text.strip() for c in o.outputs],
                 "finished": [c.finish_reason == "stop" for c in o.outputs]} for p, o in zip(batch, outs)]
        with open(spec["out"], "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        n += len(batch)
        print(f"done {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
