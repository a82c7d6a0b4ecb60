"""The system under test as the loop sees it (MLPerf loadgen style): clear the node, deploy one run (a context
manager: the service stops however the body ends), measure its traffic."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coldstart.lab.matrix.plan import RunSpec
from coldstart.lab.traffic import Traffic


@dataclass(frozen=True)
class Deployment:
    url: str
    run_id: str
    log_path: Path
    config: dict[str, Any]


class SystemUnderTest(Protocol):
    def clear(self, spec: RunSpec) -> dict[str, Any]: ...

    def deploy(self, spec: RunSpec, run_id: str) -> contextlib.AbstractContextManager[Deployment]: ...

    def measure(self, deployment: Deployment, spec: RunSpec) -> Traffic: ...
