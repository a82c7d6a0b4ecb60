"""One streamed chat completion, timed on a monotonic clock from send to the first real token.

Durations come from ``time.perf_counter`` (monotonic); the epoch time of each point is kept beside them only
to place the request on the same clock as the server logs. A stream that ends without a token is a failure
with ``ttft_s=None``: a cold start that never produced a token has no time to first token.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

from coldstart.analysis import events
from coldstart.analysis.results import CLIENT_SCHEMA_VERSION as RESULT_SCHEMA_VERSION
from coldstart.analysis.results import ClientResult, ClientStatus

DEFAULT_PROMPT = "Say hello in one short sentence."
REQUEST_ID_HEADER = "x-request-id"  # Serve's; the replica's log line for the call carries the same id
# How long the rest of a response after its "[DONE]" is read before the client closes it anyway.
TAIL_READ_S = 5.0


# The client's result is a record of the analysis wing (a row nests it, the analysis reads it back); this
# module's older name for it stays importable.
Measurement = ClientResult


class _Clock:
    """Both clocks at once: monotonic for durations, epoch to line up with logs."""

    def __init__(self, monotonic: Callable[[], float] = time.perf_counter, epoch: Callable[[], float] = time.time):
        self._mono0 = monotonic()
        self._epoch0 = epoch()
        self._monotonic = monotonic

    def elapsed_s(self) -> float:
        return self._monotonic() - self._mono0

    def epoch(self) -> float:
        return self._epoch0 + self.elapsed_s()


def _sse_payloads(lines: Iterable[str]) -> Iterable[dict]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        if data:
            yield json.loads(data)


def _chunk_text(payload: dict) -> str:
    choices = payload.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    # Reasoning models stream thoughts first; those are real generated tokens too.
    return (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")


def measure_ttft(
    base_url: str,
    model: str,
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 16,
    timeout_s: float = 1800.0,
    api_key: str = "fake-key",
    transport: httpx.BaseTransport | None = None,
    monotonic: Callable[[], float] = time.perf_counter,
) -> ClientResult:
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        # httpx reads a non-positive read timeout as "fail at once": a misleading stream_error, not a cold start.
        raise ValueError(f"timeout_s must be a finite number of seconds > 0, got {timeout_s!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    check_base_url(base_url)
    url = base_url.rstrip("/") + "/v1/chat/completions"
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # The read timeout is the cold start itself: nothing arrives until a replica exists.
    timeout = httpx.Timeout(connect=30.0, read=timeout_s, write=30.0, pool=30.0)
    # Built before the clock starts: creating a client loads the CA bundle (tens of ms), which is not TTFT.
    http = httpx.Client(timeout=timeout, transport=transport)
    clock = _Clock(monotonic=monotonic)
    t_send = clock.epoch()
    events.emit("client_send", t=t_send, model=model, url=url)
    # Typed: they are set inside the stream loop, after done() reads them.
    first_s: float | None = None
    last_s: float | None = None
    first_text: str | None = None
    pieces: list[str] = []
    chunks = 0
    usage_tokens = None
    http_status = None
    request_id = None

    stream_end_s: float | None = None  # when "[DONE]" came; reading what follows it is not the request's time

    def done(status: ClientStatus, error: str | None) -> ClientResult:
        total_s = stream_end_s if stream_end_s is not None else clock.elapsed_s()
        tokens = usage_tokens if usage_tokens is not None else chunks
        m = ClientResult(
            schema_version=RESULT_SCHEMA_VERSION,
            url=url,
            model=model,
            status=status,
            error=error,
            ttft_s=first_s,
            total_s=total_s,
            tokens=tokens,
            t_send_epoch=t_send,
            t_first_token_epoch=None if first_s is None else t_send + first_s,
            t_last_token_epoch=None if last_s is None else t_send + last_s,
            first_text=first_text,
            http_status=http_status,
            text="".join(pieces) if pieces else None,
            request_id=request_id,
        )
        if last_s is not None:
            events.emit("client_last_token", t=m.t_last_token_epoch, tokens=tokens, total_s=total_s)
        events.emit("client_done", t=t_send + total_s, status=status, ttft_s=first_s, error=error)
        return m

    try:
        with http, http.stream("POST", url, json=body, headers={"Authorization": f"Bearer {api_key}"}) as resp:
            http_status = resp.status_code
            request_id = resp.headers.get(REQUEST_ID_HEADER)
            if resp.status_code != 200:
                detail = resp.read().decode(errors="replace")[:500]
                return done(ClientStatus.HTTP_ERROR, f"HTTP {resp.status_code}: {detail}")
            lines = resp.iter_lines()
            for payload in _sse_payloads(lines):
                if payload.get("usage"):
                    usage_tokens = payload["usage"].get("completion_tokens")
                if "error" in payload:
                    return done(ClientStatus.STREAM_ERROR, str(payload["error"])[:500])
                text = _chunk_text(payload)
                if not text:
                    continue
                now = clock.elapsed_s()
                if first_s is None:
                    first_s, first_text = now, text
                    events.emit("client_first_token", t=t_send + now, ttft_s=now)
                last_s = now
                chunks += 1
                pieces.append(text)
            stream_end_s = clock.elapsed_s()
            _read_to_end(lines, resp, TAIL_READ_S)
    except httpx.TimeoutException as exc:
        return done(ClientStatus.TIMEOUT, f"no answer within {timeout_s:g} s ({type(exc).__name__})")
    except httpx.ConnectError as exc:
        return done(ClientStatus.CONNECT_ERROR, f"cannot reach {url}: {exc}; is `python service.py` running?")
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return done(ClientStatus.STREAM_ERROR, f"{type(exc).__name__}: {exc}")
    if first_s is None:
        return done(ClientStatus.NO_TOKEN, "the stream ended without a single token")
    return done(ClientStatus.OK, None)


def _read_to_end(lines: Iterable[str], resp: httpx.Response, limit_s: float) -> None:
    """Read the response past "[DONE]" until the server ends it (at most ``limit_s``). Closing it at "[DONE]"
    makes Serve's proxy cancel a request it already answered ("Client for request ... disconnected"); the
    cancel can reach the LLM replica before its call's generator has finished, and Serve then writes no access
    line for that call, so the run log could not say which replica served the request."""
    timer = threading.Timer(limit_s, _cut, args=(resp,))
    timer.start()
    try:
        for _ in lines:
            pass
    except httpx.HTTPError:
        # The answer is complete at "[DONE]": a server that drops the connection after it (or the timer's
        # close) changes nothing in the result.
        pass
    finally:
        timer.cancel()


def _cut(resp: httpx.Response) -> None:
    """End a read blocked in another thread: closing the response does not wake a blocked ``recv``; shutting
    its socket down does."""
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the server: nothing left to cut
            sock.shutdown(socket.SHUT_RDWR)
    else:
        resp.close()


def write_result(m: ClientResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(m.to_dict(), indent=2) + "\n")
    tmp.replace(path)


def check_out_writable(path: Path) -> None:
    """Raise OSError unless ``write_result`` can write ``path``: its folder is created and a temp file is
    written and removed beside it (os.access says yes to root where a read-only mount still refuses)."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
        pass


def check_base_url(base_url: str) -> str:
    """``http(s)://host[:port][/path]``; ValueError otherwise (without a scheme httpx fails mid-measurement)."""
    try:
        parsed = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"invalid URL {base_url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"invalid URL {base_url!r}: expected http://host:port (e.g. http://127.0.0.1:8000)")
    return base_url


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number of seconds > 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _base_url(text: str) -> str:
    try:
        return check_base_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cli_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=_base_url, default="http://127.0.0.1:8000", help="where service.py serves")
    parser.add_argument("--model", default="tiny", help="the model id the service serves (registry name)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-tokens", type=positive_int, default=16)
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=1800.0,
        help="seconds (> 0) to wait for the first token (a cold start)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")


def main(args: argparse.Namespace) -> int:
    if args.out is not None:
        # Before the request, not after it: the request may be a cold start of many minutes, whose result
        # must have somewhere to go.
        try:
            check_out_writable(args.out)
        except OSError as exc:
            print(f"error: cannot write --out {args.out}: {exc.strerror or exc}; nothing was sent", file=sys.stderr)
            return 2
    m = measure_ttft(args.url, args.model, prompt=args.prompt, max_tokens=args.max_tokens, timeout_s=args.timeout)
    print(m.summary(), file=sys.stdout if m.ok else sys.stderr)
    if args.out is not None:
        try:
            write_result(m, args.out)
        except OSError as exc:
            # Writable a moment ago (a disk filled since): the whole result goes to stderr rather than being lost.
            print(f"error: cannot write {args.out} ({exc}); the result: {json.dumps(m.to_dict())}", file=sys.stderr)
            return 1
    return 0 if m.ok else 1
