"""Bad input to the tools, each refused before it costs anything: before a file is rewritten, a request is sent,
or an answer is printed that names nothing. No Ray, no vLLM: each fault is in argument or input handling."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldstart.cli import run_tool
from coldstart.lab import client as client_mod
from coldstart.storage.store import InvalidStoreURI, S3Store, parse_store_uri

# ---------------------------------------------------------------------------------------------------------
# configs --store


@pytest.mark.parametrize("store", ["notascheme://x", "s3:/x", "s3://Bad_Bucket/x"])
def test_configs_refuses_a_bad_store_before_writing_any_config(store, tmp_path, capsys):
    # Before: exit 0 and ~120 configs rewritten to name the bad store (the committed ones, without --out).
    out = tmp_path / "experiments"
    assert run_tool("configs", ["--store", store, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert store in err and "nothing was written" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------
# client --out


def _unwritable_outs(tmp_path: Path) -> list[Path]:
    (tmp_path / "a-file").write_text("")
    outs = [tmp_path / "a-file" / "ttft.json", tmp_path]  # a folder under a file; a folder as the file
    if Path("/proc/self").is_dir():
        outs.append(Path("/proc/x/ttft.json"))
    return outs


def test_client_refuses_an_unwritable_out_before_sending(tmp_path, capsys):
    # Before: the request went out (a cold start of minutes), then the write raised a traceback and the result
    # lived only in a stdout line.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for out in _unwritable_outs(tmp_path):
            started = time.monotonic()
            assert run_tool("client", ["--url", url, "--timeout", "2", "--out", str(out)]) == 2
            assert time.monotonic() - started < 1.0
            err = capsys.readouterr().err
            assert f"cannot write --out {out}" in err and "nothing was sent" in err
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no client ever connected


def test_the_out_probe_creates_the_folder_and_leaves_nothing_else(tmp_path):
    out = tmp_path / "new" / "folder" / "ttft.json"
    client_mod.check_out_writable(out)
    assert out.parent.is_dir() and list(out.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# S3 bucket names


@pytest.mark.parametrize(
    "bucket",
    ["Bad_Bucket", "UPPER", "under_score", "ab", "a" * 64, "-abc", "abc-", "abc.", "a..b", "192.168.1.1", "b:9000"],
)
def test_a_name_s3_refuses_is_no_bucket(bucket):
    # Before: uppercase and "_" (and "a..b", an IP address) passed, to fail later as an S3 error mid-run.
    with pytest.raises(InvalidStoreURI, match="not a valid S3 bucket name"):
        parse_store_uri(f"s3://{bucket}/x")
    with pytest.raises(InvalidStoreURI, match="not a valid S3 bucket name"):
        S3Store(bucket, "x")


@pytest.mark.parametrize("bucket", ["abc", "my-bucket", "a.b-c1", "a" * 63, "1.2.3.4.5", "0bucket9"])
def test_a_name_s3_accepts_is_a_bucket(bucket):
    assert parse_store_uri(f"s3://{bucket}/x").bucket == bucket


# ---------------------------------------------------------------------------------------------------------
# python -m analysis --logs


@pytest.fixture(scope="module")
def junk_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A binary file, an empty one and 50 MB of random text, each named like a capture."""
    logs = tmp_path_factory.mktemp("junk") / "logs"
    logs.mkdir()
    (logs / "x.log").write_bytes(os.urandom(4096) + b"\0")
    (logs / "empty.log").write_text("")
    (logs / "noise.txt").write_text(base64.encodebytes(os.urandom(38_000_000)).decode())
    yield logs
    (logs / "noise.txt").unlink()  # pytest keeps its last temp folders: not 50 MB of them each


def _analysis(logs: Path, out: Path) -> int:
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    argv = ["--logs", str(logs), "--results", str(out / "results.jsonl")]
    return run_tool("analysis", [*argv, "--out-graphs", str(out / "graphs"), "--out-tables", str(out / "tables")])


def test_files_that_hold_no_run_are_named_and_left_out(junk_logs, tmp_path, capsys):
    # Before: each became a run (the binary one a model named "x"), nothing was flagged, exit 0, and the last
    # line named a graphs folder that was never made.
    started = time.monotonic()
    assert _analysis(junk_logs, tmp_path) == 1
    elapsed_s = time.monotonic() - started
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, err
    for name, why in (("x.log", "binary"), ("empty.log", "empty"), ("noise.txt", "no lab or vLLM line")):
        assert f"{junk_logs / name} ({why})" in notes[0]
    assert "no runs found" in err and "graphs" not in out
    assert not (tmp_path / "graphs").exists()
    assert elapsed_s < 20.0  # 50 MB read and screened once, not parsed line by line (today ~1 s)


def test_a_run_beside_junk_is_kept_and_no_graph_is_claimed(junk_logs, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    for f in junk_logs.iterdir():
        (logs / f.name).symlink_to(f)
    (logs / "tiny-baseline.log").write_text("INFO 10-15 11:56:51 [x.py:1] a line of vLLM, no phase in it\n")
    # A run whose log is empty but whose client answered is a run (its failure is the result): kept.
    run = logs / "tiny" / "baseline" / "20261201T000000Z-0001"
    run.parent.mkdir(parents=True)
    run.with_suffix(".log").write_text("")
    result = {"schema_version": client_mod.RESULT_SCHEMA_VERSION, "url": "http://u/v1/chat/completions"}
    result |= {"model": "tiny", "status": "connect_error", "error": "refused", "ttft_s": None, "total_s": 0.1}
    run.with_suffix(".client.json").write_text(json.dumps(result))
    assert _analysis(logs, tmp_path / "out") == 0
    out, err = capsys.readouterr()
    assert "2 runs" in out and "3 log files hold no run" in err
    assert "no graphs" in out and "graphs in" not in out
    assert not (tmp_path / "out" / "graphs").exists()


# ---------------------------------------------------------------------------------------------------------
# matrix --repeats


@pytest.mark.parametrize("repeats", ["0", "-1"])
def test_matrix_refuses_fewer_than_one_repeat_at_parsing(repeats, capsys):
    # Before: "no (model, experiment) pair can run:" with nothing after the colon.
    with pytest.raises(SystemExit) as info:
        run_tool("matrix", ["--repeats", repeats, "--dry-run"])
    assert info.value.code == 2
    assert "--repeats" in (err := capsys.readouterr().err) and "at least 1" in err


# ---------------------------------------------------------------------------------------------------------
# listing a store folder that does not exist


@pytest.mark.parametrize("argv", [["compile-cache", "show"], ["stage", "ls"]])
def test_listing_a_store_folder_that_does_not_exist_says_so(argv, tmp_path, capsys):
    # Before: compile-cache show printed nothing and exited 0; stage ls said "no models staged".
    missing = tmp_path / "no-such-store"
    assert run_tool(argv[0], [argv[1], "--store", str(missing)]) == 1  # both tools' exit for a store error
    err = capsys.readouterr().err
    assert f"store folder {missing} does not exist" in err
    assert not missing.exists()


def test_an_empty_store_and_the_fresh_labs_own_store_list_nothing_and_say_so(tmp_path, capsys):
    (tmp_path / "empty-store").mkdir()
    assert run_tool("compile-cache", ["show", "--store", str(tmp_path / "empty-store")]) == 0
    assert "no entries in" in capsys.readouterr().err
    # The lab's default store is made by its first write: before that, an empty store rather than an error.
    assert run_tool("compile-cache", ["show"]) == 0
    assert "no entries in" in capsys.readouterr().err
    assert run_tool("stage", ["ls"]) == 0
    assert "no models staged" in capsys.readouterr().out
