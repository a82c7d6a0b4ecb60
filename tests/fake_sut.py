"""A fake system under test for the matrix tests: records every call and writes a small synthetic log per run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from coldstart.analysis.events import format_event
from coldstart.analysis.results import Provenance, RequestGroup, RequestRecord, ResultRow
from coldstart.lab.client import RESULT_SCHEMA_VERSION, Measurement
from coldstart.lab.matrix.loop import run_matrix
from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.matrix.sut import Deployment
from coldstart.lab.traffic import Traffic

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


def vllm_line(t: float, msg: str, where: str = "fake.py:1") -> str:
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
            vllm_line(t0 + 5.0, f"Model loading took 0.01 GiB and {MODEL_LOAD_S} seconds", "model_runner.py:302"),
        ]
        hit = self._hit(spec)
        if hit is True:
            lines.append(
                vllm_line(t0 + 6.0, "Directly load AOT compilation from path /x/aot/model", "decorators.py:212")
            )
        elif hit is False:
            lines.append(
                vllm_line(
                    t0 + 8.0, f"Compiling a graph for compile range (1, 8192) takes {INDUCTOR_S} s", "backends.py:393"
                )
            )
        lines.append(vllm_line(t0 + 9.0, "torch.compile took 4.00 s in total", "monitor.py:53"))
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


def run_quietly(sut: FakeSUT, specs: list[RunSpec], results: Path) -> list[ResultRow]:
    """The matrix over ``specs`` with no progress bar, on a device named ``fake-device``."""
    return run_matrix(sut, specs, results, provenance=PROVENANCE, device="fake-device", show_progress=False)
