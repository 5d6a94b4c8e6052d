"""`soups playground` in a real browser: Debian's headless Chromium driven by Playwright against the running app.

The app runs as the real command (`soups playground`) on the embedded base and the shipped experts,
plus a copy of one expert that the test breaks mid-session. A person's path, checked end to end:
moving a slider changes the soup's answer; bad input (empty prompt, all-zero weights, a broken
expert) is a message on the page; "Find my weights" completes ten questions and moves the sliders;
"Export" downloads a recipe that `soups merge --recipe` builds. The screenshot of the page goes to
$SOUPS_PLAYGROUND_SCREENSHOT when set (docs/playground.png in the README is one).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from soups.config import experts_dir

CHROMIUM = Path("/usr/bin/chromium")
# Chromium flags: no sandbox (root in CI), no GPU, and no network of its own (updates, sync, QUIC)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKENS = 32
TIMEOUT_MS = 240_000  # generous: the CPU is shared with training runs

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The running `soups playground` (4 experts: the default set and a copy of elementary) and its URL."""
    if not CHROMIUM.is_file():
        pytest.fail("Chromium is missing: `make install` installs it (apt-get install chromium chromium-driver)")
    root = tmp_path_factory.mktemp("playground")
    spare = shutil.copytree(experts_dir() / "elementary", root / "elementary")
    port = _free_port()
    soups = Path(sys.executable).with_name("soups")
    log = open(root / "app.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(soups), "playground", "--experts", f"concise,friendly,expert,{spare}", "--port", str(port),
         "--max-new-tokens", str(TOKENS), "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"soups playground did not start:\n{(root / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, spare, root
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(app, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS, accept_downloads=True,
            viewport={"width": 1400, "height": 1000},
        )
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(app[0])
        yield pg
        ctx.close()


def _text(page, elem_id: str) -> str:
    return page.eval_on_selector(f"#{elem_id} textarea", "e => e.value")


def _slider(page, name: str) -> float:
    return float(page.eval_on_selector(f"#w-{name} input[type=number]", "e => e.value"))


def _drag(page, name: str, value: float, maximum: float = 2.0) -> None:
    """Drag the slider's thumb with the mouse (pointer down, moves, up) to `value`, as a person does."""
    track = page.locator(f"#w-{name} input[type=range]")
    track.scroll_into_view_if_needed()  # a click further down (the downloads) may have scrolled it away
    box = track.bounding_box()
    y = box["y"] + box["height"] / 2
    x0 = box["x"] + box["width"] * _slider(page, name) / maximum
    x1 = box["x"] + min(max(box["width"] * value / maximum, 1), box["width"] - 1)
    page.mouse.move(x0, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x0 + (x1 - x0) * k / 5, y)
    page.mouse.up()


def _last_answer(page) -> int:
    """The number of the last answer that ran to its end (0: none yet); the status line carries it."""
    return int(page.evaluate("() => document.querySelector('#status [data-answer]')?.dataset.answer ?? 0"))


def _answered(page, since: int) -> int:
    """Wait until an answer after answer number `since` has finished; its number.

    The final status is sent after the answer's last text, so the boxes then hold the whole answer (an earlier
    answer's status, still on the page while the new one streams, has a smaller number).
    """
    page.wait_for_function(
        "([since]) => { const s = document.querySelector('#status [data-answer]'); "
        "const t = document.querySelector('#soup-answer textarea'); "
        "return s && Number(s.dataset.answer) > since && t && t.value.length > 0; }",
        arg=[since],
    )
    return _last_answer(page)


def _status(page, words: str) -> str:
    page.wait_for_function("([w]) => document.querySelector('#status').innerText.includes(w)", arg=[words])
    return page.inner_text("#status")


@pytest.fixture
def diagnose(app, page):
    """On failure: the page's status line, a screenshot and the app's log, in the test report."""
    yield
    root = app[2]
    page.screenshot(path=str(root / "last.png"), full_page=True)
    print(f"status: {page.inner_text('#status')!r}; screenshot {root / 'last.png'}")
    print((root / "app.log").read_text()[-3000:])


def test_playground_in_a_browser(app, page, diagnose, tmp_path):
    url, spare, root = app
    assert url.startswith("http://127.0.0.1:")
    done = _answered(page, 0)  # the page answers the default prompt on load
    base0, soup0 = _text(page, "base-answer"), _text(page, "soup-answer")
    assert base0 and soup0
    assert page.locator("#base-scores .soups-bar").count() == 4  # one bar per declared dimension

    # moving a slider changes the soup's answer (and only the soup's)
    for name in ("concise", "expert", "elementary"):
        _drag(page, name, 0.0)
    assert [_slider(page, n) for n in ("concise", "friendly", "expert", "elementary")] == [0, 1, 0, 0]
    page.wait_for_function("() => document.querySelector('#soup-info').innerText.includes('friendly 1.00')")
    done = _answered(page, done)
    soup1 = _text(page, "soup-answer")
    assert soup1 != soup0
    assert _text(page, "base-answer") == base0

    # "statements": the soup is asked with friendly's preference statement appended (from its dimension file)
    statement = yaml.safe_load((experts_dir() / "friendly.yaml").read_text())["statement"]
    assert not page.is_checked("#statements input[type=checkbox]")  # off by default
    page.click("#statements input[type=checkbox]")
    done = _answered(page, done)
    assert _text(page, "soup-answer") != soup1 and _text(page, "base-answer") == base0
    assert statement in page.inner_text("#soup-info")
    page.click("#statements input[type=checkbox]")  # off again: the same soup answers the plain prompt again
    page.wait_for_function("() => !document.querySelector('#soup-info').innerText.includes('statements')")
    done = _answered(page, done)
    assert _text(page, "soup-answer") == soup1

    # bad input is a message on the page
    page.fill("#prompt textarea", "   ")
    page.click("#go")
    assert "prompt is empty" in _status(page, "prompt is empty")
    page.fill("#prompt textarea", "Why is the sky blue?")
    _drag(page, "friendly", 0.0)
    assert "all weights are zero" in _status(page, "all weights are zero")

    # Find my weights: ten choices (always the shorter answer), then the fitted weights move the sliders
    page.click("#ask-start")
    for k in range(1, 11):
        page.wait_for_selector(f'#ask-progress[data-number="{k}"]')
        a, b = _text(page, "ask-a"), _text(page, "ask-b")
        page.click("#choose-a" if len(a.split()) <= len(b.split()) else "#choose-b")
    page.wait_for_selector("#soups-profile")
    assert page.locator("#soups-profile tr").count() == 5  # header + 4 dimensions, each w with its interval
    assert "95% interval" in page.inner_text("#soups-profile")
    moved = {n: _slider(page, n) for n in ("concise", "friendly", "expert", "elementary")}
    assert moved["concise"] == max(moved.values()) > 0  # a user who prefers short answers gets a concise soup
    page.wait_for_function("() => document.querySelector('#soup-info').innerText.includes('concise 0.')")
    done = _answered(page, done)

    # Export: the recipe downloads and `soups merge --recipe` builds it
    page.click("#export")
    page.wait_for_function("() => document.querySelector('#merge-command textarea').value.startsWith('soups merge')")
    command = _text(page, "merge-command")
    assert _text(page, "generate-command") == \
        "soups generate --soup my_soup --prompts heldout --out my_soup_answers.jsonl"  # statements unticked
    with page.expect_download() as dl:
        page.locator('#downloads a[href*="recipe.yaml"]').first.click()
    recipe = tmp_path / "recipe.yaml"
    dl.value.save_as(recipe)
    shot = root / "playground.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SOUPS_PLAYGROUND_SCREENSHOT"):
        shutil.copy(shot, os.environ["SOUPS_PLAYGROUND_SCREENSHOT"])

    soups = str(Path(sys.executable).with_name("soups"))
    res = subprocess.run([soups, "merge", "--recipe", str(recipe), "--out", str(tmp_path / "soup")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    merged = {e["name"]: e["weight_raw"] for e in json.loads((tmp_path / "soup" / "soup.json").read_text())["experts"]}
    assert merged == pytest.approx(moved)
    # the exported command is the same soup (as an adapter: quick)
    args = shlex.split(command)
    assert args[:2] == ["soups", "merge"]
    res = subprocess.run([soups, *args[1:], "--format", "adapter"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    cmd_soup = json.loads((tmp_path / "my_soup" / "soup.json").read_text())["experts"]
    assert {e["name"]: e["weight_raw"] for e in cmd_soup} == pytest.approx(moved)

    # an expert replaced on disk by a broken file: the page says so, the others still answer
    (spare / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    _drag(page, "elementary", 1.0)
    message = _status(page, "left out")
    assert "elementary" in message and "Traceback" not in message
