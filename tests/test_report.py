"""The static HTML report: built from a small synthetic results file and one committed log, then read back
with html.parser the way a browser would see it from disk."""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coldstart.analysis.collect import Run, Source, collect, load_results, row_from_log
from coldstart.analysis.headline import HEAD
from coldstart.analysis.report import SUMMARY_HEAD, add_cli_args, build_report, main, summary_rows
from coldstart.analysis.results import ClientResult, Provenance, ResultRow, RunStatus, append_row
from coldstart.analysis.tables import median_table, run_table

REPO = Path(__file__).resolve().parents[1]
ANCESTOR_DIR = REPO.parent / "shared" / "fixtures" / "ancestor-logs"
RUN_ID = "20261129T185203Z-484a"
LOG = REPO / "experiment_terminal_output" / "llama-3-8b" / "fast" / f"{RUN_ID}.log"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.external: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.order: list[str] = []  # "img <src>" and "table <class>", in page order
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(str(a["href"]))
        if tag in ("script", "link", "img", "iframe"):
            ref = a.get("src") or a.get("href") or ""
            if tag == "script" or ref.startswith(("http://", "https://", "//")):
                self.external.append(f"{tag} {ref}")
        if tag == "img":
            self.order.append(f"img {a.get('src')}")
        if tag == "table":
            self._table = a.get("class") or f"table{len(self.tables)}"
            self.tables[self._table] = []
            self.order.append(f"table {self._table}")
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _results(tmp_path: Path) -> Path:
    """Two runs of the log's row (one ok, one failed without a log) in a results file of their own."""
    client = ClientResult.from_dict(json.loads(LOG.with_suffix(".client.json").read_text()))
    parsed = row_from_log(
        LOG.read_text(errors="replace"),
        run_id=RUN_ID,
        model="llama-3-8b",
        experiment="fast",
        client=client,
        log_path=str(LOG),
    ).row
    provenance = Provenance({"vllm": "0.25.1"}, "NVIDIA H200 x1", "570.1", "vm", "3.11", "abc123", False, "boot-1")
    ok = dataclasses.replace(parsed, repeat=1, provenance=provenance, campaign="test", node_state="warm")
    failed = ResultRow(
        run_id="20261129T000000Z-dead",
        model="llama-3-8b",
        experiment="fast",
        repeat=2,
        status=RunStatus.FAILED,
        ttft_s=None,
        phases={},
        audit=None,
        log_path=None,
        provenance=provenance,
        config={},
        error="service never ready",
    )
    path = tmp_path / "results" / "results.jsonl"
    append_row(path, ok)
    append_row(path, failed)
    return path


def test_report_table_links_and_no_network(tmp_path: Path) -> None:
    results = _results(tmp_path)
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    for name in ("ladder_llama-3-8b_H200_x1_warm.png", "phases_llama-3-8b.png", "comparison.png", "unrelated.png"):
        (graphs / name).write_bytes(b"\x89PNG")
    out = tmp_path / "report"
    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    empty_logs = tmp_path / "no-logs"
    empty_logs.mkdir()
    args = parser.parse_args(
        ["--out", str(out), "--results", str(results), "--logs", str(empty_logs), "--graphs", str(graphs)]
    )
    assert main(args) == 0

    page = _Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    assert not page.external, page.external
    # It opens with the headline: the run's ladder, then the ancestor's figures beside ours, before any detail.
    ladder = "ladder_llama-3-8b_H200_x1_warm.png"
    assert page.order[0].startswith("img ") and page.order[0].endswith(ladder), page.order
    assert page.order[1] == "table headline", page.order
    headline = {(row[0], row[1]): row for row in page.tables["headline"][1:]}
    assert page.tables["headline"][0] == list(HEAD)
    assert headline[("llama-3-8b", "fast")][3:] == [f"{_ttft(results):.1f}", "H200 x1, warm node", "2026-11-29", "1"]
    assert headline[("llama-3-8b", "baseline")][2:4] == ["≈ 98", "not run yet"]  # theirs, and none of ours yet
    assert sum(entry.endswith(ladder) for entry in page.order) == 1  # shown once; the Graphs list links it
    # The summary table is summary.md's: same heading, same cells, one row per usable group.
    runs = [Run(r.row, Source.RESULTS) for r in load_results(results)]
    expected = summary_rows(median_table(run_table(runs)))
    table = page.tables["summary"]
    assert table[0] == list(SUMMARY_HEAD)
    assert table[1:] == [[html.unescape(c) for c in row] for row in expected]
    assert len(table) == 2 and table[1][:6] == ["llama-3-8b", "fast", "ours", "H200 x1", "warm", "1"]
    assert table[1][6] == f"{runs[0].row.ttft_s:.1f}"
    # Every run is listed; the failed one too.
    assert {row[0] for row in page.tables["runs"][1:]} == {RUN_ID, "20261129T000000Z-dead"}
    # Links resolve from the report folder; the graphs are linked, not copied; the trace was written.
    files = [link for link in page.links if not link.startswith("#")]
    assert all(not link.startswith(("http:", "https:", "/")) for link in files), files
    for link in files:
        assert (out / link).resolve().is_file(), link
    names = {Path(link).name for link in files}
    assert {"ladder_llama-3-8b_H200_x1_warm.png", "phases_llama-3-8b.png", "comparison.png"} <= names
    assert "unrelated.png" not in names
    assert {LOG.name, f"{RUN_ID}.trace.json"} <= names
    assert not list(out.glob("*.png"))
    anchors = {link[1:] for link in page.links if link.startswith("#")}
    assert anchors == {RUN_ID, "20261129T000000Z-dead"}
    html_text = (out / "index.html").read_text(encoding="utf-8")
    assert "abc123" in html_text and "NVIDIA H200 x1" in html_text  # provenance
    assert "±" in html_text  # the whole-second stamps' precision beside the segments
    sums = [t[-1] for t in page.tables.values() if t and t[-1] and t[-1][0] == "sum (= TTFT)"]
    assert sums == [["sum (= TTFT)", f"{runs[0].row.ttft_s:.2f}"]]  # the segments add up to the run's TTFT


def _ttft(results: Path) -> float:
    (ok,) = [run.row.ttft_s for run in load_results(results) if run.row.ttft_s is not None]
    return ok


@pytest.mark.skipif(not ANCESTOR_DIR.is_dir(), reason="ancestor logs not available (../shared/fixtures/ancestor-logs)")
def test_the_report_labels_the_ancestors_published_logs_theirs(tmp_path: Path) -> None:
    runs = [run for run in collect([ANCESTOR_DIR]) if run.row.model == "llama-3-70b"]
    index = build_report(tmp_path / "report", runs, graphs_dir=tmp_path / "no-graphs")
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    summary = [dict(zip(page.tables["summary"][0], row, strict=True)) for row in page.tables["summary"][1:]]
    assert len(summary) == 5
    assert {(r["source"], r["hardware"], r["node"]) for r in summary} == {("ancestor (published logs)", "8×H100", "—")}
    assert {row[3] for row in page.tables["runs"][1:]} == {"ancestor (published logs)"}
    facts = dict(row for row in page.tables["facts"][1:])  # the last run's: no runner row, their publication
    assert facts["hardware"] == "8×H100" and facts["source"] == "ancestor (published logs)"
    assert facts["ancestor: date"] == "2025-10-21" and "provenance" not in facts


def _chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (.ci/run installs it where apt can)")
def test_a_real_headless_chromium_renders_the_table_and_the_ladder_from_disk(tmp_path: Path) -> None:
    mpimg = pytest.importorskip("matplotlib.image")
    np = pytest.importorskip("numpy")
    results = _results(tmp_path)
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    # A committed ladder graph: the picture the page must show (its bars are the only saturated colour there).
    shutil.copy(REPO / "graphs" / "ladder_llama-3-8b_H200_x1_warm.png", graphs / "ladder_llama-3-8b_H200_x1_warm.png")
    out = tmp_path / "report"
    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    (tmp_path / "no-logs").mkdir()
    args = parser.parse_args(
        ["--out", str(out), "--results", str(results), "--logs", str(tmp_path / "no-logs"), "--graphs", str(graphs)]
    )
    assert main(args) == 0
    shot = tmp_path / "shot.png"
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    page = (out / "index.html").as_uri()
    proc = subprocess.run(
        [*browser, f"--screenshot={shot}", "--window-size=1400,1600", page],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = (mpimg.imread(shot)[..., :3] * 255).astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # The ladder rendered: the page holds thousands of pixels of the graph's own most common bar colour (links
    # are the browser's blue, the failed status red, the rest grey: none of them a matplotlib bar colour).
    ladder = (mpimg.imread(graphs / "ladder_llama-3-8b_H200_x1_warm.png")[..., :3] * 255).astype(int)
    bars = ladder[(ladder.max(axis=-1) - ladder.min(axis=-1)) > 60]
    colours, counts = np.unique(bars, axis=0, return_counts=True)
    bar = colours[counts.argmax()]
    shown = (abs(pixels - bar) <= 12).all(axis=-1).sum()
    assert shown > 2000, f"{shown} pixels of the ladder's bar colour {bar.tolist()}: no graph on the page"
    # The table rendered: its 1-px #ccc borders make long grey horizontal runs.
    border = (abs(red - 204) <= 8) & (abs(green - 204) <= 8) & (abs(blue - 204) <= 8)
    assert border.sum(axis=1).max() > 300, "no table border on the page"
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False)
    assert 'class="summary"' in dom.stdout and "ladder_llama-3-8b_H200_x1_warm.png" in dom.stdout
