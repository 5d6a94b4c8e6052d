"""Judge rewards: an OpenAI-compatible chat endpoint asked a dimension's preference statement.

The paper labelled preferences with GPT-4; any server speaking `POST {url}/chat/completions`
(OpenAI, vLLM, llama.cpp, Ollama...) works here. Two questions:
- pointwise (`judge_score`, the reward): "how well does the response satisfy the preference,
  1 to 10?"; the reward is (score - 1) / 9 in [0, 1];
- pairwise (`judge_pair`): "which response better satisfies it: A, B or TIE?";
  `judge_pair_both` asks in both orders to cancel position bias (for evaluation).

Standard library only (urllib). The API key comes from the environment variable the config names
(`api_key_env`, default OPENAI_API_KEY; none is sent when it is unset, as local servers need none). Answers are
cached in SQLite at `$SOUPS_HOME/judge-cache/judge.sqlite`, keyed by the sha256 of the request
(endpoint, model, messages, sampling), never the key. Requests time out after `timeout` seconds
and are retried `retries` times with exponential backoff on connection errors, timeouts, 429 and
5xx; an endpoint that stays unreachable raises RewardError (one line).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from soups.config import soups_home
from soups.errors import RewardError
from soups.rewards import RewardConfig, RewardFn

log = logging.getLogger(__name__)

SYSTEM = "You are an impartial judge of AI assistant responses. Follow the output format exactly."
POINTWISE = (
    "Preference: {statement}\n\n[Instruction]\n{prompt}\n\n[Response]\n{completion}\n\n"
    "On a scale of 1 to 10, how well does the response satisfy the preference above? "
    "1 means not at all, 10 means perfectly. Answer with a single number."
)
PAIRWISE = (
    "Preference: {statement}\n\n[Instruction]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Which response better satisfies the preference above? Answer with exactly one of: A, B, TIE."
)


class Config(RewardConfig):
    """`reward: {kind: judge, url: ..., model: ...}`: an OpenAI-compatible chat endpoint."""

    kind: Literal["judge"] = "judge"
    url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    model: str = Field(description="model name sent to the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    timeout: float = Field(60.0, gt=0, description="seconds per HTTP request")
    retries: int = Field(3, ge=0, description="retries after a failed request (exponential backoff)")
    backoff: float = Field(1.0, ge=0, description="first retry delay in seconds (doubles each retry)")
    concurrency: int = Field(4, gt=0, description="parallel requests per batch")
    max_tokens: int = Field(16, gt=0, description="max tokens of the judge's answer")
    temperature: float = Field(0.0, ge=0, description="sampling temperature of the judge")
    cache: bool = Field(True, description="cache answers under $SOUPS_HOME/judge-cache")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urllib.parse.urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, v: str) -> str:
        problem = key_variable_problem(v)
        if problem:
            raise ValueError(problem)
        return v


# variables that end like an API key but belong to CI, code hosting, clouds or package registries
NOT_JUDGE_KEYS = re.compile(r"^(AWS|GCP|GITHUB|GH|GITLAB|CI|ACTIONS|NPM|PYPI|TWINE|DOCKER|VAULT|SLACK|CODECOV|KUBE"
                            r"|HEROKU|CLOUDFLARE|DIGITALOCEAN|SSH)_")


def key_variable_problem(name: str) -> str | None:
    """Why `name` cannot be the variable of a judge's API key (it must look like one), or None."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*(_API_KEY|_TOKEN)", name):
        return (f"{name!r} does not look like an API key variable; name one ending in _API_KEY or _TOKEN "
                "(e.g. OPENAI_API_KEY), so no other secret is sent to the judge")
    if NOT_JUDGE_KEYS.match(name):
        return f"{name!r} holds another service's credentials; use the judge endpoint's own key variable"
    return None


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_key_transport(url: str, key_env: str) -> None:
    """A key goes only over https or to this machine: refuse plain http to another host while `key_env` is set."""
    parts = urllib.parse.urlsplit(url)
    if os.environ.get(key_env) and parts.scheme != "https" and not is_loopback(parts.hostname):
        raise RewardError(f"judge {url}: ${key_env} is set but the URL is plain http to {parts.hostname}; the key "
                          "would travel unencrypted: use https, a loopback host, or unset the variable")


def cache_path() -> Path:
    return soups_home() / "judge-cache" / "judge.sqlite"


def parse_score(text: str) -> int | None:
    """The first integer 1..10 in a judge's answer ("7", "Score: 7/10"), else None."""
    m = re.search(r"(?<![\d.])(10|[1-9])(?![\d.]*\d)", text)
    return int(m.group(1)) if m else None


def parse_pair(text: str) -> str | None:
    """"A", "B" or "TIE" from a judge's answer ("A", "Response B.", "tie"), else None."""
    t = text.strip()
    m = re.match(r"^\W*(A|B|TIE)\b", t, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    m = re.search(r"\b(?:response|answer|output)\s+(A|B)\b", t, re.IGNORECASE) or re.search(r"\b(A|B)\b", t)
    if m:
        return m.group(1).upper()
    return "TIE" if re.search(r"\btie\b", t, re.IGNORECASE) else None


class JudgeClient:
    """A cached, retrying chat-completions client (picklable: holds only settings)."""

    def __init__(self, config: Config) -> None:
        self.url = str(config.url).rstrip("/")
        self.endpoint = self.url if self.url.endswith("/chat/completions") else self.url + "/chat/completions"
        self.config = config
        check_key_transport(self.endpoint, config.api_key_env)

    def _key(self, body: dict[str, Any]) -> str:
        blob = json.dumps({"endpoint": self.endpoint, **body}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @staticmethod
    @contextlib.contextmanager
    def _db() -> Iterator[sqlite3.Connection]:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:  # closes; commits on success
            db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, response TEXT, created REAL)")
            yield db

    def _cache_get(self, key: str) -> str | None:
        if not (self.config.cache and cache_path().is_file()):
            return None
        with self._db() as db:
            row = db.execute("SELECT response FROM cache WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _cache_put(self, key: str, response: str) -> None:
        if self.config.cache:
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (key, response, time.time()))

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        check_key_transport(self.endpoint, self.config.api_key_env)
        api_key = os.environ.get(self.config.api_key_env)
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        data = json.dumps(body).encode()
        attempts = self.config.retries + 1
        reason = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.config.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                return str(payload["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as e:
                reason = f"HTTP {e.code} {e.reason}"
                if e.code in (401, 403):
                    raise RewardError(
                        f"judge {self.endpoint}: {reason}; set ${self.config.api_key_env} to a valid API key"
                    ) from None
                if e.code != 429 and e.code < 500:
                    raise RewardError(
                        f"judge {self.endpoint}: {reason}; check --judge-url and --judge-model {self.config.model!r}"
                    ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = str(getattr(e, "reason", None) or e) or type(e).__name__
                if isinstance(getattr(e, "reason", None), TimeoutError) or isinstance(e, TimeoutError):
                    reason = f"timed out after {self.config.timeout:g}s"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                reason = f"unexpected response ({type(e).__name__}: {str(e)[:80]})"
            log.warning("judge %s: attempt %d/%d failed: %s", self.endpoint, attempt + 1, attempts, reason)
        raise RewardError(
            f"judge {self.endpoint} unreachable after {attempts} attempt(s) ({reason}); "
            "check --judge-url and that the server is running"
        )

    def ask(self, user: str, validate: Callable[[str], Any] = lambda s: s) -> Any:
        """Ask one question; the parsed answer (validate(text)), or None when unparseable (not cached)."""
        body = {
            "model": self.config.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        key = self._key(body)
        cached = self._cache_get(key)
        if cached is not None:
            return validate(cached)
        text = self._post(body)
        parsed = validate(text)
        if parsed is not None:
            self._cache_put(key, text)
        else:
            log.warning("judge %s: could not parse answer %r", self.endpoint, text[:80])
        return parsed


def judge_score(client: JudgeClient, statement: str, prompt: str | None, completion: str) -> int | None:
    """The judge's 1-10 score of `completion` for `statement`, or None if it gave no number."""
    question = POINTWISE.format(statement=statement, prompt=prompt or "(none)", completion=completion)
    return client.ask(question, parse_score)


def judge_pair(client: JudgeClient, statement: str, prompt: str | None, a: str, b: str) -> str | None:
    """"A", "B" or "TIE": which of `a`, `b` better satisfies `statement` (None if unparseable)."""
    return client.ask(PAIRWISE.format(statement=statement, prompt=prompt or "(none)", a=a, b=b), parse_pair)


@dataclass(frozen=True)
class PairVerdict:
    """Both orders of a pairwise question, in terms of the original `a` and `b`."""

    first: str | None  # verdict with a shown as A
    second: str | None  # verdict with b shown as A, mapped back (so "A" still means a)
    winner: str  # "A" or "B" when both orders agree, else "TIE"
    score_a: float  # a's win share over the two orders: 1 win, 0.5 tie, 0 loss (None counts as tie)


def judge_pair_both(client: JudgeClient, statement: str, prompt: str | None, a: str, b: str) -> PairVerdict:
    """Ask `judge_pair` in both orders to cancel position bias."""
    first = judge_pair(client, statement, prompt, a, b)
    swapped = judge_pair(client, statement, prompt, b, a)
    second = {"A": "B", "B": "A"}.get(swapped or "", swapped)
    points = {"A": 1.0, "B": 0.0, "TIE": 0.5, None: 0.5}
    winner = first if first == second and first in ("A", "B") else "TIE"
    return PairVerdict(first, second, winner, (points[first] + points[second]) / 2)


class JudgeReward(RewardFn):
    """Pointwise judge scores as rewards in [0, 1]; an unparseable answer scores 0.5 (logged)."""

    kind = "judge"

    def __init__(self, dimension: str, config: Config, statement: str) -> None:
        super().__init__(dimension, config)
        self.statement = statement
        self.client = JudgeClient(config)

    def score(self, completions: list[str], prompts: list[str] | None) -> list[float]:
        ps = prompts or [None] * len(completions)

        def one(pc: tuple[str | None, str]) -> float:
            s = judge_score(self.client, self.statement, pc[0], pc[1])
            return 0.5 if s is None else (s - 1) / 9.0

        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(one, zip(ps, completions)))


def build(config: Config, dim: Any) -> JudgeReward:
    """Registry builder for kind `judge`: asks the dimension's preference statement."""
    return JudgeReward(dim.name, config, dim.statement)
