"""The runs as ``vllm bench startup --output-json`` results: ``python -m analysis startup-json [--out DIR]``.

vLLM's own startup benchmark times ``LLM.from_engine_args`` (engine config to a ready engine, no Ray, no
request) and vLLM's compilation time, cold (fresh compile caches) and warm (cached), and writes per metric
``avg_<phase>_<metric>_time``, ``<phase>_<metric>_times`` and ``<phase>_<metric>_percentiles`` (10, 25,
50, 75, 90, 99; numpy's linear interpolation). Written in that shape, this lab's numbers sit beside vLLM's.

What each key holds here, per (model, experiment, device, node state) group of usable runs:

* ``startup``: the timeline from ``engine_start`` to ``engine_ready`` (the sum of the segments between
  them), the part of a Serve cold start that ``LLM.from_engine_args`` covers. A run with any of those
  segments missing is left out, never counted as 0.
* ``compilation``: vLLM's "torch.compile took N s in total" (``torch_compile_s``), as vLLM's
  ``compilation_config.compilation_time``; a run whose log lacks it is left out.
* the phase: ``cold`` for an experiment without the compile cache (vLLM's cold start uses fresh cache
  folders), ``warm`` for one that restores it. This is vLLM's meaning, not the node's page-cache state,
  which is in the file name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coldstart import paths
from coldstart.analysis.collect import add_source_args, cli_runs
from coldstart.analysis.plots import slug
from coldstart.analysis.tables import device_label, run_table, usable
from coldstart.registry import EXPERIMENTS

if TYPE_CHECKING:
    import pandas as pd

PERCENTAGES = (10, 25, 50, 75, 90, 99)  # vLLM's benchmarks/startup.py
# engine_start -> engine_ready: the segments LLM.from_engine_args spans (config to a ready engine).
ENGINE_SEGMENTS = (
    "seg_engine_config_s",
    "seg_engine_process_spawn_s",
    "seg_worker_start_s",
    "seg_model_load_s",
    "seg_torch_compile_s",
    "seg_profiling_s",
    "seg_kv_cache_s",
    "seg_cuda_graph_s",
    "seg_warmup_s",
    "seg_engine_ready_s",
)


def _percentile(values: Sequence[float], pct: float) -> float:
    """numpy.percentile's default (linear) on a sorted copy; no numpy needed for a handful of runs."""
    xs = sorted(values)
    pos = (len(xs) - 1) * pct / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def metric_json(key: str, values: Sequence[float]) -> dict[str, Any]:
    """One metric as vLLM writes it (its percentiles' int keys become strings in JSON, as in vLLM's file)."""
    return {
        f"avg_{key}_time": sum(values) / len(values),
        f"{key}_times": list(values),
        f"{key}_percentiles": {str(p): _percentile(values, p) for p in PERCENTAGES},
    }


def phase_of(experiment: str) -> str:
    spec = EXPERIMENTS.get(experiment)
    return "warm" if spec is not None and spec.compile_cache else "cold"


def startup_results(runs: pd.DataFrame) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(model, experiment, device, node state) -> vLLM's results JSON, for groups with at least one run."""
    ok = usable(runs)
    ok = ok[ok["total_kind"] == "ttft"]
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for key, group in ok.groupby(["model", "experiment", "device", "node_state"], sort=True, dropna=False):
        model, experiment, device, node = (str(k) for k in key)
        startup: list[float] = []
        compilation: list[float] = []
        for _, r in group.iterrows():
            segments = [r[s] for s in ENGINE_SEGMENTS]
            if any(v != v for v in segments) or r["torch_compile_s"] != r["torch_compile_s"]:  # NaN: not measured
                continue
            startup.append(float(sum(segments)))
            compilation.append(float(r["torch_compile_s"]))
        if not startup:
            continue
        phase = phase_of(experiment)
        out[(model, experiment, device, node)] = {
            **metric_json(f"{phase}_startup", startup),
            **metric_json(f"{phase}_compilation", compilation),
        }
    return out


def write_startup_json(results: Mapping[tuple[str, str, str, str], dict[str, Any]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for (model, experiment, device, node), body in results.items():
        node_text = "unknown-node" if node in ("?", "nan", "None") else node  # a log without a runner row
        path = out_dir / f"{slug(f'{model}_{experiment}_{device_label(device)}_{node_text}')}.startup.json"
        path.write_text(json.dumps(body, indent=4) + "\n", encoding="utf-8")
        written.append(path)
    return written


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    # Beside the report, and gitignored with it.
    parser.add_argument("--out", type=Path, default=paths.report_dir() / "vllm-startup", help="default: %(default)s")
    add_source_args(parser)


def main(args: argparse.Namespace) -> int:
    loaded = cli_runs(args)
    if loaded is None:
        return 2
    runs, superseded = loaded
    written = write_startup_json(startup_results(run_table(runs, superseded)), args.out)
    if not written:
        print("no usable run with an engine start-to-ready timeline: nothing written", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} files in {args.out}/ (vllm bench startup --output-json format)")
    return 0
