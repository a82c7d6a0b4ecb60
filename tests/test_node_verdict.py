"""Before a run lets go of a cluster, Ray's verdict on a node whose raylet stopped answering is waited for."""

from __future__ import annotations

import json
import socket

from fakes import FakeClock

from coldstart.analysis.events import MARKER
from coldstart.lab.node_verdict import VERDICT_SLACK_S, await_node_verdicts, raylet_answers, silent_nodes


def _node(node_id: str, port: int, alive: bool = True) -> dict:
    return {"NodeID": node_id, "NodeManagerAddress": "127.0.0.1", "NodeManagerPort": port, "Alive": alive}


def _events(out: str) -> list[dict]:
    return [json.loads(line.split(MARKER, 1)[1]) for line in out.splitlines() if MARKER in line]


def test_a_listening_port_answers_and_a_closed_one_does_not():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert raylet_answers("127.0.0.1", port)
    assert not raylet_answers("127.0.0.1", port)  # closed now: refused


def test_only_live_listed_nodes_that_do_not_answer_are_silent():
    nodes = [_node("head", 1), _node("gone", 2), _node("dead-already", 3, alive=False)]
    silent = silent_nodes(nodes, answers=lambda _ip, port: port == 1)
    assert [n.node_id for n in silent] == ["gone"]


def test_the_run_waits_for_the_gcs_to_mark_the_silent_node_dead_and_says_so(capsys):
    clock = FakeClock()
    marked_dead_at_s = 17.0

    def nodes() -> list[dict]:
        return [_node("head", 1), _node("worker", 2, alive=clock() < marked_dead_at_s)]

    lost = await_node_verdicts(
        nodes, window_s=25.0, answers=lambda _ip, port: port == 1, clock=clock, sleep=clock.sleep
    )
    assert lost == ("worker",)
    assert marked_dead_at_s <= clock() < marked_dead_at_s + 1.0  # no longer than the verdict took
    said = _events(capsys.readouterr().out)
    assert [e["event"] for e in said] == ["node_verdict_wait", "node_lost"]
    assert said[1]["node_id"] == "worker" and said[1]["waited_s"] >= marked_dead_at_s


def test_a_node_never_marked_dead_is_waited_for_no_longer_than_the_window(capsys):
    clock = FakeClock()
    lost = await_node_verdicts(
        lambda: [_node("worker", 2)], window_s=10.0, answers=lambda _ip, _port: False, clock=clock, sleep=clock.sleep
    )
    assert lost == ()
    assert 10.0 <= clock() <= 10.0 + VERDICT_SLACK_S + 1.0
    said = _events(capsys.readouterr().out)
    assert said[-1]["event"] == "node_verdict_timeout" and said[-1]["node_ids"] == ["worker"]


def test_a_healthy_cluster_costs_no_wait(capsys):
    clock = FakeClock()
    lost = await_node_verdicts(
        lambda: [_node("head", 1), _node("worker", 2)],
        window_s=25.0,
        answers=lambda *_: True,
        clock=clock,
        sleep=clock.sleep,
    )
    assert lost == () and clock() == 0.0 and capsys.readouterr().out == ""
