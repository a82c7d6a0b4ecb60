"""One run, one row: a failed run is a row and the matrix goes on, the cache audit, a parser or a teardown that fails
after the measurement keeps the number."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_sut import INDUCTOR_S, FakeSUT, run_quietly

from coldstart.analysis.audit import audit
from coldstart.analysis.results import SCHEMA_VERSION, Audit, load_rows
from coldstart.lab.matrix.plan import RunSpec, plan
from coldstart.lab.matrix.sut import Deployment
from coldstart.registry import EXPERIMENTS


@pytest.fixture
def sut(tmp_path: Path) -> FakeSUT:
    return FakeSUT(root=tmp_path)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results" / "results.jsonl"


# ---------------------------------------------------------------------------------------------------------
# failure isolation


def test_a_failed_run_is_a_row_and_the_matrix_goes_on(sut: FakeSUT, results: Path) -> None:
    specs = plan(["tiny", "qwen-3-0.6b"], ["baseline"], 2, "c")
    _, s1, s2, _ = specs
    sut.fail_deploy = {s1.key}
    sut.fail_measure = {s2.key}
    rows = run_quietly(sut, specs, results)

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
    rows = run_quietly(sut, specs, results)
    assert [r.status for r in rows] == ["failed", "ok"]
    assert "clear_cache.py failed" in rows[0].error
    assert sut.ran("deploy") == [specs[1].key]


def test_a_client_failure_status_is_kept_not_failed(sut: FakeSUT, results: Path) -> None:
    spec = RunSpec("tiny", "baseline", 0, "c")
    sut.client_status = {spec.key: "no_token"}
    (row,) = run_quietly(sut, [spec], results)
    assert row.status == "no_token"
    assert row.ttft_s is None
    assert row.error == "no_token from the fake"


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
    (row,) = run_quietly(sut, [spec], results)
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
    assert audit("baseline", Audit(compile_cache_hit=None, aot_cache_hit=None)).passed is True
    assert audit("baseline", Audit(compile_cache_hit=False, aot_cache_hit=True)).passed is False
    assert audit("all", Audit(compile_cache_hit=None, aot_cache_hit=True)).passed is True
    assert audit("all", Audit(compile_cache_hit=False, aot_cache_hit=False)).passed is False
    out = audit("compile_cache", Audit(compile_cache_hit=True, compile_cache_restore_status="SUCCESS"))
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
    (row,) = run_quietly(sut, [spec], results)

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


def test_a_failure_after_the_measurement_keeps_the_number(sut: FakeSUT, results: Path) -> None:
    class StopFails(FakeSUT):
        @contextlib.contextmanager
        def deploy(self, spec: RunSpec, run_id: str) -> Iterator[Deployment]:
            with super().deploy(spec, run_id) as dep:
                yield dep
            raise RuntimeError("service.py did not stop")

    broken = StopFails(root=sut.root)
    (row,) = run_quietly(broken, [RunSpec("tiny", "baseline", 0, "c")], results)
    assert row.status == "ok" and row.ttft_s == 12.0
    assert row.extra["late_errors"] == ["RuntimeError: service.py did not stop"]
    assert load_rows(results)[0].ttft_s == 12.0
