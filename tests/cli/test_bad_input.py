"""Bad input to every command, as a table: each row must exit 2 with one `error:` line on stderr that names
the culprit (flag, file or field, and the bad value), no traceback, and leave its outputs absent or unchanged.

Rows run in this process through the CLI (tests.helpers.run_cli), each in a fresh empty working directory that
must still be empty afterwards; none of them may get as far as loading a model. Inputs are built once: a tiny
base with two LoRA experts, and a zoo of broken files (directories where files belong, symlink loops, binary,
empty and malformed JSON/YAML, list-valued JSON, NaN, huge numbers). `{name}` in a row is a path of that world;
`{tmp}` is the row's own working directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import assert_one_line_error, make_lora_expert, make_tiny_llama, run_cli

UNWRITABLE = "/proc/self/soups-out"  # a folder nobody may create files in, root included


@dataclass(frozen=True)
class Row:
    id: str
    argv: str  # shlex-split, then `{name}` placeholders filled
    words: tuple[str, ...]  # each must appear in the error line (case-insensitive)
    outs: tuple[str, ...] = ()  # paths that must be absent (or unchanged) afterwards
    env: dict = field(default_factory=dict)
    input: str = ""
    cwd: str | None = None  # a world folder to run in instead of the empty {tmp}


def R(id, argv, *words, outs=(), env=None, input="", cwd=None) -> Row:  # noqa: N802
    return Row(id, argv, words, tuple([outs] if isinstance(outs, str) else outs), env or {}, input, cwd)


# ----------------------------------------------------------------------------- the world
def _json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return path


def _copy_expert(src: Path, dst: Path, **edits) -> Path:
    """A copy of an expert with files replaced: name -> text, bytes, dict (JSON), "DIR", "LOOP" or None (deleted)."""
    shutil.copytree(src, dst)
    for name, value in edits.items():
        name = name.replace("__", ".")
        target = dst / name
        target.unlink(missing_ok=True)
        if value is None:
            continue
        if value == "DIR":
            target.mkdir()
        elif value == "LOOP":
            target.symlink_to(target.name)
        elif isinstance(value, bytes):
            target.write_bytes(value)
        else:
            _json(target, value)
    return dst


BINARY = bytes(range(256)) * 8
ANSWER = {"prompt": "p", "a": "short", "b": "a much longer answer", "choice": "a",
          "phi_a": {"concise": 1.0, "informative": -1.0}, "phi_b": {"concise": -1.0, "informative": 1.0}}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_base):
    root = tmp_path_factory.mktemp("world")
    w: dict[str, str] = {"root": str(root), "base": str(tiny_base), "unwritable": UNWRITABLE}

    def add(name: str, path: Path) -> Path:
        w[name] = str(path)
        return path

    # an experts folder: dimension files, the training config, two tiny experts, the default set
    experts = add("experts", root / "experts")
    shipped = Path(__file__).resolve().parents[2] / "experts"
    experts.mkdir()
    for f in shipped.glob("*.yaml"):
        if f.name != "default.yaml":
            shutil.copy(f, experts / f.name)
    shutil.copytree(shipped / "configs", experts / "configs")
    e1 = add("e1", make_lora_expert(tiny_base, experts / "concise", r=4, seed=1, dimension="concise"))
    add("e2", make_lora_expert(tiny_base, experts / "friendly", r=2, targets=("o_proj",), seed=2,
                                    dimension="friendly"))
    (experts / "default.yaml").write_text("experts: [concise, friendly]\n")

    # broken experts
    z = root / "zoo"
    z.mkdir()
    add("ex_badcfg", _copy_expert(e1, z / "ex_badcfg", adapter_config__json='{"peft_type": "LORA", '))
    add("ex_listcfg", _copy_expert(e1, z / "ex_listcfg", adapter_config__json=[1, 2]))
    add("ex_bincfg", _copy_expert(e1, z / "ex_bincfg", adapter_config__json=BINARY))
    add("ex_dircfg", _copy_expert(e1, z / "ex_dircfg", adapter_config__json="DIR"))
    add("ex_loopcfg", _copy_expert(e1, z / "ex_loopcfg", adapter_config__json="LOOP"))
    cfg = json.loads((e1 / "adapter_config.json").read_text())
    add("ex_rstr", _copy_expert(e1, z / "ex_rstr", adapter_config__json={**cfg, "r": "four"}))
    add("ex_alpha0", _copy_expert(e1, z / "ex_alpha0", adapter_config__json={**cfg, "lora_alpha": 0}))
    add("ex_dora", _copy_expert(e1, z / "ex_dora", adapter_config__json={**cfg, "use_dora": True}))
    add("ex_ia3", _copy_expert(e1, z / "ex_ia3", adapter_config__json={**cfg, "peft_type": "IA3"}))
    add("ex_badmeta", _copy_expert(e1, z / "ex_badmeta", expert__json='{"dimension": "concise"'))
    add("ex_listmeta", _copy_expert(e1, z / "ex_listmeta", expert__json=["concise"]))
    add("ex_binmeta", _copy_expert(e1, z / "ex_binmeta", expert__json=BINARY))
    add("ex_dirmeta", _copy_expert(e1, z / "ex_dirmeta", expert__json="DIR"))
    add("ex_loopmeta", _copy_expert(e1, z / "ex_loopmeta", expert__json="LOOP"))
    add("ex_dimlist", _copy_expert(e1, z / "ex_dimlist", expert__json={"dimension": [1, 2]}))
    add("ex_baselist", _copy_expert(e1, z / "ex_baselist", expert__json={"dimension": "concise", "base": [1]}))
    add("ex_nanmeta", _copy_expert(e1, z / "ex_nanmeta", expert__json='{"dimension": "concise", "x": NaN}'))
    add("ex_noweights", _copy_expert(e1, z / "ex_noweights", adapter_model__safetensors=None))
    add("ex_pickle", _copy_expert(e1, z / "ex_pickle", adapter_model__safetensors=None,
                                  adapter_model__bin=b"\x80\x04\x95 not loaded"))
    data = (e1 / "adapter_model.safetensors").read_bytes()
    add("ex_trunc", _copy_expert(e1, z / "ex_trunc", adapter_model__safetensors=data[: len(data) - 100]))
    add("ex_garbage", _copy_expert(e1, z / "ex_garbage", adapter_model__safetensors=BINARY))
    header = b'[1, 2]'
    add("ex_listhdr", _copy_expert(e1, z / "ex_listhdr", adapter_model__safetensors=len(header).to_bytes(8, "little")
                                   + header))
    add("ex_fingerprint", _copy_expert(e1, z / "ex_fingerprint", expert__json={"dimension": "concise", "base": {
        "name": "x", "fingerprint": "sha256:0000"}}))
    other = make_tiny_llama(z / "other_base", hidden=32, tokenizer_from=tiny_base)
    add("ex_otherbase", make_lora_expert(other, z / "ex_otherbase", r=2, seed=5))
    add("ex_empty", z / "ex_empty")
    (z / "ex_empty").mkdir()

    # broken bases and soups
    add("base_badcfg", _copy_expert(Path(tiny_base), z / "base_badcfg", config__json='{"model_type": '))
    add("base_listcfg", _copy_expert(Path(tiny_base), z / "base_listcfg", config__json=[1]))
    add("base_nocfg", _copy_expert(Path(tiny_base), z / "base_nocfg", config__json=None))
    add("base_pickle", _copy_expert(Path(tiny_base), z / "base_pickle", model__safetensors=None,
                                    pytorch_model__bin=b"\x80\x04 not loaded"))
    add("soup_badjson", _copy_expert(e1, z / "soup_badjson", soup__json='{"format": '))
    add("soup_list", _copy_expert(e1, z / "soup_list", soup__json=[1]))
    add("soup_empty", _copy_expert(e1, z / "soup_empty", soup__json={}))
    add("soup_basestr", _copy_expert(e1, z / "soup_basestr", soup__json={"format": "adapter", "method": "exact",
                                                                          "base": "x", "experts": []}))
    add("soup_bin", _copy_expert(e1, z / "soup_bin", soup__json=BINARY))

    # plain files of every broken kind
    add("dir", z / "adir")
    (z / "adir").mkdir()
    for ext in ("yaml", "json", "jsonl", "txt"):
        (z / f"dir.{ext}").mkdir()
        add(f"dir_{ext}", z / f"dir.{ext}")
        loop = z / f"loop.{ext}"
        loop.symlink_to(loop.name)
        add(f"loop_{ext}", loop)
        add(f"bin_{ext}", z / f"bin.{ext}").write_bytes(BINARY)
        add(f"empty_{ext}", z / f"empty.{ext}").write_text("")
        add(f"latin1_{ext}", z / f"latin1.{ext}").write_bytes(b"caf\xe9: 1\n")
    add("missing", z / "no-such-file")
    add("dangling", z / "dangling").symlink_to("no-such-target")
    add("bad_yaml", z / "bad.yaml").write_text("experts: [concise, \n  friendly: 1\n")
    add("list_yaml", z / "list.yaml").write_text("- concise\n- friendly\n")
    add("scalar_yaml", z / "scalar.yaml").write_text("42\n")
    add("deep_yaml", z / "deep.yaml").write_text("[" * 5000 + "]" * 5000 + "\n")
    add("huge_yaml", z / "huge.yaml")
    with open(z / "huge.yaml", "wb") as fh:  # sparse: 20 MB on paper, nothing on disk
        fh.truncate(20 << 20)
    add("bad_json", z / "bad.json").write_text('{"merge_weights": {"concise": 1')
    add("list_json", z / "list.json").write_text("[1, 2, 3]")
    add("nan_json", z / "nan.json").write_text('{"merge_weights": {"concise": NaN}}')
    add("bad_jsonl", z / "bad.jsonl").write_text('{"prompt": "Why?"}\n{"prompt": \n')
    add("list_jsonl", z / "list.jsonl").write_text("[1, 2]\n")
    add("nul_jsonl", z / "nul.jsonl").write_text('{"prompt": "a\x00b"}\n')
    add("deep_jsonl", z / "deep.jsonl").write_text("[" * 100000 + "]" * 100000 + "\n")
    add("afile", z / "afile.txt").write_text("not a folder\n")
    add("one_prompt", z / "one.txt").write_text("Only one prompt.\n")
    add("prompts", z / "prompts.txt").write_text("Why is the sky blue?\nHow do tides work?\nWhat is rust?\n")
    add("prompts_noprompt", z / "noprompt.jsonl").write_text('{"text": "Why?"}\n')
    add("prompts_empty_field", z / "emptyfield.jsonl").write_text('{"prompt": "  "}\n')
    add("prompts_num", z / "num.jsonl").write_text('{"prompt": 42}\n')

    # recipes
    rec = z / "recipes"
    rec.mkdir()
    for name, text in {
        "unknown": "experts: {concise: 1}\nbogus: 3\n",
        "method": "method: magic\nexperts: {concise: 1}\n",
        "nan": "experts: {concise: .nan}\n",
        "inf": "experts: {concise: .inf, friendly: 1}\n",
        "huge": "experts: {concise: 1.0e+300, friendly: 1}\n",
        "noexperts": "method: exact\n",
        "emptyexperts": "experts: {}\n",
        "listexperts": "experts: [concise, friendly]\n",
        "strweight": "experts: {concise: lots}\n",
        "format": "format: gguf\nexperts: {concise: 1}\n",
        "dtype": "dtype: int8\nexperts: {concise: 1}\n",
        "rank0": "method: svd\nrank: 0\nformat: adapter\nexperts: {concise: 1}\n",
        "rankbig": "method: svd\nrank: 100000\nformat: adapter\nexperts: {concise: 1, friendly: 1}\n",
        "zero": "experts: {concise: 0, friendly: 0}\n",
        "negsum": "experts: {concise: -1, friendly: 0}\n",
        "normalize": "normalize: perhaps\nexperts: {concise: 1}\n",
    }.items():
        add(f"recipe_{name}", rec / f"{name}.yaml").write_text(text)

    # user.json-like files for --weights-from and --prior
    add("uj_nomw", _json(z / "uj_nomw.json", {"w": [1, 2]}))
    add("uj_mwlist", _json(z / "uj_mwlist.json", {"merge_weights": [1, 2]}))
    add("uj_mwstr", _json(z / "uj_mwstr.json", {"merge_weights": {"concise": "high"}}))
    add("uj_mwbool", _json(z / "uj_mwbool.json", {"merge_weights": {"concise": True}}))
    add("uj_mwempty", _json(z / "uj_mwempty.json", {"merge_weights": {}}))
    add("uj_mwhuge", _json(z / "uj_mwhuge.json", {"merge_weights": {"concise": 1e308, "friendly": 1e308}}))
    add("uj_mwunknown", _json(z / "uj_mwunknown.json", {"merge_weights": {"rhyme": 1.0}}))
    add("prior_nodims", _json(z / "prior_nodims.json", {"mean": [0.0, 0.0]}))
    add("prior_len", _json(z / "prior_len.json", {"dimensions": ["concise", "informative"], "mean": [0.0]}))
    add("prior_other", _json(z / "prior_other.json", {"dimensions": ["a", "b"], "mean": [0.0, 0.0]}))
    add("prior_nan", _json(z / "prior_nan.json", '{"dimensions": ["concise", "informative"], "mean": [NaN, 0]}'))
    add("prior_huge", _json(z / "prior_huge.json", {"dimensions": ["concise", "informative"], "mean": [1e300, 0]}))
    add("prior_str", _json(z / "prior_str.json", {"dimensions": ["concise", "informative"], "mean": ["a", "b"]}))
    add("prior_cov", _json(z / "prior_cov.json", {"dimensions": ["concise", "informative"], "mean": [0, 0],
                                                  "cov": [[1, 2], [2, 1]]}))
    add("prior_covshape", _json(z / "prior_covshape.json", {"dimensions": ["concise", "informative"],
                                                            "mean": [0, 0], "cov": [[1]]}))

    # answers, pools, pairs
    def jsonl(name: str, rows) -> None:
        add(name, z / f"{name}.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                                                          for r in rows))

    jsonl("answers", [ANSWER] * 4)
    jsonl("ans_choice", [{**ANSWER, "choice": "maybe"}])
    jsonl("ans_noa", [{k: v for k, v in ANSWER.items() if k != "a"}])
    jsonl("ans_phistr", [{**ANSWER, "phi_a": {"concise": "high", "informative": 0}}])
    jsonl("ans_phihuge", [{**ANSWER, "phi_a": {"concise": 1e300, "informative": 0}}] * 3)
    jsonl("ans_phinan", ['{"prompt": "p", "a": "x", "b": "y", "choice": "a", "phi_a": {"concise": NaN}}'])
    jsonl("ans_pair", [{**ANSWER, "pair": [1]}])
    jsonl("ans_skips", [{**ANSWER, "choice": "skip"}] * 3)
    jsonl("ans_list", [["p", "x", "y", "a"]])
    jsonl("ans_plain", [{k: ANSWER[k] for k in ("prompt", "a", "b", "choice")}] * 3)
    jsonl("pool_nopairs", [{"prompt": "p", "response": "r", "source": "s"}, {"prompt": "q", "response": "r",
                                                                              "source": "s"}])
    jsonl("pool_field", [{"prompt": "p", "response": "", "source": "s"}])
    jsonl("pool_num", [{"prompt": "p", "response": 3, "source": "s"}])
    jsonl("pairs_few", [{"prompt": "p", "chosen": "a", "rejected": "b"}] * 3)
    jsonl("pairs_field", [{"prompt": "p", "chosen": "a"}] * 5)
    jsonl("pairs_num", [{"prompt": "p", "chosen": 1, "rejected": "b"}] * 5)
    jsonl("pairs", [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(8)])

    # training configs
    add("cfg_unknown", z / "cfg_unknown.yaml").write_text("bogus_field: 1\n")
    add("cfg_steps", z / "cfg_steps.yaml").write_text("steps: -3\n")
    add("cfg_lr", z / "cfg_lr.yaml").write_text("learning_rate: .nan\n")
    add("cfg_algo", z / "cfg_algo.yaml").write_text("algo: dpo\n")
    add("cfg_lora", z / "cfg_lora.yaml").write_text("lora: [16, 32]\n")
    add("cfg_presets", z / "cfg_presets.yaml").write_text("presets: [cpu, paper]\n")
    add("cfg_rank", z / "cfg_rank.yaml").write_text("lora: {r: 0}\n")

    # dimension folders for $SOUPS_EXPERTS_DIR
    def dims(name: str, files: dict[str, str]) -> None:
        d = add(name, root / name)
        d.mkdir()
        shutil.copy(experts / "default.yaml", d / "default.yaml")
        shutil.copytree(experts / "configs", d / "configs")
        for f, text in files.items():
            (d / f).write_text(text)

    judge = "name: {n}\ndescription: d\nstatement: s\nreward: {{kind: judge, url: '{url}', model: m{extra}}}\n"
    dims("dims_badyaml", {"concise.yaml": "name: concise\ndescription: [\n"})
    dims("dims_field", {"concise.yaml": "name: concise\ndescription: d\nstatement: s\nreward: {kind: rule, "
                                        "scorer: concise}\nbogus: 1\n"})
    dims("dims_kind", {"concise.yaml": "name: concise\ndescription: d\nstatement: s\nreward: {kind: magic}\n"})
    dims("dims_opposite", {"concise.yaml": "name: concise\ndescription: d\nstatement: s\nopposite: nope\n"
                                           "reward: {kind: rule, scorer: concise}\n"})
    dims("dims_aws", {"concise.yaml": judge.format(n="concise", url="https://judge.example/v1",
                                                   extra=", api_key_env: AWS_SECRET_ACCESS_KEY")})
    dims("dims_home", {"concise.yaml": judge.format(n="concise", url="https://judge.example/v1",
                                                    extra=", api_key_env: HOME")})
    dims("dims_gh", {"concise.yaml": judge.format(n="concise", url="https://judge.example/v1",
                                                  extra=", api_key_env: GITHUB_TOKEN")})
    dims("dims_http", {"concise.yaml": judge.format(n="concise", url="http://judge.example/v1",
                                                    extra=", api_key_env: SOUPS_TEST_API_KEY")})
    dims("dims_file", {"concise.yaml": judge.format(n="concise", url="file:///etc/passwd", extra="")})
    dims("dims_binary", {})
    (root / "dims_binary" / "concise.yaml").write_bytes(BINARY)

    # outputs that exist: they must be left as they are
    add("existing_json", _json(z / "existing.json", {"keep": True}))
    add("existing_jsonl", z / "existing.jsonl").write_text('{"keep": true}\n')
    nonsoups = add("nonsoups", z / "nonsoups")
    nonsoups.mkdir()
    (nonsoups / "thesis.tex").write_text("years of work\n")
    here = add("here", z / "here")
    here.mkdir()
    (here / "notes.txt").write_text("an unrelated file in the current directory\n")
    return w


# ----------------------------------------------------------------------------- the rows
M = "merge --base {base} --experts {e1},{e2}"  # a valid start for merge rows
MW = M + " --weights 1,1"
OUT = "{tmp}/soup"
G = "generate --prompts {prompts} --out {tmp}/r.jsonl --base {base} --experts {e1},{e2} --weights 1,1"
EV = "eval --base {base} --experts {e1},{e2} --weights 1,1 --prompts {prompts} --out {tmp}/ev"
SW = "sweep --base {base} --experts {e1},{e2} --prompts {prompts} --out {tmp}/sw"
TE = "train-expert --dim concise --base {base} --out {tmp}/ex --run-dir {tmp}/run"
TR = "train-reward --dim concise --base {base} --pairs {pairs} --out {tmp}/rm"
MP = "make-pairs --dim unfriendly --base {base} --out {tmp}/p.jsonl"
FW = "fit-weights {answers} --out {tmp}/u.json"
FP = "fit-population {answers} {answers} --out {tmp}/pop.json"
ASK = "ask --answers {tmp}/a.jsonl --out {tmp}/u.json --dims concise,informative"
BP = "build-pool --out {tmp}/pool.jsonl --base {base} --experts-dir {experts}"
AWS = {"AWS_SECRET_ACCESS_KEY": "aws-secret"}

ROWS: list[Row] = [
    # --- usage errors, one line from the one place in soups/cli/__init__.py
    R("usage-root-option", "--bogus", "--bogus", "soups --help"),
    R("usage-no-command", "nosuch", "nosuch"),
    R("usage-merge-option", "merge --bogus 1", "--bogus", "soups merge --help"),
    R("usage-merge-typo", "merge --weigths 1", "--weigths", "--weights"),
    R("usage-merge-extra", "merge extra-arg", "extra-arg"),
    R("usage-merge-rank-text", "merge --rank abc", "--rank", "'abc'"),
    R("usage-merge-rank-float", "merge --rank 1.5", "--rank", "'1.5'"),
    R("usage-merge-flag-value", "merge --force=yes", "--force"),
    R("usage-methods-extra", "methods extra", "extra"),
    R("usage-experts-option", "experts --bogus", "--bogus"),
    R("usage-inspect-missing", "inspect", "PATH"),
    R("usage-base-command", "base bogus", "bogus"),
    R("usage-base-info-option", "base info --bogus", "--bogus"),
    R("usage-base-prepare-option", "base prepare --bogus", "--bogus"),
    R("usage-dims-option", "dims --bogus", "--bogus"),
    R("usage-train-expert-dim", "train-expert", "--dim"),
    R("usage-train-expert-steps-text", "train-expert --dim concise --steps many", "--steps", "'many'"),
    R("usage-train-reward-pairs", "train-reward --dim concise", "--pairs"),
    R("usage-train-reward-dim", "train-reward --pairs {pairs}", "--dim"),
    R("usage-generate-out", "generate --prompts heldout", "--out"),
    R("usage-generate-prompts", "generate --out {tmp}/r.jsonl", "--prompts", outs="{tmp}/r.jsonl"),
    R("usage-eval-weights", "eval --out {tmp}/ev", "--weights", outs="{tmp}/ev"),
    R("usage-sweep-experts", "sweep --out {tmp}/sw", "--experts", outs="{tmp}/sw"),
    R("usage-sweep-grid-text", SW + " --grid five", "--grid", "'five'", outs="{tmp}/sw"),
    R("usage-ask-rounds-text", ASK + " --rounds ten", "--rounds", "'ten'"),
    R("usage-fit-weights-missing", "fit-weights", "ANSWERS"),
    R("usage-fit-population-missing", "fit-population", "ANSWERS"),
    R("usage-build-pool-out", "build-pool", "--out"),
    R("usage-serve-port-text", "serve --users x.yaml --port http", "--port", "'http'"),
    R("usage-serve-max-loras-text", "serve --users x.yaml --max-loras many", "--max-loras"),
    R("usage-serve-kv-text", "serve --users x.yaml --kv-cache-gb lots", "--kv-cache-gb", "'lots'"),
    R("usage-serve-len-float", "serve --users x.yaml --max-model-len 1.5", "--max-model-len"),
    R("usage-serve-option", "serve --bogus", "--bogus"),
    R("serve-port-big", "serve --users {missing} --port 99999", "--port", "99999"),
    R("serve-port-zero", "serve --users {missing} --port 0", "--port", "'0'"),
    R("serve-port-negative", "serve --users {missing} --port -1", "--port", "'-1'"),
    R("serve-kv-nan", "serve --users {missing} --kv-cache-gb nan", "--kv-cache-gb", "nan"),
    R("serve-kv-negative", "serve --users {missing} --kv-cache-gb -1", "--kv-cache-gb", "-1"),
    R("serve-max-loras-zero", "serve --users {missing} --max-loras 0", "--max-loras", "'0'"),
    R("serve-max-model-len-zero", "serve --users {missing} --max-model-len 0", "--max-model-len", "'0'"),
    R("serve-max-lora-rank-big", "serve --users {missing} --max-lora-rank 100000", "--max-lora-rank"),
    R("serve-max-users-zero", "serve --users {missing} --max-users 0", "--max-users", "'0'"),
    R("serve-threads-zero", "serve --users {missing} --threads 0", "--threads", "'0'"),
    R("serve-users-missing", "serve --users {missing}", "--users", "not found"),
    R("serve-add-port-big", "serve add dave --weights 1 --port 99999", "--port", "99999"),
    R("serve-add-port-zero", "serve add dave --weights 1 --port 0", "--port", "'0'"),
    R("usage-serve-add-user", "serve add", "USER"),
    R("usage-serve-add-port", "serve add dave --weights 1 --port http", "--port", "'http'"),
    R("usage-serve-add-option", "serve add dave --bogus", "--bogus"),
    R("usage-playground-port-0", "playground --port 0", "--port", "'0'"),
    R("usage-playground-port-big", "playground --port 99999", "--port", "99999"),
    R("usage-playground-port-text", "playground --port http", "--port"),
    R("usage-playground-tokens-0", "playground --max-new-tokens 0", "--max-new-tokens"),
    R("usage-playground-tokens-big", "playground --max-new-tokens 100000", "--max-new-tokens"),
    R("usage-playground-rounds-0", "playground --rounds 0", "--rounds"),
    R("usage-playground-threads-0", "playground --threads 0", "--threads"),
    R("usage-playground-seed-text", "playground --seed x", "--seed"),

    # --- merge: weights
    R("merge-weights-empty", MW.replace("1,1", "' '") + " --out " + OUT, "--weights", "empty", outs=OUT),
    R("merge-weights-commas", MW.replace("1,1", ",,,") + " --out " + OUT, "--weights", "empty", outs=OUT),
    R("merge-weights-text", M + " --weights 1,x --out " + OUT, "--weights", "'x'", "not a number", outs=OUT),
    R("merge-weights-nan", M + " --weights 1,nan --out " + OUT, "--weights", "nan", "finite", outs=OUT),
    R("merge-weights-inf", M + " --weights inf,1 --out " + OUT, "--weights", "inf", outs=OUT),
    R("merge-weights-neg-inf", M + " --weights 1,-inf --out " + OUT, "--weights", "-inf", outs=OUT),
    R("merge-weights-huge", M + " --weights 1e308,1e308 --out " + OUT, "--weights", "1e+308", outs=OUT),
    R("merge-weights-fsum-overflow", "merge --base {base} --weights 1e308,1e308,0 --experts {e1},{e2},{ex_rstr} "
      "--out " + OUT, "--weights", "1e+308", outs=OUT),
    R("merge-weights-default-set-huge", "merge --base {base} --weights 1e308,1e308 --out " + OUT, "1e+308",
      outs=OUT, env={"SOUPS_EXPERTS_DIR": "{experts}"}),
    R("merge-weights-zero", M + " --weights 0,0 --out " + OUT, "--weights", "all weights are zero", outs=OUT),
    R("merge-weights-negative-sum", M + " --weights -1,0 --out " + OUT, "--weights", "-1", "--no-normalize",
      outs=OUT),
    R("merge-weights-count-more", M + " --weights 1,0,1 --out " + OUT, "--weights", "3 weight", "2 expert",
      outs=OUT),
    R("merge-weights-count-fewer", M + " --weights 1 --out " + OUT, "--weights", "1 weight", outs=OUT),
    R("merge-weights-mixed", M + " --weights concise=1,2 --out " + OUT, "--weights", "mix of named", outs=OUT),
    R("merge-weights-unknown-name", M + " --weights rhyme=1 --out " + OUT, "--weights", "'rhyme'", outs=OUT),
    R("merge-weights-named-text", M + " --weights concise=lots --out " + OUT, "--weights concise", "'lots'",
      outs=OUT),
    R("merge-weights-named-nan", M + " --weights concise=nan --out " + OUT, "--weights", "nan", outs=OUT),
    R("merge-weights-missing", M + " --out " + OUT, "--weights", "required", outs=OUT),
    R("merge-weights-both", MW + " --weights-from {uj_nomw} --out " + OUT, "--weights", "--weights-from",
      outs=OUT),
    # --- merge: experts
    R("merge-expert-missing", "merge --base {base} --experts {e1},{root}/nope --weights 1,1 --out " + OUT,
      "nope", "not found", outs=OUT),
    R("merge-expert-empty-dir", "merge --base {base} --experts {ex_empty} --weights 1 --out " + OUT,
      "ex_empty", "adapter_config.json", outs=OUT),
    R("merge-expert-is-file", "merge --base {base} --experts {afile} --weights 1 --out " + OUT,
      "afile.txt", "not found", outs=OUT),
    R("merge-expert-twice", "merge --base {base} --experts {e1},{e1} --weights 1,1 --out " + OUT,
      "--experts", "twice", outs=OUT),
    R("merge-expert-bad-config", "merge --base {base} --experts {ex_badcfg} --weights 1 --out " + OUT,
      "ex_badcfg/adapter_config.json", "not valid JSON", outs=OUT),
    R("merge-expert-list-config", "merge --base {base} --experts {ex_listcfg} --weights 1 --out " + OUT,
      "ex_listcfg/adapter_config.json", "object", outs=OUT),
    R("merge-expert-binary-config", "merge --base {base} --experts {ex_bincfg} --weights 1 --out " + OUT,
      "ex_bincfg/adapter_config.json", "binary", outs=OUT),
    R("merge-expert-dir-config", "merge --base {base} --experts {ex_dircfg} --weights 1 --out " + OUT,
      "ex_dircfg/adapter_config.json", "directory", outs=OUT),
    R("merge-expert-loop-config", "merge --base {base} --experts {ex_loopcfg} --weights 1 --out " + OUT,
      "ex_loopcfg", "symlink loop", outs=OUT),
    R("merge-expert-rank-text", "merge --base {base} --experts {ex_rstr} --weights 1 --out " + OUT,
      "ex_rstr", "`r`", "'four'", outs=OUT),
    R("merge-expert-alpha-zero", "merge --base {base} --experts {ex_alpha0} --weights 1 --out " + OUT,
      "ex_alpha0", "lora_alpha", outs=OUT),
    R("merge-expert-dora", "merge --base {base} --experts {ex_dora} --weights 1 --out " + OUT,
      "ex_dora", "use_dora", outs=OUT),
    R("merge-expert-ia3", "merge --base {base} --experts {ex_ia3} --weights 1 --out " + OUT,
      "ex_ia3", "IA3", "LoRA", outs=OUT),
    R("merge-expert-bad-meta", "merge --base {base} --experts {ex_badmeta} --weights 1 --out " + OUT,
      "ex_badmeta/expert.json", "not valid JSON", outs=OUT),
    R("merge-expert-list-meta", "merge --base {base} --experts {ex_listmeta} --weights 1 --out " + OUT,
      "ex_listmeta/expert.json", "object", outs=OUT),
    R("merge-expert-binary-meta", "merge --base {base} --experts {ex_binmeta} --weights 1 --out " + OUT,
      "ex_binmeta/expert.json", "binary", outs=OUT),
    R("merge-expert-dir-meta", "merge --base {base} --experts {ex_dirmeta} --weights 1 --out " + OUT,
      "ex_dirmeta/expert.json", "directory", outs=OUT),
    R("merge-expert-loop-meta", "merge --base {base} --experts {ex_loopmeta} --weights 1 --out " + OUT,
      "ex_loopmeta/expert.json", "symlink loop", outs=OUT),
    R("merge-expert-dimension-list", "merge --base {base} --experts {ex_dimlist} --weights 1 --out " + OUT,
      "ex_dimlist/expert.json", "`dimension`", outs=OUT),
    R("merge-expert-base-list", "merge --base {base} --experts {ex_baselist} --weights 1 --out " + OUT,
      "ex_baselist/expert.json", "`base`", outs=OUT),
    R("merge-expert-nan-meta", "merge --base {base} --experts {ex_nanmeta} --weights 1 --out " + OUT,
      "ex_nanmeta/expert.json", "NaN", outs=OUT),
    R("merge-expert-no-weights", "merge --base {base} --experts {ex_noweights} --weights 1 --out " + OUT,
      "adapter_model.safetensors", "missing", outs=OUT),
    R("merge-expert-pickle", "merge --base {base} --experts {ex_pickle} --weights 1 --out " + OUT,
      "adapter_model.bin", "--allow-pickle", outs=OUT),
    R("merge-expert-truncated", "merge --base {base} --experts {ex_trunc} --weights 1 --out " + OUT,
      "ex_trunc", "truncated", outs=OUT),
    R("merge-expert-garbage", "merge --base {base} --experts {ex_garbage} --weights 1 --out " + OUT,
      "ex_garbage", "safetensors", outs=OUT),
    R("merge-expert-list-header", "merge --base {base} --experts {ex_listhdr} --weights 1 --out " + OUT,
      "ex_listhdr", "corrupt safetensors header", outs=OUT),
    R("merge-expert-other-base", "merge --base {base} --experts {ex_otherbase} --weights 1 --out " + OUT,
      "ex_otherbase", "trained on another base", outs=OUT),
    R("merge-expert-fingerprint", "merge --base {base} --experts {e2},{ex_fingerprint} --weights 1,1 --out " + OUT,
      "ex_fingerprint", "sha256:0000", outs=OUT),
    R("merge-expert-linear-targets", M + " --weights 1,1 --method linear --out " + OUT, "linear", "target modules",
      outs=OUT),
    # --- merge: --out
    R("merge-out-missing", MW, "--out", "required"),
    R("merge-out-is-file", MW + " --out {afile}", "--out", "not a directory", outs="{afile}"),
    R("merge-out-under-file", MW + " --out {afile}/soup", "--out", "afile.txt", "is a file",
      outs="{afile}"),
    R("merge-out-deep-under-file", MW + " --out {afile}/a/b/c", "--out", "is a file", outs="{afile}"),
    R("merge-out-unwritable", MW + " --out {unwritable}", "--out", "not writable"),
    R("merge-out-loop", MW + " --out {loop_json}", "--out", "symlink loop", outs="{loop_json}"),
    R("merge-out-dangling", MW + " --out {dangling}", "--out", "dangling", outs="{dangling}"),
    R("merge-out-not-empty", MW + " --out {nonsoups}", "--out", "not empty", "--force", outs="{nonsoups}"),
    R("merge-out-force-not-soups", MW + " --out {nonsoups} --force", "--out", "not a soups output",
      outs="{nonsoups}"),
    R("merge-out-force-cwd", MW + " --format adapter --out . --force", "--out", "current directory",
      cwd="{here}", outs="{here}"),
    R("merge-out-force-parent-of-cwd", MW + " --out .. --force", "--out", "current directory",
      cwd="{here}", outs="{here}"),
    R("merge-out-force-expert", MW + " --out {experts} --force", "--out", "not a soups output",
      outs="{experts}"),
    # --- merge: --base
    R("merge-base-missing", "merge --base {root}/nobase --experts {e1} --weights 1 --out " + OUT,
      "--base", "nobase", outs=OUT),
    R("merge-base-file", "merge --base {afile} --experts {e1} --weights 1 --out " + OUT, "--base", "afile.txt",
      outs=OUT),
    R("merge-base-empty-dir", "merge --base {dir} --experts {e1} --weights 1 --out " + OUT, "--base", "adir",
      outs=OUT),
    R("merge-base-bad-config", "merge --base {base_badcfg} --experts {e1} --weights 1 --out " + OUT,
      "base_badcfg/config.json", "not valid JSON", outs=OUT),
    R("merge-base-list-config", "merge --base {base_listcfg} --experts {e1} --weights 1 --out " + OUT,
      "base_listcfg/config.json", "object", outs=OUT),
    R("merge-base-no-config", "merge --base {base_nocfg} --experts {e1} --weights 1 --out " + OUT,
      "--base", "base_nocfg", outs=OUT),
    R("merge-base-pickle", "merge --base {base_pickle} --experts {e1} --weights 1 --out " + OUT,
      "base_pickle", "safetensors", outs=OUT),
    # --- merge: --recipe
    R("merge-recipe-missing", "merge --recipe {missing} --out " + OUT, "--recipe", "not found", outs=OUT),
    R("merge-recipe-dir", "merge --recipe {dir_yaml} --out " + OUT, "--recipe", "directory", outs=OUT),
    R("merge-recipe-loop", "merge --recipe {loop_yaml} --out " + OUT, "--recipe", "symlink loop", outs=OUT),
    R("merge-recipe-binary", "merge --recipe {bin_yaml} --out " + OUT, "--recipe", "binary", outs=OUT),
    R("merge-recipe-latin1", "merge --recipe {latin1_yaml} --out " + OUT, "--recipe", "UTF-8", outs=OUT),
    R("merge-recipe-empty", "merge --recipe {empty_yaml} --out " + OUT, "--recipe", "mapping", outs=OUT),
    R("merge-recipe-device", "merge --recipe /dev/null --out " + OUT, "--recipe", "not a regular file",
      outs=OUT),
    R("merge-recipe-huge", "merge --recipe {huge_yaml} --out " + OUT, "--recipe", "too large", outs=OUT),
    R("merge-recipe-deep", "merge --recipe {deep_yaml} --out " + OUT, "--recipe", "deep", outs=OUT),
    R("merge-recipe-bad-yaml", "merge --recipe {bad_yaml} --out " + OUT, "--recipe", "invalid YAML", outs=OUT),
    R("merge-recipe-list", "merge --recipe {list_yaml} --out " + OUT, "--recipe", "mapping", outs=OUT),
    R("merge-recipe-scalar", "merge --recipe {scalar_yaml} --out " + OUT, "--recipe", "mapping", outs=OUT),
    R("merge-recipe-unknown-field", "merge --recipe {recipe_unknown} --out " + OUT, "unknown.yaml", "`bogus`",
      outs=OUT),
    R("merge-recipe-method", "merge --recipe {recipe_method} --out " + OUT, "method.yaml", "magic", outs=OUT),
    R("merge-recipe-nan", "merge --recipe {recipe_nan} --out " + OUT, "nan.yaml", "nan", outs=OUT),
    R("merge-recipe-inf", "merge --recipe {recipe_inf} --out " + OUT, "inf.yaml", "inf", outs=OUT),
    R("merge-recipe-huge-weight", "merge --recipe {recipe_huge} --out " + OUT, "huge.yaml", "1e+300", outs=OUT),
    R("merge-recipe-no-experts", "merge --recipe {recipe_noexperts} --out " + OUT, "noexperts.yaml", "`experts`",
      outs=OUT),
    R("merge-recipe-empty-experts", "merge --recipe {recipe_emptyexperts} --out " + OUT, "emptyexperts.yaml",
      "experts", outs=OUT),
    R("merge-recipe-list-experts", "merge --recipe {recipe_listexperts} --out " + OUT, "listexperts.yaml",
      "experts", outs=OUT),
    R("merge-recipe-text-weight", "merge --recipe {recipe_strweight} --out " + OUT, "strweight.yaml", "lots",
      outs=OUT),
    R("merge-recipe-format", "merge --recipe {recipe_format} --out " + OUT, "format.yaml", "gguf", outs=OUT),
    R("merge-recipe-dtype", "merge --recipe {recipe_dtype} --out " + OUT, "dtype.yaml", "int8", outs=OUT),
    R("merge-recipe-rank-zero", "merge --recipe {recipe_rank0} --out " + OUT, "rank0.yaml", "rank", outs=OUT),
    R("merge-recipe-rank-big", "merge --base {base} --recipe {recipe_rankbig} --out " + OUT, "100000",
      "exact soup's rank", outs=OUT, env={"SOUPS_EXPERTS_DIR": "{experts}"}),
    R("merge-recipe-zero", "merge --recipe {recipe_zero} --out " + OUT, "zero.yaml", "zero", outs=OUT),
    R("merge-recipe-negative-sum", "merge --recipe {recipe_negsum} --out " + OUT, "negsum.yaml", "-1", outs=OUT),
    R("merge-recipe-normalize", "merge --recipe {recipe_normalize} --out " + OUT, "normalize.yaml", "normalize",
      outs=OUT),
    # --- merge: --weights-from
    R("merge-from-missing", M + " --weights-from {missing} --out " + OUT, "--weights-from", "not found",
      outs=OUT),
    R("merge-from-dir", M + " --weights-from {dir_json} --out " + OUT, "--weights-from", "directory", outs=OUT),
    R("merge-from-loop", M + " --weights-from {loop_json} --out " + OUT, "--weights-from", "symlink loop",
      outs=OUT),
    R("merge-from-binary", M + " --weights-from {bin_json} --out " + OUT, "--weights-from", "binary",
      outs=OUT),
    R("merge-from-latin1", M + " --weights-from {latin1_json} --out " + OUT, "--weights-from", "UTF-8",
      outs=OUT),
    R("merge-from-empty", M + " --weights-from {empty_json} --out " + OUT, "--weights-from", "JSON", outs=OUT),
    R("merge-from-bad-json", M + " --weights-from {bad_json} --out " + OUT, "--weights-from", "not valid JSON",
      outs=OUT),
    R("merge-from-list", M + " --weights-from {list_json} --out " + OUT, "--weights-from", "object", outs=OUT),
    R("merge-from-nan", M + " --weights-from {nan_json} --out " + OUT, "--weights-from", "NaN", outs=OUT),
    R("merge-from-device", M + " --weights-from /dev/null --out " + OUT, "--weights-from", "regular file",
      outs=OUT),
    R("merge-from-no-mapping", M + " --weights-from {uj_nomw} --out " + OUT, "--weights-from",
      "merge_weights", outs=OUT),
    R("merge-from-list-mapping", M + " --weights-from {uj_mwlist} --out " + OUT, "merge_weights", outs=OUT),
    R("merge-from-text-value", M + " --weights-from {uj_mwstr} --out " + OUT, "merge_weights.concise",
      "'high'", outs=OUT),
    R("merge-from-bool-value", M + " --weights-from {uj_mwbool} --out " + OUT, "merge_weights.concise", "True",
      outs=OUT),
    R("merge-from-empty-mapping", M + " --weights-from {uj_mwempty} --out " + OUT, "merge_weights", outs=OUT),
    R("merge-from-huge", "merge --base {base} --weights-from {uj_mwhuge} --out " + OUT, "1e+308", outs=OUT,
      env={"SOUPS_EXPERTS_DIR": "{experts}"}),
    R("merge-from-unknown-expert", M + " --weights-from {uj_mwunknown} --out " + OUT, "'rhyme'", outs=OUT),
    # --- merge: method, parameters, format, dtype, shards
    R("merge-method-unknown", MW + " --method magic --out " + OUT, "--method", "'magic'", "exact, linear, svd",
      outs=OUT),
    R("merge-svd-no-rank", MW + " --method svd --out " + OUT, "--rank", "svd needs", outs=OUT),
    R("merge-svd-rank-zero", MW + " --method svd --rank 0 --out " + OUT, "--rank", "'0'", outs=OUT),
    R("merge-svd-rank-negative", MW + " --method svd --rank -1 --out " + OUT, "--rank", "'-1'", outs=OUT),
    R("merge-svd-rank-huge", MW + " --method svd --rank 100000 --format adapter --out " + OUT, "--rank 100000",
      "exact soup's rank 6", outs=OUT),
    R("merge-svd-rank-just-over", MW + " --method svd --rank 7 --format adapter --out " + OUT, "--rank 7",
      "--rank 6", outs=OUT),
    R("merge-svd-rank-over-kept", M + " --weights 1,0 --method svd --rank 5 --out " + OUT, "--rank 5", "rank 4",
      outs=OUT),
    R("merge-svd-param-text", MW + " --method svd --param rank=x --out " + OUT, "--rank", "'x'", outs=OUT),
    R("merge-svd-param-float", MW + " --method svd --param rank=1.5 --out " + OUT, "--rank", "1.5", outs=OUT),
    R("merge-svd-param-over", MW + " --method svd --param rank=99 --out " + OUT, "99", "exact soup's rank",
      outs=OUT),
    R("merge-param-no-equals", MW + " --param rank --out " + OUT, "--param rank", "KEY=VALUE", outs=OUT),
    R("merge-param-no-key", MW + " --param =3 --out " + OUT, "--param =3", "KEY=VALUE", outs=OUT),
    R("merge-param-unknown", MW + " --param bogus=1 --out " + OUT, "--param bogus", "not a soup field",
      outs=OUT),
    R("merge-param-for-exact", MW + " --rank 4 --out " + OUT, "--rank", "method exact", outs=OUT),
    R("merge-format-unknown", MW + " --format gguf --out " + OUT, "--format", "gguf", outs=OUT),
    R("merge-dtype-int8", MW + " --dtype int8 --out " + OUT, "--dtype", "int8", outs=OUT),
    R("merge-dtype-unknown", MW + " --dtype float128 --out " + OUT, "--dtype", "float128", outs=OUT),
    R("merge-shard-unit", MW + " --shard-size 5XB --out " + OUT, "--shard-size", "5XB", outs=OUT),
    R("merge-shard-zero", MW + " --shard-size 0 --out " + OUT, "--shard-size", "'0'", outs=OUT),
    R("merge-shard-negative", MW + " --shard-size -1GB --out " + OUT, "--shard-size", "-1GB", outs=OUT),
    R("merge-shard-tiny", MW + " --shard-size 10B --out " + OUT, "--shard-size", "10B", outs=OUT),
    R("merge-shard-overflow", MW + " --shard-size " + "9" * 400 + " --out " + OUT, "--shard-size", outs=OUT),
    R("merge-shard-nan", MW + " --shard-size nanGB --out " + OUT, "--shard-size", "nanGB", outs=OUT),

    # --- experts / inspect / dims
    R("experts-broken-expert", "experts", "ex_alpha0/adapter_config.json", "lora_alpha",
      env={"SOUPS_EXPERTS_DIR": "{root}/zoo"}),
    R("scale-alpha-zero", "scale-expert {e1} --alpha 0 --out " + OUT, "--alpha", "(0, 100]", outs=OUT),
    R("scale-alpha-nan", "scale-expert {e1} --alpha nan --out " + OUT, "--alpha", "nan", outs=OUT),
    R("scale-alpha-text", "scale-expert {e1} --alpha big --out " + OUT, "--alpha", "big"),
    R("scale-alpha-missing", "scale-expert {e1} --out " + OUT, "--alpha", outs=OUT),
    R("scale-out-missing", "scale-expert {e1} --alpha 2", "--out"),
    R("scale-out-is-source", "scale-expert {e1} --alpha 2 --out {e1}", "--out", "source"),
    R("scale-expert-missing", "scale-expert {missing} --alpha 2 --out " + OUT, "not found", outs=OUT),
    R("scale-expert-bad-config", "scale-expert {ex_badcfg} --alpha 2 --out " + OUT, "adapter_config.json", "JSON",
      outs=OUT),
    R("scale-expert-dora", "scale-expert {ex_dora} --alpha 2 --out " + OUT, "DoRA", outs=OUT),
    R("scale-expert-pickle", "scale-expert {ex_pickle} --alpha 2 --out " + OUT, "--allow-pickle", outs=OUT),
    R("scale-out-file", "scale-expert {e1} --alpha 2 --out {afile}", "--out", "not a directory"),
    R("inspect-missing", "inspect {missing}", "PATH", "not found"),
    R("inspect-file", "inspect {afile}", "PATH", "afile.txt", "not a directory"),
    R("inspect-loop", "inspect {loop_json}", "PATH", "symlink loop"),
    R("inspect-empty-dir", "inspect {dir}", "adir", "not an expert"),
    R("inspect-soup-bad-json", "inspect {soup_badjson}", "soup_badjson/soup.json", "not valid JSON"),
    R("inspect-soup-list", "inspect {soup_list}", "soup_list/soup.json", "object"),
    R("inspect-soup-empty", "inspect {soup_empty}", "soup_empty/soup.json", "not a soup record"),
    R("inspect-soup-base-text", "inspect {soup_basestr}", "soup_basestr/soup.json", "not a soup record"),
    R("inspect-soup-binary", "inspect {soup_bin}", "soup_bin/soup.json", "binary"),
    R("inspect-expert-bad-config", "inspect {ex_badcfg}", "ex_badcfg/adapter_config.json", "JSON"),
    R("inspect-expert-list-config", "inspect {ex_listcfg}", "ex_listcfg/adapter_config.json", "object"),
    R("inspect-expert-bad-meta", "inspect {ex_badmeta}", "ex_badmeta/expert.json", "JSON"),
    R("inspect-expert-list-meta", "inspect {ex_listmeta}", "ex_listmeta/expert.json", "object"),
    R("inspect-expert-dir-meta", "inspect {ex_dirmeta}", "ex_dirmeta/expert.json", "directory"),
    R("inspect-expert-base-list", "inspect {ex_baselist}", "ex_baselist/expert.json", "`base`"),
    R("inspect-expert-truncated", "inspect {ex_trunc}", "ex_trunc", "truncated"),
    R("inspect-model-bad-config", "inspect {base_badcfg}", "base_badcfg/config.json", "JSON"),
    R("inspect-model-list-config", "inspect {base_listcfg}", "base_listcfg/config.json", "object"),
    R("inspect-model-pickle", "inspect {base_pickle}", "base_pickle", "safetensors"),
    R("dims-bad-yaml", "dims", "concise.yaml", "invalid YAML", env={"SOUPS_EXPERTS_DIR": "{dims_badyaml}"}),
    R("dims-binary-yaml", "dims", "concise.yaml", "binary", env={"SOUPS_EXPERTS_DIR": "{dims_binary}"}),
    R("dims-unknown-field", "dims", "concise.yaml", "`bogus`", env={"SOUPS_EXPERTS_DIR": "{dims_field}"}),
    R("dims-unknown-kind", "dims", "concise.yaml", "magic", env={"SOUPS_EXPERTS_DIR": "{dims_kind}"}),
    R("dims-unknown-opposite", "dims", "concise.yaml", "opposite", "'nope'",
      env={"SOUPS_EXPERTS_DIR": "{dims_opposite}"}),
    R("dims-key-aws", "dims", "concise.yaml", "api_key_env", "AWS_SECRET_ACCESS_KEY",
      env={"SOUPS_EXPERTS_DIR": "{dims_aws}", **AWS}),
    R("dims-key-home", "dims", "concise.yaml", "api_key_env", "'HOME'", env={"SOUPS_EXPERTS_DIR": "{dims_home}"}),
    R("dims-key-github", "dims", "concise.yaml", "GITHUB_TOKEN", env={"SOUPS_EXPERTS_DIR": "{dims_gh}"}),
    R("dims-url-file", "dims", "concise.yaml", "url", "file:///etc/passwd", env={"SOUPS_EXPERTS_DIR": "{dims_file}"}),
    R("dims-score-key-over-http", "dims --score hello", "http", "SOUPS_TEST_API_KEY", "judge.example",
      env={"SOUPS_EXPERTS_DIR": "{dims_http}", "SOUPS_TEST_API_KEY": "k"}),

    # --- train-expert: all before the model loads
    R("train-expert-dim-unknown", TE.replace("concise", "rhyme"), "'rhyme'", "known", outs="{tmp}/ex"),
    R("train-expert-dim-missing-file", TE.replace("--dim concise", "--dim {root}/rhyme.yaml"), "rhyme.yaml",
      "not found", outs="{tmp}/ex"),
    R("train-expert-dim-dir", TE.replace("--dim concise", "--dim {dir_yaml}"), "dir.yaml", outs="{tmp}/ex"),
    R("train-expert-dim-binary", TE.replace("--dim concise", "--dim {bin_yaml}"), "bin.yaml", "binary",
      outs="{tmp}/ex"),
    R("train-expert-dim-bad-yaml", TE.replace("--dim concise", "--dim {bad_yaml}"), "bad.yaml", "YAML",
      outs="{tmp}/ex"),
    R("train-expert-dim-list", TE.replace("--dim concise", "--dim {list_yaml}"), "list.yaml", "mapping",
      outs="{tmp}/ex"),
    R("train-expert-dim-key-aws", TE, "api_key_env", "AWS_SECRET_ACCESS_KEY", outs="{tmp}/ex",
      env={"SOUPS_EXPERTS_DIR": "{dims_aws}", **AWS}),
    R("train-expert-dim-key-http", TE, "http", "SOUPS_TEST_API_KEY", outs="{tmp}/ex",
      env={"SOUPS_EXPERTS_DIR": "{dims_http}", "SOUPS_TEST_API_KEY": "k"}),
    R("train-expert-config-missing", TE + " --config {missing}", "--config", "not found", outs="{tmp}/ex"),
    R("train-expert-config-dir", TE + " --config {dir_yaml}", "--config", "directory", outs="{tmp}/ex"),
    R("train-expert-config-loop", TE + " --config {loop_yaml}", "--config", "symlink loop", outs="{tmp}/ex"),
    R("train-expert-config-binary", TE + " --config {bin_yaml}", "--config", "binary", outs="{tmp}/ex"),
    R("train-expert-config-latin1", TE + " --config {latin1_yaml}", "--config", "UTF-8", outs="{tmp}/ex"),
    R("train-expert-config-bad-yaml", TE + " --config {bad_yaml}", "--config", "YAML", outs="{tmp}/ex"),
    R("train-expert-config-list", TE + " --config {list_yaml}", "--config", "mapping", outs="{tmp}/ex"),
    R("train-expert-config-device", TE + " --config /dev/null", "--config", "regular file", outs="{tmp}/ex"),
    R("train-expert-config-unknown", TE + " --config {cfg_unknown}", "cfg_unknown.yaml", "bogus_field",
      outs="{tmp}/ex"),
    R("train-expert-config-steps", TE + " --config {cfg_steps}", "cfg_steps.yaml", "steps", "-3",
      outs="{tmp}/ex"),
    R("train-expert-config-lr-nan", TE + " --config {cfg_lr}", "cfg_lr.yaml", "learning_rate", outs="{tmp}/ex"),
    R("train-expert-config-algo", TE + " --config {cfg_algo}", "cfg_algo.yaml", "dpo", outs="{tmp}/ex"),
    R("train-expert-config-lora-list", TE + " --config {cfg_lora}", "cfg_lora.yaml", "lora", outs="{tmp}/ex"),
    R("train-expert-config-presets-list", TE + " --config {cfg_presets}", "cfg_presets.yaml", "presets",
      outs="{tmp}/ex"),
    R("train-expert-config-rank-zero", TE + " --config {cfg_rank}", "cfg_rank.yaml", "lora.r", outs="{tmp}/ex"),
    R("train-expert-preset", TE + " --preset turbo", "--preset turbo", "cpu", outs="{tmp}/ex"),
    R("train-expert-algo", TE + " --algo dpo", "--algo dpo", "ppo, rloo or grpo", outs="{tmp}/ex"),
    R("train-expert-steps-zero", TE + " --steps 0", "--steps", "'0'", outs="{tmp}/ex"),
    R("train-expert-steps-negative", TE + " --steps -5", "--steps", "'-5'", outs="{tmp}/ex"),
    R("train-expert-steps-huge", TE + " --steps 10000000000", "--steps", outs="{tmp}/ex"),
    R("train-expert-seed-negative", TE + " --seed -1", "--seed", "'-1'", outs="{tmp}/ex"),
    R("train-expert-seed-2-32", TE + " --seed 4294967296", "--seed", "4294967296", outs="{tmp}/ex"),
    R("train-expert-set-no-equals", TE + " --set steps", "--set", "KEY=VALUE", outs="{tmp}/ex"),
    R("train-expert-set-unknown", TE + " --set bogus=1", "bogus", outs="{tmp}/ex"),
    R("train-expert-set-steps-zero", TE + " --set steps=0", "steps", outs="{tmp}/ex"),
    R("train-expert-set-lr-nan", TE + " --set learning_rate=.nan", "learning_rate", outs="{tmp}/ex"),
    R("train-expert-set-bad-yaml", TE + " --set 'lora.targets=[q_proj'", "--set", "YAML", outs="{tmp}/ex"),
    R("train-expert-set-warm-start", TE + " --set warm_start.keep=2", "warm_start.keep", outs="{tmp}/ex"),
    R("train-expert-prompts-missing", TE + " --prompts {missing}", "no-such-file", outs="{tmp}/ex"),
    R("train-expert-prompts-dir", TE + " --prompts {dir_jsonl}", "dir.jsonl", outs="{tmp}/ex"),
    R("train-expert-prompts-binary", TE + " --prompts {bin_jsonl}", "bin.jsonl", outs="{tmp}/ex"),
    R("train-expert-prompts-bad", TE + " --prompts {bad_jsonl}", "bad.jsonl:2", "invalid JSON", outs="{tmp}/ex"),
    R("train-expert-prompts-one", TE + " --prompts {one_prompt}", "--prompts", "at least 2", outs="{tmp}/ex"),
    R("train-expert-prompts-empty", TE + " --prompts {empty_txt}", "empty.txt", "no prompts", outs="{tmp}/ex"),
    R("train-expert-out-under-file", TE.replace("{tmp}/ex", "{afile}/ex"), "--out", "is a file",
      outs="{afile}"),
    R("train-expert-out-not-soups", TE.replace("{tmp}/ex", "{nonsoups}") + " --force", "--out",
      "not a soups output", outs="{nonsoups}"),
    R("train-expert-out-unwritable", TE.replace("{tmp}/ex", "{unwritable}"), "--out", "not writable"),
    R("train-expert-run-dir-under-file", TE.replace("{tmp}/run", "{afile}/run"), "--run-dir", "is a file",
      outs=("{afile}", "{tmp}/ex")),
    R("train-expert-run-dir-unwritable", TE.replace("{tmp}/run", "{unwritable}"), "--run-dir", "not writable",
      outs="{tmp}/ex"),
    R("train-expert-base-missing", TE.replace("--base {base}", "--base {root}/nobase"), "--base", "nobase",
      outs="{tmp}/ex"),
    R("train-expert-base-bad-config", TE.replace("--base {base}", "--base {base_badcfg}"), "config.json",
      outs="{tmp}/ex"),
    # --- make-pairs
    R("make-pairs-out-exists", MP.replace("{tmp}/p.jsonl", "{pairs}"), "--out", "--force", outs="{pairs}"),
    R("make-pairs-out-dir", MP.replace("{tmp}/p.jsonl", "{dir_jsonl}"), "--out", "directory"),
    R("make-pairs-out-unwritable", MP.replace("{tmp}/p.jsonl", UNWRITABLE + "/p.jsonl"), "--out"),
    R("make-pairs-dim-unknown", MP.replace("unfriendly", "rhyme"), "'rhyme'", "known", outs="{tmp}/p.jsonl"),
    R("make-pairs-dim-bad-yaml", MP.replace("--dim unfriendly", "--dim {bad_yaml}"), "bad.yaml", "YAML",
      outs="{tmp}/p.jsonl"),
    R("make-pairs-base-missing", MP.replace("--base {base}", "--base {root}/nobase"), "--base", "nobase",
      outs="{tmp}/p.jsonl"),
    R("make-pairs-prompts-zero", MP + " --prompts 0", "--prompts", "'0'", outs="{tmp}/p.jsonl"),
    R("make-pairs-prompts-file-missing", MP + " --prompts-file {missing}", "--prompts-file", "no such file",
      outs="{tmp}/p.jsonl"),
    R("make-pairs-samples-zero", MP + " --samples 0", "--samples", "'0'", outs="{tmp}/p.jsonl"),
    R("make-pairs-temperature-nan", MP + " --temperature nan", "--temperature", "'nan'", outs="{tmp}/p.jsonl"),
    R("make-pairs-tokens-zero", MP + " --max-new-tokens 0", "--max-new-tokens", "'0'", outs="{tmp}/p.jsonl"),
    R("make-pairs-engine-bad", MP + " --engine fast", "--engine", "fast", outs="{tmp}/p.jsonl"),
    R("make-pairs-match-length-zero", MP + " --match-length 0", "--match-length", "'0'", outs="{tmp}/p.jsonl"),
    # --- train-reward
    R("train-reward-pairs-missing", TR.replace("{pairs}", "{missing}"), "--pairs", "not found", outs="{tmp}/rm"),
    R("train-reward-pairs-dir", TR.replace("{pairs}", "{dir_jsonl}"), "--pairs", "directory", outs="{tmp}/rm"),
    R("train-reward-pairs-loop", TR.replace("{pairs}", "{loop_jsonl}"), "--pairs", "symlink loop",
      outs="{tmp}/rm"),
    R("train-reward-pairs-binary", TR.replace("{pairs}", "{bin_jsonl}"), "bin.jsonl", outs="{tmp}/rm"),
    R("train-reward-pairs-empty", TR.replace("{pairs}", "{empty_jsonl}"), "--pairs", "0 pairs", outs="{tmp}/rm"),
    R("train-reward-pairs-bad", TR.replace("{pairs}", "{bad_jsonl}"), "bad.jsonl:2", outs="{tmp}/rm"),
    R("train-reward-pairs-list", TR.replace("{pairs}", "{list_jsonl}"), "list.jsonl:1", outs="{tmp}/rm"),
    R("train-reward-pairs-nul", TR.replace("{pairs}", "{nul_jsonl}"), "nul.jsonl:1", outs="{tmp}/rm"),
    R("train-reward-pairs-deep", TR.replace("{pairs}", "{deep_jsonl}"), "deep.jsonl:1", outs="{tmp}/rm"),
    R("train-reward-pairs-few", TR.replace("{pairs}", "{pairs_few}"), "--pairs", "3 pairs", outs="{tmp}/rm"),
    R("train-reward-pairs-field", TR.replace("{pairs}", "{pairs_field}"), "pairs_field.jsonl:1", "rejected",
      outs="{tmp}/rm"),
    R("train-reward-pairs-number", TR.replace("{pairs}", "{pairs_num}"), "pairs_num.jsonl:1", "chosen",
      outs="{tmp}/rm"),
    R("train-reward-epochs-negative", TR + " --epochs -1", "--epochs", "'-1'", outs="{tmp}/rm"),
    R("train-reward-epochs-zero", TR + " --epochs 0", "--epochs", "'0'", outs="{tmp}/rm"),
    R("train-reward-epochs-nan", TR + " --epochs nan", "--epochs", "'nan'", outs="{tmp}/rm"),
    R("train-reward-epochs-inf", TR + " --epochs inf", "--epochs", "'inf'", outs="{tmp}/rm"),
    R("train-reward-lr-negative", TR + " --lr -1", "--lr", "'-1'", outs="{tmp}/rm"),
    R("train-reward-lr-zero", TR + " --lr 0", "--lr", "'0'", outs="{tmp}/rm"),
    R("train-reward-lr-nan", TR + " --lr nan", "--lr", "'nan'", outs="{tmp}/rm"),
    R("train-reward-lr-huge", TR + " --lr 1e10", "--lr", outs="{tmp}/rm"),
    R("train-reward-batch-zero", TR + " --batch-size 0", "--batch-size", "'0'", outs="{tmp}/rm"),
    R("train-reward-batch-negative", TR + " --batch-size -8", "--batch-size", "'-8'", outs="{tmp}/rm"),
    R("train-reward-batch-huge", TR + " --batch-size 1000000", "--batch-size", outs="{tmp}/rm"),
    R("train-reward-eval-nan", TR + " --eval-frac nan", "--eval-frac", "'nan'", outs="{tmp}/rm"),
    R("train-reward-eval-over-one", TR + " --eval-frac 1.5", "--eval-frac", "'1.5'", outs="{tmp}/rm"),
    R("train-reward-eval-zero", TR + " --eval-frac 0", "--eval-frac", "'0'", outs="{tmp}/rm"),
    R("train-reward-eval-negative", TR + " --eval-frac -0.2", "--eval-frac", outs="{tmp}/rm"),
    R("train-reward-method-bad", TR + " --method svm", "--method", "svm", outs="{tmp}/rm"),
    R("train-reward-seed-negative", TR + " --seed -1", "--seed", "'-1'", outs="{tmp}/rm"),
    R("train-reward-seed-2-32", TR + " --seed 4294967296", "--seed", outs="{tmp}/rm"),
    R("train-reward-out-under-file", TR.replace("{tmp}/rm", "{afile}/rm"), "--out", "is a file", outs="{afile}"),
    R("train-reward-out-not-empty", TR.replace("{tmp}/rm", "{nonsoups}"), "--out", "not empty",
      outs="{nonsoups}"),
    R("train-reward-out-not-soups", TR.replace("{tmp}/rm", "{nonsoups}") + " --force", "not a soups output",
      outs="{nonsoups}"),
    R("train-reward-out-unwritable", TR.replace("{tmp}/rm", "{unwritable}"), "--out", "not writable"),
    R("train-reward-base-missing", TR.replace("--base {base}", "--base {root}/nobase"), "--base", "nobase",
      outs="{tmp}/rm"),
    R("train-reward-default-out-cwd", "train-reward --dim concise --base {base} --pairs {pairs_few}", "3 pairs"),

    # --- generate
    R("generate-prompts-missing", G.replace("{prompts}", "{missing}"), "no-such-file", outs="{tmp}/r.jsonl"),
    R("generate-prompts-split", G.replace("{prompts}", "validation"), "validation", "heldout",
      outs="{tmp}/r.jsonl"),
    R("generate-prompts-dir", G.replace("{prompts}", "{dir_jsonl}"), "dir.jsonl", outs="{tmp}/r.jsonl"),
    R("generate-prompts-loop", G.replace("{prompts}", "{loop_txt}"), "loop.txt", outs="{tmp}/r.jsonl"),
    R("generate-prompts-binary-txt", G.replace("{prompts}", "{bin_txt}"), "bin.txt", outs="{tmp}/r.jsonl"),
    R("generate-prompts-binary-jsonl", G.replace("{prompts}", "{bin_jsonl}"), "bin.jsonl", outs="{tmp}/r.jsonl"),
    R("generate-prompts-latin1", G.replace("{prompts}", "{latin1_txt}"), "latin1.txt", "UTF-8",
      outs="{tmp}/r.jsonl"),
    R("generate-prompts-empty", G.replace("{prompts}", "{empty_jsonl}"), "empty.jsonl", "no prompts",
      outs="{tmp}/r.jsonl"),
    R("generate-prompts-bad", G.replace("{prompts}", "{bad_jsonl}"), "bad.jsonl:2", outs="{tmp}/r.jsonl"),
    R("generate-prompts-no-field", G.replace("{prompts}", "{prompts_noprompt}"), "noprompt.jsonl:1", "prompt",
      outs="{tmp}/r.jsonl"),
    R("generate-prompts-blank-field", G.replace("{prompts}", "{prompts_empty_field}"), "emptyfield.jsonl:1",
      "empty", outs="{tmp}/r.jsonl"),
    R("generate-prompts-number", G.replace("{prompts}", "{prompts_num}"), "num.jsonl:1", "string",
      outs="{tmp}/r.jsonl"),
    R("generate-out-dir", G.replace("{tmp}/r.jsonl", "{dir}"), "--out", "directory", outs="{dir}"),
    R("generate-out-exists", G.replace("{tmp}/r.jsonl", "{existing_jsonl}"), "--out", "--force",
      outs="{existing_jsonl}"),
    R("generate-out-under-file", G.replace("{tmp}/r.jsonl", "{afile}/r.jsonl"), "--out", "is a file",
      outs="{afile}"),
    R("generate-out-unwritable", G.replace("{tmp}/r.jsonl", "{unwritable}/r.jsonl"), "--out", "not writable"),
    R("generate-soup-and-weights", G + " --soup {e1}", "--soup", "--weights", outs="{tmp}/r.jsonl"),
    R("generate-neither", "generate --prompts {prompts} --out {tmp}/r.jsonl", "--soup", "--weights",
      outs="{tmp}/r.jsonl"),
    R("generate-soup-missing", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {missing}", "--soup",
      "not found", outs="{tmp}/r.jsonl"),
    R("generate-soup-file", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {afile}", "--soup",
      "afile.txt", outs="{tmp}/r.jsonl"),
    R("generate-soup-empty-dir", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {dir}", "--soup",
      "adir", outs="{tmp}/r.jsonl"),
    R("generate-soup-pickle", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {ex_pickle}",
      "adapter_model.bin", "pickled", outs="{tmp}/r.jsonl"),
    R("generate-soup-model-pickle", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {base_pickle}",
      "base_pickle", "safetensors", outs="{tmp}/r.jsonl"),
    R("generate-soup-bad-config", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {ex_badcfg}",
      "adapter_config.json", "JSON", outs="{tmp}/r.jsonl"),
    R("generate-soup-list-meta", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {ex_listmeta}",
      "expert.json", "object", outs="{tmp}/r.jsonl"),
    R("generate-soup-bad-soup-json", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {soup_badjson}",
      "soup.json", "JSON", outs="{tmp}/r.jsonl"),
    R("generate-soup-list-soup-json", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {soup_list}",
      "soup.json", "object", outs="{tmp}/r.jsonl"),
    R("generate-model-bad-config", "generate --prompts {prompts} --out {tmp}/r.jsonl --soup {base_badcfg}",
      "config.json", "JSON", outs="{tmp}/r.jsonl"),
    R("generate-weights-nan", G.replace("1,1", "nan,1"), "--weights", "nan", outs="{tmp}/r.jsonl"),
    R("generate-weights-count", G.replace("1,1", "1,1,1"), "--weights", "3 weight", outs="{tmp}/r.jsonl"),
    R("generate-weights-huge", G.replace("1,1", "1e308,1e308"), "--weights", "1e+308", outs="{tmp}/r.jsonl"),
    R("generate-expert-missing", G.replace("{e2}", "{root}/nope"), "nope", "not found", outs="{tmp}/r.jsonl"),
    R("generate-expert-bad-meta", G.replace("{e2}", "{ex_badmeta}"), "expert.json", outs="{tmp}/r.jsonl"),
    R("generate-method", G + " --method magic", "--method", "magic", outs="{tmp}/r.jsonl"),
    R("generate-svd-rank-over", G + " --method svd --param rank=50", "50", "exact soup's rank",
      outs="{tmp}/r.jsonl"),
    R("generate-param", G + " --param rank", "--param", "KEY=VALUE", outs="{tmp}/r.jsonl"),
    R("generate-engine", G + " --engine llama.cpp", "--engine", "llama.cpp", outs="{tmp}/r.jsonl"),
    R("generate-tokens-zero", G + " --max-new-tokens 0", "--max-new-tokens", "'0'", outs="{tmp}/r.jsonl"),
    R("generate-tokens-negative", G + " --max-new-tokens -5", "--max-new-tokens", outs="{tmp}/r.jsonl"),
    R("generate-tokens-huge", G + " --max-new-tokens 10000000", "--max-new-tokens", outs="{tmp}/r.jsonl"),
    R("generate-batch-zero", G + " --batch-size 0", "--batch-size", "'0'", outs="{tmp}/r.jsonl"),
    R("generate-batch-huge", G + " --batch-size 99999999", "--batch-size", outs="{tmp}/r.jsonl"),
    R("generate-seed-negative", G + " --seed -1", "--seed", outs="{tmp}/r.jsonl"),
    R("generate-seed-2-32", G + " --seed 4294967296", "--seed", "4294967296", outs="{tmp}/r.jsonl"),
    R("generate-dtype-int8", G + " --dtype int8", "--dtype", "'int8'", outs="{tmp}/r.jsonl"),
    R("generate-dtype-unknown", G + " --dtype fp8", "--dtype", "'fp8'", outs="{tmp}/r.jsonl"),
    R("generate-limit-zero", G + " --limit 0", "--limit", "'0'", outs="{tmp}/r.jsonl"),
    R("generate-limit-negative", G + " --limit -3", "--limit", outs="{tmp}/r.jsonl"),
    R("generate-base-missing", G.replace("--base {base}", "--base {root}/nobase"), "--base", "nobase",
      outs="{tmp}/r.jsonl"),

    # --- eval
    R("eval-weights-text", EV.replace("1,1", "1,x"), "--weights", "'x'", outs="{tmp}/ev"),
    R("eval-weights-zero", EV.replace("1,1", "0,0"), "--weights", "zero", outs="{tmp}/ev"),
    R("eval-weights-huge", EV.replace("1,1", "1e308,1e308"), "--weights", "1e+308", outs="{tmp}/ev"),
    R("eval-expert-missing", EV.replace("{e2}", "{root}/nope"), "nope", outs="{tmp}/ev"),
    R("eval-expert-bad-meta", EV.replace("{e2}", "{ex_badmeta}"), "expert.json", "JSON", outs="{tmp}/ev"),
    R("eval-expert-list-meta", EV.replace("{e2}", "{ex_listmeta}"), "expert.json", "object", outs="{tmp}/ev"),
    R("eval-out-under-file", EV.replace("{tmp}/ev", "{afile}/ev"), "--out", "is a file", outs="{afile}"),
    R("eval-out-not-empty", EV.replace("{tmp}/ev", "{nonsoups}"), "--out", "not empty", outs="{nonsoups}"),
    R("eval-out-not-soups", EV.replace("{tmp}/ev", "{nonsoups}") + " --force", "not a soups output",
      outs="{nonsoups}"),
    R("eval-out-unwritable", EV.replace("{tmp}/ev", "{unwritable}"), "--out", "not writable"),
    R("eval-out-cwd", EV.replace("{tmp}/ev", ".") + " --force", "--out", "current directory", cwd="{here}",
      outs="{here}"),
    R("eval-baselines", EV + " --baselines base,oracle", "--baselines", "'oracle'", outs="{tmp}/ev"),
    R("eval-method", EV + " --method magic", "--method", "magic", outs="{tmp}/ev"),
    R("eval-engine", EV + " --engine llama.cpp", "--engine", "llama.cpp", "auto", outs="{tmp}/ev"),
    R("eval-svd-no-rank", EV + " --method svd", "svd", "rank", outs="{tmp}/ev"),
    R("eval-scorer-syntax", EV + " --scorer concise", "--scorer concise", "DIMENSION=METRIC", outs="{tmp}/ev"),
    R("eval-scorer-unknown", EV + " --scorer concise=magic", "magic", outs="{tmp}/ev"),
    R("eval-judge-url-only", EV + " --judge-url http://127.0.0.1:9/v1", "--judge-url", "--judge-model",
      outs="{tmp}/ev"),
    R("eval-judge-url-scheme", EV + " --judge-url ftp://x/v1 --judge-model m", "--judge-url", "ftp://x/v1",
      outs="{tmp}/ev"),
    R("eval-judge-key-over-http", EV + " --judge-url http://judge.example/v1 --judge-model m",
      "OPENAI_API_KEY", "http", outs="{tmp}/ev", env={"OPENAI_API_KEY": "sk-test"}),
    R("eval-prompts-missing", EV.replace("{prompts}", "{missing}"), "no-such-file", outs="{tmp}/ev"),
    R("eval-prompts-binary", EV.replace("{prompts}", "{bin_jsonl}"), "bin.jsonl", outs="{tmp}/ev"),
    R("eval-limit-zero", EV + " --limit 0", "--limit", "'0'", outs="{tmp}/ev"),
    R("eval-tokens-zero", EV + " --max-new-tokens 0", "--max-new-tokens", outs="{tmp}/ev"),
    R("eval-batch-zero", EV + " --batch-size 0", "--batch-size", outs="{tmp}/ev"),
    R("eval-seed-2-32", EV + " --seed 4294967296", "--seed", outs="{tmp}/ev"),
    R("eval-seed-negative", EV + " --seed -2", "--seed", outs="{tmp}/ev"),
    R("eval-dtype-int8", EV + " --dtype int8", "--dtype", "'int8'", outs="{tmp}/ev"),
    R("eval-base-missing", EV.replace("--base {base}", "--base {root}/nobase"), "--base", outs="{tmp}/ev"),
    R("eval-dims-bad", EV, "concise.yaml", "YAML", outs="{tmp}/ev", env={"SOUPS_EXPERTS_DIR": "{dims_badyaml}"}),
    # --- sweep
    R("sweep-grid-one", SW + " --grid 1", "--grid", "'1'", outs="{tmp}/sw"),
    R("sweep-engine", SW + " --engine llama.cpp", "--engine", "llama.cpp", "auto", outs="{tmp}/sw"),
    R("sweep-grid-zero", SW + " --grid 0", "--grid", outs="{tmp}/sw"),
    R("sweep-grid-negative", SW + " --grid -4", "--grid", outs="{tmp}/sw"),
    R("sweep-grid-million", SW + " --grid 1000000", "--grid", "1000000", outs="{tmp}/sw"),
    R("sweep-one-expert", SW.replace("{e1},{e2}", "{e1}"), "--experts", "2 or 3", outs="{tmp}/sw"),
    R("sweep-four-experts", SW.replace("{e1},{e2}", "{e1},{e2},{ex_rstr},{ex_dora}"), "--experts", "got 4",
      outs="{tmp}/sw"),
    R("sweep-expert-missing", SW.replace("{e2}", "{root}/nope"), "nope", outs="{tmp}/sw"),
    R("sweep-expert-bad-meta", SW.replace("{e2}", "{ex_badmeta}"), "expert.json", outs="{tmp}/sw"),
    R("sweep-same-dimension", SW.replace("{e2}", "{ex_nanmeta}"), "ex_nanmeta/expert.json", outs="{tmp}/sw"),
    R("sweep-methods-unknown", SW + " --methods exact,magic", "--methods", "magic", outs="{tmp}/sw"),
    R("sweep-methods-empty", SW + " --methods ,", "--methods", outs="{tmp}/sw"),
    R("sweep-param", SW + " --param rank", "--param", "KEY=VALUE", outs="{tmp}/sw"),
    R("sweep-scorer", SW + " --scorer x", "--scorer", outs="{tmp}/sw"),
    R("sweep-limit-zero", SW + " --limit 0", "--limit", outs="{tmp}/sw"),
    R("sweep-tokens-zero", SW + " --max-new-tokens 0", "--max-new-tokens", outs="{tmp}/sw"),
    R("sweep-batch-zero", SW + " --batch-size 0", "--batch-size", outs="{tmp}/sw"),
    R("sweep-seed-2-32", SW + " --seed 4294967296", "--seed", outs="{tmp}/sw"),
    R("sweep-dtype", SW + " --dtype int8", "--dtype", outs="{tmp}/sw"),
    R("sweep-out-under-file", SW.replace("{tmp}/sw", "{afile}/sw"), "--out", "is a file", outs="{afile}"),
    R("sweep-out-not-soups", SW.replace("{tmp}/sw", "{nonsoups}") + " --force", "not a soups output",
      outs="{nonsoups}"),
    R("sweep-out-unwritable", SW.replace("{tmp}/sw", "{unwritable}"), "--out", "not writable"),
    R("sweep-prompts-bad", SW.replace("{prompts}", "{bad_jsonl}"), "bad.jsonl:2", outs="{tmp}/sw"),

    # --- ask
    R("ask-rounds-zero", ASK + " --rounds 0", "--rounds", "'0'"),
    R("ask-rounds-huge", ASK + " --rounds 1000000", "--rounds"),
    R("ask-seed-negative", ASK + " --seed -1", "--seed"),
    R("ask-strength-zero", ASK + " --prior-strength 0", "--prior-strength", "'0'"),
    R("ask-strength-negative", ASK + " --prior-strength -1", "--prior-strength"),
    R("ask-strength-nan", ASK + " --prior-strength nan", "--prior-strength", "'nan'"),
    R("ask-strength-inf", ASK + " --prior-strength inf", "--prior-strength", "'inf'"),
    R("ask-eof-no-answers", ASK, "--answers", "no answers", "--resume", input="", outs="{tmp}/a.jsonl"),
    R("ask-quit-no-answers", ASK, "--answers", "no answers", input="q\n", outs="{tmp}/a.jsonl"),
    R("ask-answers-dir", "ask --answers {dir_jsonl} --out {tmp}/u.json", "--answers", "directory",
      outs="{dir_jsonl}"),
    R("ask-answers-under-file", "ask --answers {afile}/a.jsonl --out {tmp}/u.json", "--answers", "is a file",
      outs="{afile}"),
    R("ask-answers-exists", "ask --answers {existing_jsonl} --out {tmp}/u.json", "--answers", "--resume",
      outs="{existing_jsonl}"),
    R("ask-answers-unwritable", "ask --answers {unwritable}/a.jsonl --out {tmp}/u.json", "--answers",
      "not writable"),
    R("ask-resume-binary", "ask --answers {bin_jsonl} --out {tmp}/u.json --resume", "bin.jsonl",
      outs="{bin_jsonl}"),
    R("ask-resume-bad-line", "ask --answers {ans_choice} --out {tmp}/u.json --resume", "ans_choice.jsonl:1",
      "choice", outs="{ans_choice}"),
    R("ask-out-dir", "ask --answers {tmp}/a.jsonl --out {dir_json}", "--out", "directory", outs="{dir_json}"),
    R("ask-out-exists", "ask --answers {tmp}/a.jsonl --out {existing_json}", "--out", "--force",
      outs="{existing_json}"),
    R("ask-out-under-file", "ask --answers {tmp}/a.jsonl --out {afile}/u.json", "--out", "is a file",
      outs="{afile}"),
    R("ask-pool-missing", ASK + " --pool {missing}", "--pool", "not found"),
    R("ask-pool-dir", ASK + " --pool {dir_jsonl}", "--pool", "directory"),
    R("ask-pool-binary", ASK + " --pool {bin_jsonl}", "bin.jsonl"),
    R("ask-pool-bad", ASK + " --pool {bad_jsonl}", "bad.jsonl:2"),
    R("ask-pool-no-pairs", ASK + " --pool {pool_nopairs}", "--pool", "two different responses"),
    R("ask-pool-empty-field", ASK + " --pool {pool_field}", "pool_field.jsonl:1", "response"),
    R("ask-pool-number", ASK + " --pool {pool_num}", "pool_num.jsonl:1", "response"),
    R("ask-dims-unknown", ASK.replace("concise,informative", "concise,rhyme"), "'rhyme'"),
    R("ask-prior-missing", ASK + " --prior {missing}", "--prior", "not found"),
    R("ask-prior-dir", ASK + " --prior {dir_json}", "--prior", "directory"),
    R("ask-prior-binary", ASK + " --prior {bin_json}", "--prior", "binary"),
    R("ask-prior-bad", ASK + " --prior {bad_json}", "--prior", "JSON"),
    R("ask-prior-list", ASK + " --prior {list_json}", "--prior", "object"),
    R("ask-prior-nan", ASK + " --prior {prior_nan}", "--prior", "NaN"),
    R("ask-prior-huge", ASK + " --prior {prior_huge}", "--prior", "finite"),
    R("ask-prior-no-dims", ASK + " --prior {prior_nodims}", "--prior", "dimensions"),
    R("ask-prior-lengths", ASK + " --prior {prior_len}", "--prior", "equal length"),
    R("ask-prior-other-dims", ASK + " --prior {prior_other}", "--prior", "concise"),
    R("ask-prior-text", ASK + " --prior {prior_str}", "--prior", "numbers"),
    R("ask-prior-cov", ASK + " --prior {prior_cov}", "--prior", "positive definite"),
    R("ask-prior-cov-shape", ASK + " --prior {prior_covshape}", "--prior", "square"),
    # --- fit-weights
    R("fit-weights-missing", FW.replace("{answers}", "{missing}"), "no-such-file", "not found",
      outs="{tmp}/u.json"),
    R("fit-weights-dir", FW.replace("{answers}", "{dir_jsonl}"), "dir.jsonl", "directory", outs="{tmp}/u.json"),
    R("fit-weights-loop", FW.replace("{answers}", "{loop_jsonl}"), "loop.jsonl", "symlink loop",
      outs="{tmp}/u.json"),
    R("fit-weights-binary", FW.replace("{answers}", "{bin_jsonl}"), "bin.jsonl", outs="{tmp}/u.json"),
    R("fit-weights-latin1", FW.replace("{answers}", "{latin1_jsonl}"), "latin1.jsonl", "UTF-8",
      outs="{tmp}/u.json"),
    R("fit-weights-device", FW.replace("{answers}", "/dev/null"), "/dev/null", "regular file",
      outs="{tmp}/u.json"),
    R("fit-weights-empty", FW.replace("{answers}", "{empty_jsonl}"), "empty.jsonl", "no answers",
      outs="{tmp}/u.json"),
    R("fit-weights-bad", FW.replace("{answers}", "{bad_jsonl}"), "bad.jsonl:2", outs="{tmp}/u.json"),
    R("fit-weights-list", FW.replace("{answers}", "{ans_list}"), "ans_list.jsonl:1", "object",
      outs="{tmp}/u.json"),
    R("fit-weights-choice", FW.replace("{answers}", "{ans_choice}"), "ans_choice.jsonl:1", "choice",
      outs="{tmp}/u.json"),
    R("fit-weights-no-a", FW.replace("{answers}", "{ans_noa}"), "ans_noa.jsonl:1", "`a`", outs="{tmp}/u.json"),
    R("fit-weights-phi-text", FW.replace("{answers}", "{ans_phistr}"), "ans_phistr.jsonl:1", "phi_a",
      outs="{tmp}/u.json"),
    R("fit-weights-phi-huge", FW.replace("{answers}", "{ans_phihuge}"), "ans_phihuge.jsonl:1", "phi_a",
      outs="{tmp}/u.json"),
    R("fit-weights-phi-nan", FW.replace("{answers}", "{ans_phinan}"), "ans_phinan.jsonl:1", "NaN",
      outs="{tmp}/u.json"),
    R("fit-weights-pair", FW.replace("{answers}", "{ans_pair}"), "ans_pair.jsonl:1", "pair", outs="{tmp}/u.json"),
    R("fit-weights-all-skipped", FW.replace("{answers}", "{ans_skips}"), "ans_skips.jsonl", "no answers",
      outs="{tmp}/u.json"),
    R("fit-weights-strength-inf", FW + " --prior-strength inf", "--prior-strength", "'inf'",
      outs="{tmp}/u.json"),
    R("fit-weights-strength-nan", FW + " --prior-strength nan", "--prior-strength", outs="{tmp}/u.json"),
    R("fit-weights-strength-zero", FW + " --prior-strength 0", "--prior-strength", outs="{tmp}/u.json"),
    R("fit-weights-strength-huge", FW + " --prior-strength 1e300", "--prior-strength", outs="{tmp}/u.json"),
    R("fit-weights-out-exists", FW.replace("{tmp}/u.json", "{existing_json}"), "--out", "--force",
      outs="{existing_json}"),
    R("fit-weights-out-dir", FW.replace("{tmp}/u.json", "{dir_json}"), "--out", "directory", outs="{dir_json}"),
    R("fit-weights-out-dir-force", FW.replace("{tmp}/u.json", "{dir_json}") + " --force", "--out", "directory",
      outs="{dir_json}"),
    R("fit-weights-out-under-file", FW.replace("{tmp}/u.json", "{afile}/u.json"), "--out", "is a file",
      outs="{afile}"),
    R("fit-weights-out-unwritable", FW.replace("{tmp}/u.json", "{unwritable}/u.json"), "--out", "not writable"),
    R("fit-weights-out-default-exists", "fit-weights {answers}", "--out", "user.json", cwd="{root}/cwd_user",
      outs="{root}/cwd_user"),
    R("fit-weights-dims-unknown", FW + " --dims concise,rhyme", "'rhyme'", outs="{tmp}/u.json"),
    R("fit-weights-pool-missing", "fit-weights {ans_plain} --out {tmp}/u.json --pool {missing}", "--pool",
      "not found", outs="{tmp}/u.json"),
    R("fit-weights-pool-binary", "fit-weights {ans_plain} --out {tmp}/u.json --pool {bin_jsonl}", "bin.jsonl",
      outs="{tmp}/u.json"),
    R("fit-weights-pool-no-pairs", "fit-weights {ans_plain} --out {tmp}/u.json --pool {pool_nopairs}", "--pool",
      "two different responses", outs="{tmp}/u.json"),
    R("fit-weights-prior-missing", FW + " --prior {missing}", "--prior", "not found", outs="{tmp}/u.json"),
    R("fit-weights-prior-dir", FW + " --prior {dir_json}", "--prior", "directory", outs="{tmp}/u.json"),
    R("fit-weights-prior-binary", FW + " --prior {bin_json}", "--prior", "binary", outs="{tmp}/u.json"),
    R("fit-weights-prior-nan", FW + " --prior {prior_nan}", "--prior", "NaN", outs="{tmp}/u.json"),
    R("fit-weights-prior-huge", FW + " --prior {prior_huge}", "--prior", outs="{tmp}/u.json"),
    R("fit-weights-prior-cov", FW + " --prior {prior_cov}", "--prior", "positive definite", outs="{tmp}/u.json"),
    R("fit-weights-prior-text", FW + " --prior {prior_str}", "--prior", "numbers", outs="{tmp}/u.json"),
    # --- fit-population
    R("fit-population-missing", FP.replace("{answers} {answers}", "{answers} {missing}"), "no-such-file",
      outs="{tmp}/pop.json"),
    R("fit-population-dir", FP.replace("{answers} {answers}", "{dir_jsonl}"), "dir.jsonl", "directory",
      outs="{tmp}/pop.json"),
    R("fit-population-binary", FP.replace("{answers} {answers}", "{answers} {bin_jsonl}"), "bin.jsonl",
      outs="{tmp}/pop.json"),
    R("fit-population-bad", FP.replace("{answers} {answers}", "{bad_jsonl}"), "bad.jsonl:2",
      outs="{tmp}/pop.json"),
    R("fit-population-phi-huge", FP.replace("{answers} {answers}", "{ans_phihuge}"), "ans_phihuge.jsonl:1",
      outs="{tmp}/pop.json"),
    R("fit-population-empty", FP.replace("{answers} {answers}", "{empty_jsonl}"), "no answers",
      outs="{tmp}/pop.json"),
    R("fit-population-strength-inf", FP + " --prior-strength inf", "--prior-strength", outs="{tmp}/pop.json"),
    R("fit-population-strength-zero", FP + " --prior-strength 0", "--prior-strength", outs="{tmp}/pop.json"),
    R("fit-population-out-exists", FP.replace("{tmp}/pop.json", "{existing_json}"), "--out", "--force",
      outs="{existing_json}"),
    R("fit-population-out-dir", FP.replace("{tmp}/pop.json", "{dir_json}"), "--out", "directory",
      outs="{dir_json}"),
    R("fit-population-out-under-file", FP.replace("{tmp}/pop.json", "{afile}/p.json"), "--out", "is a file",
      outs="{afile}"),
    R("fit-population-dims", FP + " --dims rhyme", "'rhyme'", outs="{tmp}/pop.json"),
    # --- build-pool
    R("build-pool-engine", BP + " --engine llama.cpp", "--engine", "llama.cpp", "auto", outs="{tmp}/pool.jsonl"),
    R("build-pool-out-exists", BP.replace("{tmp}/pool.jsonl", "{existing_jsonl}"), "--out", "--force",
      outs="{existing_jsonl}"),
    R("build-pool-out-dir", BP.replace("{tmp}/pool.jsonl", "{dir_jsonl}"), "--out", "directory",
      outs="{dir_jsonl}"),
    R("build-pool-out-under-file", BP.replace("{tmp}/pool.jsonl", "{afile}/p.jsonl"), "--out", "is a file",
      outs="{afile}"),
    R("build-pool-out-missing-parent", BP.replace("{tmp}/pool.jsonl", "{tmp}/a/b/pool.jsonl") + " --dims rhyme",
      "--experts-dir", "rhyme", outs="{tmp}/a"),
    R("build-pool-out-unwritable", BP.replace("{tmp}/pool.jsonl", "{unwritable}/p.jsonl"), "--out",
      "not writable"),
    R("build-pool-experts-dir-missing", BP.replace("{experts}", "{root}/none"), "--experts-dir", "none",
      outs="{tmp}/pool.jsonl"),
    R("build-pool-experts-dir-file", BP.replace("{experts}", "{afile}"), "--experts-dir", "afile.txt",
      outs="{tmp}/pool.jsonl"),
    R("build-pool-dims-unknown", BP + " --dims rhyme", "--experts-dir", "rhyme", outs="{tmp}/pool.jsonl"),
    R("build-pool-prompts-missing", BP + " --prompts {missing}", "no-such-file", outs="{tmp}/pool.jsonl"),
    R("build-pool-prompts-binary", BP + " --prompts {bin_txt}", "bin.txt", outs="{tmp}/pool.jsonl"),
    R("build-pool-limit-zero", BP + " --limit 0", "--limit", outs="{tmp}/pool.jsonl"),
    R("build-pool-tokens-zero", BP + " --max-new-tokens 0", "--max-new-tokens", outs="{tmp}/pool.jsonl"),
    R("build-pool-tokens-huge", BP + " --max-new-tokens 10000000", "--max-new-tokens", outs="{tmp}/pool.jsonl"),
    R("build-pool-base-missing", BP.replace("--base {base}", "--base {root}/nobase"), "--base",
      outs="{tmp}/pool.jsonl"),
]


# ----------------------------------------------------------------------------- the check
def snapshot(path: Path):
    """What is at `path`: None, a file's digest, or a folder's (relative path -> digest), symlinks as targets."""
    if os.path.islink(path):
        return ("link", os.readlink(path))
    if not path.exists():
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return {str(p.relative_to(path)): snapshot(p) for p in sorted(path.rglob("*")) if not p.is_dir()} | {
        str(p.relative_to(path)) + "/": None for p in sorted(path.rglob("*")) if p.is_dir()}


class _LiveStderr(logging.StreamHandler):
    """Log records to whatever sys.stderr is at the time (run_cli redirects it), as the console script shows them:
    a warning before the error line is a second line, and fails the row."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.setLevel(logging.WARNING)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


ROW_SECONDS = 60  # a row is validation only: far below this, unless it went on to load a model and work


def _within(seconds: int, fn):
    """fn(), failing the test (not hanging the suite) if it takes longer than `seconds`."""
    def late(signum, frame):
        raise AssertionError(f"still running after {seconds}s: the command got past validation")

    old = signal.signal(signal.SIGALRM, late)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def fill(text: str, world: dict, tmp: Path) -> str:
    return text.format(tmp=tmp, **world) if "{" in text else text


def test_table_has_enough_distinct_rows():
    ids = [r.id for r in ROWS]
    assert len(set(ids)) == len(ids), "duplicate row ids"
    assert len({(r.argv, r.env.get("SOUPS_EXPERTS_DIR"), r.input, r.cwd) for r in ROWS}) == len(ROWS)
    assert len(ROWS) >= 300
    commands = {shlex.split(r.argv)[0] for r in ROWS if not r.id.startswith("usage-root")} - {"nosuch"}
    assert commands >= {"merge", "scale-expert", "methods", "experts", "inspect", "base", "dims", "train-expert",
                        "train-reward", "make-pairs", "generate", "eval", "sweep", "ask", "fit-weights",
                        "fit-population", "build-pool", "serve", "playground"}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_row(row: Row, world, tmp_path, monkeypatch):
    cwd = Path(fill(row.cwd, world, tmp_path)) if row.cwd else tmp_path / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    if row.id == "fit-weights-out-default-exists":
        (cwd / "user.json").write_text('{"keep": true}\n')
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", world["experts"])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for key, value in row.env.items():
        monkeypatch.setenv(key, fill(value, world, tmp_path))
    outs = [Path(fill(o, world, tmp_path)) for o in row.outs]
    before = {o: snapshot(o) for o in outs}
    before_cwd = snapshot(cwd)
    args = [fill(a, world, tmp_path) for a in shlex.split(row.argv)]
    handler = _LiveStderr()
    logging.getLogger().addHandler(handler)
    try:
        res = _within(ROW_SECONDS, lambda: run_cli(*args, input=row.input))
    finally:
        logging.getLogger().removeHandler(handler)
    assert_one_line_error(res, *(fill(w, world, tmp_path) for w in row.words))
    for o in outs:
        assert snapshot(o) == before[o], f"{o} changed"
        assert not list(o.parent.glob(f".{o.name}.tmp-*")), f"temporary file left beside {o}"
    assert snapshot(cwd) == before_cwd, "the working directory changed"
