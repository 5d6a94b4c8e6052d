"""Judge rewards against a real local HTTP server (127.0.0.1) that answers deterministically from
the request: pointwise scores, pairwise verdicts in both orders, the on-disk cache, retries with
backoff, timeouts, API keys, and one-line errors for unreachable or misconfigured endpoints."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from soups.dimensions import load_dimension
from soups.errors import RewardError
from soups.rewards import get_reward
from soups.rewards.judge import JudgeClient, cache_path, judge_pair, judge_pair_both, parse_pair, parse_score
from tests.helpers import FakeOpenAI, brevity_judge, brevity_score, dimension

STATEMENT = "Generate a response that is concise and to the point without being verbose."


@pytest.fixture
def judge(tmp_path, monkeypatch):
    """Start fake judges (tests.helpers.FakeOpenAI, brevity rule by default); all are stopped after the test."""
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    servers = []

    def start(answer=brevity_judge, **switches):
        servers.append(FakeOpenAI(answer, **switches))
        return servers[-1]

    yield start
    for srv in servers:
        srv.close()


def judge_reward(url: str, model: str = "fake-judge", **fields):
    return get_reward(dimension("concise", STATEMENT, kind="judge", url=url, model=model, **fields))


def reward(srv, **kw):
    return judge_reward(srv.url, **{"backoff": 0.01, **kw})


TEXTS = ["Blue light scatters most.", "The sky is blue because of Rayleigh scattering " * 3, "", "Air scatters blue."]


def test_pointwise_scores_match_the_judge_rule(judge):
    srv = judge()
    fn = reward(srv)
    assert fn.__name__ == "judge_concise"
    got = fn(TEXTS, prompts=["Why is the sky blue?"] * len(TEXTS))
    assert got == pytest.approx([(brevity_score(t) - 1) / 9 for t in TEXTS])
    assert all(0.0 <= v <= 1.0 for v in got)
    body = srv.bodies[0]
    assert body["model"] == "fake-judge" and body["temperature"] == 0.0 and body["max_tokens"] == 16
    user = body["messages"][-1]["content"]
    assert STATEMENT in user and "Why is the sky blue?" in user and "1 to 10" in user
    assert {r["path"] for r in srv.requests} == {"/v1/chat/completions"} and srv.requests[0]["auth"] is None


def test_cache_on_disk_keyed_by_request(judge):
    srv = judge()
    fn = reward(srv)
    first = fn(TEXTS, prompts=["Q"] * len(TEXTS))
    assert len(srv.requests) == len(TEXTS) and cache_path().is_file()
    assert reward(srv)(TEXTS, prompts=["Q"] * len(TEXTS)) == first  # new object, same disk cache
    assert len(srv.requests) == len(TEXTS)
    fn(TEXTS[:1], prompts=["Another question"])  # a different request is asked
    assert len(srv.requests) == len(TEXTS) + 1
    reward(srv, cache=False)(TEXTS[:1], prompts=["Q"])  # cache off: always asks
    assert len(srv.requests) == len(TEXTS) + 2
    with sqlite3.connect(cache_path()) as db:
        assert db.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == len(TEXTS) + 1


def test_pairwise_both_orders(judge):
    srv = judge()
    client = JudgeClient(reward(srv).config)
    short, long = "Blue light scatters.", "The sky is blue because sunlight is scattered by the air molecules."
    assert judge_pair(client, STATEMENT, "Q", short, long) == "A"
    assert judge_pair(client, STATEMENT, "Q", long, short) == "B"
    v = judge_pair_both(client, STATEMENT, "Q", short, long)
    assert (v.first, v.second, v.winner, v.score_a) == ("A", "A", "A", 1.0)
    v = judge_pair_both(client, STATEMENT, "Q", long, short)
    assert (v.winner, v.score_a) == ("B", 0.0)
    v = judge_pair_both(client, STATEMENT, "Q", short, "Air scatters it.")
    assert (v.winner, v.score_a) == ("TIE", 0.5)
    user = srv.bodies[0]["messages"][-1]["content"]
    assert "[Response A]\nBlue light scatters." in user and "A, B, TIE" in user


def test_pairwise_position_bias_is_cancelled(judge):
    srv = judge(lambda body: "A")  # a position-biased judge: always "A"
    v = judge_pair_both(JudgeClient(reward(srv).config), STATEMENT, "Q", "x y", "x y z w")
    assert (v.first, v.second, v.winner, v.score_a) == ("A", "B", "TIE", 0.5)


def test_retries_with_backoff_then_success(judge):
    srv = judge(fail_first=2)
    t0 = time.monotonic()
    assert reward(srv, retries=3, backoff=0.05)(["Short."]) == [pytest.approx((brevity_score("Short.") - 1) / 9)]
    assert len(srv.requests) == 3 and time.monotonic() - t0 >= 0.05 + 0.1  # slept 0.05 then 0.1


def test_gives_up_after_retries_one_line(judge):
    srv = judge(fail_first=100)
    with pytest.raises(RewardError) as e:
        reward(srv, retries=2)(["Short."])
    msg = str(e.value)
    assert f"judge {srv.url}/chat/completions unreachable after 3 attempt(s) (HTTP 503" in msg and "\n" not in msg
    assert len(srv.requests) == 3


def test_malformed_and_dropped_responses_are_retried(judge):
    srv = judge(garbage_first=1)
    assert reward(srv, retries=1)(["Short."]) == [pytest.approx((brevity_score("Short.") - 1) / 9)]
    srv = judge(garbage_first=5)
    with pytest.raises(RewardError, match=r"after 2 attempt\(s\) \(unexpected response \(KeyError"):
        reward(srv, retries=1)(["Short."])
    srv = judge(drop_first=1)
    assert reward(srv, retries=1)(["Short."]) == [pytest.approx((brevity_score("Short.") - 1) / 9)]
    assert len(srv.requests) == 2


def test_timeout(judge):
    srv = judge(delay=1.5)
    with pytest.raises(RewardError, match=r"unreachable after 2 attempt\(s\) \(timed out after 0.2s\)"):
        reward(srv, timeout=0.2, retries=1)(["Short."])


def test_unreachable_endpoint_one_line():
    with socket.socket() as s:  # a free port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(RewardError) as e:
        judge_reward(url, "m", retries=1, backoff=0.01)(["Short."])
    msg = str(e.value)
    assert msg.startswith(f"judge {url}/chat/completions unreachable after 2 attempt(s) (")
    assert "check --judge-url" in msg and "\n" not in msg


def test_api_key_from_named_env_var_and_not_cached(judge, monkeypatch):
    srv = judge(key="sekrit-123")
    with pytest.raises(RewardError, match=r"HTTP 401.*set \$MY_JUDGE_API_KEY to a valid API key"):
        reward(srv, api_key_env="MY_JUDGE_API_KEY")(["Short."])
    assert len(srv.requests) == 1  # 401 is not retried
    monkeypatch.setenv("MY_JUDGE_API_KEY", "sekrit-123")
    want = [pytest.approx((brevity_score("Short.") - 1) / 9)]
    assert reward(srv, api_key_env="MY_JUDGE_API_KEY")(["Short."]) == want
    assert srv.requests[-1]["auth"] == "Bearer sekrit-123"
    assert b"sekrit" not in cache_path().read_bytes()


def test_wrong_path_is_not_retried(judge):
    srv = judge()
    with pytest.raises(RewardError, match=r"HTTP 404.*check --judge-url and --judge-model 'fake-judge'"):
        judge_reward(srv.url.removesuffix("/v1") + "/api")(["x"])
    assert len(srv.requests) == 1


def test_full_endpoint_url_is_accepted(judge):
    srv = judge()
    fn = judge_reward(srv.url + "/chat/completions", "m")
    assert fn(["Short."]) == [pytest.approx((brevity_score("Short.") - 1) / 9)]


def test_unparseable_answer_is_neutral_and_not_cached(judge):
    srv = judge(lambda body: "I would rather not say.")
    fn = reward(srv)
    assert fn(["Short.", "Also short."]) == [0.5, 0.5]
    fn(["Short."])
    assert len(srv.requests) == 3


def test_parsers():
    answers = ["7", "Score: 7/10", "10", "I give it 8.", "none", "3.5"]
    assert [parse_score(t) for t in answers] == [7, 7, 10, 8, None, None]
    assert [parse_pair(t) for t in ["A", "B.", "TIE", "Response B is better.", "tie", "Neither"]] == [
        "A", "B", "TIE", "B", "TIE", None]


def test_judge_dimension_yaml_and_pickle(judge, tmp_path, monkeypatch):
    import pickle

    srv = judge()
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "terse.yaml").write_text(
        f"name: terse\ndescription: d\nstatement: Be terse.\nreward:\n  kind: judge\n  url: {srv.url}\n  model: m\n"
    )
    fn = pickle.loads(pickle.dumps(get_reward(load_dimension("terse"))))
    assert fn(["Short."]) == [pytest.approx((brevity_score("Short.") - 1) / 9)]
    assert "Preference: Be terse." in srv.bodies[-1]["messages"][-1]["content"]


def test_key_variable_must_look_like_a_key_and_travel_safely(judge, monkeypatch):
    """Issue 13: a shared dimension file could name any variable (AWS_SECRET_ACCESS_KEY) and a plain-http URL."""
    from pydantic import ValidationError

    for name in ("AWS_SECRET_ACCESS_KEY", "HOME", "PATH", "my_api_key", "GITHUB_TOKEN", "AWS_SESSION_TOKEN"):
        with pytest.raises(ValidationError, match="API key variable|another service's credentials"):
            judge_reward("https://judge.example/v1", api_key_env=name)
    for url in ("file:///etc/passwd", "ftp://judge.example/v1", "judge.example/v1"):
        with pytest.raises(ValidationError, match="not an http"):
            judge_reward(url)
    monkeypatch.setenv("SOUPS_TEST_API_KEY", "k")
    with pytest.raises(RewardError, match=r"\$SOUPS_TEST_API_KEY is set but the URL is plain http to judge\.example"):
        judge_reward("http://judge.example/v1", api_key_env="SOUPS_TEST_API_KEY")
    judge_reward("https://judge.example/v1", api_key_env="SOUPS_TEST_API_KEY")  # https: the key may go
    srv = judge(key="k")  # loopback over http: the key may go too, and does
    want = [pytest.approx((brevity_score("Short.") - 1) / 9)]
    assert reward(srv, api_key_env="SOUPS_TEST_API_KEY")(["Short."]) == want
    assert srv.requests[-1]["auth"] == "Bearer k"
    monkeypatch.delenv("SOUPS_TEST_API_KEY")
    judge_reward("http://judge.example/v1", api_key_env="SOUPS_TEST_API_KEY")  # no key set: nothing to leak
