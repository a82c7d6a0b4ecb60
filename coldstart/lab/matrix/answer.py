"""Same prompt, greedy decoding: a run's answer must equal the newest ok ``baseline`` run's, whatever the
experiment changed about how the engine started."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coldstart.analysis.results import (
    AnswerCheck,
    AnswerCompared,
    ClientResult,
    RequestGroup,
    RequestRecord,
    ResultRow,
    RunStatus,
)


@dataclass(frozen=True)
class ReferenceAnswer:
    """The newest ok ``baseline`` run's greedy answer: what every other experiment's must equal."""

    run_id: str
    text: str
    first_text: str | None  # its first streamed token


def reference_answer(rows: Sequence[ResultRow], model: str, device: str | None) -> ReferenceAnswer | None:
    """The newest ok ``baseline`` run of ``model`` on this device with an answer; None: there is none."""
    for row in reversed(rows):
        text = row.client.text if row.client else None
        same = (row.model, row.experiment, row.device) == (model, "baseline", device)
        if same and row.status is RunStatus.OK and row.client and text:
            return ReferenceAnswer(row.run_id, text, row.client.first_text)
    return None


def answer_check(
    first: ClientResult, requests: Sequence[RequestRecord] | None, reference: ReferenceAnswer | None
) -> AnswerCheck:
    """Same prompt, greedy decoding: the answer must not depend on how the engine started. The whole answer
    of the first request that decoded alone (the run's first when the burst is one; else the first sent after
    ready one at a time, or a lone return); a run whose every request was batched compares its first token."""
    if not requests:  # no scenario records: one request, alone
        index, client, compared = 0, first, AnswerCompared.ANSWER
    elif (alone := _lone_request(requests)) is not None:
        index, client, compared = alone.index, alone.client, AnswerCompared.ANSWER
    else:
        index, client, compared = 0, first, AnswerCompared.FIRST_TOKEN
    if reference is None:
        return AnswerCheck(None, None, index, compared)
    mine, theirs = (
        (client.text, reference.text)
        if compared is AnswerCompared.ANSWER
        else (client.first_text, reference.first_text)
    )
    match = None if mine is None or theirs is None else mine == theirs
    return AnswerCheck(reference.run_id, match, index, compared)


def _part(group: RequestGroup) -> RequestGroup:
    # A trickle goes out beside the burst: its requests and the burst's may decode in one batch.
    return RequestGroup.BURST if group is RequestGroup.TRICKLE else group


def _lone_request(requests: Sequence[RequestRecord]) -> RequestRecord | None:
    cycles: dict[tuple[RequestGroup, int], int] = {}
    for r in requests:
        cycles[_part(r.group), r.cycle] = cycles.get((_part(r.group), r.cycle), 0) + 1
    for r in requests:  # in send order
        sent_alone = r.group is RequestGroup.AFTER_READY or cycles[_part(r.group), r.cycle] == 1
        if sent_alone and r.group is not RequestGroup.AFTER_READY_CONCURRENT and r.client.text:
            return r
    return None
