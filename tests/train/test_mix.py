"""`statement_mix` (soups/train/mix.py): PPO prompts carrying a whole combination's statements, scored plain.

Checked against the shipped dimension files' statements written out here, and end to end on the tiny model:
the reward only ever sees plain prompts, while the base's baseline answers and PPO's rollouts come from the
mixed ones (the logged reward is the raw reward minus the *mixed* prompt's baseline, computed here).
"""

from __future__ import annotations

import pytest

from tests.train.test_warmstart import FAST, PROMPTS, RB, letter_share, recording_letter_share

# the paper's statements (experts/*.yaml), by axis in the paper's order P1, P2, P3
P1 = {"Generate a response that can be easily understood by an elementary school student.",
      "Generate a response that only a PhD Student in that specific field could understand."}
CONCISE = "Generate a response that is concise and to the point without being verbose."
P3 = {"Generate a response that is friendly, witty, funny, and humorous, like a close friend.",
      "Generate a response in an unfriendly manner."}


def test_a_share_of_prompts_carries_one_statement_per_axis_with_the_dimensions_own():
    from soups.dimensions import list_dimensions, load_dimension
    from soups.train.mix import mix_statements

    prompts, concise, dims = PROMPTS[:20], load_dimension("concise"), list_dimensions()
    mix = mix_statements(prompts, concise, dims, 0.5, seed=0)
    assert sorted(mix.values()) == sorted(prompts)
    carried = {m: p for m, p in mix.items() if m != p}
    assert len(carried) == 10
    seen_p1, seen_p3 = set(), set()
    for m, p in carried.items():
        assert m.startswith(p + " ")
        rest = m[len(p) + 1:]
        first = next(s for s in P1 if rest.startswith(s))
        third = next(s for s in P3 if rest.endswith(s))
        assert rest == f"{first} {CONCISE} {third}"
        seen_p1.add(first)
        seen_p3.add(third)
    assert seen_p1 == P1 and seen_p3 == P3  # both ends of each other axis occur
    assert mix_statements(prompts, concise, dims, 0.5, seed=0) == mix
    assert mix_statements(prompts, concise, dims, 0.5, seed=1) != mix
    assert mix_statements(prompts, concise, dims, 0.0, seed=0) == {p: p for p in prompts}
    every = mix_statements(prompts, concise, dims, 1.0, seed=0)
    assert all(m != p for m, p in every.items())


def test_statement_mix_needs_a_statement_and_another_axis():
    from soups.dimensions import list_dimensions, load_dimension
    from soups.errors import ConfigError
    from soups.train.mix import mix_statements

    concise = load_dimension("concise")
    with pytest.raises(ConfigError, match="no opposing pair besides concise's"):
        mix_statements(PROMPTS, concise, [d for d in list_dimensions() if d.name in {"concise", "informative"}],
                       0.5, 0)
    with pytest.raises(ConfigError, match="has no preference statement"):
        mix_statements(PROMPTS, concise.model_copy(update={"statement": ""}), list_dimensions(), 0.5, 0)


def test_ppo_trains_on_mixed_prompts_and_scores_the_plain_ones(confident_base, tmp_path):
    from soups.io.jsonl import read_jsonl
    from soups.train.expert import train_expert

    calls, recorded = recording_letter_share()
    run = tmp_path / "run"
    info = train_expert("concise", out=tmp_path / "out", base=confident_base, prompts=PROMPTS[:48],
                        heldout=PROMPTS[48:], reward=recorded, run_dir=run, preset="cpu", progress=False,
                        overrides={**FAST, "steps": 2, "missing_eos_penalty": 0, "warm_start": False,
                                   "reward_baseline": RB, "statement_mix": 0.5})
    assert all(set(p) <= set(PROMPTS) for _, p in calls)  # the reward never sees a statement
    rows = [row for _, row in read_jsonl(run / "reward_baseline" / "answers.jsonl")]
    mixed = [r["prompt"] for r in rows if r["prompt"] not in PROMPTS]
    assert len(rows) == 10 and len(mixed) == 5 and all(CONCISE in m for m in mixed)
    mixed_of = {next(p for p in PROMPTS[:48] if r["prompt"].startswith(p)): r["prompt"] for r in rows}
    base = {r["prompt"]: sum(letter_share(r["answers"])) / 3 for r in rows}
    stage = next(s for s in info["stages"] if s["stage"] == "statement_mix")
    assert stage["share"] == 0.5 and stage["prompts"] == 10 and stage["with_statements"] == 5
    assert stage["example"] in mixed

    rollouts = [(c, p) for c, p in calls if len(c) == 4]  # PPO batches of 4 (held-out sets: 8, base answers: 3)
    logged = [row for _, row in read_jsonl(run / "metrics.jsonl")]
    assert len(rollouts) == 2 and any(mixed_of[p] != p for _, ps in rollouts for p in ps)
    for (comps, prompts), row in zip(rollouts, logged):
        raw = letter_share(comps)
        want = sum(r - base[mixed_of[p]] for r, p in zip(raw, prompts)) / 4
        assert row["reward"] == pytest.approx(want, abs=1e-5)
