"""Supervised warm start of an expert: distil the base's own best prompted answers into its LoRA.

Why: a 135M-parameter base sampled at temperature 1 rarely writes a strongly concise (or friendly,
or expert-level) answer by chance, so PPO from the base spends most of its budget finding the
behaviour. The base *prompted* with the dimension's preference statement does write it. So:

  1. candidates  for `prompts` training prompts, sample `samples` answers from the base with the
                 statement appended to the user message (the paper's prompting), `max_new_tokens` each;
  2. select      score each answer with the dimension's reward; per prompt keep the best *finished*
                 answer (one that ended with EOS), then keep the `keep` share of prompts whose best
                 answer scores highest (RLCD / best-of-n style data, all from the base itself);
  3. distil      train the LoRA to give that answer to the prompt *without* the statement
                 (cross-entropy on the answer tokens only, `epochs` passes).

PPO then starts from this policy with it as the KL reference (trl_backend.train_ppo).
Everything is cached in the run directory (candidates.jsonl grows batch by batch, the adapter is
saved after each epoch), so `--resume` continues where a killed run stopped.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from soups.chat import render
from soups.hardware import autocast
from soups.io.atomic import atomic_write_text
from soups.prompts import with_statements
from soups.train.config import WarmStart

log = logging.getLogger(__name__)


def _read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file this module wrote ([] when absent); a torn last line (a killed write) is dropped."""
    from soups.io.jsonl import read_jsonl

    return [row for _, row in read_jsonl(path, tolerate_torn_tail=True)] if path.is_file() else []


def load_rows(path: Path) -> list[dict]:
    """The candidate rows written so far, with a torn last line (a killed write) cut off the file before
    anything is appended to it."""
    rows = _read_jsonl(path)
    if path.is_file() and len(path.read_text().splitlines()) != len(rows):
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows), force=True)
    return rows


@torch.no_grad()
def candidates(model, tokenizer, prompts: list[str], statement: str, ws: WarmStart, seed: int, path: Path,
               use_bf16: bool, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Sample `ws.samples` prompted answers per prompt; rows {prompt, answers, finished}, cached in `path`."""
    rows = load_rows(path)
    done = {r["prompt"] for r in rows}
    todo = [p for p in prompts if p not in done]
    tokenizer.padding_side = "left"
    model.eval()
    eos = tokenizer.eos_token_id
    for i in range(0, len(todo), ws.gen_batch):
        batch = todo[i:i + ws.gen_batch]
        torch.manual_seed(seed + len(rows))
        texts = [render(tokenizer, with_statements(p, [statement])) for p in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with autocast(use_bf16):
            out = model.generate(**enc, max_new_tokens=ws.max_new_tokens, do_sample=True, top_k=0, top_p=1.0,
                                 temperature=ws.temperature, num_return_sequences=ws.samples,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        gen = out[:, enc["input_ids"].shape[1]:]
        finished = (gen == eos).any(dim=1).tolist()
        answers = tokenizer.batch_decode(gen, skip_special_tokens=True)
        new = []
        for j, p in enumerate(batch):
            sl = slice(j * ws.samples, (j + 1) * ws.samples)
            new.append({"prompt": p, "answers": [a.strip() for a in answers[sl]], "finished": finished[sl]})
        with path.open("a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in new))
        rows += new
        if progress:
            progress(len(rows), len(prompts))
    keep = set(prompts)
    return [r for r in rows if r["prompt"] in keep]


def base_answers(base_dir: Path, prompts: list[str], statement: str, settings: Any, seed: int, path: Path, *,
                 title: str, flag: str = "--engine", show: bool = True, model: Any = None, tokenizer: Any = None,
                 use_bf16: bool = False) -> tuple[list[dict], str]:
    """The base's sampled answers to `prompts` with `statement` appended (rows {prompt, answers, finished}, cached
    in `path`) and the engine that wrote them: vLLM in a child process where `settings.engine` resolves to it,
    else `candidates` with `model` (the base, loaded from `base_dir` when not given), under a progress bar."""
    from soups.eval.generate import resolve_engine
    from soups.train.progress import StageBar

    engine = resolve_engine(settings.engine, flag=flag)
    with StageBar(f"{title} ({engine})", total=len(prompts), show=show) as bar:
        if engine == "vllm":
            from soups.train.warmstart_vllm import candidates_vllm

            return candidates_vllm(base_dir, prompts, statement, settings, seed, path, progress=bar.update), engine
        if model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(base_dir)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        return candidates(model, tokenizer, prompts, statement, settings, seed, path, use_bf16,
                          progress=bar.update), engine


def select(rows: list[dict], reward_fn: Callable[..., list[float]], keep: float,
           finished_only: bool = True) -> list[dict]:
    """Best answer per prompt by the reward (given the plain prompt; finished answers first, and only
    those with `finished_only`), then the top `keep` share of prompts by that answer's reward."""
    picked = []
    for r in rows:
        scores = reward_fn(r["answers"], prompts=[r["prompt"]] * len(r["answers"]))
        ranked = sorted(zip(r["finished"], scores, r["answers"]), key=lambda t: (t[0], t[1]), reverse=True)
        fin, score, ans = ranked[0]
        if ans and (fin or not finished_only):
            picked.append({"prompt": r["prompt"], "answer": ans, "reward": float(score),
                           "mean_reward": float(sum(scores) / len(scores)), "finished": bool(fin)})
    picked.sort(key=lambda d: d["reward"], reverse=True)
    return picked[: max(1, math.ceil(keep * len(picked)))] if picked else []


def _examples(tokenizer, data: list[dict]) -> list[tuple[list[int], int]]:
    """(token ids of chat prompt + answer + EOS, length of the prompt part) per example. An answer cut at
    max_new_tokens (`finished: false`, kept by `finished_only: false`) gets no EOS: the policy must not learn to
    stop mid-sentence."""
    out = []
    for d in data:
        p = tokenizer(render(tokenizer, d["prompt"]), add_special_tokens=False)["input_ids"]
        eos = [tokenizer.eos_token_id] if d["finished"] else []
        a = tokenizer(d["answer"], add_special_tokens=False)["input_ids"] + eos
        out.append((p + a, len(p)))
    return out


def distil(policy, tokenizer, data: list[dict], ws: WarmStart, seed: int, save_dir: Path, use_bf16: bool,
           progress: Callable[[int, int, float], None] | None = None) -> list[dict]:
    """Train the policy's LoRA on (plain prompt -> picked answer); saves the adapter after each epoch.

    Resumes from `save_dir` (epoch.json) when a previous run got part of the way. Returns per-epoch stats."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state_path = save_dir / "epoch.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"epoch": 0, "history": []}
    if state["epoch"]:
        set_peft_model_state_dict(policy, load_file(str(save_dir / "adapter_model.safetensors")))
    if state["epoch"] >= ws.epochs:
        return state["history"]
    examples = _examples(tokenizer, data)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ws.learning_rate, weight_decay=0.0)
    if (save_dir / "optimizer.pt").is_file() and state["epoch"]:
        opt.load_state_dict(torch.load(save_dir / "optimizer.pt", weights_only=True))
    pad = tokenizer.pad_token_id
    steps_per_epoch = math.ceil(len(examples) / ws.batch_size)
    policy.train()
    for epoch in range(state["epoch"], ws.epochs):
        order = list(range(len(examples)))
        random.Random(seed + epoch).shuffle(order)
        total, count = 0.0, 0
        for k in range(steps_per_epoch):
            batch = [examples[i] for i in order[k * ws.batch_size:(k + 1) * ws.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, (seq, n_prompt) in enumerate(batch):
                ids[b, :len(seq)] = torch.tensor(seq)
                labels[b, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
                mask[b, :len(seq)] = 1
            with autocast(use_bf16):
                logits = policy(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            total, count = total + loss.item(), count + 1
            if progress:
                progress(epoch * steps_per_epoch + k + 1, ws.epochs * steps_per_epoch, loss.item())
        state["history"].append({"epoch": epoch + 1, "loss": round(total / max(count, 1), 4)})
        state["epoch"] = epoch + 1
        _save(policy, opt, save_dir, state)
    policy.eval()
    return state["history"]


def _save(policy, opt, save_dir: Path, state: dict[str, Any]) -> None:
    """Adapter + optimizer first, then epoch.json (atomically): a kill in between redoes the epoch only."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    save_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(policy).items()}
    save_file(sd, str(save_dir / "adapter_model.safetensors.tmp"))
    (save_dir / "adapter_model.safetensors.tmp").replace(save_dir / "adapter_model.safetensors")
    torch.save(opt.state_dict(), save_dir / "optimizer.pt.tmp")
    (save_dir / "optimizer.pt.tmp").replace(save_dir / "optimizer.pt")
    atomic_write_text(save_dir / "epoch.json", json.dumps(state), force=True)
