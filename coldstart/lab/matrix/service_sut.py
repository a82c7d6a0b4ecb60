"""The real system under test: ``clear_cache.py`` before, ``service.py`` in a subprocess (its own process
group, so a stop reaches Ray's and vLLM's children), the client in this process. Each lifecycle is a context
manager: the side folder is removed and the process group stopped however the run ends."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from coldstart import paths
from coldstart.analysis import events
from coldstart.analysis.results import ClientResult, ClientStatus
from coldstart.lab.client import measure_ttft
from coldstart.lab.matrix.live import live_status
from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.matrix.sut import Deployment
from coldstart.lab.matrix.user_model import NodeWeights, UserModel, cleared_root_holding, node_weights
from coldstart.lab.traffic import Traffic
from coldstart.registry import get_scenario, with_max_replicas


def warm_folders(
    model: str, local_stores: Sequence[Path], checkpoints: Path, own_folder: Path | None = None
) -> list[Path]:
    """What a warm node holds in its page cache: the model's files as vLLM reads them, from the local store.
    The checkpoint they were staged from only when there is no local store (an S3 store's weights live
    elsewhere): reading both doubled a warm run's preparation (32 GB for the 8B, ~12 s) for files vLLM never
    opens. A user's model (``own_folder``: its folder, or its Hub snapshot's) is served from there; a staged copy
    of it is read too where there is one, since the streaming experiments read that instead."""
    staged = [store / "models" / model for store in local_stores]
    if own_folder is not None:
        return [own_folder, *(p for p in staged if p.is_dir())]
    return staged if staged else [checkpoints / model]


def read_into_page_cache(folders: Sequence[Path], chunk_bytes: int = 16 << 20) -> int:
    """Read every file under ``folders`` once (what serving the model before left in the page cache)."""
    total = 0
    buf = bytearray(chunk_bytes)
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
            if path.is_file() and not path.is_symlink():
                with open(path, "rb", buffering=0) as f:
                    while n := f.readinto(buf):
                        total += n
    return total


@dataclasses.dataclass(frozen=True)
class OwnEviction:
    """A user's weights in one clear: the paths to evict, the folders clear-cache must take as weights roots, and
    what the row's clear report says of them."""

    evict: list[str] = dataclasses.field(default_factory=list)
    weights_roots: list[str] = dataclasses.field(default_factory=list)
    said: dict[str, str] = dataclasses.field(default_factory=dict)


class ServiceSUT:
    """The real system: ``service.py`` in a subprocess (its own process group, so a stop reaches Ray and
    vLLM children), ``clear_cache`` before, the client in this process."""

    def __init__(
        self,
        service_args: Sequence[str],
        *,
        clear: bool = True,
        clear_only: Sequence[str] = (),
        ready_timeout_s: float = 600.0,
        client_timeout_s: float = 1800.0,
        python: str = sys.executable,
        workdir: Path | None = None,
        max_replicas: int | None = None,
        user_model: UserModel | None = None,
    ):
        self.service_args = list(service_args)
        self.clear_enabled = clear
        self.clear_only = list(clear_only)
        self.ready_timeout_s = ready_timeout_s
        self.client_timeout_s = client_timeout_s
        self.python = python
        # Where service.py and clear_cache.py are run from: the source checkout that holds them (never the
        # runner's working folder); an installed wheel has no checkout, so the lab, and the tools by module.
        self.workdir = workdir or paths.source_checkout() or paths.lab_dir()
        self.max_replicas = max_replicas  # replaces each scenario's (service.py --max-replicas)
        # The model the service args name with --model-id (None: registry models only): its weights are no
        # part of the lab's store or checkpoints, so a cold run evicts them and a warm one reads them by name.
        self.user_model = user_model
        # Set by run_matrix on a terminal: gets "<seconds> s since the request: <phase>" while a cold start runs.
        self.on_status: Callable[[str], None] | None = None

    def clear(self, spec: RunSpec) -> dict[str, Any]:
        if not self.clear_enabled:
            return {"skipped": True}
        # Weights read from the lab's local store or checkpoints must come from disk, not the page cache.
        from coldstart.storage.store import default_store_uri, parse_store_uri

        store = parse_store_uri(default_store_uri())
        local = [store.path] if store.path is not None else []
        weights = [p for p in (*local, paths.coldstart_home() / "checkpoints") if p.exists()]
        evict = [str(p) for p in weights] if spec.node_state == "cold" else []
        own_eviction = OwnEviction()
        if spec.node_state == "cold" and (own := self.own_weights(spec)) is not None:
            own_eviction = self.evict_own(own)
        evict += own_eviction.evict
        # Every action named: clear_cache.py does only what it is told (and drops the page cache as before).
        cmd = [
            *self.tool_command("clear_cache.py", "clear-cache"),
            *(["--only", *self.clear_only] if self.clear_only else ["--all"]),
            *(["--evict", *evict] if evict else []),
            *(arg for root in own_eviction.weights_roots for arg in ("--weights-root", root)),
            "--drop-caches",
        ]
        proc = subprocess.run(cmd, cwd=self.workdir, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"clear_cache.py failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        report: dict[str, Any] = {"ok": True, "node_state": spec.node_state, **own_eviction.said}
        if spec.node_state == "warm":
            # Looked for after the clear: a Hub snapshot in a cache root it emptied is no longer on the node.
            own = self.own_weights(spec)
            own_folder = own.folder if own is not None else None
            if own is not None:
                if own_folder is None:
                    report["user_weights_not_read"] = f"{own.why}; none of its files were read"
                else:
                    report["user_weights_read"] = str(own_folder)
            report["page_cache_read_bytes"] = read_into_page_cache(
                warm_folders(spec.model, local, paths.coldstart_home() / "checkpoints", own_folder)
            )
        return report

    def own_weights(self, spec: RunSpec) -> NodeWeights | None:
        """Where the user's model of ``spec`` lies on the node now; None for a registry model."""
        if self.user_model is None or spec.model != self.user_model.model.name:
            return None
        return node_weights(self.user_model)

    def evict_own(self, own: NodeWeights) -> OwnEviction:
        """What the clear must evict of the user's weights (and the folder it must take as a weights root where it
        is outside the lab's roots), and what the row's clear report says of them. A cold run never claims weights
        cold that nothing evicted: where they are not found, the report says so."""
        if own.folder is None:
            return OwnEviction(said={"user_weights_not_evicted": f"{own.why}; none of its files were evicted"})
        root = cleared_root_holding(own.folder, self.clear_only)
        if root is not None:
            # Evicting would come after the clear emptied the root, and fail on a folder no longer there.
            return OwnEviction(said={"user_weights_removed": f"{own.folder}: the clear empties {root}"})
        folder = str(own.folder)
        return OwnEviction(
            evict=[folder], weights_roots=[folder] if own.outside_lab else [], said={"user_weights_evicted": folder}
        )

    def tool_command(self, script: str, tool: str) -> list[str]:
        """The checkout's thin script where there is one (a test's stand-in too), else the same tool by module."""
        if (self.workdir / script).is_file():
            return [self.python, script]
        return [self.python, "-m", "coldstart", tool]

    def service_command(self, spec: RunSpec, run_id: str, ready: Path) -> list[str]:
        return [
            *self.tool_command("service.py", "serve"),
            spec.model,
            spec.experiment,
            "--run-id",
            run_id,
            "--ready-file",
            str(ready),
            "--scenario",
            spec.scenario,
            *(["--max-replicas", str(self.max_replicas)] if self.max_replicas is not None else []),
            *self.service_args,
        ]

    @contextlib.contextmanager
    def deploy(self, spec: RunSpec, run_id: str) -> Iterator[Deployment]:
        log_path = self.workdir / paths.run_log_path(spec.model, spec.experiment, run_id)
        # The ready file and what service.py says outside its tee go to a temp dir, not the work tree.
        with side_folder(run_id) as side:
            ready = side / "ready.json"
            # service.py tees into the run log only once its checks passed: what it says before (a refused port,
            # a missing checkpoint) or after the tee is caught here instead of vanishing.
            outside_tee = side / "stderr.txt"
            cmd = self.service_command(spec, run_id, ready)
            try:
                with started_service(cmd, cwd=self.workdir, stderr_path=outside_tee) as proc:
                    info = wait_until_ready(
                        proc, ready, self.ready_timeout_s, outside_tee=outside_tee, log_path=log_path
                    )
                    yield Deployment(
                        url=info["url"],
                        run_id=run_id,
                        log_path=self.workdir / info["log"],
                        config=info.get("config", {}),
                    )
            finally:
                # After the stop, so what it said on its way down is kept too.
                keep_outside_output(outside_tee, log_path)

    def measure(self, deployment: Deployment, spec: RunSpec) -> Traffic:
        from coldstart.lab.traffic import http_control, log_waiter, run_scenario, with_replicas

        scenario = with_max_replicas(get_scenario(spec.scenario), self.max_replicas)
        downscale_s = scenario.autoscaling.downscale_delay_s or 0.0
        with live_status(deployment.log_path, self.on_status):
            traffic = run_scenario(
                scenario,
                model=spec.model,
                send=lambda: measure_ttft(
                    deployment.url,
                    spec.model,
                    timeout_s=self.client_timeout_s,
                    transport=plain_http_transport(deployment.url),
                ),
                control=http_control(deployment.url, timeout_s=self.client_timeout_s),
                # Serve's decision waits out the delay and its look-back window; the replica then drains and
                # stops (vLLM's shutdown): minutes at most, far less than a cold start's own limit.
                wait_until_zero=log_waiter(deployment.log_path, timeout_s=downscale_s + self.ready_timeout_s),
            )
        traffic = dataclasses.replace(traffic, client=explain_failure(traffic.client, deployment.log_path))
        return with_replicas(traffic, wait_for_access_lines(deployment.log_path, traffic))


def plain_http_transport(base_url: str) -> httpx.HTTPTransport | None:
    """For a plain ``http://`` service, a transport that loads no CA bundle (None for https: httpx's default,
    which verifies). Each request of a burst builds its own client in its own thread before its clock starts;
    the bundle costs ~19 ms of CPU under the GIL, so the 64 of a flood went out over 1.8 s on 2 cores."""
    return httpx.HTTPTransport(verify=False) if httpx.URL(base_url).scheme == "http" else None


@contextlib.contextmanager
def side_folder(run_id: str) -> Iterator[Path]:
    """A fresh temp folder for one run's side files, removed on exit."""
    side = Path(tempfile.mkdtemp(prefix=f"coldstart-{run_id}-"))
    try:
        yield side
    finally:
        shutil.rmtree(side, ignore_errors=True)


@contextlib.contextmanager
def started_service(cmd: Sequence[str], *, cwd: Path, stderr_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in a new process group, its stderr into ``stderr_path``; on exit the whole group is stopped
    (``stop_process_group``), however the body ended."""
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        stop_process_group(proc)


def wait_until_ready(
    proc: subprocess.Popen[bytes], ready: Path, timeout_s: float, *, outside_tee: Path, log_path: Path
) -> dict[str, Any]:
    """What service.py wrote into its ready file ({url, log, config}), once it has; ServiceExited (its last
    words folded into the run log) when it ended first, TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            said = keep_outside_output(outside_tee, log_path)
            raise ServiceExited(
                f"service.py exited with {proc.returncode} before it was ready: {said or 'it said nothing'}",
                log_path=log_path,
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"service.py not ready after {timeout_s:.0f} s")
        time.sleep(0.5)
    info: dict[str, Any] = json.loads(ready.read_text())
    return info


def wait_for_access_lines(log_path: Path, traffic: Traffic, timeout_s: float = 15.0, poll_s: float = 0.5) -> str:
    """The run log once it names the replica of every answered request (or after ``timeout_s``): Ray forwards
    a replica's access line to the driver a moment after the response, so the last request's line can lag it."""
    from coldstart.analysis.serve_log import served_by

    wanted = {r.client.request_id for r in traffic.requests if r.client.ok and r.client.request_id}
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = log_path.read_text(errors="replace")
        except OSError:
            return ""
        if wanted <= set(served_by(text)) or time.monotonic() > deadline:
            return text
        time.sleep(poll_s)


class ServiceExited(RuntimeError):
    """service.py ended before it served; ``log_path`` holds what it said."""

    def __init__(self, message: str, *, log_path: Path):
        super().__init__(message)
        self.log_path = log_path


def keep_outside_output(outside: Path, log_path: Path) -> str | None:
    """Fold what service.py wrote outside its tee into the run log (the log is created when there is none,
    so the row's log path always exists) and return its last line."""
    if not outside.exists():
        return None
    text = outside.read_text(errors="replace")
    outside.unlink()
    if not text.strip():
        return None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(text if text.endswith("\n") else text + "\n")
    return text.strip().splitlines()[-1]


def explain_failure(m: ClientResult, log_path: Path) -> ClientResult:
    """A client that lost its stream because service.py gave up on the app gets Serve's reason, not the
    connection error it saw."""
    if m.ok or not log_path.exists():
        return m
    failed = [e for e in events.read_events(log_path.read_text(errors="replace")) if e["event"] == "serve_app_failed"]
    if not failed:
        return m
    return dataclasses.replace(m, status=ClientStatus.SERVE_FAILED, error=f"{failed[-1]['reason']} (client: {m.error})")


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = 90.0) -> None:
    """SIGTERM first (service.py shuts Serve and Ray down), SIGKILL the whole group if it hangs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            events.emit("service_killed", pid=proc.pid, grace_s=grace_s)
    # Anything the service left in its group (an engine process that ignored the shutdown) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
