"""The client against a real streaming HTTP server on loopback (scripted delays, real sockets, real httpx), plus one
deterministic run through ``httpx.MockTransport`` with a fake monotonic clock for the exact arithmetic."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from coldstart.analysis.events import read_events
from coldstart.lab import client as client_mod
from coldstart.lab.client import Measurement, measure_ttft, write_result

FIRST_TOKEN_DELAY_S = 0.3
TOKEN_GAP_S = 0.05
TOKENS = ("hi", " there", ",", " friend")
USAGE_COMPLETION_TOKENS = 7  # deliberately not len(TOKENS): the usage chunk must win over the chunk count
TTFT_TOLERANCE_S = 0.15
HANG_S = 10.0


def _sse(payload: dict | str) -> bytes:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {body}\n\n".encode()


def _delta(**delta: str) -> dict:
    return {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeServer:
    base: str
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    # Per response that went on after "[DONE]": was the client still connected when the server ended it?
    client_there_at_end: list[bool] = field(default_factory=list)

    def url(self, scenario: str) -> str:
        return f"{self.base}/{scenario}"


def _make_handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 + close: the body ends when the connection does, like a plain streaming proxy.
        disable_nagle_algorithm = True  # each SSE event leaves at once, not batched by Nagle + delayed ACK

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, data: bytes, delay_s: float = 0.0) -> None:
            if delay_s:
                time.sleep(delay_s)
            self.wfile.write(data)
            self.wfile.flush()

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            scenario = self.path.split("/")[1]
            if not self.path.endswith("/v1/chat/completions"):
                self.send_error(404)
                return
            getattr(self, f"_scenario_{scenario}")()

        def _scenario_ok(self) -> None:
            self._start_stream()
            # The role chunk comes at once and carries no text: it must not count as the first token.
            self._send(_sse(_delta(role="assistant", content="")))
            self._send(_sse(_delta(content=TOKENS[0])), delay_s=FIRST_TOKEN_DELAY_S)
            for tok in TOKENS[1:]:
                self._send(_sse(_delta(content=tok)), delay_s=TOKEN_GAP_S)
            self._send(b": keep-alive comment\n\n")
            self._send(
                _sse(
                    {
                        "id": "c1",
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 12,
                            "completion_tokens": USAGE_COMPLETION_TOKENS,
                            "total_tokens": 19,
                        },
                    }
                )
            )
            self._send(_sse("[DONE]"))

        def _scenario_notoken(self) -> None:
            self._start_stream()
            self._send(_sse(_delta(role="assistant", content="")))
            self._send(_sse(_delta(content="")), delay_s=0.05)
            self._send(_sse(_delta()), delay_s=0.05)
            self._send(_sse("[DONE]"))

        def _scenario_reasoning(self) -> None:
            self._start_stream()
            self._send(_sse(_delta(role="assistant", content="")))
            self._send(_sse(_delta(reasoning_content="Let me think")), delay_s=0.1)
            self._send(_sse(_delta(content="Hello")), delay_s=0.1)
            self._send(_sse("[DONE]"))

        def _scenario_error500(self) -> None:
            body = b'{"error": "engine died: CUDA out of memory"}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._send(body)

        def _scenario_streamerror(self) -> None:
            self._start_stream()
            self._send(_sse(_delta(content="par")))
            self._send(_sse({"error": {"message": "replica died mid-stream", "code": 500}}), delay_s=0.05)
            self._send(_sse(_delta(content="never seen")))
            self._send(_sse("[DONE]"))

        def _scenario_badjson(self) -> None:
            self._start_stream()
            self._send(b"data: {not json\n\n")

        def _scenario_tail(self) -> None:
            # Like Serve: "[DONE]", then the response ends a moment later. A client that closes at "[DONE]"
            # is gone (its FIN is readable here) before the end; one that reads to the end is still there.
            self._start_stream()
            self._send(_sse(_delta(content="Hi")))
            self._send(_sse("[DONE]"))
            time.sleep(0.3)
            try:
                gone = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                gone = False
            server.client_there_at_end.append(not gone)

        def _scenario_tailhang(self) -> None:
            # "[DONE]", then the response never ends.
            self._start_stream()
            self._send(_sse(_delta(content="Hi")))
            self._send(_sse("[DONE]"))
            server.release.wait(HANG_S)

        def _scenario_hang(self) -> None:
            # A cold start that never answers: no status line, no headers, until the test ends.
            server.release.wait(HANG_S)

    return Handler


@pytest.fixture(scope="module")
def sse_server() -> Iterator[FakeServer]:
    port = _free_port()
    state = FakeServer(base=f"http://127.0.0.1:{port}")
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="sse-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(sse_server: FakeServer) -> FakeServer:
    sse_server.requests.clear()
    return sse_server


def _client_events(out: str) -> list[dict]:
    return [e for e in read_events(out) if str(e["event"]).startswith("client_")]


# ---------------------------------------------------------------------------------------------------------
# Real server


def test_ok_stream_times_the_first_real_token(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    m = measure_ttft(server.url("ok"), "tiny", max_tokens=5, timeout_s=10)

    assert m.status == "ok", m.error
    assert m.ok and m.error is None and m.http_status == 200
    # The first token is the first non-empty delta (after the scripted delay), not the empty role chunk at ~0 s.
    assert FIRST_TOKEN_DELAY_S - 0.01 <= m.ttft_s <= FIRST_TOKEN_DELAY_S + TTFT_TOLERANCE_S
    assert m.first_text == TOKENS[0]
    assert m.total_s >= FIRST_TOKEN_DELAY_S + TOKEN_GAP_S * (len(TOKENS) - 1)
    assert m.total_s > m.ttft_s
    assert m.tokens == USAGE_COMPLETION_TOKENS
    # Epoch points sit on the same clock as the durations.
    assert m.t_first_token_epoch - m.t_send_epoch == pytest.approx(m.ttft_s, abs=1e-6)
    assert m.t_last_token_epoch - m.t_first_token_epoch >= TOKEN_GAP_S * (len(TOKENS) - 1) - 0.01
    assert m.t_last_token_epoch <= m.t_send_epoch + m.total_s
    assert "first token after" in m.summary()

    # What went on the wire: an OpenAI streaming chat request with usage requested.
    (req,) = server.requests
    assert req["path"] == "/ok/v1/chat/completions"
    assert req["auth"] == "Bearer fake-key"
    assert req["body"]["model"] == "tiny"
    assert req["body"]["stream"] is True
    assert req["body"]["stream_options"] == {"include_usage": True}
    assert req["body"]["max_tokens"] == 5

    evs = _client_events(capsys.readouterr().out)
    assert [e["event"] for e in evs] == ["client_send", "client_first_token", "client_last_token", "client_done"]
    ts = [e["t"] for e in evs]
    assert ts[0] < ts[1] < ts[2] <= ts[3]
    assert ts[0] == pytest.approx(m.t_send_epoch)
    assert ts[1] == pytest.approx(m.t_first_token_epoch)
    assert evs[1]["ttft_s"] == pytest.approx(m.ttft_s)
    assert evs[2]["tokens"] == USAGE_COMPLETION_TOKENS
    assert evs[3]["status"] == "ok" and evs[3]["error"] is None
    assert evs[0]["model"] == "tiny" and evs[0]["url"].endswith("/ok/v1/chat/completions")


def test_trailing_slash_in_base_url(server: FakeServer) -> None:
    m = measure_ttft(server.url("ok") + "/", "tiny", timeout_s=10)
    assert m.status == "ok"
    assert server.requests[0]["path"] == "/ok/v1/chat/completions"


def test_stream_of_empty_deltas_is_no_token_not_zero(server: FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    m = measure_ttft(server.url("notoken"), "tiny", timeout_s=10)

    assert m.status == "no_token"
    assert not m.ok
    assert m.ttft_s is None  # never 0: a stream without a token has no time to first token
    assert m.t_first_token_epoch is None and m.t_last_token_epoch is None
    assert m.first_text is None
    assert m.tokens == 0
    assert m.total_s >= 0.1
    assert m.http_status == 200
    evs = _client_events(capsys.readouterr().out)
    assert [e["event"] for e in evs] == ["client_send", "client_done"]
    assert evs[1]["status"] == "no_token" and evs[1]["ttft_s"] is None


def test_reasoning_tokens_count_as_the_first_token(server: FakeServer) -> None:
    m = measure_ttft(server.url("reasoning"), "tiny", timeout_s=10)
    assert m.status == "ok"
    assert m.first_text == "Let me think"
    assert 0.1 - 0.01 <= m.ttft_s <= 0.1 + TTFT_TOLERANCE_S
    assert m.tokens == 2  # no usage chunk: the content chunks are counted


def test_http_500_is_an_http_error_with_the_body(server: FakeServer) -> None:
    m = measure_ttft(server.url("error500"), "tiny", timeout_s=10)
    assert m.status == "http_error"
    assert m.http_status == 500
    assert m.error.startswith("HTTP 500: ")
    assert "engine died: CUDA out of memory" in m.error
    assert m.ttft_s is None
    assert "http_error" in m.summary()


def test_error_payload_in_the_stream_is_a_stream_error(server: FakeServer) -> None:
    m = measure_ttft(server.url("streamerror"), "tiny", timeout_s=10)
    assert m.status == "stream_error"
    assert "replica died mid-stream" in m.error
    assert m.first_text == "par"  # what came before the error is kept
    assert m.tokens == 1


def test_malformed_sse_json_is_a_stream_error(server: FakeServer) -> None:
    m = measure_ttft(server.url("badjson"), "tiny", timeout_s=10)
    assert m.status == "stream_error"
    assert "JSONDecodeError" in m.error


def test_server_that_never_answers_times_out(server: FakeServer) -> None:
    t0 = time.monotonic()
    m = measure_ttft(server.url("hang"), "tiny", timeout_s=0.5)
    elapsed = time.monotonic() - t0

    assert m.status == "timeout"
    assert m.ttft_s is None
    assert m.http_status is None
    assert "0.5 s" in m.error
    assert 0.5 <= elapsed < 0.5 + 2.0  # it waited the timeout, not the server's HANG_S
    assert m.total_s >= 0.5


def test_the_client_reads_the_response_to_its_end_so_serve_does_not_cancel_an_answered_request(
    server: FakeServer,
) -> None:
    # Closing at "[DONE]" makes Serve's proxy cancel the request, and the replica's access line can go missing.
    server.client_there_at_end.clear()
    m = measure_ttft(server.url("tail"), "m")
    assert (m.status, m.text) == ("ok", "Hi")
    assert server.client_there_at_end == [True]
    # The time read after "[DONE]" is not the request's.
    assert m.total_s < 0.3


def test_a_response_that_never_ends_after_done_is_let_go_after_the_tail_limit(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "TAIL_READ_S", 0.5)
    t0 = time.monotonic()
    m = measure_ttft(server.url("tailhang"), "m", timeout_s=HANG_S * 2)
    waited_s = time.monotonic() - t0
    assert (m.status, m.text, m.error) == ("ok", "Hi", None)
    assert 0.5 <= waited_s < 3.0


def test_closed_port_is_a_connect_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    m = measure_ttft(url, "tiny", timeout_s=5)
    assert m.status == "connect_error"
    assert m.ttft_s is None
    assert m.http_status is None
    assert url in m.error


# ---------------------------------------------------------------------------------------------------------
# Deterministic: MockTransport + a fake monotonic clock


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_arithmetic_with_a_fake_clock(capsys: pytest.CaptureFixture[str]) -> None:
    # Binary-exact values, so every duration can be compared with ==.
    clock = FakeClock(start=1000.0)
    # (clock value when the chunk arrives, chunk bytes)
    script = [
        (1001.0, _sse(_delta(role="assistant", content=""))),
        (1002.5, _sse(_delta(content="A"))),
        (1003.0, _sse(_delta(content="B"))),
        (1003.75, _sse(_delta(content="C"))),
        (1004.0, _sse({"choices": [], "usage": {"completion_tokens": 42}})),
        (1004.5, _sse("[DONE]")),
        (1005.0, _sse(_delta(content="after DONE: ignored"))),
    ]
    seen: list[httpx.Request] = []

    def stream() -> Iterator[bytes]:
        for at, chunk in script:
            clock.now = at
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream())

    m = measure_ttft("http://mock", "m1", transport=httpx.MockTransport(handler), monotonic=clock, api_key="k")

    assert m.status == "ok"
    assert m.ttft_s == 2.5
    assert m.first_text == "A"
    assert m.tokens == 42
    # The request ends at [DONE]: what the server sends after it is read (so the server ends the response
    # itself) but is neither timed nor counted.
    assert m.total_s == 4.5
    assert m.text == "ABC"
    assert m.t_first_token_epoch - m.t_send_epoch == pytest.approx(2.5)
    assert m.t_last_token_epoch - m.t_send_epoch == pytest.approx(3.75)
    assert seen[0].url == "http://mock/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer k"
    assert json.loads(seen[0].content)["model"] == "m1"

    evs = _client_events(capsys.readouterr().out)
    assert [e["event"] for e in evs] == ["client_send", "client_first_token", "client_last_token", "client_done"]
    assert evs[1]["ttft_s"] == 2.5
    assert evs[2]["total_s"] == 4.5
    assert evs[1]["t"] - evs[0]["t"] == pytest.approx(2.5)
    assert evs[2]["t"] - evs[0]["t"] == pytest.approx(3.75)
    # client_done is on the same clock as the others (not the wall clock), so the order holds.
    assert evs[3]["t"] - evs[0]["t"] == pytest.approx(4.5)


def test_fake_clock_without_usage_counts_chunks() -> None:
    clock = FakeClock(start=0.0)

    def stream() -> Iterator[bytes]:
        for at, text in ((0.25, ""), (0.5, "x"), (0.75, "y")):
            clock.now = at
            yield _sse(_delta(content=text))
        clock.now = 1.0
        yield _sse("[DONE]")

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=stream()))
    m = measure_ttft("http://mock", "m", transport=transport, monotonic=clock)
    assert (m.status, m.ttft_s, m.total_s, m.tokens) == ("ok", 0.5, 1.0, 2)


def test_client_setup_is_not_counted_in_ttft(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building an httpx.Client loads the CA bundle (tens of ms): that happens before the send, not in the TTFT.
    clock = FakeClock(start=0.0)

    class SlowToBuildClient(httpx.Client):
        def __init__(self, *args: object, **kwargs: object) -> None:
            clock.now += 1.0
            super().__init__(*args, **kwargs)

    def stream() -> Iterator[bytes]:
        clock.now += 2.0
        yield _sse(_delta(content="x"))
        yield _sse("[DONE]")

    monkeypatch.setattr(httpx, "Client", SlowToBuildClient)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=stream()))
    m = measure_ttft("http://mock", "m", transport=transport, monotonic=clock)
    assert (m.status, m.ttft_s, m.total_s) == ("ok", 2.0, 2.0)


def test_mock_http_error_detail_is_truncated() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503, text="x" * 2000))
    m = measure_ttft("http://mock", "m", transport=transport, monotonic=FakeClock(0.0))
    assert m.status == "http_error"
    assert m.http_status == 503
    assert m.error == "HTTP 503: " + "x" * 500


# ---------------------------------------------------------------------------------------------------------
# write_result and the CLI


def _measurement(**overrides: object) -> Measurement:
    base = dict(
        schema_version=client_mod.RESULT_SCHEMA_VERSION,
        url="http://u/v1/chat/completions",
        model="tiny",
        status="ok",
        error=None,
        ttft_s=1.25,
        total_s=2.0,
        tokens=3,
        t_send_epoch=1.0e9,
        t_first_token_epoch=1.0e9 + 1.25,
        t_last_token_epoch=1.0e9 + 2.0,
        first_text="hi",
        http_status=200,
    )
    base.update(overrides)
    return Measurement(**base)


def test_write_result_writes_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "result.json"
    m = _measurement()
    write_result(m, path)
    data = json.loads(path.read_text())
    assert Measurement(**data) == m
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp file left behind

    m2 = _measurement(status="timeout", ttft_s=None, error="no answer")
    write_result(m2, path)
    assert Measurement(**json.loads(path.read_text())) == m2


def test_write_result_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "result.json"
    write_result(_measurement(), path)
    before = path.read_text()

    real_write_text = Path.write_text

    def torn_write(self: Path, data: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("disk full")  # a crash mid-write

    monkeypatch.setattr(Path, "write_text", torn_write)
    with pytest.raises(OSError, match="disk full"):
        write_result(_measurement(ttft_s=99.0), path)
    monkeypatch.undo()

    assert path.read_text() == before  # the old result is whole, never a torn half of the new one
    assert json.loads(path.read_text())["ttft_s"] == 1.25


def _cli_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client_mod.add_cli_args(parser)
    return parser.parse_args(argv)


def test_cli_main_ok_returns_0_and_writes_out(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r" / "client.json"
    rc = client_mod.main(
        _cli_args(
            ["--url", server.url("ok"), "--model", "qwen", "--max-tokens", "3", "--timeout", "10", "--out", str(out)]
        )
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["status"] == "ok" and data["model"] == "qwen"
    assert server.requests[0]["body"]["max_tokens"] == 3
    assert "ok: first token after" in capsys.readouterr().out


def test_cli_main_failure_returns_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "client.json"
    rc = client_mod.main(_cli_args(["--url", f"http://127.0.0.1:{_free_port()}", "--timeout", "5", "--out", str(out)]))
    assert rc == 1
    assert json.loads(out.read_text())["status"] == "connect_error"
    assert "connect_error" in capsys.readouterr().err


def test_cli_main_no_token_returns_1(server: FakeServer) -> None:
    assert client_mod.main(_cli_args(["--url", server.url("notoken"), "--timeout", "10"])) == 1


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "soon"], "--timeout"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--url", "127.0.0.1:8000"], "--url"),
        (["--url", "ftp://x"], "--url"),
    ],
)
def test_cli_bad_arguments_exit_2_with_a_message_and_send_nothing(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_mod, "measure_ttft", lambda *a, **k: pytest.fail("nothing may be sent"))
    with pytest.raises(SystemExit) as exc:
        _cli_args(argv)
    assert exc.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_measure_ttft_refuses_a_timeout_that_is_not_a_wait(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        client_mod.measure_ttft("http://127.0.0.1:1", "tiny", timeout_s=timeout_s)
