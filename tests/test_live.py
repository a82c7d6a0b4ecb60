"""The runner's live line: what a cold start is doing now, read from its log as the log grows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coldstart.analysis.live import STARTING, PhaseTracker, current_phase

REPO = Path(__file__).resolve().parents[1]
FAST = REPO / "experiment_terminal_output" / "llama-3-8b" / "fast" / "20261129T185203Z-484a.log"
BASELINE = REPO / "experiment_terminal_output" / "llama-3-8b" / "baseline" / "20261122T194156Z-8cb4.log"


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines()


def _upto(lines: list[str], needle: str) -> list[str]:
    (i,) = [n for n, line in enumerate(lines) if needle in line][:1]
    return lines[: i + 1]


@pytest.mark.parametrize(
    ("needle", "phase"),
    [
        ('"event": "service_start"', "starting Ray and Serve"),
        ('"event": "serve_app_deployed"', "app deployed at zero replicas"),
        ('"event": "compile_cache_restore_start"', "restoring the compile cache"),
        ('"event": "engine_core_launch_start"', "launching the engine core"),
        ("Loading safetensors checkpoint shards:   0%", "loading the weights"),
        ("Model loading took", "torch.compile"),
        ("Directly load AOT compilation", "torch.compile (from the cache)"),
        ("torch.compile took", "profiling and the KV cache"),
        ("Graph capturing finished", "warming up"),
        ('"event": "engine_core_ready"', "engine ready, first token next"),
    ],
)
def test_the_phase_of_a_fast_run_at_each_milestone(needle: str, phase: str) -> None:
    assert current_phase(_upto(_lines(FAST), needle)) == phase


def test_a_late_progress_bar_never_moves_the_phase_back() -> None:
    # The baseline log prints "Capturing CUDA graphs: 100%" bars after "Graph capturing finished".
    seen = []
    tracker = PhaseTracker()
    for line in _upto(_lines(BASELINE), "init engine (profile, create kv cache"):
        if (phase := tracker.feed(line)) != (seen[-1] if seen else None):
            seen.append(phase)
    assert seen[-4:] == [
        "profiling and the KV cache",
        "capturing CUDA graphs",
        "warming up",
        "engine ready, first token next",
    ]


def test_nothing_yet_is_starting_and_unrelated_lines_change_nothing() -> None:
    assert current_phase([]) == STARTING
    assert current_phase(["some Ray banner", "INFO 11-22 19:44:12 [x.py:1] hello"]) == STARTING


def test_the_runner_shows_seconds_since_the_request_and_the_phase_as_the_log_grows(tmp_path: Path) -> None:
    from coldstart.lab.matrix.live import live_status

    lines = _lines(FAST)
    log = tmp_path / "run.log"
    log.write_text("\n".join(_upto(lines, '"event": "serve_app_deployed"')) + "\n")
    seen: list[str] = []
    with live_status(log, seen.append, poll_s=0.01):
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        with log.open("a") as f:
            f.write("\n".join(_upto(lines, "Model loading took")[len(_upto(lines, '"event": "serve_app_deployed"')) :]))
            f.write("\n")
        while "torch.compile" not in seen[-1] and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen[0].endswith("s since the request: Serve scaling a replica up")
    assert seen[-1].endswith("s since the request: torch.compile")


def test_no_status_callback_no_thread(tmp_path: Path) -> None:
    import threading

    from coldstart.lab.matrix.live import live_status

    with live_status(tmp_path / "none.log", None):
        assert not any(t.name == "coldstart-live-status" for t in threading.enumerate())


def test_run_matrix_draws_no_live_line_when_the_output_is_not_a_terminal(tmp_path: Path) -> None:
    # Under pytest stdout is captured: not a terminal, as in CI. The SUT must get no status callback.
    from fake_sut import PROVENANCE, FakeSUT

    from coldstart.lab.matrix.loop import run_matrix
    from coldstart.lab.matrix.plan import plan

    class Recording(FakeSUT):
        on_status = None

        def measure(self, deployment, spec):
            self.calls.append(("status", spec.key, repr(self.on_status)))
            return super().measure(deployment, spec)

    sut = Recording(root=tmp_path)
    run_matrix(sut, plan(["tiny"], ["baseline"], 1, "c"), tmp_path / "r.jsonl", provenance=PROVENANCE)
    assert [c[2] for c in sut.calls if c[0] == "status"] == ["None"]


def test_run_matrix_on_a_terminal_hands_the_sut_a_status_line_and_takes_it_back(tmp_path: Path, monkeypatch) -> None:
    import rich.console
    from fake_sut import PROVENANCE, FakeSUT

    from coldstart.lab.matrix.loop import run_matrix
    from coldstart.lab.matrix.plan import plan

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))

    class Recording(FakeSUT):
        on_status = None

        def measure(self, deployment, spec):
            self.calls.append(("status", spec.key, callable(self.on_status)))
            if self.on_status is not None:
                self.on_status("3 s since the request: loading the weights")
            return super().measure(deployment, spec)

    sut = Recording(root=tmp_path)
    specs = plan(["tiny"], ["baseline"], 1, "c")
    run_matrix(sut, specs, tmp_path / "r.jsonl", provenance=PROVENANCE)
    assert [c[2] for c in sut.calls if c[0] == "status"] == [True]
    assert sut.on_status is None
    sut.calls.clear()
    run_matrix(
        sut,
        plan(["tiny"], ["baseline"], 2, "d"),
        tmp_path / "r.jsonl",
        provenance=PROVENANCE,
        show_progress=False,
    )  # --no-progress
    assert [c[2] for c in sut.calls if c[0] == "status"] == [False, False]
