"""Dimensions: the shipped six load and match the paper; user dimensions; bad files name file and line."""

from __future__ import annotations

import textwrap

import pytest

from soups.dimensions import Dimension, dimension_files, list_dimensions, load_dimension
from soups.errors import ConfigError, SoupsError
from tests.helpers import assert_one_line_error, run_cli

# the paper's preference statements (RLPHF, P1A..P3B), typed here independently of experts/*.yaml
G = "Generate a response "
PAPER = {
    "elementary": ("P1A", "expert", G + "that can be easily understood by an elementary school student."),
    "expert": ("P1B", "elementary", G + "that only a PhD Student in that specific field could understand."),
    "concise": ("P2A", "informative", G + "that is concise and to the point without being verbose."),
    "informative": ("P2B", "concise", G + "that is very informative without missing any background information."),
    "friendly": ("P3A", "unfriendly", G + "that is friendly, witty, funny, and humorous, like a close friend."),
    "unfriendly": ("P3B", "friendly", G + "in an unfriendly manner."),
}

GOOD = """\
name: {name}
description: A test dimension.
statement: Generate a response that rhymes.
reward:
  kind: rule
  scorer: concise
"""


def write(root, name, text):
    (root / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root / f"{name}.yaml"


@pytest.fixture
def experts(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    return tmp_path


def test_shipped_six_match_the_paper():
    dims = {d.name: d for d in list_dimensions()}
    assert set(PAPER) <= set(dims)
    assert [d.name for d in list_dimensions()][:6] == list(PAPER)  # paper order first
    for name, (pid, opposite, statement) in PAPER.items():
        d = dims[name]
        assert (d.paper_id, d.opposite, d.statement) == (pid, opposite, statement)
        assert d.reward.kind == "rule" and d.reward.scorer == name and d.description
        assert dims[d.opposite].opposite == name  # opposing pairs are symmetric
    # held-out metrics, written here from the paper's axes: audience by reading grade, length and depth by
    # word counts, tone by sentiment; opposites want opposite directions of the same axis's metric
    want = {"elementary": ("grade", "lower"), "expert": ("grade", "higher"), "concise": ("words", "lower"),
            "informative": ("distinct", "higher"), "friendly": ("sentiment", "higher"),
            "unfriendly": ("sentiment", "lower")}
    assert {n: (dims[n].heldout.metric, dims[n].heldout.better) for n in PAPER} == want


def test_every_shipped_yaml_is_a_valid_dimension_except_default_and_configs():
    files = dimension_files()
    assert "default" not in files and set(PAPER) <= set(files)
    for name, path in files.items():
        assert load_dimension(path).name == name == load_dimension(name).name


def test_default_yaml_and_configs_are_not_dimensions(experts):
    write(experts, "rhyme", GOOD.format(name="rhyme"))
    (experts / "default.yaml").write_text("experts: [concise, friendly, expert]\n")
    (experts / "configs").mkdir()
    (experts / "configs" / "ppo.yaml").write_text("algo: ppo\n")
    assert [d.name for d in list_dimensions()] == ["rhyme"]
    with pytest.raises(ConfigError, match="unknown dimension 'default'; known: rhyme"):
        load_dimension("default")


def test_user_adds_a_dimension_by_adding_a_file(experts):
    write(experts, "rhyme", GOOD.format(name="rhyme"))
    d = load_dimension("rhyme")
    assert isinstance(d, Dimension) and d.statement == "Generate a response that rhymes."
    assert d.reward.scorer == "concise" and d.source == experts / "rhyme.yaml"
    assert load_dimension(d) is d


def test_unknown_dimension_lists_known_ones():
    with pytest.raises(ConfigError) as e:
        load_dimension("verbose")
    msg = str(e.value)
    assert "unknown dimension 'verbose'" in msg and all(n in msg for n in PAPER)
    assert isinstance(e.value, SoupsError) and "\n" not in msg


def test_malformed_yaml_names_file_and_line(experts):
    path = write(experts, "bad", "name: bad\ndescription: x\nstatement: [unclosed\nopposite: concise\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        load_dimension("bad")
    path = write(experts, "tabs", "name: tabs\ndescription: x\n  statement: y\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: invalid YAML"):
        load_dimension("tabs")


def test_bad_fields_are_reported_together_with_their_lines(experts):
    path = write(experts, "rude", """\
        name: rude
        description: ""
        colour: red
        reward:
          kind: oracle
        """)
    with pytest.raises(ConfigError) as e:
        load_dimension(path)
    msg = str(e.value)
    assert f"{path}:2: field `description`: Value error" not in msg  # pydantic prefix stripped
    assert f"{path}:2: field `description`" in msg
    assert f"{path}:3: field `colour`" in msg
    assert f"{path}:4: field `reward`" in msg and "'oracle' is not one of rule, model, judge" in msg
    assert "field `statement`: Field required" in msg


def test_kind_specific_fields_are_required(experts):
    path = write(experts, "j", "name: j\ndescription: d\nstatement: s\nreward:\n  kind: judge\n  url: http://x/v1\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: field `reward.model`: Field required"):
        load_dimension("j")
    path = write(experts, "m", "name: m\ndescription: d\nstatement: s\nreward: {kind: model}\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: field `reward.path`: Field required"):
        load_dimension("m")
    path = write(experts, "r", "name: r\ndescription: d\nstatement: s\nreward: {kind: rule, scorer: concise, n0: 3}\n")
    with pytest.raises(ConfigError, match=rf"{path}:4: field `reward.n0`: Extra inputs are not permitted"):
        load_dimension("r")
    path = write(experts, "h", GOOD.format(name="h") + "heldout: {metric: words, better: shorter}\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: field `heldout.better`: Input should be 'higher' or 'lower'"):
        load_dimension("h")


def test_model_path_is_relative_to_the_yaml(experts):
    write(experts, "m", "name: m\ndescription: d\nstatement: s\nreward: {kind: model, path: rm/concise}\n")
    assert load_dimension("m").reward.path == str((experts / "rm" / "concise").resolve())


def test_name_must_match_file_and_opposite_must_exist(experts):
    write(experts, "one", GOOD.format(name="two"))
    with pytest.raises(ConfigError, match="field `name` is 'two' but the file is one.yaml"):
        load_dimension("one")
    write(experts, "one", GOOD.format(name="one") + "opposite: nobody\n")
    with pytest.raises(ConfigError, match="field `opposite` is 'nobody', not a known dimension"):
        list_dimensions()
    write(experts, "one", "- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_dimension("one")
    with pytest.raises(ConfigError, match="not found"):
        load_dimension(experts / "missing.yaml")


def test_cli_dims_lists_and_scores(experts):
    write(experts, "rhyme", GOOD.format(name="rhyme"))
    res = run_cli("dims")
    assert res.code == 0
    out = res.out
    assert "rhyme" in out and "Generate a response that rhymes." in out and "rule" in out
    res = run_cli("dims", "--json", "--score", "Paris is the capital of France.", "--prompt", "Capital of France?")
    assert res.code == 0
    import json

    scores = json.loads(res.out)
    assert set(scores) == {"rhyme"} and 0.5 < scores["rhyme"] <= 1.0


def test_cli_dims_scores_stdin_on_the_shipped_six():
    res = run_cli("dims", "--score", "-", "--prompt", "Why is the sky blue?",
                  input="Obviously it's Rayleigh scattering. Look it up. Not rocket science")
    assert res.code == 0
    rows = dict(line.split()[::2] for line in res.out.strip().splitlines())
    assert list(rows) == list(PAPER)
    assert float(rows["unfriendly"]) > 0.6
    assert float(rows["friendly"]) < 0.2


def test_cli_dims_bad_file_is_one_line_exit_2(experts):
    write(experts, "bad", "name: bad\ndescription: [x\n")
    assert_one_line_error(run_cli("dims"), "bad.yaml:")


def test_the_informative_training_file_is_the_shipped_dimension_with_only_the_reward_params_changed():
    from soups.config import experts_dir

    shipped = load_dimension("informative")
    trained = load_dimension(str(experts_dir() / "configs" / "dims" / "informative.yaml"))
    assert (trained.name, trained.statement, trained.opposite) == (shipped.name, shipped.statement, shipped.opposite)
    assert trained.heldout == shipped.heldout
    assert trained.reward.scorer == shipped.reward.scorer == "informative"
    assert shipped.reward.params == {} and trained.reward.params == {"finish": 0.0, "curve": "linear", "c_max": 150}
