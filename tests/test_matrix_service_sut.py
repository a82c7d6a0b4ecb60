"""The real system under test's process handling: stopping a process group that ignores SIGTERM, a stand-in service.py
that exits early or talks outside its tee, Serve's reason for a lost stream, a warm node's page cache."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_sut import PROVENANCE

from coldstart.analysis.events import format_event, read_events
from coldstart.lab.client import RESULT_SCHEMA_VERSION, Measurement
from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.matrix.rows import run_one
from coldstart.lab.matrix.service_sut import (
    ServiceSUT,
    explain_failure,
    read_into_page_cache,
    side_folder,
    started_service,
    stop_process_group,
    warm_folders,
)

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
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def test_stop_process_group_kills_a_group_that_ignores_sigterm(capsys: pytest.CaptureFixture[str]) -> None:
    with _started(_IGNORES_TERM) as proc:
        child_pid = int(proc.stdout.readline())  # both handlers are installed once this line arrives
        grace = 0.5
        t0 = time.monotonic()
        # In a thread, so a regression (no SIGKILL) fails here instead of hanging the suite on proc.wait().
        stopper = threading.Thread(target=stop_process_group, args=(proc,), kwargs={"grace_s": grace}, daemon=True)
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
        stop_process_group(proc, grace_s=30.0)
        assert time.monotonic() - t0 < 5.0  # did not sit out the grace time
        assert proc.returncode == -signal.SIGTERM
    assert "service_killed" not in capsys.readouterr().out


def test_stop_process_group_on_an_exited_process_is_harmless() -> None:
    with _started("pass") as proc:
        proc.wait(timeout=30)
        stop_process_group(proc, grace_s=0.1)
        assert proc.returncode == 0


def test_a_started_service_and_its_side_folder_are_gone_however_the_body_ends(tmp_path: Path) -> None:
    code = "import sys, time; print('up', file=sys.stderr, flush=True); time.sleep(120)"
    with pytest.raises(RuntimeError, match="the body failed"), side_folder("r1") as side:
        err = side / "stderr.txt"
        with started_service([sys.executable, "-c", code], cwd=tmp_path, stderr_path=err) as proc:
            deadline = time.monotonic() + 30.0
            while "up" not in err.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None
            raise RuntimeError("the body failed")
    assert proc.returncode == -signal.SIGTERM  # stopped on the way out, not left running
    assert not side.exists()


# --- the real system's process handling, with a stand-in service.py -------------------------------------------

_REFUSES = """
import sys
print("error: port 8000 on 127.0.0.1 already has a listener (a Serve app left from an earlier run?)",
      file=sys.stderr)
sys.exit(1)
"""


def _real_system(tmp_path: Path, service_py: str, monkeypatch: pytest.MonkeyPatch) -> ServiceSUT:
    (tmp_path / "service.py").write_text(service_py)
    monkeypatch.setenv("COLDSTART_OUTPUT", str(tmp_path / "out"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the side files go
    return ServiceSUT([], clear=False, ready_timeout_s=30.0, workdir=tmp_path)


def test_a_service_that_exits_early_leaves_its_words_in_the_row_and_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the H200 machine of the campaign 2026-11-22-h200x2 the proxy of an earlier, killed service held port 8000;
    # service.py refused, its stderr went nowhere, and the rows pointed at logs that were never written.
    sut = _real_system(tmp_path, _REFUSES, monkeypatch)
    row = run_one(sut, RunSpec("tiny", "baseline", 0, "c"), provenance=PROVENANCE, device=None)
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
    m = explain_failure(_client_lost_stream(log), log)
    assert m.status == "serve_failed"
    assert m.error.startswith("Serve app a is DEPLOY_FAILED") and "RuntimeError: no config" in m.error
    assert "peer closed connection" in m.error  # what the client itself saw stays


def test_a_client_failure_without_a_serve_failure_is_left_as_it_was(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(format_event("serve_app_deployed", t=1.0) + "\n")
    m = _client_lost_stream(log)
    assert explain_failure(m, log) == m
    assert explain_failure(m, tmp_path / "missing.log") == m


def test_a_warm_node_reads_what_vllm_reads_once(tmp_path):
    store, checkpoints = tmp_path / "store", tmp_path / "checkpoints"
    for folder in (store / "models" / "tiny", checkpoints / "tiny"):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * 1000)
        (folder / "config.json").write_bytes(b"{}")
    # The staged copy vLLM serves from; not the checkpoint it was staged from as well.
    assert warm_folders("tiny", [store], checkpoints) == [store / "models" / "tiny"]
    assert read_into_page_cache(warm_folders("tiny", [store], checkpoints)) == 1002
    # No local store (S3): the checkpoint is what the node has.
    assert warm_folders("tiny", [], checkpoints) == [checkpoints / "tiny"]
    assert read_into_page_cache([tmp_path / "absent"]) == 0


def test_a_plain_http_service_gets_a_client_that_loads_no_ca_bundle() -> None:
    import httpx

    from coldstart.lab.matrix.service_sut import plain_http_transport

    assert plain_http_transport("https://lab.example:8443") is None  # https keeps httpx's verifying default
    transport = plain_http_transport("http://127.0.0.1:8000")
    assert isinstance(transport, httpx.HTTPTransport)
    t0 = time.perf_counter()
    for _ in range(64):  # a flood's clients, built one after another as the GIL serializes them
        httpx.Client(transport=plain_http_transport("http://127.0.0.1:8000")).close()
    assert time.perf_counter() - t0 < 0.5  # with the bundle: ~19 ms each, 1.2 s
