"""The campaign's ``--out`` folder: what makes it resumable and what carries its runs elsewhere.

* ``results.jsonl``: the rows the matrix steps append (seeded once from the checkout's results, so time
  estimates and answer checks see the earlier runs); a second run of the campaign skips the runs it holds.
* ``campaign.json``: the campaign's name (kept, so a campaign resumed the next day keeps its date) and the
  steps every command of which succeeded, each with the repeats it ran (skipped on a second run that asks for
  no more).
* ``runs.tgz``: the campaign's rows as ``results/results.jsonl`` and their logs under
  ``experiment_terminal_output/``, re-packed after every step; ``python -m coldstart import-runs`` merges it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coldstart.analysis.results import load_rows
from coldstart.lab.import_runs import ARCHIVE_RESULTS

RESULTS_NAME = "results.jsonl"
STATE_NAME = "campaign.json"
ARCHIVE_NAME = "runs.tgz"


class StateError(ValueError):
    """``campaign.json`` exists but cannot be read as a campaign's state."""


@dataclass(frozen=True)
class CampaignState:
    campaign: str
    plan: str  # the plan file it ran, as given
    steps_done: Mapping[str, int] = field(default_factory=dict)  # step -> the repeats it finished with


@dataclass(frozen=True)
class Packed:
    rows: int
    logs: tuple[str, ...]
    left_out: tuple[str, ...] = field(default=())  # rows whose log is absolute or missing: not in the archive


@dataclass(frozen=True)
class OutDir:
    path: Path

    @property
    def results(self) -> Path:
        return self.path / RESULTS_NAME

    @property
    def state_file(self) -> Path:
        return self.path / STATE_NAME

    @property
    def archive(self) -> Path:
        return self.path / ARCHIVE_NAME

    def read_state(self) -> CampaignState | None:
        """The state an earlier run left; None when there is none."""
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{self.state_file}: {exc}") from exc
        try:
            done = data.get("steps_done", {})
            if not isinstance(data["campaign"], str) or not isinstance(done, dict):
                raise TypeError("campaign must be a string and steps_done a mapping")
            if not all(isinstance(n, int) and not isinstance(n, bool) for n in done.values()):
                raise TypeError("steps_done maps steps to repeats")
            return CampaignState(data["campaign"], str(data.get("plan", "")), dict(done))
        except (KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{self.state_file}: not a campaign's state ({exc})") from exc

    def write_state(self, state: CampaignState) -> None:
        body = {"campaign": state.campaign, "plan": state.plan, "steps_done": dict(state.steps_done)}
        self.path.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_name(STATE_NAME + ".partial")
        partial.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(partial, self.state_file)

    def seed_results(self, seed: Path | None) -> bool:
        """Start the results file as a copy of ``seed`` (once: a resumed campaign keeps its own). True when
        it was copied."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.results.exists() or seed is None or not seed.is_file():
            return False
        shutil.copyfile(seed, self.results)
        return True

    def pack(self, campaign: str, root: Path) -> Packed:
        """Write ``runs.tgz``: the campaign's rows and the logs (and client sidecars) they name, found under
        ``root``: the lab the matrix ran in (it writes row paths relative to it, ``paths.lab_relative``)."""
        rows = [r for r in load_rows(self.results) if r.campaign == campaign] if self.results.exists() else []
        lines = "".join(row.to_json() + "\n" for row in rows).encode()
        members: list[tuple[Path, str]] = []
        left_out: list[str] = []
        for row in rows:
            if not row.log_path:
                continue  # a run that failed before its log: the row alone says so
            rel = Path(row.log_path)
            if rel.is_absolute() or ".." in rel.parts or not (root / rel).is_file():
                left_out.append(row.log_path)
                continue
            members += [
                (root / p, p.as_posix()) for p in (rel, rel.with_suffix(".client.json")) if (root / p).is_file()
            ]
        write_tgz(self.archive, lines, members)
        return Packed(len(rows), tuple(arcname for _, arcname in members), tuple(left_out))


def write_tgz(archive: Path, results: bytes, members: Sequence[tuple[Path, str]]) -> None:
    """The archive, written next to itself and renamed: one killed mid-write leaves the previous one whole."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        info = tarfile.TarInfo(ARCHIVE_RESULTS)
        info.size, info.mtime = len(results), int(time.time())
        tar.addfile(info, io.BytesIO(results))
        for path, arcname in members:
            tar.add(path, arcname=arcname)
    os.replace(partial, archive)
