"""Results integrity: a malformed line costs only itself and is named by line; TTFT medians hold only runs
with a client result; a row's device is known from its log or provenance, and an unknown one stays apart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from coldstart.analysis.results import SCHEMA_VERSION, ResultRow, parse_rows, row_problem

pd = pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from coldstart.analysis import cli, collect, plots, tables  # noqa: E402


def _row(run_id: str, **kw) -> dict:
    client = {"status": "ok", "ttft_s": kw.get("ttft_s", 10.0), "t_send_epoch": 1.0e9}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model": "m1",
        "experiment": "baseline",
        "repeat": 0,
        "status": "ok",
        "ttft_s": 10.0,
        "phases": {},
        "audit": {"compile_cache_hit": False},
        "device": "cuda",
        "campaign": "c",
        "extra": {"client": client},
        **kw,
    }


def _runs(*rows: dict) -> list:
    """The analysis' view of hand-made rows (``source`` says where it found each; results by default)."""
    runs = []
    for row in rows:
        data = {"schema_version": SCHEMA_VERSION, "repeat": None, "log_path": None, "provenance": None, "config": {}}
        data.update({k: v for k, v in row.items() if k != "source"})
        runs.append(collect.Run(ResultRow.from_dict(data), collect.Source(row.get("source", "results"))))
    return runs


BAD_LINES = [
    ("[1, 2, 3]", "not a JSON object"),
    (json.dumps(_row("r-fast", ttft_s="fast")), "ttft_s is 'fast'"),
    (json.dumps(_row("r-neg", ttft_s=-1.0)), "ttft_s is -1.0"),
    (json.dumps(_row("r-nomodel", model=None)), "model is None"),
    (json.dumps(_row("r-phase", phases={"load_s": "slow"})), "phase 'load_s'"),
    (json.dumps(_row("r-extra", extra=[1])), "extra is a list"),
    (json.dumps({**_row("r-nover"), "schema_version": None}), "schema_version None"),
    ('{"schema_version": 1, "run_id": "torn', "not JSON"),
]


def test_malformed_rows_are_skipped_and_reported_by_line_number():
    lines = [json.dumps(_row("good-1")), *(line for line, _ in BAD_LINES), json.dumps(_row("good-2"))]
    skipped: list[str] = []
    rows = parse_rows(lines, source="results.jsonl", skipped=skipped)
    assert [r.run_id for r in rows] == ["good-1", "good-2"]
    assert len(skipped) == len(BAD_LINES)
    for n, (message, (_, why)) in enumerate(zip(skipped, BAD_LINES, strict=True), start=2):
        assert message.startswith(f"results.jsonl:{n}: skipped, ") and why in message, message


def test_without_a_list_the_skipped_rows_are_logged(caplog):
    with caplog.at_level("WARNING", logger="coldstart.analysis"):
        assert parse_rows(["[1]", json.dumps(_row("ok"))], source="f") != []
    assert "f:1: skipped" in caplog.text


def test_a_good_row_has_no_problem():
    assert row_problem(_row("r")) is None
    assert row_problem(_row("r", ttft_s=None, status="timeout", repeat=None)) is None


def _cli(tmp_path: Path, results: Path) -> int:
    parser = argparse.ArgumentParser()
    cli.add_cli_args(parser)
    args = parser.parse_args(
        [
            "--logs",
            str(tmp_path / "no-logs"),
            "--results",
            str(results),
            "--out-graphs",
            str(tmp_path / "g"),
            "--out-tables",
            str(tmp_path / "t"),
        ]
    )
    return cli.main(args)


def test_the_analysis_cli_survives_malformed_rows_and_names_them(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    good = [json.dumps(_row(f"good-{i}", ttft_s=10.0 + i, repeat=i)) for i in range(2)]
    results.write_text("\n".join([good[0], "[1,2,3]", json.dumps(_row("x", ttft_s="fast")), good[1]]) + "\n")
    assert _cli(tmp_path, results) == 0
    err = capsys.readouterr().err
    assert f"{results}:2: skipped" in err and f"{results}:3: skipped" in err
    assert len(pd.read_csv(tmp_path / "t" / "phases.csv")) == 2


def _log_only(run_id: str, ttft_s: float, span_s: float) -> dict:
    """A log without a client result (a capture) whose own client events gave a TTFT-like number."""
    return {
        "run_id": run_id,
        "model": "m1",
        "experiment": "baseline",
        "status": collect.LOG_ONLY,
        "ttft_s": ttft_s,
        "phases": {},
        "audit": {},
        "device": "cuda",
        "source": "log",
        "extra": {
            "timeline": {
                "segments": {},
                "spans": [],
                "ttft_s": None,
                "t_send_epoch": None,
                "startup_span_s": span_s,
                "utc_offset_s": 0.0,
                "utc_offset_detected": False,
                "segment_error_s": {},
                "milestones": {},
                "notes": [],
            }
        },
    }


def _by_hand(run_id: str, ttft_s: float) -> dict:
    """A by-hand run whose log has a client sidecar: source log, node state unknown, like the capture."""
    return {**_row(run_id, ttft_s=ttft_s), "source": "log", "extra": {"client": {"status": "ok", "ttft_s": ttft_s}}}


def test_rows_without_a_client_result_never_enter_a_ttft_median():
    rows = [_by_hand("a", 100.0), _by_hand("b", 120.0), _log_only("cap", 5.0, 300.0)]
    med = tables.median_table(tables.run_table(_runs(*rows)))
    by_kind = med.set_index("total_kind")
    assert by_kind.loc["ttft", ["n", "total_s", "ttft_s"]].tolist() == [2, 110.0, 110.0]
    assert by_kind.loc["log_span", ["n", "total_s"]].tolist() == [1, 300.0]
    assert pd.isna(by_kind.loc["log_span", "ttft_s"])
    series = tables.comparison_data(med)["series"].tolist()
    assert series == ["baseline", "baseline [log_span]"]
    assert list(tables.stacked_data(med, "m1").index) == ["baseline", "baseline\n[log_span]"]


@pytest.mark.parametrize(
    ("device", "provenance", "kind"),
    [
        (None, {"gpu": "NVIDIA H100 80GB HBM3 x1"}, "cuda:H100 x1"),
        (None, {"gpu": None}, "cpu"),
        ("cpu", {"gpu": "NVIDIA H100 80GB HBM3 x1"}, "cpu"),  # the log says where the engine ran
        (None, None, None),
    ],
)
def test_a_rows_device_comes_from_its_log_or_provenance(device, provenance, kind):
    runs = tables.run_table(_runs(_row("r", device=device, provenance=provenance)))
    got = runs.loc[0, "device"]
    assert (None if pd.isna(got) else got) == kind


def test_an_unknown_device_is_never_merged_with_a_known_one():
    rows = [_row("known", ttft_s=100.0), _row("unknown", ttft_s=10.0, device=None, provenance=None)]
    med = tables.median_table(tables.run_table(_runs(*rows)))
    assert sorted(med["device"]) == ["?", "cuda"] and med["n"].tolist() == [1, 1]
    data = tables.comparison_data(med)
    assert sorted(data["series"]) == ["baseline", "baseline (?)"]
    ax = plots.render_comparison(data).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["10\n?", "100"]


def test_the_analysis_cli_refuses_a_results_path_it_cannot_read(tmp_path, capsys):
    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({**_row("r"), "schema_version": SCHEMA_VERSION + 1}) + "\n")
    for results in (tmp_path, newer):
        assert _cli(tmp_path, results) == 2
        assert "cannot read the results file" in capsys.readouterr().err


def test_a_superseded_run_stays_in_the_table_but_never_in_a_median(tmp_path):
    (tmp_path / "superseded.jsonl").write_text(json.dumps({"run_id": "old", "why": "before the fix"}) + "\n")
    superseded = collect.load_superseded(tmp_path / "superseded.jsonl")
    runs = tables.run_table(_runs(_row("old", ttft_s=40.0), _row("new", ttft_s=15.0)), superseded)
    assert runs.set_index("run_id").loc["old", "superseded"] == "before the fix"
    med = tables.median_table(runs)
    assert med["n"].tolist() == [1] and med["total_s"].tolist() == [15.0]
    (gone,) = tables.excluded_runs(runs)
    assert gone.run_id == "old" and "superseded: before the fix" in str(gone)


def test_a_malformed_superseded_file_is_an_error_not_an_empty_list(tmp_path):
    path = tmp_path / "superseded.jsonl"
    assert collect.load_superseded(path) == {}  # no file: nothing superseded
    path.write_text('{"run_id": "x"}\n')
    with pytest.raises(ValueError, match=r"superseded\.jsonl:1"):
        collect.load_superseded(path)
