"""The answer check: a lone request is held to the whole baseline answer, a batched one to its first token."""

from __future__ import annotations

import dataclasses
import json

from coldstart.analysis.results import (
    AnswerCheck,
    AnswerCompared,
    ClientResult,
    ClientStatus,
    RequestGroup,
    RequestRecord,
)
from coldstart.lab.matrix.answer import ReferenceAnswer, answer_check


def _answer(text: str, status: str = "ok") -> ClientResult:
    return ClientResult(
        schema_version=1,
        url="http://x/v1/chat/completions",
        model="tiny",
        status=ClientStatus(status),
        error=None,
        ttft_s=1.0,
        total_s=2.0,
        tokens=3,
        t_send_epoch=1000.0,
        t_first_token_epoch=1001.0,
        t_last_token_epoch=1002.0,
        first_text=text.split(" ")[0],
        http_status=200,
        text=text,
    )


REFERENCE = ReferenceAnswer("base-1", "a b c", "a")


def test_a_lone_request_is_held_to_the_whole_answer() -> None:
    same = answer_check(_answer("a b c"), None, REFERENCE)
    other = answer_check(_answer("a b x"), None, REFERENCE)
    assert (same.matches_baseline, same.compared, same.request_index) == (True, AnswerCompared.ANSWER, 0)
    assert other.matches_baseline is False


def test_a_burst_is_judged_by_the_first_request_sent_alone_after_ready() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(3)]
    concurrent = [RequestRecord(3 + i, RequestGroup.AFTER_READY_CONCURRENT, _answer("a y z")) for i in range(2)]
    after = RequestRecord(5, RequestGroup.AFTER_READY, _answer("a b c"))
    check = answer_check(burst[0].client, [*burst, *concurrent, after], REFERENCE)
    assert (check.matches_baseline, check.compared, check.request_index) == (True, AnswerCompared.ANSWER, 5)
    wrong = dataclasses.replace(after, client=_answer("a b q"))
    assert answer_check(burst[0].client, [*burst, wrong], REFERENCE).matches_baseline is False


def test_a_lone_return_counts_as_alone() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(2)]
    back = RequestRecord(2, RequestGroup.RETURN, _answer("a b c"), cycle=1)
    check = answer_check(burst[0].client, [*burst, back], REFERENCE)
    assert (check.matches_baseline, check.request_index) == (True, 2)


def test_a_run_of_batched_requests_only_is_held_to_its_first_token() -> None:
    burst = [RequestRecord(i, RequestGroup.BURST, _answer("a b x")) for i in range(4)]
    check = answer_check(burst[0].client, burst, REFERENCE)
    assert (check.matches_baseline, check.compared) == (True, AnswerCompared.FIRST_TOKEN)
    off = [RequestRecord(i, RequestGroup.BURST, _answer("q b c")) for i in range(4)]
    assert answer_check(off[0].client, off, REFERENCE).matches_baseline is False


def test_a_burst_of_one_beside_a_trickle_was_not_alone() -> None:
    # The trickle goes out while the burst waits: they decode in one batch, so neither is a lone request.
    burst = RequestRecord(0, RequestGroup.BURST, _answer("a b x"))
    trickle = [RequestRecord(1 + i, RequestGroup.TRICKLE, _answer("a b y")) for i in range(3)]
    check = answer_check(burst.client, [burst, *trickle], REFERENCE)
    assert (check.compared, check.request_index, check.matches_baseline) == (AnswerCompared.FIRST_TOKEN, 0, True)


def test_no_reference_leaves_the_check_open_and_the_row_round_trips() -> None:
    check = answer_check(_answer("a b c"), None, None)
    assert check.matches_baseline is None and check.reference_run_id is None
    assert AnswerCheck.from_dict(json.loads(json.dumps(check.to_dict()))) == check
    old_shape = AnswerCheck(reference_run_id="r", matches_baseline=True)
    assert old_shape.to_dict() == {"reference_run_id": "r", "matches_baseline": True}
