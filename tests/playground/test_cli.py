"""`soups playground` on the command line: help, and bad flags as one line (exit 2) before any page starts."""

from __future__ import annotations

import socket

from tests.helpers import assert_one_line_error, run_cli


def test_help_names_the_options():
    res = run_cli("playground", "--help")
    assert res.code == 0
    for option in ("--experts", "--base", "--host", "--port", "--weights", "--rounds", "--dtype", "--statements"):
        assert option in res.out
    assert "127.0.0.1" in res.out


def test_bad_flags_are_one_line(pg_world):
    base, experts = pg_world
    names = ",".join(str(p) for p in experts.values())
    assert_one_line_error(run_cli("playground", "--base", base, "--experts", names, "--weights", "1,2"), "--weights")
    assert_one_line_error(run_cli("playground", "--base", "/nonexistent/model", "--experts", names), "--base")
    assert_one_line_error(run_cli("playground", "--base", base, "--experts", names, "--dtype", "int8"), "--dtype")
    with socket.socket() as busy:  # the port is taken: say so, and which flag to change
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = assert_one_line_error(run_cli("playground", "--base", base, "--experts", names, "--port", port),
                                    "--port", str(port))
    assert "Traceback" not in err


def test_statements_flag_starts_with_the_box_ticked(playground):
    from soups.playground.app import build_app

    for ticked in (False, True):
        demo = build_app(playground, statements=ticked)
        (box,) = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "statements"]
        assert box["props"]["value"] is ticked
