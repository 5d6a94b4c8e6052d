"""scripts/train_experts.sh (`make experts`) passes each dimension's flags to `soups` intact: quoted values with
spaces (warm_start.statement) stay one argument. A stand-in `soups` on PATH records its argv and writes the files
each verb would write; the script itself runs unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_experts.sh"

FAKE = r"""#!/usr/bin/env bash
python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$SOUPS_ARGV_LOG"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out=$a; prev=$a; done
case "$1" in
  make-pairs) touch "$out" ;;
  train-reward) mkdir -p "$out" && echo '{}' > "$out/reward_model.json" ;;
esac
"""


def run_script(tmp_path: Path, dims: str) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "soups").write_text(FAKE)
    (bin_dir / "soups").chmod(0o755)
    log = tmp_path / "argv.jsonl"
    env = os.environ | {"DIMS": dims, "OUT_ROOT": str(tmp_path / "out"), "SOUPS_ARGV_LOG": str(log)}
    done = subprocess.run(["bash", str(SCRIPT), str(bin_dir), "1"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(x) for x in log.read_text().splitlines()]


def flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def test_each_dimension_gets_its_flags_with_quoted_values_whole(tmp_path):
    calls = run_script(tmp_path, "unfriendly expert friendly informative")
    verbs = [c[0] for c in calls]
    assert verbs.count("train-expert") == 4
    # unfriendly first builds its RLCD pairs and reward model, into the run folder its dimension file points at
    assert verbs.index("make-pairs") < verbs.index("train-reward")
    by_dim = {c[c.index("--dim") + 1]: c for c in calls if c[0] == "train-expert"}
    unf = by_dim["experts/configs/dims/unfriendly.yaml"]
    sets = flag_values(unf, "--set")
    teacher = [s for s in sets if s.startswith("warm_start.statement=")]
    assert teacher == ["warm_start.statement=You are a grumpy, impatient teacher. Answer the question in two or "
                       "three cold sentences, and make it clear you find the question stupid and annoying."]
    assert "warm_start.prompts=160" in sets
    # ... and its trained delta is scaled by 1.3 into the output (the trained expert kept in the run folder)
    assert flag_values(unf, "--out") == ["runs/make-experts/unfriendly.trained"]
    scale = [c for c in calls if c[0] == "scale-expert"]
    assert scale == [["scale-expert", "runs/make-experts/unfriendly.trained", "--alpha", "1.3",
                      "--out", str(tmp_path / "out" / "unfriendly"), "--force"]]
    assert calls.index(scale[0]) > calls.index(unf)
    expert = by_dim["expert"]
    assert flag_values(expert, "--steps") == ["24"] and "warm_start=false" in flag_values(expert, "--set")
    friendly = by_dim["friendly"]
    assert "warm_start.prompts=300" in flag_values(friendly, "--set") and flag_values(friendly, "--steps") == ["12"]
    assert flag_values(friendly, "--out") == [str(tmp_path / "out" / "friendly")]
    # informative: expert's PPO flags (no warm start) against its own dimension file, 14 steps
    inf = flag_values(by_dim["experts/configs/dims/informative.yaml"], "--set")
    assert {"warm_start=false", "kl_estimator=k3", "reward_baseline.prompts=64"} <= set(inf)
    assert flag_values(by_dim["experts/configs/dims/informative.yaml"], "--steps") == ["14"]
    for c in by_dim.values():
        assert {"--resume", "--force", "--quiet"} <= set(c) and flag_values(c, "--algo") == ["ppo"]
        assert flag_values(c, "--preset") == ["cpu"]
