"""Supervised warm start (soups/train/warmstart.py) and PPO on top of it, on a tiny model.

Checked against independent references: the selection against a best-of-n computed here; the
distillation by the base's own log-likelihood of the picked answers (it must rise); PPO's KL
reference by the frozen "reference" adapter being bit-equal to the warm-start adapter file;
resume by a torn candidates line being dropped and the rest reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from soups.train.warmstart import select

PROMPTS = [f"Tell me something about topic number {i}." for i in range(64)]
FAST = {"max_new_tokens": 8, "batch_size": 4, "eval_prompts": 8, "ppo_epochs": 2, "save_every": 1,
        "learning_rate": 1e-2, "kl_coef": 0.05, "autocast": "off"}


def letter_share(completions: list[str], prompts=None, **_) -> list[float]:
    """Toy reward: the share of letters among the characters."""
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]


def recording_letter_share():
    """(calls, reward): letter_share that also records each call's (completions, prompts) in `calls`."""
    calls: list[tuple[list[str], list[str]]] = []

    def recorded(completions, prompts=None, **_):
        calls.append((list(completions), list(prompts)))
        return letter_share(completions)

    return calls, recorded


WS = {"prompts": 12, "samples": 3, "keep": 0.5, "temperature": 1.0, "max_new_tokens": 6, "gen_batch": 5,
      "engine": "transformers", "epochs": 2, "learning_rate": 5e-3, "batch_size": 4, "finished_only": False}


def test_select_keeps_best_answer_per_prompt_then_top_share():
    rows = [
        {"prompt": "p1", "answers": ["aaaa", "a1!!", "zz"], "finished": [True, True, False]},
        {"prompt": "p2", "answers": ["1111", "ab12"], "finished": [True, True]},
        {"prompt": "p3", "answers": ["abcd", "...."], "finished": [False, True]},
    ]
    # reference: letter share per answer, computed here
    share = {a: sum(c.isalpha() for c in a) / len(a) for r in rows for a in r["answers"]}
    got = select(rows, letter_share, keep=1.0, finished_only=True)
    # p3's only finished answer is "...." (share 0); finished ones rank first even when a longer one scores more
    assert [(d["prompt"], d["answer"]) for d in got] == [("p1", "aaaa"), ("p2", "ab12"), ("p3", "....")]
    assert got[0]["reward"] == pytest.approx(share["aaaa"])
    assert got[0]["mean_reward"] == pytest.approx((share["aaaa"] + share["a1!!"] + share["zz"]) / 3)
    top = select(rows, letter_share, keep=0.5, finished_only=True)
    assert [d["prompt"] for d in top] == ["p1", "p2"]  # ceil(0.5 * 3) = 2 best prompts
    loose = select(rows, letter_share, keep=1.0, finished_only=False)
    assert {d["prompt"]: d["answer"] for d in loose}["p3"] == "...."  # finished still ranks before unfinished
    assert all(d["finished"] for d in loose)
    cut = select([{"prompt": "p4", "answers": ["abcd"], "finished": [False]}], letter_share, keep=1.0,
                 finished_only=False)
    assert cut[0]["finished"] is False


def test_distilled_answers_end_in_eos_only_when_they_finished(confident_base):
    from transformers import AutoTokenizer

    from soups.train.warmstart import _examples

    tok = AutoTokenizer.from_pretrained(confident_base)
    answer = "The sky looks blue because air scatters"
    a_ids = tok(answer, add_special_tokens=False)["input_ids"]
    done, cut = _examples(tok, [{"prompt": "Why?", "answer": answer, "finished": True},
                                {"prompt": "Why?", "answer": answer, "finished": False}])
    assert done[0][done[1]:] == a_ids + [tok.eos_token_id]
    assert cut[0][cut[1]:] == a_ids  # cut at max_new_tokens: the policy must not learn to stop there


def _loglik(base_dir: Path, adapter_dir: Path | None, data: list[dict]) -> float:
    """Mean log-likelihood per answer token of the chat-templated answers, EOS included where the answer finished
    (independent forward pass)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    total, n = 0.0, 0
    with torch.no_grad():
        for d in data:
            p = tok.apply_chat_template([{"role": "user", "content": d["prompt"]}], add_generation_prompt=True,
                                        tokenize=False)
            p_ids = tok(p, add_special_tokens=False)["input_ids"]
            a_ids = tok(d["answer"], add_special_tokens=False)["input_ids"]
            a_ids += [tok.eos_token_id] if d["finished"] else []  # a cut answer is distilled without EOS
            ids = torch.tensor([p_ids + a_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, len(p_ids) - 1:-1], -1)
            total += float(logp.gather(1, ids[0, len(p_ids):, None]).sum())
            n += len(a_ids)
    return total / n


def test_warm_start_then_ppo_end_to_end(confident_base, tmp_path):
    from safetensors.torch import load_file

    from soups.train.expert import train_expert
    from soups.train.warmstart import _read_jsonl

    run, out = tmp_path / "run", tmp_path / "out"
    kw = dict(base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:], reward=letter_share,
              statement="Answer with letters only.", run_dir=run, preset="cpu", progress=False)
    info = train_expert("toy", out=out, overrides={**FAST, "steps": 2, "warm_start": {**WS, "epochs": 3}}, **kw)

    # candidates: the first 12 shuffled training prompts, 3 answers each, the statement was appended when sampling
    rows = _read_jsonl(run / "warm_start" / "candidates.jsonl")
    assert len(rows) == 12 and all(len(r["answers"]) == 3 for r in rows)
    assert {r["prompt"] for r in rows} <= set(PROMPTS[:48])
    ws_stage, ppo_stage = info["stages"]
    assert ws_stage["stage"] == "warm_start" and ppo_stage["stage"] == "ppo" and ppo_stage["steps"] == 2
    assert ws_stage["kept"] == 6 and ws_stage["picked_reward_mean"] >= ws_stage["candidate_reward_mean"]
    assert [e["epoch"] for e in ws_stage["epochs"]] == [1, 2, 3]

    # distillation raised the likelihood of the picked answers (given the plain prompt) over the base's
    picked = select(rows, letter_share, keep=0.5, finished_only=False)
    adapter = run / "warm_start" / "adapter"
    (adapter / "adapter_config.json").write_text((out / "adapter_config.json").read_text())
    assert _loglik(confident_base, adapter, picked) > _loglik(confident_base, None, picked) + 0.5

    # the shipped adapter is one LoRA (the trained one), and it moved away from the warm start
    shipped = load_file(str(out / "adapter_model.safetensors"))
    warm = load_file(str(adapter / "adapter_model.safetensors"))
    assert set(shipped) == set(warm)
    assert any(not torch.equal(shipped[k], warm[k]) for k in warm)

    # the PPO checkpoint holds the frozen reference adapter, bit-equal to the warm start
    ckpt = sorted((run / "checkpoints").glob("step-*"))[-1]
    ref = load_file(str(ckpt / "reference" / "adapter_model.safetensors"))
    assert set(ref) == set(warm) and all(torch.equal(ref[k], warm[k]) for k in warm)


def test_warm_start_resume_drops_torn_line_and_reuses_candidates(confident_base, tmp_path):
    from soups.train.expert import train_expert

    run = tmp_path / "run"
    kw = dict(base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:], reward=letter_share,
              statement="Answer with letters only.", run_dir=run, preset="cpu", progress=False,
              overrides={**FAST, "steps": 1, "warm_start": {**WS, "epochs": 1}})
    train_expert("toy", out=tmp_path / "a", **kw)
    cands = run / "warm_start" / "candidates.jsonl"
    lines = cands.read_text().splitlines()
    kept = lines[:7]
    cands.write_text("\n".join(kept) + "\n" + lines[7][: len(lines[7]) // 2])  # a write killed mid-line
    for stale in ("heldout.json", "adapter"):
        p = run / "warm_start" / stale
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        else:
            p.unlink()
    train_expert("toy", out=tmp_path / "b", resume=True, force=True, **kw)
    again = cands.read_text().splitlines()
    assert again[:7] == kept  # reused, not resampled
    assert len(again) == 12 and all(json.loads(x) for x in again)


def test_warm_start_made_with_other_settings_starts_over(confident_base, tmp_path):
    from soups.train.expert import train_expert

    run = tmp_path / "run"
    kw = dict(base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:], reward=letter_share,
              statement="Answer with letters only.", run_dir=run, preset="cpu", progress=False, force=True)
    train_expert("toy", out=tmp_path / "a", overrides={**FAST, "steps": 1, "warm_start": {**WS, "epochs": 1}}, **kw)
    first = (run / "warm_start" / "candidates.jsonl").read_text()
    # another candidate budget: the cached answers (6 tokens at most) must not be reused
    train_expert("toy", out=tmp_path / "b", overrides={**FAST, "steps": 1,
                                                       "warm_start": {**WS, "epochs": 1, "samples": 2}}, **kw)
    rows = [json.loads(x) for x in (run / "warm_start" / "candidates.jsonl").read_text().splitlines()]
    assert all(len(r["answers"]) == 2 for r in rows) and len(rows) == 12
    assert first != (run / "warm_start" / "candidates.jsonl").read_text()


@pytest.fixture
def rendered(monkeypatch) -> list[str]:
    """Every user message the warm start renders into a chat prompt (candidates' and distillation's), in order."""
    from soups.train import warmstart

    seen: list[str] = []
    real = warmstart.render
    monkeypatch.setattr(warmstart, "render", lambda tok, msg, *a, **k: seen.append(msg) or real(tok, msg, *a, **k))
    return seen


@pytest.mark.parametrize("prompted", [True, False])
def test_candidates_carry_the_statement_unless_prompted_is_false(confident_base, tmp_path, rendered, prompted):
    """`warm_start.prompted: false` samples the base's own answers to the plain prompts (best-of-n)."""
    from soups.train.expert import train_expert

    statement = "Answer with letters only."
    train_expert("toy", out=tmp_path / "out", base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:],
                 reward=letter_share, statement=statement, run_dir=tmp_path / "run", preset="cpu", progress=False,
                 overrides={**FAST, "steps": 1, "warm_start": {**WS, "epochs": 1, "prompted": prompted}})
    sampled = [m for m in rendered if m.rstrip().endswith(statement)]
    plain = [m for m in rendered if m in PROMPTS]
    assert len(sampled) == (12 if prompted else 0)  # the candidates' prompts, one rendering per prompt
    # the 6 kept answers are distilled on the plain prompts; unprompted, the 12 candidates' prompts are plain too
    assert len(plain) == (6 if prompted else 18)


def test_warm_start_statement_replaces_the_dimensions_in_the_candidates_prompts(confident_base, tmp_path, rendered):
    """`warm_start.statement`: a more explicit instruction for the candidates (context distillation); the kept
    answers are still distilled on the plain prompts."""
    from soups.train.expert import train_expert

    teacher = "Answer with letters only, and nothing else at all."
    train_expert("concise", out=tmp_path / "out", base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:],
                 reward=letter_share, run_dir=tmp_path / "run", preset="cpu", progress=False,
                 overrides={**FAST, "steps": 1, "warm_start": {**WS, "epochs": 1, "statement": teacher}})
    assert len([m for m in rendered if m.rstrip().endswith(teacher)]) == 12
    assert not [m for m in rendered if "concise" in m.lower()]  # the dimension's own statement is not used
    assert len([m for m in rendered if m in PROMPTS]) == 6
    meta = json.loads((tmp_path / "out" / "expert.json").read_text())
    assert teacher in json.dumps(meta)


RB = {"prompts": 10, "samples": 3, "temperature": 1.0, "max_new_tokens": 6, "gen_batch": 4, "engine": "transformers"}


def test_reward_baseline_centres_each_rollout_on_its_prompts_base_mean(confident_base, tmp_path):
    """`reward_baseline`: PPO samples only the baseline's prompts and gets reward - that prompt's mean base reward."""
    from soups.io.jsonl import read_jsonl
    from soups.train.expert import train_expert

    calls, recorded = recording_letter_share()
    run = tmp_path / "run"
    info = train_expert("toy", out=tmp_path / "out", base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:],
                        reward=recorded, statement="Answer with letters only.", run_dir=run, preset="cpu",
                        progress=False, overrides={**FAST, "steps": 2, "missing_eos_penalty": 0,
                                                   "warm_start": False, "reward_baseline": RB})
    # reference: each prompt's mean letter share over the base answers on disk, computed here
    rows = [row for _, row in read_jsonl(run / "reward_baseline" / "answers.jsonl")]
    assert len(rows) == 10 and all(len(r["answers"]) == 3 for r in rows)
    base = {r["prompt"]: sum(letter_share(r["answers"])) / 3 for r in rows}
    stage = info["stages"][0]
    assert stage["stage"] == "reward_baseline" and stage["prompts"] == 10
    assert stage["mean"] == pytest.approx(sum(base.values()) / 10, abs=1e-4)

    rollouts = [(c, p) for c, p in calls if len(c) == 4]  # PPO batches of 4 (held-out sets: 8, base answers: 3)
    assert len(rollouts) == 2 and all(set(p) <= set(base) for _, p in rollouts)
    logged = [row for _, row in read_jsonl(run / "metrics.jsonl")]
    for (comps, prompts), row in zip(rollouts, logged):
        raw = letter_share(comps)
        assert row["reward_raw"] == pytest.approx(sum(raw) / 4, abs=1e-5)
        assert row["reward"] == pytest.approx(sum(r - base[p] for r, p in zip(raw, prompts)) / 4, abs=1e-5)


def test_reward_baseline_is_for_ppo_only(confident_base, tmp_path):
    from soups.errors import ConfigError
    from soups.train.expert import train_expert

    with pytest.raises(ConfigError, match="reward_baseline is implemented for ppo only"):
        train_expert("toy", out=tmp_path / "out", base=confident_base, prompts=PROMPTS[:48], heldout=PROMPTS[48:],
                     reward=letter_share, run_dir=tmp_path / "run", preset="cpu", progress=False,
                     overrides={**FAST, "algo": "grpo", "steps": 1, "warm_start": False, "reward_baseline": RB})
