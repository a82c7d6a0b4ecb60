"""Where each milestone of the chain is in a log: harness events, Serve and Ray LLM lines, vLLM lines."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from coldstart.analysis.parse import LogLine, ParsedLog, Span, Stamp
from coldstart.analysis.results import ClientResult
from coldstart.analysis.timeline.clock import EVENT_ERROR_S, RAY_ERROR_S, VLLM_ERROR_S, Clock
from coldstart.analysis.timeline.model import Milestone

_EXECUTOR_RE = re.compile(r"Using executor class")
_KV_RE = re.compile(r"GPU KV cache size: |Available KV cache memory: ")
_AOT_RE = re.compile(r"saved AOT compiled function to |Directly load AOT compilation from path ")
_WORKER_RE = re.compile(r"Worker")
_LOAD_START_RE = re.compile(r"Starting to load model|Loading model from scratch")  # V1 and V2 model runners


def line_window(line: LogLine, clock: Clock) -> tuple[float, float] | None:
    """(earliest, latest) epoch the line can have been written at."""
    if line.ts is None or (t := clock.epoch(line.ts, line.year)) is None:
        return None
    if line.year is not None:  # Ray's formats: milliseconds
        return (t - RAY_ERROR_S, t + RAY_ERROR_S)
    return (t, t + 2 * VLLM_ERROR_S)


def _window_milestone(name: str, window: tuple[float, float], source: str) -> Milestone:
    lo, hi = window
    return Milestone(name, (lo + hi) / 2, (hi - lo) / 2, source)


def _pick_first(name: str, lines: Iterable[LogLine], clock: Clock) -> Milestone | None:
    """The first line any of these processes wrote. A process's own lines are in order in the log, so its
    first one is its earliest; a later exact line of the same process bounds a whole-second first line."""
    first: dict[object, tuple[LogLine, tuple[float, float]]] = {}
    bound: dict[object, float] = {}
    for ln in lines:
        if (w := line_window(ln, clock)) is None:
            continue
        key = ln.rank_key
        if key not in first:
            first[key] = (ln, w)
        elif ln.year is not None and key not in bound:
            bound[key] = w[1]
    found = []
    for rank, (ln, (lo, hi)) in first.items():
        if rank in bound and lo <= bound[rank] < hi:
            hi = bound[rank]
        found.append(_window_milestone(name, (lo, hi), ln.text[:160]))
    return min(found, key=lambda m: m.t_epoch) if found else None


def _pick_last(name: str, lines: Iterable[LogLine], clock: Clock) -> Milestone | None:
    found = [(w, ln) for ln in lines if (w := line_window(ln, clock)) is not None]
    if not found:
        return None
    w, ln = max(found, key=lambda f: f[0][1])
    return _window_milestone(name, w, ln.text[:160])


def _span_milestone(name: str, span: Span | None, clock: Clock, source: str) -> Milestone | None:
    """The END of a phase: the last stamp of its lines, over all ranks (the engine waits for the slowest)."""
    if span is None or (t := clock.epoch(span.last, span.year)) is None:
        return None
    window = (t - RAY_ERROR_S, t + RAY_ERROR_S) if span.year is not None else (t, t + 2 * VLLM_ERROR_S)
    return _window_milestone(name, window, source)


def _stamp_milestone(name: str, stamp: Stamp | None, year: int | None, clock: Clock, source: str) -> Milestone | None:
    return _span_milestone(name, None if stamp is None else Span(stamp, stamp, year), clock, source)


def _event_milestone(name: str, events: Sequence[dict], event: str, *, last: bool = False) -> Milestone | None:
    ts = [float(e["t"]) for e in events if e.get("event") == event and isinstance(e.get("t"), (int, float))]
    if not ts:
        return None
    return Milestone(name, max(ts) if last else min(ts), EVENT_ERROR_S, f"event {event}")


def client_times(client: ClientResult | None, events: Sequence[dict]) -> tuple[float | None, float | None]:
    """(send epoch, TTFT) from the client's result, else the client events in the log."""
    if client is not None and client.t_send_epoch is not None:
        return float(client.t_send_epoch), (None if client.ttft_s is None else float(client.ttft_s))
    send = next((e for e in events if e.get("event") == "client_send"), None)
    first = next((e for e in events if e.get("event") == "client_first_token"), None)
    if send is None:
        return None, None
    ttft = first.get("ttft_s") if first else None
    if ttft is None and first is not None:
        ttft = float(first["t"]) - float(send["t"])
    return float(send["t"]), (None if ttft is None else float(ttft))


def _first_of(*candidates: Milestone | None) -> Milestone | None:
    return next((c for c in candidates if c is not None), None)


def find_milestones(
    lines: Sequence[LogLine], parsed: ParsedLog, clock: Clock, t_send: float | None, ttft_s: float | None
) -> dict[str, Milestone]:
    ev, ray, spans = parsed.events, parsed.ray, parsed.spans
    found: dict[str, Milestone | None] = {
        "client_send": None if t_send is None else Milestone("client_send", t_send, EVENT_ERROR_S, "client"),
        "upscale": _first_of(
            _stamp_milestone("upscale", ray.upscale_ts, ray.year, clock, "Serve: Upscaling"),
            _stamp_milestone("upscale", ray.replica_add_ts, ray.year, clock, "Serve: Adding replica"),
        ),
        "replica_node_init_start": _event_milestone("replica_node_init_start", ev, "replica_node_init_start"),
        # The replica waits for every node's task: the slowest node reaching its fetch gates the rest.
        "node_fetch_start": _first_of(
            _event_milestone("node_fetch_start", ev, "node_fetch_start", last=True),
            # Fast path: no node-init task; the replica restores the compile cache itself from here on.
            _event_milestone("node_fetch_start", ev, "node_init_skipped"),
        ),
        "engine_start": _first_of(
            _event_milestone("engine_start", ev, "engine_start"),
            _event_milestone("engine_start", ev, "replica_node_init_end"),
        ),
        "engine_config_done": _first_of(
            _pick_first("engine_config_done", (ln for ln in lines if _EXECUTOR_RE.search(ln.message)), clock),
            # Fast path: the config is built in the replica, which says when it is done.
            _event_milestone("engine_config_done", ev, "engine_config_end"),
        ),
        "engine_core_start": _pick_first(
            "engine_core_start", (ln for ln in lines if ln.process and ln.process.startswith("EngineCore")), clock
        ),
        "workers_start": _first_of(
            _pick_first(
                "workers_start",
                (ln for ln in lines if ln.process and _WORKER_RE.search(ln.process) and "EngineCore" not in ln.process),
                clock,
            ),
            # The uni executor runs the worker inside EngineCore: it starts when that process starts loading.
            _pick_first(
                "workers_start",
                (
                    ln
                    for ln in lines
                    if ln.process and ln.process.startswith("EngineCore") and _LOAD_START_RE.search(ln.message)
                ),
                clock,
            ),
        ),
        "model_loaded": _first_of(
            _span_milestone("model_loaded", spans.get("model_load_s"), clock, "vLLM: Model loading took"),
            _span_milestone("model_loaded", spans.get("weights_load_s"), clock, "vLLM: Loading weights took"),
            _span_milestone("model_loaded", spans.get("runai_stream_s"), clock, "vLLM: RunAI streamer done"),
        ),
        # A phase's milestone is its engine's end: with a draft model, when the draft's line comes (it loads,
        # compiles and profiles after the main model, so the main model's profiling run falls in the
        # torch.compile segment; the phase table has each phase's own total).
        "torch_compile_done": _first_of(
            _span_milestone("torch_compile_done", spans.get("torch_compile_s"), clock, "vLLM: torch.compile took"),
            _span_milestone("torch_compile_done", spans.get("compile_cache_load_s"), clock, "vLLM: cache load"),
            _pick_last("torch_compile_done", (ln for ln in lines if _AOT_RE.search(ln.message)), clock),
        ),
        "profiling_done": _span_milestone(
            "profiling_done", spans.get("profiling_s"), clock, "vLLM: Initial profiling/warmup run took"
        ),
        "kv_cache_ready": _pick_last("kv_cache_ready", (ln for ln in lines if _KV_RE.search(ln.message)), clock),
        "cuda_graphs_done": _span_milestone(
            "cuda_graphs_done", spans.get("cuda_graph_s"), clock, "vLLM: Graph capturing finished"
        ),
        "engine_init_done": _span_milestone(
            "engine_init_done", spans.get("engine_init_s"), clock, "vLLM: init engine took"
        ),
        "engine_ready": _stamp_milestone(
            "engine_ready", ray.engine_started_ts, ray.year, clock, "Ray LLM: Started vLLM engine"
        ),
        "replica_ready": _stamp_milestone(
            "replica_ready", ray.replica_started_ts, ray.year, clock, "Serve: Replica started successfully"
        ),
        "first_token": None
        if t_send is None or ttft_s is None
        else Milestone("first_token", t_send + ttft_s, EVENT_ERROR_S, "client"),
    }
    return {k: v for k, v in found.items() if v is not None}
