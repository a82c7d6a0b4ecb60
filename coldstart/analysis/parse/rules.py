"""The vLLM wordings the parser reads, as data: one ``Rule`` row per wording.

A new wording is one more row; ``explain`` names the row that read each line. Each pattern is searched in
``LogLine.message`` (the text after the log header).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

NUM = r"(-?\d+(?:\.\d+)?)"
# The models one engine start can load: the model it serves, and a draft model for speculative decoding.
MAIN = "main"
DRAFT = "draft"
_UNIT_GIB = {"B": 2**-30, "Bytes": 2**-30, "KiB": 2**-20, "MiB": 2**-10, "GiB": 1.0, "TiB": 2**10, "PiB": 2**20}


@dataclass(frozen=True)
class Rule:
    """One wording vLLM logs: a literal ``needle`` (cheap pre-filter), the regex, and what it yields.

    ``yields`` maps each quantity to the regex group holding its value; a quantity with group ``None`` is a
    flag (value 1). ``scope`` says whether the line counts for the model in force on its rank ("model") or
    for the whole engine ("engine"). ``per_range`` names the group holding the compile range: those
    quantities are summed over distinct ranges per rank; every other quantity is one value per rank.
    ``convert`` turns the match into values where a group is not a plain number.
    """

    name: str
    needle: str
    pattern: re.Pattern[str]
    yields: tuple[tuple[str, int | None], ...]
    scope: str = "engine"
    per_range: int | None = None
    # Every distinct line counts (the engine logs its KV cache once per KV cache group; min is taken).
    per_line: bool = False
    convert: Callable[[re.Match[str]], dict[str, float]] | None = None
    # The model this rank is on for its next lines ("main" or "draft"), once this line is counted.
    sets_model: str | None = None


def _runai_overall(m: re.Match[str]) -> dict[str, float]:
    return {"runai_stream_s": float(m.group(3)), "runai_stream_gib": float(m.group(1)) * _UNIT_GIB.get(m.group(2), 1.0)}


def _runai_tqdm(m: re.Match[str]) -> dict[str, float]:
    h, mi, s = m.groups()
    return {"runai_tqdm_s": int(h or 0) * 3600 + int(mi) * 60 + int(s)}


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# Each pattern is searched in LogLine.message. Wordings from vLLM 0.5 to 0.25.1: V0's "Loading model weights
# took X GB" and "Graph capturing finished in N secs." (no memory figure), "Model loading took X GB and"
# (0.8), "GiB and" / "GiB memory and", "takes" / "took", "for shape None" / "for dynamic shape" / "for
# compile range (a, b)", and a CUDA graph memory figure that can be negative (freed memory).
VLLM_RULES: tuple[Rule, ...] = (
    Rule("world", "world size", _r(r"rank \d+ in world size (\d+)\b"), (("world_size", 1),)),
    Rule(
        "download",
        "downloading weights",
        _r(rf"Time spent downloading weights for .+?: {NUM} seconds"),
        (("weights_download_s", 1),),
    ),
    Rule("runai_any", "RunAI", _r(r"\[RunAI (?:Distributed )?Streamer\]"), (("runai", None),)),
    Rule("runai_any_tqdm", "Runai Model Streamer", _r(r"Runai Model Streamer"), (("runai", None),)),
    # runai-model-streamer's own summary; newer releases add " to <device>" and a "Distributed" flavour.
    Rule(
        "runai_overall",
        "Overall time to stream",
        _r(
            rf"\[RunAI (?:Distributed )?Streamer\] Overall time to stream {NUM} ([KMGTP]?i?B|Bytes)"
            rf"(?: of all files)?(?: to \S+?)?: {NUM}s"
        ),
        (("runai_stream_s", None), ("runai_stream_gib", None)),
        convert=_runai_overall,
    ),
    # vLLM's tqdm bar over the streamed tensors; only the finished bar says how long it took.
    Rule(
        "runai_tqdm",
        "Runai Model Streamer",
        _r(r"Loading safetensors using Runai Model Streamer:\s+100% Completed \| \d+/\d+ \[(?:(\d+):)?(\d+):(\d+)<"),
        (("runai_tqdm_s", None),),
        convert=_runai_tqdm,
    ),
    # Which model a rank is loading: the draft from the drafter marker or the second load on.
    Rule("drafter", "Loading drafter model", _r(r"Loading drafter model"), (), sets_model=DRAFT),
    Rule("start_load", "Starting to load model", _r(r"Starting to load model (\S+?)(?:\.\.\.)?$"), (), "model"),
    Rule(
        "compile_dir",
        "Using cache directory",
        _r(r"Using cache directory: (\S+) for vLLM's torch\.compile"),
        (),
        "model",
    ),
    Rule(
        "weights_load",
        "Loading weights took",
        _r(rf"Loading weights took {NUM} seconds"),
        (("weights_load_s", 1),),
        "model",
    ),
    Rule(
        "v0_model_weights",
        "Loading model weights took",
        _r(rf"Loading model weights took {NUM} GB"),
        (("model_load_gib", 1),),
        "model",
    ),
    Rule(
        "model_load",
        "Model loading took",
        # A paste can cut the line after "sec"; 0.8 wrote "GB", later "GiB" and "GiB memory".
        _r(rf"Model loading took {NUM} G(?:i)?B(?:(?: memory)? and {NUM} sec)?"),
        (("model_load_gib", 1), ("model_load_s", 2)),
        # The engine-wide total, drafter included: whatever this rank compiles next is the main model's.
        sets_model=MAIN,
    ),
    Rule("dynamo", "Dynamo", _r(rf"Dynamo bytecode transform time: {NUM} s"), (("dynamo_s", 1),), "model"),
    Rule(
        "inductor",
        "Compiling a graph",
        _r(rf"Compiling a graph for (.+?) takes {NUM} s"),
        (("inductor_s", 2),),
        "model",
        per_range=1,
    ),
    Rule(
        "graph_cached",
        "Cache the graph",
        _r(r"Cache the graph (?:of|for) .+? for later use"),
        (("graph_cached", None),),
        "model",
    ),
    # Before 0.9 a cache hit is logged without a time ("... for shape None from the cache").
    Rule(
        "cache_load",
        "Directly load the compiled graph",
        _r(rf"Directly load the compiled graph(?:\(s\))? for (.+?) from the cache(?:, took {NUM} s)?"),
        (("cache_hit", None), ("compile_cache_load_s", 2)),
        "model",
        per_range=1,
    ),
    Rule(
        "aot_load",
        "Directly load AOT",
        _r(r"Directly load AOT compilation from path (\S+)"),
        (("aot_load", None),),
        "model",
    ),
    Rule(
        "aot_miss",
        "AOT compiled function",
        _r(r"saved AOT compiled function to |unable to save AOT compiled function to "),
        (("aot_miss", None),),
        "model",
    ),
    Rule(
        "aot_load_failure",
        "Compiling model again",
        _r(r"Compiling model again due to a load failure from "),
        (("aot_miss", None),),
        "model",
    ),
    # 0.2x's monitor times each compiled module on its own: the main model's line, then the draft's.
    Rule(
        "torch_compile",
        "torch.compile took",
        _r(rf"torch\.compile took {NUM} s in total"),
        (("torch_compile_s", 1),),
        "model",
    ),
    # Before, the monitor printed the process's running total: a draft's line already holds the main
    # model's compile, so the line counts for the engine (the rank's largest, i.e. last, value), not per model.
    Rule(
        "torch_compile_running",
        "torch.compile takes",
        _r(rf"torch\.compile takes {NUM} s in total"),
        (("torch_compile_s", 1),),
    ),
    Rule(
        "torch_compile_with_profiling",
        "torch.compile and initial",
        _r(rf"torch\.compile and initial profiling/warmup run together took {NUM} s in total"),
        (("torch_compile_with_profiling_s", 1),),
        "model",
    ),
    # Timed per compiled module (vLLM's monitor_profiling_run wraps each one's first run): a draft model
    # logs its own profiling run after its own compile, and that run is the draft's.
    Rule(
        "profiling",
        "profiling/warmup run took",
        _r(rf"Initial profiling/warmup run took {NUM} s"),
        (("profiling_s", 1),),
        "model",
    ),
    # V0 (0.6-0.9) times its profiling run in the worker: "Memory profiling takes X seconds", and from 0.6.5
    # "Memory profiling results: duration=X seconds, ...".
    Rule(
        "v0_profiling",
        "Memory profiling",
        _r(rf"Memory profiling (?:takes|took) {NUM} seconds|Memory profiling results: duration={NUM} seconds"),
        (("profiling_s", 1), ("profiling_s", 2)),
    ),
    # V0's KV cache budget: "... the rest of the memory reserved for KV Cache is X GiB" (0.7-0.9) and
    # "Memory profiling results: ... kv_cache_size=X GiB" (0.6).
    Rule(
        "v0_kv_gib",
        "KV Cache is",
        _r(rf"reserved for KV Cache is {NUM} ?GiB"),
        (("kv_cache_gib", 1),),
        per_line=True,
    ),
    Rule("v0_kv_size", "kv_cache_size=", _r(rf"kv_cache_size={NUM} ?GiB"), (("kv_cache_gib", 1),), per_line=True),
    Rule(
        "kv_gib",
        "KV cache memory",
        _r(rf"Available KV cache memory: {NUM} GiB"),
        (("kv_cache_gib", 1),),
        per_line=True,
    ),
    Rule(
        "kv_tokens",
        "KV cache size",
        _r(r"GPU KV cache size: ([\d,]+) tokens"),
        (("kv_cache_tokens", 1),),
        per_line=True,
    ),
    Rule(
        "cuda_graph",
        "Graph capturing finished",
        _r(rf"Graph capturing finished in {NUM} secs?(?:, took {NUM} GiB)?"),
        (("cuda_graph_s", 1), ("cuda_graph_gib", 2)),
    ),
    Rule(
        "engine_init",
        "init engine",
        _r(
            rf"init engine \(profile, create kv cache, warmup model\) took {NUM} (?:s|seconds)"
            rf"(?: \(compilation: {NUM} s)?"
        ),
        (("engine_init_s", 1), ("engine_compile_s", 2)),
    ),
    Rule(
        "cache_disabled",
        "cache is disabled",
        _r(r"vLLM's torch\.compile cache is disabled"),
        (("cache_disabled", None),),
    ),
)

# The engine start marker; its config also gives the world size where no "world size" line does.

# A paste can cut the line short after the version, so "with config" is not required.
START_RE = re.compile(r"Initializing an? (?:V\d )?LLM engine \(v(?P<version>[^)\s]+)\)")
TP_RE = re.compile(r"tensor_parallel_size=(\d+)")
PP_RE = re.compile(r"pipeline_parallel_size=(\d+)")
