"""The matrix runner against a fake system under test: ordering, resume, failure isolation, audit, the CLI, and
stopping a real process group that ignores SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from coldstart.analysis.events import format_event, read_events
from coldstart.analysis.results import (
    SCHEMA_VERSION,
    AnswerCheck,
    AnswerCompared,
    Audit,
    ClientResult,
    ClientStatus,
    Provenance,
    RequestGroup,
    RequestRecord,
    ResultRow,
    RunStatus,
    load_rows,
)
from coldstart.lab import runner
from coldstart.lab.client import RESULT_SCHEMA_VERSION, Measurement
from coldstart.lab.runner import Deployment, RunSpec, plan
from coldstart.lab.traffic import Traffic
from coldstart.registry import EXPERIMENTS, MODELS, UnknownNameError

PROVENANCE = Provenance(
    packages={"vllm": "0.0.0+fake", "ray": None},
    gpu=None,
    driver=None,
    host="fake-host",
    python="3.11.0",
    git_commit="0123abcd",
    git_dirty=False,
)

MODEL_LOAD_S = 1.7
INDUCTOR_S = 3.1


def _vllm_line(t: float, msg: str, where: str = "fake.py:1") -> str:
    """A vLLM worker line stamped at epoch ``t`` (UTC, whole seconds, like vLLM prints them)."""
    stamp = datetime.fromtimestamp(t, timezone.utc).strftime("%m-%d %H:%M:%S")
    return f"(RayWorkerProc pid=4242) (Worker pid=4242) INFO {stamp} [{where}] {msg}"


@dataclass
class FakeSUT:
    """Implements the SystemUnderTest protocol; records every call and writes a small synthetic log per run.

    ``hit``: spec.key -> True (AOT cache-hit line), False (Inductor compile line), None (neither). By default a
    compile_cache run hits and everything else compiles.
    """

    root: Path
    hit: dict[tuple, bool | None] = field(default_factory=dict)
    fail_clear: set[tuple] = field(default_factory=set)
    fail_deploy: set[tuple] = field(default_factory=set)
    fail_measure: set[tuple] = field(default_factory=set)
    interrupt_measure: set[tuple] = field(default_factory=set)
    client_status: dict[tuple, str] = field(default_factory=dict)
    calls: list[tuple[str, tuple, str | None]] = field(default_factory=list)
    t_send: dict[str, float] = field(default_factory=dict)

    def ran(self, step: str) -> list[tuple]:
        return [key for name, key, _ in self.calls if name == step]

    def _hit(self, spec: RunSpec) -> bool | None:
        return self.hit.get(spec.key, spec.experiment == "compile_cache")

    def clear(self, spec: RunSpec) -> dict[str, Any]:
        self.calls.append(("clear", spec.key, None))
        if spec.key in self.fail_clear:
            raise RuntimeError("clear_cache.py failed (1): permission denied")
        return {"ok": True, "fake": spec.model}

    def _log(self, spec: RunSpec, t0: float) -> str:
        lines = [
            "some unrelated Ray banner line",
            format_event("service_start", t=t0 - 5.0, model=spec.model, experiment=spec.experiment),
            format_event("replica_node_init_start", t=t0 + 1.0),
            format_event("node_fetch_start", t=t0 + 2.0),
            format_event("engine_start", t=t0 + 3.0),
            _vllm_line(t0 + 5.0, f"Model loading took 0.01 GiB and {MODEL_LOAD_S} seconds", "model_runner.py:302"),
        ]
        hit = self._hit(spec)
        if hit is True:
            lines.append(
                _vllm_line(t0 + 6.0, "Directly load AOT compilation from path /x/aot/model", "decorators.py:212")
            )
        elif hit is False:
            lines.append(
                _vllm_line(
                    t0 + 8.0, f"Compiling a graph for compile range (1, 8192) takes {INDUCTOR_S} s", "backends.py:393"
                )
            )
        lines.append(_vllm_line(t0 + 9.0, "torch.compile took 4.00 s in total", "monitor.py:53"))
        lines.append(format_event("serve_app_deployed", t=t0 + 11.0))
        return "\n".join(lines) + "\n"

    @contextlib.contextmanager
    def deploy(self, spec: RunSpec, run_id: str) -> Iterator[Deployment]:
        self.calls.append(("deploy", spec.key, run_id))
        if spec.key in self.fail_deploy:
            raise RuntimeError("service.py exited with 1 before it was ready")
        t0 = time.time() - 30.0
        self.t_send[run_id] = t0
        log = self.root / "logs" / spec.model / spec.experiment / f"{run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(self._log(spec, t0))
        try:
            yield Deployment(
                url=f"http://fake.invalid/{run_id}",
                run_id=run_id,
                log_path=log,
                config={"model": spec.model, "experiment": spec.experiment, "repeat": spec.repeat},
            )
        finally:
            self.calls.append(("teardown", spec.key, run_id))

    def measure(self, deployment: Deployment, spec: RunSpec) -> Traffic:
        self.calls.append(("measure", spec.key, deployment.run_id))
        # The service is up (its log exists) while the client runs.
        assert deployment.log_path.exists()
        if spec.key in self.interrupt_measure:
            raise KeyboardInterrupt
        if spec.key in self.fail_measure:
            raise ValueError("client blew up")
        status = self.client_status.get(spec.key, "ok")
        t_send = self.t_send[deployment.run_id]
        ttft = 12.0 + spec.repeat if status == "ok" else None
        m = Measurement(
            schema_version=RESULT_SCHEMA_VERSION,
            url=deployment.url + "/v1/chat/completions",
            model=spec.model,
            status=status,
            error=None if status == "ok" else f"{status} from the fake",
            ttft_s=ttft,
            total_s=13.0 + spec.repeat,
            tokens=5 if ttft else 0,
            t_send_epoch=t_send,
            t_first_token_epoch=None if ttft is None else t_send + ttft,
            t_last_token_epoch=None if ttft is None else t_send + 13.0 + spec.repeat,
            first_text="hi" if ttft else None,
            http_status=200,
        )
        return Traffic(m, (RequestRecord(0, RequestGroup.BURST, m),))


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


def _run(sut: FakeSUT, specs: list[RunSpec], results: Path) -> list:
    return runner.run_matrix(sut, specs, results, provenance=PROVENANCE, device="fake-device", show_progress=False)


# ---------------------------------------------------------------------------------------------------------
# plan


def test_plan_is_repeat_major_and_drops_invalid_pairs() -> None:
    specs = plan(["tiny", "llama-3-8b-tp2"], ["baseline", "runai_streamer_sharded", "all"], 2, "camp")
    pairs = [
        ("tiny", "baseline"),
        ("tiny", "all"),  # tiny (TP1) + runai_streamer_sharded is dropped; "all" stays
        ("llama-3-8b-tp2", "baseline"),
        ("llama-3-8b-tp2", "runai_streamer_sharded"),
        ("llama-3-8b-tp2", "all"),
    ]
    assert specs == [RunSpec(m, e, r, "camp") for r in (0, 1) for m, e in pairs]
    assert [s.key for s in specs[:2]] == [
        ("camp", "tiny", "baseline", "single", 0),
        ("camp", "tiny", "all", "single", 0),
    ]


def test_plan_only_invalid_pairs_is_empty_and_unknown_names_raise() -> None:
    assert plan(["tiny"], ["runai_streamer_sharded"], 3, "c") == []
    assert plan(["tiny"], ["baseline"], 0, "c") == []
    with pytest.raises(UnknownNameError, match="valid models"):
        plan(["no-such-model"], ["baseline"], 1, "c")


# ---------------------------------------------------------------------------------------------------------
# one row per run, in order


def test_each_run_is_clear_deploy_measure_teardown_in_order(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    rows = _run(sut, specs, results)

    expected = [(step, s.key) for s in specs for step in ("clear", "deploy", "measure", "teardown")]
    assert [(name, key) for name, key, _ in sut.calls] == expected
    # deploy, measure and teardown of a run share one run id; every run has its own.
    run_ids = [rid for name, _, rid in sut.calls if name != "clear"]
    assert all(len(set(run_ids[i : i + 3])) == 1 for i in range(0, len(run_ids), 3))
    assert len(set(run_ids)) == len(specs)
    assert [r.run_id for r in rows] == run_ids[::3]


def test_rows_are_appended_one_per_run_with_schema_and_provenance(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    rows = _run(sut, specs, results)

    on_disk = load_rows(results)
    assert len(on_disk) == len(specs) == len(rows)
    assert len(results.read_text().splitlines()) == len(specs)
    for spec, row, disk in zip(specs, rows, on_disk, strict=True):
        assert disk == row  # read back as the row that was written
        assert disk.schema_version == SCHEMA_VERSION
        assert disk.provenance == PROVENANCE
        assert (disk.campaign, disk.model, disk.experiment, disk.scenario_name, disk.repeat) == spec.key
        assert disk.status is RunStatus.OK and disk.error is None
        assert disk.ttft_s == 12.0 + spec.repeat
        assert disk.device == "fake-device"
        assert disk.config == {"model": spec.model, "experiment": spec.experiment, "repeat": spec.repeat}
        assert disk.extra["clear"] == {"ok": True, "fake": "tiny"}
        assert disk.client.ttft_s == 12.0 + spec.repeat
        assert disk.timeline is not None and disk.node_state == "cold" and disk.wall_s is not None
        # The log was parsed: the phase comes from the fake's vLLM line.
        assert disk.phases["model_load_s"] == pytest.approx(MODEL_LOAD_S)
        log = Path(disk.log_path)
        assert log.name == f"{row.run_id}.log"
        # The client sidecar lands beside the log, so the analysis can rebuild the row.
        sidecar = json.loads(log.with_suffix(".client.json").read_text())
        assert sidecar["ttft_s"] == disk.ttft_s and sidecar["status"] == "ok"


def test_appending_keeps_earlier_rows(sut: FakeSUT, results: Path) -> None:
    _run(sut, plan(["tiny"], ["baseline"], 1, "a"), results)
    _run(sut, plan(["tiny"], ["baseline"], 1, "b"), results)
    assert [r.campaign for r in load_rows(results)] == ["a", "b"]


# ---------------------------------------------------------------------------------------------------------
# resume


def test_pending_skips_ok_rows_and_retries_failed_ones(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline", "compile_cache"], 2, "c")
    _, b, c, _ = specs
    sut.fail_deploy = {b.key}
    sut.client_status = {c.key: "timeout"}
    _run(sut, specs, results)
    assert [r.status for r in load_rows(results)] == ["ok", "failed", "timeout", "ok"]

    assert runner.pending(specs, results) == [b, c]
    # Another campaign's rows do not count as done for this one.
    other = plan(["tiny"], ["baseline"], 1, "other")
    assert runner.pending(other, results) == [RunSpec("tiny", "baseline", 0, "other")]
    assert runner.pending(specs, results.with_name("missing.jsonl")) == specs

    second = FakeSUT(root=sut.root)
    rows = _run(second, specs, results)
    assert second.ran("clear") == [b.key, c.key]
    assert [r.status for r in rows] == ["ok", "ok"]
    assert runner.pending(specs, results) == []

    third = FakeSUT(root=sut.root)
    assert _run(third, specs, results) == []
    assert third.calls == []
    assert len(load_rows(results)) == 6  # 4 + 2 retries; nothing rewritten


def test_pending_retries_a_run_that_failed_its_audit_and_keeps_the_flagged_row(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["compile_cache"], 1, "c")
    sut.hit = {specs[0].key: False}  # the cache did not hit: ok status, failed audit
    _run(sut, specs, results)
    assert load_rows(results)[0].audit.passed is False
    assert runner.pending(specs, results) == specs
    _run(FakeSUT(root=sut.root), specs, results)  # hits this time
    assert [r.audit.passed for r in load_rows(results)] == [False, True]
    assert runner.pending(specs, results) == []


def test_a_capture_run_is_done_once_it_ran_ok_whatever_its_audit(sut: FakeSUT, results: Path) -> None:
    # Lease s10: a resumed step re-ran its capture (miss) run, because its miss failed the cache audit.
    specs = plan(["tiny"], ["cc_trims"], 1, "c-miss")
    sut.hit = {specs[0].key: False}
    runner.run_matrix(sut, specs, results, provenance=PROVENANCE, show_progress=False, capture=True)
    assert load_rows(results)[0].audit.passed is False
    assert runner.pending(specs, results, capture=True) == []
    assert "nothing to run" in runner.nothing_to_run(specs, load_rows(results), results, 1, capture=True)
    again = FakeSUT(root=sut.root)
    assert runner.run_matrix(again, specs, results, provenance=PROVENANCE, show_progress=False, capture=True) == []
    assert again.calls == []
    assert runner.pending(specs, results) == specs  # the same rows, judged as measurements: the miss is retried


# ---------------------------------------------------------------------------------------------------------
# failure isolation


def test_a_failed_run_is_a_row_and_the_matrix_goes_on(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny", "qwen-3-0.6b"], ["baseline"], 2, "c")
    _, s1, s2, _ = specs
    sut.fail_deploy = {s1.key}
    sut.fail_measure = {s2.key}
    rows = _run(sut, specs, results)

    assert [r.status for r in rows] == ["ok", "failed", "failed", "ok"]
    assert sut.ran("clear") == [s.key for s in specs]
    by_key = {(r.campaign, r.model, r.experiment, r.scenario_name, r.repeat): r for r in rows}

    deploy_failed = by_key[s1.key]
    assert deploy_failed.error == "RuntimeError: service.py exited with 1 before it was ready"
    assert deploy_failed.ttft_s is None
    assert deploy_failed.log_path is None
    assert s1.key not in sut.ran("measure")

    measure_failed = by_key[s2.key]
    assert measure_failed.error == "ValueError: client blew up"
    assert measure_failed.ttft_s is None
    assert measure_failed.log_path is not None and Path(measure_failed.log_path).exists()
    assert measure_failed.config["model"] == s2.model
    assert s2.key in sut.ran("teardown")  # the service is still stopped

    disk = load_rows(results)
    assert [r.status for r in disk] == ["ok", "failed", "failed", "ok"]
    assert all(r.schema_version == SCHEMA_VERSION for r in disk)


def test_clear_failure_is_isolated_and_nothing_is_deployed(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline"], 2, "c")
    sut.fail_clear = {specs[0].key}
    rows = _run(sut, specs, results)
    assert [r.status for r in rows] == ["failed", "ok"]
    assert "clear_cache.py failed" in rows[0].error
    assert sut.ran("deploy") == [specs[1].key]


def test_a_client_failure_status_is_kept_not_failed(sut: FakeSUT, results: Path) -> None:
    spec = RunSpec("tiny", "baseline", 0, "c")
    sut.client_status = {spec.key: "no_token"}
    (row,) = _run(sut, [spec], results)
    assert row.status == "no_token"
    assert row.ttft_s is None
    assert row.error == "no_token from the fake"


def test_keyboard_interrupt_is_not_swallowed(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny"], ["baseline"], 3, "c")
    sut.interrupt_measure = {specs[1].key}
    with pytest.raises(KeyboardInterrupt):
        _run(sut, specs, results)
    assert sut.ran("clear") == [specs[0].key, specs[1].key]  # the third run never started
    assert specs[1].key in sut.ran("teardown")  # the interrupted service was still stopped
    assert [r.repeat for r in load_rows(results)] == [0]  # the finished run's row is on disk
    assert runner.pending(specs, results) == specs[1:]


# ---------------------------------------------------------------------------------------------------------
# audit


@pytest.mark.parametrize(
    ("experiment", "hit", "passed"),
    [
        ("baseline", False, True),  # cold run that compiled: as it should be
        ("baseline", True, False),  # cold run with a cache-hit line: the caches were not cleared
        ("compile_cache", True, True),
        ("compile_cache", False, False),  # the restored cache was not used
        ("compile_cache", None, False),  # silence is not a hit
    ],
)
def test_audit_flags(sut: FakeSUT, results: Path, experiment: str, hit: bool | None, passed: bool) -> None:
    spec = RunSpec("tiny", experiment, 0, "c")
    sut.hit = {spec.key: hit}
    (row,) = _run(sut, [spec], results)
    assert row.status == "ok"
    assert row.audit.passed is passed
    assert row.audit.expected_compile_cache_hit is EXPERIMENTS[experiment].compile_cache
    if hit is True:
        assert row.audit.aot_cache_hit is True
        assert row.audit.compile_cache_hit is True
    elif hit is False:
        assert row.audit.compile_cache_hit is False
        assert row.phases["inductor_s"] == pytest.approx(INDUCTOR_S)
    else:
        assert row.audit.compile_cache_hit is None and row.audit.aot_cache_hit is None
    assert load_rows(results)[0].audit.passed is passed


def test_audit_function_directly() -> None:
    assert runner.audit("baseline", Audit(compile_cache_hit=None, aot_cache_hit=None)).passed is True
    assert runner.audit("baseline", Audit(compile_cache_hit=False, aot_cache_hit=True)).passed is False
    assert runner.audit("all", Audit(compile_cache_hit=None, aot_cache_hit=True)).passed is True
    assert runner.audit("all", Audit(compile_cache_hit=False, aot_cache_hit=False)).passed is False
    out = runner.audit("compile_cache", Audit(compile_cache_hit=True, compile_cache_restore_status="SUCCESS"))
    assert out == Audit(
        compile_cache_hit=True,
        aot_cache_hit=None,
        compile_cache_restore_status="SUCCESS",  # the parsed flags are kept beside the verdict
        expected_compile_cache_hit=True,
        passed=True,
    )


def test_parser_exception_keeps_the_measurement(sut: FakeSUT, results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import coldstart.analysis.timeline

    def broken(log_text: str, client: Any = None) -> Any:
        raise ValueError("unexpected log wording")

    monkeypatch.setattr(coldstart.analysis.timeline, "summarize_run", broken)
    spec = RunSpec("tiny", "baseline", 0, "c")
    (row,) = _run(sut, [spec], results)

    assert row.status == "ok"
    assert row.ttft_s == 12.0
    assert row.error is None
    assert row.audit == Audit(parse_error="ValueError: unexpected log wording")
    assert row.audit_passed is None
    assert row.phases == {}
    assert row.timeline is None
    assert row.client.ttft_s == 12.0
    assert Path(row.log_path).with_suffix(".client.json").exists()  # the analysis can re-derive it later
    assert load_rows(results)[0].audit.parse_error == "ValueError: unexpected log wording"


# ---------------------------------------------------------------------------------------------------------
# CLI


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runner.add_cli_args(parser)
    return parser.parse_args(argv)


@pytest.fixture
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dry run / bad name must not start anything")

    monkeypatch.setattr(runner, "ServiceSUT", refuse)
    monkeypatch.setattr(runner, "run_matrix", refuse)
    monkeypatch.setattr(runner, "collect_provenance", refuse)
    monkeypatch.setattr(runner.subprocess, "Popen", refuse)
    monkeypatch.setattr(runner.subprocess, "run", refuse)


def test_main_dry_run_lists_runs_and_starts_nothing(
    nothing_starts: None, results: Path, sut: FakeSUT, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--models",
        "tiny",
        "--experiments",
        "baseline",
        "runai_streamer_sharded",
        "compile_cache",
        "--repeats",
        "2",
        "--campaign",
        "dr",
        "--results",
        str(results),
        "--dry-run",
        "--",
        "--device",
        "cpu",
    ]
    assert runner.main(_args(argv)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:-1] == [f"todo  dr  tiny  {e}  single  #{r}" for r in (0, 1) for e in ("baseline", "compile_cache")]
    assert out[-1] == "4 of 4 runs to do; service args: --device cpu"
    assert not results.exists()


def test_main_dry_run_marks_done_runs(
    nothing_starts: None, results: Path, sut: FakeSUT, capsys: pytest.CaptureFixture[str]
) -> None:
    # One ok row from an earlier (fake) campaign run; written before the CLI's hands are tied.
    runner.append_row(
        results, runner.run_one(sut, RunSpec("tiny", "baseline", 1, "dr"), provenance=PROVENANCE, device=None)
    )
    argv = ["--models", "tiny", "--repeats", "2", "--campaign", "dr", "--results", str(results), "--dry-run"]
    assert runner.main(_args(argv)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "todo  dr  tiny  baseline  single  #0",
        "done  dr  tiny  baseline  single  #1",
        "1 of 2 runs to do; service args: (none)",
    ]


@pytest.mark.parametrize(
    ("argv", "needle", "valid"),
    [
        (["--models", "tiny", "gpt-9"], "unknown model 'gpt-9'", list(MODELS)),
        (["--experiments", "warp_drive"], "unknown experiment 'warp_drive'", list(EXPERIMENTS)),
    ],
)
def test_main_unknown_name_exits_2_listing_valid_names(
    nothing_starts: None,
    results: Path,
    argv: list[str],
    needle: str,
    valid: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert runner.main(_args([*argv, "--results", str(results)])) == 2
    err = capsys.readouterr().err
    assert needle in err
    for name in valid:
        assert name in err
    assert not results.exists()


def test_main_runs_the_matrix_through_the_sut(
    monkeypatch: pytest.MonkeyPatch, sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[tuple[list[str], dict]] = []

    def fake_service_sut(service_args: list[str], **kwargs: Any) -> FakeSUT:
        made.append((service_args, kwargs))
        return sut

    monkeypatch.setattr(runner, "ServiceSUT", fake_service_sut)
    monkeypatch.setattr(runner, "collect_provenance", lambda: PROVENANCE)
    argv = [
        "--models",
        "tiny",
        "--repeats",
        "2",
        "--results",
        str(results),
        "--no-clear",
        "--client-timeout",
        "7",
        "--",
        "--device",
        "cpu",
    ]
    assert runner.main(_args(argv)) == 0
    assert made[0][0] == ["--device", "cpu"]
    assert made[0][1]["clear"] is False and made[0][1]["client_timeout_s"] == 7.0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    assert len(load_rows(results)) == 2

    # A failed run makes the exit status 1; only the retried run is done again.
    sut.calls.clear()
    sut.fail_deploy = {("default", "tiny", "baseline", "single", 2)}
    assert runner.main(_args([*argv[:3], "3", *argv[4:]])) == 1
    assert sut.ran("clear") == [("default", "tiny", "baseline", "single", 2)]
    assert "0 ok, 1 failed" in capsys.readouterr().out


def test_main_rerun_of_a_finished_campaign_says_what_is_done_and_how_to_measure_again(
    monkeypatch: pytest.MonkeyPatch, sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make demo` twice: the second finds its one run done and must say so, not "0 ok, 0 failed".
    monkeypatch.setattr(runner, "ServiceSUT", lambda service_args, **kwargs: sut)
    monkeypatch.setattr(runner, "collect_provenance", lambda: PROVENANCE)
    argv = ["--models", "tiny", "--repeats", "1", "--campaign", "demo", "--results", str(results)]
    assert runner.main(_args(argv)) == 0
    (row,) = load_rows(results)
    capsys.readouterr()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is pending: no system under test may be started")

    monkeypatch.setattr(runner, "ServiceSUT", refuse)
    monkeypatch.setattr(runner, "run_matrix", refuse)
    assert runner.main(_args(argv)) == 0
    out = capsys.readouterr().out
    assert "0 ok" not in out
    assert out.startswith(f"nothing to run: tiny baseline #0 of campaign 'demo' is already in {results}")
    assert f"run {row.run_id}; TTFT 12.0 s" in out
    assert "--campaign NAME" in out and "--repeats 2" in out
    assert len(load_rows(results)) == 1


def test_main_with_no_pair_that_can_run_exits_2_and_says_why(
    nothing_starts: None, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--models", "tiny", "--experiments", "runai_streamer_sharded", "--results", str(results)]
    assert runner.main(_args(argv)) == 2
    err = capsys.readouterr().err
    assert "no (model, experiment) pair can run" in err and "tensor parallelism" in err


@pytest.mark.parametrize("what", ["results", "logs"])
def test_main_checks_it_can_write_before_the_first_cold_start(
    nothing_starts: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], what
) -> None:
    # Tests may run as root, where chmod stops nothing: a file where a folder must be blocks root too.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    results = blocker / "results.jsonl" if what == "results" else tmp_path / "results.jsonl"
    if what == "logs":
        monkeypatch.setenv("COLDSTART_OUTPUT", str(blocker / "logs"))
    assert runner.main(_args(["--models", "tiny", "--repeats", "1", "--results", str(results)])) == 2
    err = capsys.readouterr().err
    assert "nothing was run" in err and str(blocker) in err
    assert blocker.read_text() == "not a folder\n"


def test_check_writable_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLDSTART_OUTPUT", str(tmp_path / "logs"))
    specs = plan(["tiny"], ["baseline"], 1, "c")
    assert runner.check_writable(tmp_path / "r" / "results.jsonl", specs) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_row_that_cannot_be_appended_is_kept_beside_its_log(
    sut: FakeSUT, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, row: Any) -> None:
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(runner, "append_row", refuse)
    specs = plan(["tiny"], ["baseline"], 2, "c")
    with pytest.raises(runner.ResultsNotWritable, match="row is saved in") as info:
        _run(sut, specs, results)
    assert len(sut.ran("measure")) == 1  # the campaign stops: the next row would be lost too
    rescue = Path(str(info.value).split("saved in ")[1].split(" ")[0])
    row = json.loads(rescue.read_text())
    assert row["ttft_s"] == 12.0 and row["status"] == "ok" and rescue.parent == Path(row["log_path"]).parent


def test_a_failure_after_the_measurement_keeps_the_number(sut: FakeSUT, results: Path) -> None:
    class StopFails(FakeSUT):
        @contextlib.contextmanager
        def deploy(self, spec: RunSpec, run_id: str) -> Iterator[Deployment]:
            with super().deploy(spec, run_id) as dep:
                yield dep
            raise RuntimeError("service.py did not stop")

    broken = StopFails(root=sut.root)
    (row,) = _run(broken, [RunSpec("tiny", "baseline", 0, "c")], results)
    assert row.status == "ok" and row.ttft_s == 12.0
    assert row.extra["late_errors"] == ["RuntimeError: service.py did not stop"]
    assert load_rows(results)[0].ttft_s == 12.0


# ---------------------------------------------------------------------------------------------------------
# stop_process_group on real processes

_IGNORES_TERM = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    # A child in the same group that also ignores SIGTERM (an engine process left behind).
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(120)'], stdout=subprocess.PIPE)\n"
    "child.stdout.readline()\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def _gone(pid: int) -> bool:
    """Exited: no /proc entry, or a zombie waiting for its (re)parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@contextlib.contextmanager
def _started(code: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # a failed assertion must not leak the process group
            with contextlib.suppress(ProcessLookupError):
                runner.os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def test_stop_process_group_kills_a_group_that_ignores_sigterm(capsys: pytest.CaptureFixture[str]) -> None:
    with _started(_IGNORES_TERM) as proc:
        child_pid = int(proc.stdout.readline())  # both handlers are installed once this line arrives
        grace = 0.5
        t0 = time.monotonic()
        # In a thread, so a regression (no SIGKILL) fails here instead of hanging the suite on proc.wait().
        stopper = threading.Thread(
            target=runner.stop_process_group, args=(proc,), kwargs={"grace_s": grace}, daemon=True
        )
        stopper.start()
        stopper.join(timeout=grace + 10.0)
        elapsed = time.monotonic() - t0
        assert not stopper.is_alive(), "stop_process_group did not return: the group survived SIGTERM"

        assert proc.returncode == -signal.SIGKILL
        assert grace <= elapsed < grace + 5.0
        deadline = time.monotonic() + 5.0
        while not _gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child_pid)
    killed = [e for e in read_events(capsys.readouterr().out) if e["event"] == "service_killed"]
    assert len(killed) == 1 and killed[0]["pid"] == proc.pid and killed[0]["grace_s"] == grace


def test_stop_process_group_terminates_a_well_behaved_process_fast(capsys: pytest.CaptureFixture[str]) -> None:
    with _started("import time; print('up', flush=True); time.sleep(120)") as proc:
        proc.stdout.readline()
        t0 = time.monotonic()
        runner.stop_process_group(proc, grace_s=30.0)
        assert time.monotonic() - t0 < 5.0  # did not sit out the grace time
        assert proc.returncode == -signal.SIGTERM
    assert "service_killed" not in capsys.readouterr().out


def test_stop_process_group_on_an_exited_process_is_harmless() -> None:
    with _started("pass") as proc:
        proc.wait(timeout=30)
        runner.stop_process_group(proc, grace_s=0.1)
        assert proc.returncode == 0


# ---------------------------------------------------------------------------------------------------------
# time budget (a lent machine's call limit)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _prior(
    model: str,
    experiment: str,
    *,
    wall_s: float | None = None,
    ttft_s: float | None = 50.0,
    gpu: str | None = "GPU-A",
    status: str = "ok",
    campaign: str = "earlier",
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{campaign}-{model}-{experiment}-{wall_s}-{ttft_s}",  # readers skip a row without one
        "campaign": campaign,
        "model": model,
        "experiment": experiment,
        "repeat": 0,
        "status": status,
        "ttft_s": ttft_s,
        "provenance": {"gpu": gpu},
        "extra": {} if wall_s is None else {"wall_s": wall_s},
    }


def test_estimate_prefers_wall_time_then_ttft_plus_overhead_and_ignores_other_gpus() -> None:
    spec = RunSpec("tiny", "baseline", 0, "now")
    rows = [
        _prior("tiny", "baseline", wall_s=100.0),
        _prior("tiny", "baseline", wall_s=300.0),
        _prior("tiny", "baseline", wall_s=200.0),
        _prior("tiny", "baseline", wall_s=999.0, gpu=None),
        _prior("tiny", "baseline", wall_s=999.0, status="failed"),
        _prior("tiny", "all", wall_s=999.0),
    ]
    rows = [ResultRow.from_dict(r) for r in rows]
    est = runner.estimate_run_s(spec, rows, gpu="GPU-A")
    assert est is not None and est.seconds == 200.0 and "3 earlier" in est.basis
    ttft_only = [ResultRow.from_dict(_prior("tiny", "baseline", ttft_s=t)) for t in (40.0, 60.0)]
    assert runner.estimate_run_s(spec, ttft_only, gpu="GPU-A", overhead_s=10.0).seconds == 60.0
    assert runner.estimate_run_s(spec, rows, gpu="GPU-B") is None
    # No run of this experiment yet: the model's other experiments on that GPU stand in.
    other = runner.estimate_run_s(RunSpec("tiny", "compile_cache_mega", 0, "now"), rows, gpu="GPU-A")
    assert other is not None and other.seconds == 250.0 and "earlier tiny run" in other.basis


def test_estimate_of_a_scenario_comes_from_runs_of_that_scenario_first() -> None:
    # Lease s7: a `tour` (two cold starts, 20 requests) was budgeted like a single start of its experiment.
    single = [_prior("llama-3-8b", "fast", wall_s=w) for w in (140.0, 150.0)]
    tour = _prior("llama-3-8b", "fast", wall_s=207.0, campaign="tour")
    tour["extra"]["scenario"] = "tour"
    rows = [ResultRow.from_dict(r) for r in (*single, tour)]
    est = runner.estimate_run_s(RunSpec("llama-3-8b", "fast", 0, "now", scenario="tour"), rows, gpu="GPU-A")
    assert est is not None and est.seconds == 207.0 and "1 earlier run" in est.basis
    # No run of that scenario yet: the experiment's runs under any scenario stand in, and say so.
    burst = runner.estimate_run_s(RunSpec("llama-3-8b", "fast", 0, "now", scenario="burst"), rows, gpu="GPU-A")
    assert burst is not None and burst.seconds == 150.0 and "3 earlier fast run" in burst.basis


def test_a_run_that_would_not_fit_the_budget_is_not_started(
    sut: FakeSUT, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results.parent.mkdir(parents=True)
    gpu = PROVENANCE.gpu
    results.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                _prior("tiny", "baseline", wall_s=100.0, gpu=gpu),
                _prior("tiny", "compile_cache", wall_s=300.0, gpu=gpu),
            )
        )
    )
    clock = _Clock()

    class Ticking(FakeSUT):
        def clear(self, spec: RunSpec) -> dict[str, Any]:
            clock.now += 100.0  # every run takes 100 s of the budget
            return super().clear(spec)

    ticking = Ticking(root=sut.root)
    specs = plan(["tiny"], ["baseline", "compile_cache", "runai_streamer"], 1, "now")
    rows = runner.run_matrix(
        ticking, specs, results, provenance=PROVENANCE, show_progress=False, time_budget_s=250.0, clock=clock
    )
    # baseline (~100 s) fits 250 s; compile_cache (~300 s) does not fit the 150 s left and is not started;
    # runai_streamer is estimated from tiny's other runs (median of 100 s, 300 s and the fake's instant run).
    assert [r.experiment for r in rows] == ["baseline", "runai_streamer"]
    assert ("now", "tiny", "compile_cache", "single", 0) not in ticking.ran("clear")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "compile_cache #0: not started, needs ~300 s (median wall time of 1 earlier run(s)), 150 s left" in out
    assert all(isinstance(r.wall_s, float) for r in rows)


# --- the real system's process handling, with a stand-in service.py -------------------------------------------

_REFUSES = """
import sys
print("error: port 8000 on 127.0.0.1 already has a listener (a Serve app left from an earlier run?)",
      file=sys.stderr)
sys.exit(1)
"""


def _real_system(tmp_path: Path, service_py: str, monkeypatch: pytest.MonkeyPatch) -> runner.ServiceSUT:
    (tmp_path / "service.py").write_text(service_py)
    monkeypatch.setenv("COLDSTART_OUTPUT", str(tmp_path / "out"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path / "tmp"))  # where the side files go
    return runner.ServiceSUT([], clear=False, ready_timeout_s=30.0, workdir=tmp_path)


def test_a_service_that_exits_early_leaves_its_words_in_the_row_and_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the lent H200 the proxy of a killed call held port 8000; service.py refused, its stderr went nowhere,
    # and the rows pointed at logs that were never written.
    sut = _real_system(tmp_path, _REFUSES, monkeypatch)
    row = runner.run_one(sut, RunSpec("tiny", "baseline", 0, "c"), provenance=PROVENANCE, device=None)
    assert row.status == "failed"
    assert "exited with 1 before it was ready" in row.error and "already has a listener" in row.error
    log = Path(row.log_path)
    assert log == tmp_path / "out" / "tiny" / "baseline" / f"{row.run_id}.log"
    assert "already has a listener" in log.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "service.py", "tmp"], "no side file in the work tree"
    assert not list((tmp_path / "tmp").iterdir()), "the side files' temp dir must not be left behind"


_SERVES_THEN_GIVES_UP = """
import argparse, json, sys, time
from pathlib import Path
p = argparse.ArgumentParser(); p.add_argument("model"); p.add_argument("experiment"); p.add_argument("--scenario")
p.add_argument("--run-id"); p.add_argument("--ready-file", type=Path)
a = p.parse_args()
log = Path(sys.argv[0]).parent / "out" / a.model / a.experiment / f"{a.run_id}.log"
log.parent.mkdir(parents=True, exist_ok=True)
log.write_text("serving\\n")
a.ready_file.write_text(json.dumps({"url": "http://127.0.0.1:9", "log": str(log)}))
print("a warning Ray printed after the tee", file=sys.stderr)
time.sleep(60)
"""


def test_output_outside_the_tee_is_appended_to_an_existing_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sut = _real_system(tmp_path, _SERVES_THEN_GIVES_UP, monkeypatch)
    with sut.deploy(RunSpec("tiny", "baseline", 0, "c"), "r1") as dep:
        assert dep.log_path.read_text() == "serving\n"
        assert sorted(p.name for p in (tmp_path / "tmp").glob("coldstart-r1-*/*")) == ["ready.json", "stderr.txt"]
    assert dep.log_path.read_text() == "serving\na warning Ray printed after the tee\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "service.py", "tmp"]
    assert not list((tmp_path / "tmp").iterdir())


def _client_lost_stream(log_path: Path) -> Measurement:
    return Measurement(
        schema_version=RESULT_SCHEMA_VERSION,
        url="http://x/v1/chat/completions",
        model="tiny",
        status="stream_error",
        error="RemoteProtocolError: peer closed connection",
        ttft_s=None,
        total_s=95.0,
        tokens=0,
        t_send_epoch=1.0,
        t_first_token_epoch=None,
        t_last_token_epoch=None,
        first_text=None,
        http_status=200,
    )


def test_a_client_cut_off_by_a_failed_app_gets_serves_reason(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(
        "x\n"
        + format_event(
            "serve_app_failed",
            t=5.0,
            app="a",
            reason="Serve app a is DEPLOY_FAILED; "
            "LLMServer:tiny DEPLOY_FAILED: failed 3 times ... RuntimeError: no config",
        )
        + "\n"
    )
    m = runner.explain_failure(_client_lost_stream(log), log)
    assert m.status == "serve_failed"
    assert m.error.startswith("Serve app a is DEPLOY_FAILED") and "RuntimeError: no config" in m.error
    assert "peer closed connection" in m.error  # what the client itself saw stays


def test_a_client_failure_without_a_serve_failure_is_left_as_it_was(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(format_event("serve_app_deployed", t=1.0) + "\n")
    m = _client_lost_stream(log)
    assert runner.explain_failure(m, log) == m
    assert runner.explain_failure(m, tmp_path / "missing.log") == m


@pytest.mark.parametrize("flag", ["--client-timeout", "--ready-timeout"])
def test_main_refuses_a_timeout_that_is_not_a_wait(nothing_starts: None, flag: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _args([flag, "0"])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_main_refuses_a_results_path_it_cannot_read(nothing_starts: None, tmp_path: Path, capsys) -> None:
    assert runner.main(_args(["--models", "tiny", "--results", str(tmp_path)])) == 2  # a folder, not a file
    assert "cannot read the results file" in capsys.readouterr().err


def test_a_warm_node_reads_what_vllm_reads_once(tmp_path):
    store, checkpoints = tmp_path / "store", tmp_path / "checkpoints"
    for folder in (store / "models" / "tiny", checkpoints / "tiny"):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * 1000)
        (folder / "config.json").write_bytes(b"{}")
    # The staged copy vLLM serves from; not the checkpoint it was staged from as well.
    assert runner.warm_folders("tiny", [store], checkpoints) == [store / "models" / "tiny"]
    assert runner.read_into_page_cache(runner.warm_folders("tiny", [store], checkpoints)) == 1002
    # No local store (S3): the checkpoint is what the node has.
    assert runner.warm_folders("tiny", [], checkpoints) == [checkpoints / "tiny"]
    assert runner.read_into_page_cache([tmp_path / "absent"]) == 0


# --- the answer check: a batched request is held to its first token only ---------------------------------------


def _answer(text: str, status: str = "ok") -> ClientResult:
    return ClientResult(
        schema_version=1,
        url="http://x/v1/chat/completions",
        model="tiny",
        status=ClientStatus(status),
        error=None,
        ttft_s=1.0,
        total_s=2.0,
        tokens=3,
        t_send_epoch=1000.0,
        t_first_token_epoch=1001.0,
        t_last_token_epoch=1002.0,
        first_text=text.split(" ")[0],
        http_status=200,
        text=text,
    )


REFERENCE = runner.ReferenceAnswer("base-1", "a b c", "a")


def test_a_lone_request_is_held_to_the_whole_answer() -> None:
    same = runner.answer_check(_answer("a b c"), None, REFERENCE)
    other = runner.answer_check(_answer("a b x"), None, REFERENCE)
    assert (same.matches_baseline, same.compared, same.request_index) == (True, AnswerCompared.ANSWER, 0)
    assert other.matches_baseline is False


def test_a_burst_is_judged_by_the_first_request_sent_alone_after_ready() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(3)]
    concurrent = [RequestRecord(3 + i, RequestGroup.AFTER_READY_CONCURRENT, _answer("a y z")) for i in range(2)]
    after = RequestRecord(5, RequestGroup.AFTER_READY, _answer("a b c"))
    check = runner.answer_check(burst[0].client, [*burst, *concurrent, after], REFERENCE)
    assert (check.matches_baseline, check.compared, check.request_index) == (True, AnswerCompared.ANSWER, 5)
    wrong = dataclasses.replace(after, client=_answer("a b q"))
    assert runner.answer_check(burst[0].client, [*burst, wrong], REFERENCE).matches_baseline is False


def test_a_lone_return_counts_as_alone() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(2)]
    back = RequestRecord(2, RequestGroup.RETURN, _answer("a b c"), cycle=1)
    check = runner.answer_check(burst[0].client, [*burst, back], REFERENCE)
    assert (check.matches_baseline, check.request_index) == (True, 2)


def test_a_run_of_batched_requests_only_is_held_to_its_first_token() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(4)]
    check = runner.answer_check(burst[0].client, burst, REFERENCE)
    assert (check.matches_baseline, check.compared) == (True, AnswerCompared.FIRST_TOKEN)
    off = [RequestRecord(i, RequestGroup.BURST, _answer("q b c")) for i in range(4)]
    assert runner.answer_check(off[0].client, off, REFERENCE).matches_baseline is False


def test_no_reference_leaves_the_check_open_and_the_row_round_trips() -> None:
    check = runner.answer_check(_answer("a b c"), None, None)
    assert check.matches_baseline is None and check.reference_run_id is None
    assert AnswerCheck.from_dict(json.loads(json.dumps(check.to_dict()))) == check
    old_shape = AnswerCheck(reference_run_id="r", matches_baseline=True)
    assert old_shape.to_dict() == {"reference_run_id": "r", "matches_baseline": True}
