"""What a cold start is doing now, from the lines of its log so far: the runner's live status line.

Pure (no I/O, no clock): the runner feeds it the log's new lines as they arrive and shows its phase next to
the seconds since the request. The phase is the last milestone seen, a ``:::COLDSTART`` event or a vLLM
line that marks the start of a step (the lines that give a step's duration come at its end, so they name
the step after it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from coldstart.analysis.events import MARKER, iter_events
from coldstart.analysis.parse import parse_line

STARTING = "starting the service"

EVENT_PHASE: Mapping[str, str] = {
    "service_start": "starting Ray and Serve",
    "serve_app_deployed": "app deployed at zero replicas",
    "prestart_wait_start": "waiting for the prestarted workers",
    "prestart_wait_end": "app deployed at zero replicas",
    "client_send": "Serve scaling a replica up",
    "replica_node_init_start": "replica node init",
    "compile_cache_restore_start": "restoring the compile cache",
    "compile_cache_restore_end": "replica node init",
    "replica_node_init_end": "starting the engine",
    "engine_start": "starting the engine",
    "engine_config_start": "engine config",
    "engine_core_launch_start": "launching the engine core",
    "engine_core_ready": "engine ready, first token next",
    "client_first_token": "first token",
    "serve_app_failed": "the app failed",
    "service_shutdown_start": "shutting down",
}

# vLLM wordings (0.5 -> 0.25) in the order they come; a "took" line ends a step, so it names the next one.
# Within one engine start a line never moves the phase back: tqdm bars ("Capturing CUDA graphs: 100%") and
# other ranks' lines arrive after the step they belong to has ended.
MESSAGE_PHASE: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), phase)
    for pattern, phase in (
        (r"Initializing an? (?:V\d )?LLM engine", "starting the engine"),
        (
            r"Starting to load model|Filesystem type for checkpoints|Loading safetensors (?:checkpoint shards|using)"
            r"|Time spent downloading weights",
            "loading the weights",
        ),
        (r"Loading weights took|Model loading took", "torch.compile"),
        (r"Dynamo bytecode transform time|Compiling a graph for", "torch.compile"),
        (r"Directly load .*(?:compiled graph|AOT compilation)", "torch.compile (from the cache)"),
        (r"torch\.compile took", "profiling and the KV cache"),
        (r"Capturing CUDA graphs?|Capturing cudagraphs", "capturing CUDA graphs"),
        (r"Graph capturing finished", "warming up"),
        (r"init engine \(profile, create kv cache, warmup model\) took", "engine ready, first token next"),
    )
)


class PhaseTracker:
    """Feed lines one at a time (a live log grows); ``phase`` is what the cold start is doing now."""

    def __init__(self) -> None:
        self.phase = STARTING
        self._step = -1  # index in MESSAGE_PHASE of the last vLLM step seen since the last event

    def feed(self, line: str) -> str:
        if MARKER in line:
            for event in iter_events([line]):
                if str(event["event"]) in EVENT_PHASE:
                    self.phase = EVENT_PHASE[str(event["event"])]
                    self._step = -1
            return self.phase
        message = parse_line(line).message
        for step, (pattern, phase) in enumerate(MESSAGE_PHASE):
            if step >= self._step and pattern.search(message):
                self.phase, self._step = phase, step
                break
        return self.phase


def current_phase(lines: Iterable[str]) -> str:
    tracker = PhaseTracker()
    for line in lines:
        tracker.feed(line)
    return tracker.phase
