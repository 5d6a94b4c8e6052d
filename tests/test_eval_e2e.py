"""`soups eval` and `soups sweep` end to end on a tiny model: table, JSON/CSV, PNG, cache, judge protocol."""

from __future__ import annotations

import csv
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from soups.eval.generate import generate_chat
from tests.test_eval_generate import sharpen

N_PROMPTS, N_TOKENS = 4, 8


@pytest.fixture(scope="module")
def setup(tiny_base, tmp_path_factory):
    """A prompt-sensitive tiny base and three experts tagged with the shipped dimensions."""
    from tests.tiny import make_lora_expert

    root = tmp_path_factory.mktemp("eval")
    base = sharpen(tiny_base, root / "base")
    experts = {}
    for i, (dim, r) in enumerate([("concise", 4), ("friendly", 4), ("expert", 8)]):
        e = make_lora_expert(base, root / "experts" / dim, r=r, alpha=16 * r, seed=i + 1)
        (e / "expert.json").write_text(json.dumps({"dimension": dim}))
        experts[dim] = e
    prompts = root / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nWrite a haiku about rain.\nHow do I boil an egg?\nWhat is DNA?\n")
    return base, experts, prompts


def run_cli(args: list[str], capsys) -> str:
    from soups.cli import main

    with pytest.raises(SystemExit) as done:
        main(args)
    out = capsys.readouterr().out
    assert done.value.code in (0, None), out
    return out


def test_eval_end_to_end(setup, tmp_path, capsys, monkeypatch):
    from soups.dimensions import load_dimension

    base, experts, prompts = setup
    out = tmp_path / "eval"
    args = ["eval", "--experts", f"{experts['concise']},{experts['friendly']}", "--weights", "1,1",
            "--base", str(base), "--prompts", str(prompts), "--max-new-tokens", str(N_TOKENS),
            "--out", str(out)]
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))  # fresh response cache
    screen = run_cli(args, capsys)
    assert "Held-out scores" in screen and "win rate" in screen and "vs prompted" in screen
    res = json.loads((out / "results.json").read_text())
    systems = ["soup", "linear", "base", "prompted", "expert:concise", "expert:friendly"]
    assert list(res["scores"]) == systems and list(res["win_rates"]) == systems[1:]
    assert [d["name"] for d in res["dimensions"]] == ["concise", "friendly"]

    rows = [json.loads(x) for x in (out / "responses.jsonl").read_text().splitlines()]
    by = {s: [r for r in rows if r["system"] == s] for s in systems}
    assert all(len(v) == N_PROMPTS for v in by.values())
    texts = [p for p in prompts.read_text().splitlines()]
    # the systems are what they claim: reference generations through the plain API
    def ref(model, **kw):
        return generate_chat(model, texts, max_new_tokens=N_TOKENS, progress=False, **kw)
    assert [r["response"] for r in by["expert:concise"]] == ref(experts["concise"])
    assert [r["response"] for r in by["base"]] == ref(base)
    statement = " ".join(load_dimension(d).statement for d in ("concise", "friendly"))
    assert [r["response"] for r in by["prompted"]] == ref(base, system=statement)
    assert res["systems"][3]["system_prompt"] == statement

    # scores and win rates agree with a hand count over the per-prompt scores
    for b in systems[1:]:
        soup_w, base_w = [r["scores"]["concise"] for r in by["soup"]], [r["scores"]["concise"] for r in by[b]]
        wins = sum(s < o for s, o in zip(soup_w, base_w))  # concise wants fewer words
        ties = sum(s == o for s, o in zip(soup_w, base_w))
        wr = res["win_rates"][b]["concise"]
        assert (wr["wins"], wr["ties"]) == (wins, ties) and wr["mean"] == pytest.approx((wins + ties / 2) / N_PROMPTS)
        assert wr["lo"] <= wr["mean"] <= wr["hi"]
    with open(out / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(systems) * 2 and {r["system"] for r in table} == set(systems)
    soup_mean = sum(r["scores"]["friendly"] for r in by["soup"]) / N_PROMPTS
    assert float(next(r for r in table if r["system"] == "soup" and r["dimension"] == "friendly")["mean"]) == \
        pytest.approx(soup_mean)
    assert (out / "soups" / "soup" / "adapter_config.json").is_file()

    # a second run reuses the cached responses: generation must not be called
    from soups.eval import generate

    def boom(*a, **k):
        raise AssertionError("generated despite the cache")

    monkeypatch.setattr(generate.ChatGenerator, "generate", boom)
    run_cli(args + ["--force"], capsys)
    assert json.loads((out / "results.json").read_text())["scores"] == res["scores"]


def test_eval_bad_input(setup, tmp_path, capsys):
    from soups.cli import main

    base, experts, prompts = setup
    common = ["--base", str(base), "--prompts", str(prompts), "--out", str(tmp_path / "x")]
    for args, needle in [
        (["--experts", str(experts["concise"]), "--weights", "1,1"], "--weights"),
        (["--experts", str(experts["concise"]), "--weights", "1", "--baselines", "nope"], "--baselines"),
        (["--experts", str(experts["concise"]), "--weights", "0"], "zero"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["eval", *args, *common])
        assert e.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400


def test_sweep_two_experts(setup, tmp_path, capsys, monkeypatch):
    base, experts, prompts = setup
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    out = tmp_path / "sweep"
    screen = run_cli(["sweep", "--experts", f"{experts['concise']},{experts['friendly']}", "--grid", "3",
                      "--base", str(base), "--prompts", str(prompts), "--max-new-tokens", str(N_TOKENS),
                      "--out", str(out)], capsys)
    assert str(out / "sweep.png") in screen
    check_png(out / "sweep.png")
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], float(r["w_friendly"])) for r in rows] == [
        ("exact", 0.0), ("exact", 0.5), ("exact", 1.0), ("linear", 0.0), ("linear", 0.5), ("linear", 1.0)]
    assert any(r["pareto"] == "1" for r in rows)
    # the vertex w = (1, 0) is the concise expert alone: its mean word count matches a direct generation
    from soups.eval.scorers import word_count

    texts = prompts.read_text().splitlines()
    alone = generate_chat(experts["concise"], texts, max_new_tokens=N_TOKENS, progress=False)
    assert float(rows[0]["concise_mean"]) == pytest.approx(sum(map(word_count, alone)) / len(alone))
    assert rows[0]["concise_mean"] == rows[3]["concise_mean"]  # linear == exact at a vertex


def test_sweep_three_experts_skips_unequal_linear(setup, tmp_path, capsys, monkeypatch):
    base, experts, prompts = setup
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    from soups.eval.sweep import SweepConfig, grid_points, sweep

    assert len(grid_points(3, 3)) == 6 and all(abs(sum(p) - 1) < 1e-12 for p in grid_points(3, 4))
    res = sweep(SweepConfig(experts=[str(e) for e in experts.values()], out=tmp_path / "s3", grid=3, base=base,
                            prompts=prompts, limit=3, max_new_tokens=6, progress=False))
    assert "linear" in res["skipped"]  # ranks 4, 4, 8: the paper's averaging needs equal ranks
    assert {r["method"] for r in res["rows"]} == {"exact"} and len(res["rows"]) == 6
    check_png(Path(res["png"]))


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose judge prefers the shorter response ("A"/"B"/"TIE")."""

    position_biased = False

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][-1]["content"]
        a = user.split("[Response A]\n", 1)[1].split("\n\n[Response B]", 1)[0]
        b = user.split("[Response B]\n", 1)[1].split("\n\nWhich response", 1)[0]
        answer = "A" if self.position_biased else ("A" if len(a) < len(b) else "B" if len(b) < len(a) else "TIE")
        data = json.dumps({"choices": [{"message": {"content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("biased", [False, True])
def test_judge_protocol(tmp_path, monkeypatch, biased):
    from soups.eval.judge import judge_win_rate, make_client

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path))
    handler = type("J", (_Judge,), {"position_biased": biased})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = make_client(f"http://127.0.0.1:{server.server_port}/v1", "fake-judge")
        soup = ["short", "a much longer answer", "same", "tiny"]
        other = ["a longer answer here", "short", "same", "also rather long"]
        wr = judge_win_rate(client, "Be concise.", ["p1", "p2", "p3", "p4"], soup, other)
    finally:
        server.shutdown()
    if biased:  # always "A": the two orders disagree on every prompt, so every verdict is a tie
        assert (wr.wins, wr.ties, wr.losses) == (0, 4, 0) and wr.rate.mean == 0.5
    else:  # shorter wins: soup wins prompts 1 and 4, loses 2, ties 3
        assert (wr.wins, wr.ties, wr.losses) == (2, 1, 1) and wr.rate.mean == pytest.approx(0.625)


@pytest.mark.slow
def test_paper_runner(setup, tmp_path, monkeypatch):
    """`make eval`'s runner on the tiny model: 8 combinations x 3 dimensions, verdicts, sweep picture."""
    import shutil

    from soups.config import PROJECT_ROOT
    from soups.eval import paper
    from tests.tiny import make_lora_expert

    base, _, prompts = setup
    root = tmp_path / "experts"
    root.mkdir()
    for y in (PROJECT_ROOT / "experts").glob("*.yaml"):
        shutil.copy(y, root / y.name)
    for i, dim in enumerate(paper.EXPERTS):
        e = make_lora_expert(base, root / dim, alpha=64, seed=10 + i)
        (e / "expert.json").write_text(json.dumps({"dimension": dim}))
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(root))
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    md = paper.run(tmp_path / "out", limit=2, max_new_tokens=4, grid=2, base=str(base)).read_text()
    table = [line for line in md.splitlines() if line.startswith("| elementary") or line.startswith("| expert")]
    assert len(table) == 24 and sum(line.startswith("- ") for line in md.splitlines()) == 16
    check_png(tmp_path / "out" / "sweep.png")
    with open(tmp_path / "out" / "combos.csv") as f:
        assert len(list(csv.DictReader(f))) == 24


def test_eval_with_judge(setup, tmp_path, monkeypatch):
    """`soups eval --judge-url`: pairwise verdicts per dimension in both orders, in results.json and win_rates.csv."""
    from soups.eval.evaluate import EvalConfig, evaluate

    base, experts, prompts = setup
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rep = evaluate(EvalConfig(weights=[1.0, 1.0], experts=[str(experts["concise"]), str(experts["friendly"])],
                                  out=tmp_path / "ev", base=base, prompts=prompts, baselines=("base",),
                                  max_new_tokens=N_TOKENS, judge_url=f"http://127.0.0.1:{server.server_port}/v1",
                                  judge_model="fake", progress=False))
    finally:
        server.shutdown()
    rows = [json.loads(x) for x in (tmp_path / "ev" / "responses.jsonl").read_text().splitlines()]
    soup = [r["response"] for r in rows if r["system"] == "soup"]
    other = [r["response"] for r in rows if r["system"] == "base"]
    wins = sum(len(s) < len(o) for s, o in zip(soup, other))  # the fake judge prefers the shorter response
    losses = sum(len(s) > len(o) for s, o in zip(soup, other))
    for dim in ("concise", "friendly"):
        j = rep["judge"]["win_rates"]["base"][dim]
        assert (j["wins"], j["losses"], j["ties"]) == (wins, losses, N_PROMPTS - wins - losses)
    with open(tmp_path / "ev" / "win_rates.csv") as f:
        assert sum(r["judge"] == "judge" for r in csv.DictReader(f)) == 2
