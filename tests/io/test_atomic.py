"""soups/io/atomic.py: --force replaces only soups outputs, a replacement never loses the old output (even under
SIGKILL), an interrupted swap is repaired and killed runs' temporary files are removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from soups.errors import OutputExistsError
from soups.io import atomic
from soups.io.atomic import atomic_dir, atomic_write_text, check_output

ROOT = Path(__file__).resolve().parents[2]


def soup_dir(path: Path, tag: str) -> Path:
    path.mkdir(parents=True)
    (path / "soup.json").write_text(json.dumps({"tag": tag}))
    (path / "weights.bin").write_bytes(tag.encode() * 1000)
    return path


def tag(path: Path) -> str:
    return json.loads((path / "soup.json").read_text())["tag"]


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_force_replaces_only_what_soups_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    thesis = tmp_path / "work"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match="not a soups output"):
        with atomic_dir(thesis, force=True) as tmp:
            (tmp / "soup.json").write_text("{}")
    assert (thesis / "thesis.tex").read_text() == "years of work" and not siblings(thesis)
    with pytest.raises(OutputExistsError, match="current directory"):  # `--out . --force`
        check_output(Path("."), force=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty, force=False) as tmp:  # an empty folder may be filled
        (tmp / "soup.json").write_text(json.dumps({"tag": "new"}))
    assert tag(empty) == "new"
    for marker in atomic.MARKERS:  # each kind of soups output may be replaced with --force
        out = tmp_path / f"out-{marker}"
        out.mkdir()
        (out / marker).write_text("{}")
        with atomic_dir(out, force=True) as tmp:
            (tmp / "soup.json").write_text(json.dumps({"tag": marker}))
        assert tag(out) == marker
        assert marker == "soup.json" or not (out / marker).exists()


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_replacement_swaps_in_whole(tmp_path, monkeypatch, exchange):
    monkeypatch.setattr(atomic, "EXCHANGE", exchange)
    out = soup_dir(tmp_path / "soup", "old")
    with atomic_dir(out, force=True) as tmp:
        (tmp / "soup.json").write_text(json.dumps({"tag": "new"}))
        assert tag(out) == "old"  # the old output is in place while the new one is built
    assert tag(out) == "new" and not (out / "weights.bin").exists() and not siblings(out)
    with pytest.raises(RuntimeError), atomic_dir(out, force=True) as tmp:  # a failure keeps the old
        (tmp / "soup.json").write_text(json.dumps({"tag": "newer"}))
        raise RuntimeError("boom")
    assert tag(out) == "new" and not siblings(out)


KILLER = """
import json, os, signal, sys
from pathlib import Path
from soups.io import atomic

atomic.EXCHANGE = {exchange}
rename, exchange, point = os.rename, atomic._exchange, {point!r}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def killing_rename(a, b):
    rename(a, b)
    if point == "between renames" and Path(b).name.startswith(".soup.tmp-old-"):
        die()

def killing_exchange(a, b):
    done = exchange(a, b)
    if point == "after exchange":
        die()
    return done

os.rename, atomic._exchange = killing_rename, killing_exchange
with atomic.atomic_dir(Path(sys.argv[1]), force=True) as tmp:
    (tmp / "soup.json").write_text(json.dumps({{"tag": "new"}}))
    if point == "while building":
        die()
"""


@pytest.mark.parametrize("point,exchange,survivor", [
    ("while building", True, "old"),
    ("after exchange", True, "new"),
    ("between renames", False, "old"),  # the window of the two-rename swap: the next run puts the old one back
], ids=["while-building", "after-exchange", "between-renames"])
def test_sigkill_during_replacement_keeps_a_whole_output(tmp_path, point, exchange, survivor):
    out = soup_dir(tmp_path / "soup", "old")
    proc = subprocess.run([sys.executable, "-c", KILLER.format(exchange=exchange, point=point), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert siblings(out), "the killed run left its temporary files"
    check_output(out, force=True)  # what the next run does first: repair and clean up
    assert tag(out) == survivor and not siblings(out)
    if survivor == "old":
        assert (out / "weights.bin").read_bytes() == b"old" * 1000


def test_stale_temporary_files_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "user.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".user.json.tmp-{dead_pid}"  # what a write killed between open and rename leaves
    stale.write_text('{"half": ')
    live = tmp_path / f".user.json.tmp-{os.getppid()}"  # a running writer's file is left alone
    live.write_text("{}")
    atomic_write_text(out, "{}\n")
    assert out.read_text() == "{}\n" and not stale.exists() and live.exists()
    stale_dir = tmp_path / f".soup.tmp-abc123-{dead_pid}"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"x" * 100)
    with atomic_dir(tmp_path / "soup") as tmp:
        (tmp / "soup.json").write_text("{}")
    assert not stale_dir.exists()


def test_unwritable_or_impossible_outputs_fail_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not a directory"):
        check_output(afile / "soup", force=False)
    with pytest.raises(OutputExistsError, match="not writable"):
        check_output(Path("/proc/self/soup"), force=False)
    with pytest.raises(OutputExistsError, match="is a directory"):
        atomic_write_text(tmp_path, "x", force=True)
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(OutputExistsError, match="symlink loop"):
        atomic_write_text(loop, "x", force=True)


def test_merge_force_sigkill_keeps_old_or_new_soup(tmp_path, tiny_base):
    """A real `soups merge --force` over an earlier soup, killed at several moments: --out is always a whole
    soup (the old or the new), and the next run cleans up what the killed one left."""
    import time

    from tests.helpers import make_lora_expert

    e1 = make_lora_expert(tiny_base, tmp_path / "e1", r=4, seed=1)
    out = tmp_path / "soup"
    common = [sys.executable, "-m", "soups", "merge", "--base", str(tiny_base), "--experts", str(e1),
              "--out", str(out), "--force"]
    subprocess.run([*common, "--weights", "1"], check=True, capture_output=True, cwd=ROOT, timeout=300)
    old = (out / "model.safetensors").read_bytes()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([*common, "--weights", "1", "--no-normalize", "--shard-size", "200KB"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rec = json.loads((out / "soup.json").read_text())  # whole: old (one file) or new (sharded)
        if (out / "model.safetensors").exists():
            assert (out / "model.safetensors").read_bytes() == old and rec["experts"][0]["weight_raw"] == 1
        else:
            index = json.loads((out / "model.safetensors.index.json").read_text())
            assert all((out / f).is_file() for f in set(index["weight_map"].values()))
        check_output(out, force=True)
        assert not siblings(out)
