"""Lifecycles around one Serve LLM deployment: output tee, signals, Ray/Serve start and shutdown.

Every piece is a context manager so a crash, Ctrl-C or SIGTERM still shuts Serve and Ray down (no orphan
engine process holding a GPU) and still flushes the log.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from coldstart.analysis import events
from coldstart.lab.llm_config import OPENAI_APP


@contextlib.contextmanager
def tee_output(log_path: Path) -> Iterator[Path]:
    """Copy everything written to fds 1 and 2 (this process and children that inherit them: Ray's
    forwarded worker logs, vLLM, raylet) into ``log_path`` while still showing it on the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with open(log_path, "ab", buffering=0) as log:
            while chunk := os.read(read_fd, 65536):
                log.write(chunk)
                os.write(saved_out, chunk)

    thread = threading.Thread(target=pump, name="coldstart-tee", daemon=True)
    thread.start()
    try:
        yield log_path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        # Children that still hold the pipe keep it open; do not wait for them forever.
        thread.join(timeout=5)
        os.close(saved_out)
        os.close(saved_err)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (what the runner and schedulers send) unwinds like Ctrl-C, through every ``finally``."""

    def handler(signum: int, _frame: Any) -> None:
        # One interrupt only: a second SIGTERM (a impatient supervisor, Ray stopping its children) must not
        # cut the cleanup that the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


class ControllerLogFollower:
    """Serve's controller logs its autoscaling and replica decisions to a file, not to the driver:
    follow that file and echo its lines (prefixed) into our output so one log holds the whole story."""

    def __init__(self, session_dir: str, poll_s: float = 0.5):
        self._pattern = os.path.join(session_dir, "logs", "serve", "controller_*.log")
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coldstart-controller-log", daemon=True)
        self._offsets: dict[str, int] = {}

    def __enter__(self) -> ControllerLogFollower:
        # Only what is written from now on: on a cluster Ray's session_latest folder (and an earlier
        # controller's log, with its "from 0" decisions) outlives each run, and an old decision read as this
        # run's would misplace the request.
        for path in glob.glob(self._pattern):
            with contextlib.suppress(OSError):
                self._offsets[path] = os.path.getsize(path)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        offsets = self._offsets
        while True:
            stopping = self._stop.is_set()
            for path in sorted(glob.glob(self._pattern)):
                try:
                    with open(path, "rb") as f:
                        f.seek(offsets.get(path, 0))
                        data = f.read()
                        offsets[path] = f.tell()
                except OSError:
                    continue
                for line in data.decode(errors="replace").splitlines():
                    print(f"(ServeController) {line}", flush=True)
            if stopping:
                return
            self._stop.wait(self._poll_s)


# Serve's words for "will not serve until redeployed": the controller stops starting replicas after a
# constructor failed three times in a row, while a pending request waits out the ingress timeout.
_FAILED_STATES = ("DEPLOY_FAILED", "UNHEALTHY")


def _state(status: Any) -> str:
    return str(getattr(status, "value", status))


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:")


def _gist(message: str, limit: int = 400) -> str:
    """A controller message cut to its summary line and the exception that ended its traceback (with the
    lines that continue it up to a blank one: a pydantic error puts its reason on the next line)."""
    lines = [line.strip() for line in message.strip().splitlines()]
    starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if not starts or starts[-1] == 0:
        return " ".join(line for line in lines if line)[:limit]
    tail: list[str] = []
    for line in lines[starts[-1] :]:
        if not line:
            break
        tail.append(line)
    return f"{lines[0]} ... {' '.join(tail)[:limit]}"


def app_failure(status: Any, app_name: str) -> str | None:
    """Why the app can no longer serve, from a ``serve.status()`` snapshot; None while it can or may still."""
    app = status.applications.get(app_name)
    if app is None or _state(app.status) not in _FAILED_STATES:
        return None
    parts = [f"Serve app {app_name} is {_state(app.status)}"]
    parts += [
        f"{name} {_state(dep.status)}: {_gist(dep.message)}"
        for name, dep in app.deployments.items()
        if _state(dep.status) in _FAILED_STATES and dep.message
    ]
    if len(parts) == 1 and app.message:
        parts.append(_gist(app.message))
    return "; ".join(parts)


# Serve 2.57's deployment message once a replica has waited 30 s for a node with room for it
# (``deployment_state.py``, ``SLOW_STARTUP_WARNING_S``): no live node has the resources, and none may ever come.
_UNSCHEDULABLE = re.compile(r"replicas that have taken more than \d+s to be scheduled")
_RESOURCES = re.compile(r"Resources required for each replica: .*?(?= Use `ray status`|$)", re.DOTALL)


def app_unschedulable(status: Any, app_name: str) -> str | None:
    """Why a deployment of the app cannot start its replicas: Serve has found no node for one (a node died and no
    other fits, or the cluster never had one). None while every replica has a place or the app is gone."""
    app = status.applications.get(app_name)
    if app is None:
        return None
    for name, dep in app.deployments.items():
        message = dep.message or ""
        if _UNSCHEDULABLE.search(message):
            resources = _RESOURCES.search(message)
            detail = resources.group(0).strip() if resources else _gist(message)
            return f"Serve app {app_name}: no node can take a replica of {name}; {detail}"
    return None


def app_settled(status: Any, app_name: str) -> bool:
    """The app runs and no deployment is scaling: no replica is starting (a quiet moment for background work)."""
    app = status.applications.get(app_name)
    if app is None or _state(app.status) != "RUNNING":
        return False
    return all(_state(dep.status) == "HEALTHY" for dep in app.deployments.values())


class _Held:
    """How long one condition has held, over consecutive looks (a look without it starts over)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def seen(self, present: bool, now: float) -> float:
        if not present:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = now
        return now - self.since


def watch_app(
    app_name: str,
    *,
    grace_s: float = 30.0,
    unschedulable_s: float | None = None,
    poll_s: float = 5.0,
    get_status: Callable[[], Any] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    between_polls: Callable[[], None] | None = None,
) -> str:
    """Block while the app can serve; return the reason once it has stayed failed for ``grace_s``, or once a
    replica has found no node for ``unschedulable_s`` after Serve said so (None: wait for a node forever).

    The grace lets a state that Serve itself recovers from (one replica replaced) pass without ending a run. A
    replica with no node is not a failure to Serve: it waits for one (an autoscaler may add it), and a request
    waits with it; where no node will come (the replica's node died mid-start and no other fits) only this
    bound ends the run. ``between_polls`` runs after every look (the fast path's pool keeper).
    """
    if get_status is None:
        from ray import serve

        get_status = serve.status
    failing, homeless = _Held(), _Held()
    while True:
        try:
            status = get_status()
            reason, unplaced = app_failure(status, app_name), app_unschedulable(status, app_name)
        except Exception as exc:  # a status call that fails once must not end a cold start
            # Not a verdict on the app (the controller may be busy or restarting): say so, look again later.
            print(f"coldstart: serve.status() failed ({type(exc).__name__}: {exc}); watching on", file=sys.stderr)
            reason = unplaced = None
        now = clock()
        if failing.seen(reason is not None, now) >= grace_s and reason is not None:
            return reason
        waited_s = homeless.seen(unplaced is not None, now)
        if unplaced is not None and unschedulable_s is not None and waited_s >= unschedulable_s:
            return f"{unplaced} (for {waited_s:.0f} s after Serve said so)"
        if between_polls is not None:
            between_polls()
        sleep(poll_s)


class PortInUse(RuntimeError):
    """Something already answers on the Serve HTTP port: the client would talk to it, not to this app."""


def ensure_port_free(host: str, port: int, timeout_s: float = 0.5) -> None:
    """Refuse to start when the HTTP port already has a listener.

    A Serve app left behind by an earlier run (its Ray daemons outlive a killed driver) keeps port 8000; a
    new local Ray then starts beside it, its proxy never gets the port, and every request reaches the old
    app: a 404 for the new model after minutes of waiting (seen on an H100). Connecting is the test,
    not binding: in that run the new proxy reported "Proxy starting ... (HTTP port: 8000)" while the old
    one still answered there.
    """
    import socket

    probe_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    try:
        with socket.create_connection((probe_host, port), timeout=timeout_s):
            pass
    except OSError:
        return
    raise PortInUse(
        f"port {port} on {probe_host} already has a listener (a Serve app left from an earlier run?); "
        f"stop it first (`ray stop --force` if it is a stale local Ray; the actors of a Ray whose raylet was "
        f"killed survive that: `pkill -f '^ray::'`) or pick another --port"
    )


class PortHeld(PortInUse):
    """Another lab on this machine holds the port (it may still be starting Ray: nothing listens yet)."""


def _port_lock_name(port: int) -> bytes:
    # Linux's abstract socket namespace: no file, freed by the kernel when the holder dies (SIGKILL too),
    # and scoped like ports are: one per network namespace.
    return f"\0coldstart-lab-port-{port}".encode()


def _holder_pid(name: bytes) -> int | None:
    import socket
    import struct

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(name)
            creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None  # the holder exited meanwhile, or does not listen: the refusal stands without a pid
    return struct.unpack("3i", creds)[0]


@contextlib.contextmanager
def hold_port(port: int) -> Iterator[None]:
    """One lab per port on this machine, from before ray.init until the service exits.

    ensure_port_free cannot see a second lab that is still starting Ray: its proxy binds the port minutes
    later, and two labs that both found it free would both deploy. Binding a name derived from the port is
    atomic, so exactly one lab holds it; the socket is close-on-exec, so Ray's processes do not keep it.
    Raises PortHeld (with the holder's pid when it can be read) if another process holds it.
    """
    import socket

    if not sys.platform.startswith("linux"):
        raise NotImplementedError("hold_port needs Linux's abstract Unix sockets")
    name = _port_lock_name(port)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            holder.bind(name)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            pid = _holder_pid(name)
            raise PortHeld(
                f"port {port} is held by another lab on this machine"
                + (f" (pid {pid})" if pid else "")
                + "; stop it first or pick another --port"
            ) from None
        holder.listen(1)  # only so that a refused lab can ask for the holder's pid (SO_PEERCRED)
        yield
    finally:
        holder.close()


@contextlib.contextmanager
def serve_app(
    app_args: dict[str, Any],
    *,
    app_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    system_config: dict[str, Any] | None = None,
    app_builder: str = OPENAI_APP,
    ship_package: bool = True,
    preflight: Callable[[], None] | None = None,
    proxy_location: str | None = None,
) -> Iterator[str]:
    """Start (or join) Ray, deploy the OpenAI app without blocking, yield its base URL, always clean up.

    ``system_config`` (the fast path's worker preload and prestart) applies to a Ray started here; a cluster's
    raylets take it from the head's `ray start --system-config`. On a cluster the package is shipped with the job
    (``py_modules``) only where ``ship_package`` says so: the fast path needs it installed on the nodes instead,
    since a job runtime_env keeps replicas off the prestarted workers. ``preflight`` runs once Ray is up and before
    Serve is touched (the cluster checks); what it raises propagates after Ray is let go.
    Cleanup removes only what this lab made: a Ray it started, else its own app (and Serve, if it started Serve).
    With a Ray it started, the shared-memory segments its processes left unlinked (``shm.reclaimed``) go too.
    """
    from coldstart.lab import shm

    # Armed before `import ray` and ray.init(): a SIGTERM while Ray starts (its gcs, raylet and dashboard are
    # already children then) must unwind through their shutdown too, not kill this process and leave them.
    # The segments are looked at after every process of a local Ray is gone; on a cluster the engines' segments
    # live on the nodes, and this machine's are not this lab's to judge.
    with shm.reclaimed() if not ray_address else contextlib.nullcontext(), signals_as_interrupt():
        import ray

        import coldstart

        init_kwargs: dict[str, Any] = {"log_to_driver": True}
        if ray_address:
            init_kwargs["address"] = ray_address
            if ship_package:
                # The replica's nodes must import the callback: ship this package with the job.
                init_kwargs["runtime_env"] = {"py_modules": [coldstart]}
        else:
            if num_cpus is not None:
                init_kwargs["num_cpus"] = num_cpus
            if system_config:
                init_kwargs["_system_config"] = dict(system_config)
        try:
            ray.init(**init_kwargs)
        except BaseException as exc:
            _undo_init(ray)
            if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM:
                # ray.init() first replaces the SIGTERM handler with its own, sys.exit(15): that was our
                # SIGTERM, and it ends as every other one does, as an interrupt (the service exits 0).
                raise KeyboardInterrupt(f"signal {signal.SIGTERM} during ray.init") from None
            raise
        # ray.init() installs a C++ failure-signal handler that takes SIGTERM over and aborts the driver
        # (exit 134) halfway through cleanup; put the Python handler back so SIGTERM unwinds like Ctrl-C.
        with signals_as_interrupt():
            if preflight is not None:
                try:
                    preflight()
                except BaseException:
                    ray.shutdown()  # on a cluster: only this driver's connection
                    raise
            yield from _serve_after_init(
                app_args,
                app_name=app_name,
                host=host,
                port=port,
                owns_ray=not ray_address,
                app_builder=app_builder,
                proxy_location=proxy_location,
            )


def serve_running() -> bool:
    """Whether Serve's controller already lives on the connected cluster (then this lab did not start it)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return False
    return True


def _undo_init(ray: Any) -> None:
    """After a ray.init() that was interrupted or failed: stop what it started. An init cut short may not
    have recorded its node yet, so ray.shutdown() can miss processes; those are reaped as our children."""
    # Whoever handles SIGTERM now (Ray's sys.exit handler, or ours once fired), a second signal must not
    # cut this cleanup short; signals_as_interrupt() puts the process's own handlers back after it.
    _ignore_signals()
    descendants = _descendants()
    try:
        ray.shutdown()
    except Exception as exc:  # the interrupt (or the init's own error) is what the caller must see
        print(f"warning: ray.shutdown() after an unfinished ray.init() failed: {exc}", file=sys.stderr)
    # Short grace: a half-started Ray's daemons do not exit by themselves, only their kill is waited for.
    reap_leftovers(descendants, grace_s=2.0)
    events.emit("service_stop", after="unfinished ray.init")


def _serve_after_init(
    app_args: dict[str, Any],
    *,
    app_name: str,
    host: str,
    port: int,
    owns_ray: bool,
    app_builder: str,
    proxy_location: str | None = None,
) -> Iterator[str]:
    import importlib

    import ray
    from ray import serve

    module_name, _, builder_name = app_builder.partition(":")
    build_app = getattr(importlib.import_module(module_name), builder_name)

    descendants: list[Any] = []
    try:
        ctx = ray.get_runtime_context()
        session_dir = getattr(ctx, "session_dir", None) or ray._private.worker._global_node.get_session_dir_path()
        # On a cluster Serve may already run (the user's apps): then only this lab's app is removed at the end.
        serve_was_running = not owns_ray and serve_running()
        events.emit(
            "ray_attached",
            kind="local" if owns_ray else "cluster",
            node_id=ctx.get_node_id(),
            job_id=ctx.get_job_id(),
            serve_was_running=serve_was_running,
            nodes=[
                {"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress"), "resources": n.get("Resources")}
                for n in ray.nodes()
                if n.get("Alive")
            ],
        )
        with ControllerLogFollower(session_dir):
            start_kwargs: dict[str, Any] = {"http_options": {"host": host, "port": port}}
            if proxy_location:
                start_kwargs["proxy_location"] = proxy_location
            serve.start(**start_kwargs)
            app = build_app(app_args)
            t0 = time.time()
            serve.run(app, name=app_name, route_prefix="/", blocking=False)
            events.emit("serve_app_deployed", app=app_name, deploy_s=time.time() - t0)
            interrupted = False
            try:
                yield f"http://{host}:{port}"
            except KeyboardInterrupt:
                interrupted = True
                raise
            finally:
                # From here on a signal must not interrupt: the cleanup it would cut short is what it asks for.
                # (A run that ends by itself, e.g. Serve giving up on the app, is still shutting down when the
                # runner's SIGTERM comes: raised inside ray.shutdown(), it left Ray's daemons behind.)
                _ignore_signals()
                events.emit("service_shutdown_start")
                descendants = _descendants()
                if not owns_ray:
                    _await_node_verdicts(ray)
                if owns_ray and interrupted:
                    # Stopped (the runner's SIGTERM after the measurement, Ctrl-C) on a Ray started here: it dies
                    # with this process, Serve's actors with it. Serve's graceful shutdown would first wait on
                    # the LLM replica's drain, which with vLLM outlives the controller's 30 s limit on every GPU
                    # run seen ("Controller failed to shut down within 30.0s"): 30 s per run of nothing. An app
                    # that failed on its own still goes through serve.shutdown(): without it, ray.shutdown()
                    # did not return while Serve was retrying the failed replica (seen in the CPU e2e test).
                    events.emit("serve_shutdown_skipped", reason="local Ray: torn down with ray.shutdown()")
                elif serve_was_running:
                    # A cluster whose Serve this lab did not start: remove this app, nothing else.
                    serve.delete(app_name)
                    events.emit("serve_app_deleted", app=app_name)
                else:
                    serve.shutdown()
    finally:
        _ignore_signals()
        descendants = descendants or _descendants()
        ray.shutdown()  # on a cluster: this driver's connection only; the cluster stays up
        reap_leftovers(descendants)
        events.emit("service_stop")


def _await_node_verdicts(ray: Any) -> None:
    """On a cluster: Ray's word on a node that stopped answering during the run, before the run lets go."""
    from coldstart.lab.node_verdict import await_node_verdicts, health_check_window_s

    try:
        await_node_verdicts(ray.nodes, window_s=health_check_window_s())
    except Exception as exc:  # the app must still be removed; the row then lacks only the lost node's name
        print(f"warning: could not ask the cluster which nodes it lost: {exc!r}", file=sys.stderr, flush=True)


def _ignore_signals() -> None:
    """SIGTERM and SIGINT ignored until ``signals_as_interrupt()`` puts the process's handlers back."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _descendants() -> list[Any]:
    import psutil

    return psutil.Process().children(recursive=True)


def reap_leftovers(processes: list[Any], grace_s: float = 10.0) -> list[int]:
    """Kill what outlived Ray's shutdown among ``processes`` (taken while Ray still ran); returns their pids.

    Ray stops its workers, but a worker's own children are in that worker's process group, not ours: vLLM's
    EngineCore and its workers, when forked from the fast path's forkserver, lose the parent whose death
    they watch and stay (seen on CPU: a ``VLLM::Worker`` holding its memory after the run). Only processes
    that were our descendants are touched, never the rest of the session.
    """
    import psutil

    alive = [p for p in processes if p.is_running()]
    if not alive:
        return []
    _gone, still = psutil.wait_procs(alive, timeout=grace_s)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if still:
        events.emit("leftover_processes_killed", pids=sorted(p.pid for p in still))
    return sorted(p.pid for p in still)
