"""The analysis wing stands alone: it imports only the core, never the lab, storage, the compile cache, Ray,
vLLM or torch, so logs can be analysed on any machine (``make test-fast`` runs without the serving stack)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = ("ray", "vllm", "torch", "coldstart.lab", "coldstart.storage", "coldstart.compile_cache")

# Runs in a fresh interpreter: a finder ahead of all others refuses every forbidden module (and submodule).
_GUARD = textwrap.dedent("""
    import sys

    FORBIDDEN = {forbidden!r}

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                raise ImportError(f"coldstart.analysis must not import {{name}}")
            return None

    sys.meta_path.insert(0, Refuse())
""").format(forbidden=FORBIDDEN)

_IMPORT_ALL = textwrap.dedent("""
    import importlib
    import pkgutil

    import coldstart.analysis

    names = sorted(m.name for m in pkgutil.walk_packages(coldstart.analysis.__path__, "coldstart.analysis."))
    assert names, "no modules found in coldstart.analysis"
    for name in names:
        importlib.import_module(name)
    print("imported", len(names), "modules:", ", ".join(names))
""")

_RUN_ANALYSIS_HELP = textwrap.dedent("""
    import runpy

    sys.argv = ["python -m analysis", "--help"]
    try:
        runpy.run_module("analysis", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
""")


def _run(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _GUARD + body], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_every_analysis_module_imports_without_the_serving_stack() -> None:
    proc = _run(_IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr
    assert "coldstart.analysis.cli" in proc.stdout


def test_python_m_analysis_help_runs_without_the_serving_stack() -> None:
    proc = _run(_RUN_ANALYSIS_HELP)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout


def test_no_forbidden_import_even_inside_a_function() -> None:
    """Importing runs module level only; a lazy import in a function body (how the runner's audit was once
    reached) only fails when called, so read every import statement too."""
    import ast

    bad = []
    for path in sorted((REPO / "coldstart" / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            hits = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
            if hits:
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {hits[0]}")
    assert not bad, "coldstart.analysis imports what it must not:\n" + "\n".join(bad)
