"""The project speaks only of itself: no tracked file names how the work on it was organised (sessions, rented
machines and their time, numbered calls, a remote tool's output folder, work items by number).

Every tracked text file is scanned for the words below; a hit is forgiven only where an entry of ``ALLOWED``
(upstream meanings, as data: a path pattern, a regex of the allowed text, and why) covers it. Campaigns are
named by date and hardware (``2026-11-29-h200x1``); the one place old names may live is the recorded
migration under results/migrations/."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# name -> what is flagged.
WORDS = {
    "session": re.compile(r"(?i)session"),
    "lease": re.compile(r"(?i)lease"),
    "lent machine": re.compile(r"\blent\b"),
    "device time": re.compile(r"(?i)\bdevice[- ](?:time|minutes?|hours?|seconds?)\b"),
    "call N": re.compile(r"(?i)\bcalls? ?#?\d+\b"),
    "$OUT": re.compile(r"\$\{?OUT\b"),
    # The project's own work items are small numbers; an upstream issue is named with its repository
    # (ray-project/ray#65477) or is one of the five-digit numbers upstream trackers have reached.
    "#N work item": re.compile(r"(?<![\w/.&#-])#\d{1,4}\b"),
}

# (path pattern, allowed text, why). The allowed text is removed from a line before the words are looked for.
ALLOWED = (
    ("*", r"(?i)\w*(?:release|please)\w*", "words that hold 'lease'"),
    ("*", r"\blease[ds]\b|\blease (?:it|them|one|two)\b", "Ray leases a worker to a task: the verb is Ray's"),
    ("*", r"\b(?:at|before|after) the lease\b", "the moment Ray leases the worker"),
    ("*", r"(?i)\bworker ?lease\b|\blease ?(?:request|id|grant)", "Ray's own words for its worker lease"),
    ("*", r"COLDSTART_TEST_LEASE", "a test variable set at Ray's worker lease"),
    ("*", r"\bsession_(?:\d{4}-\d{2}-\d{2}[\w.-]*|latest|name|dir\w*)|get_session_dir_path", "Ray's session folders"),
    ("*", r"\bstart_new_session\b", "subprocess: a POSIX session"),
    ("*", r"(?i)test[_ ]session|[\"']session[\"']", "pytest's test session, its fixture scope"),
    ("*", r"\bsession = boto3\.session\.Session\(\)|\bsession\.client\(|\w*Session\(|AWS_SESSION_TOKEN|\"SESSION\"",
     "boto3 and HTTP sessions, AWS session tokens"),
    ("tests/conftest.py", r"\b(?:whole|the) session(?:'s)?\b", "pytest's test session"),
    ("coldstart/lab/serve.py", r"the rest of the session", "Ray's session: the processes of one Ray instance"),
    ("*", r"\bframe #\d+", "a C++ backtrace's frames"),
    ("*", r"[\w)] {1,2}#\d\b", "a run's repeat in its label (tiny baseline #0)"),
    ("*", r"(?i)(?:color|background|fill|stroke|border)[\w-]*\s*[:=]\s*[\"']?#[0-9a-f]{3,8}\b", "colours"),
    ("results/migrations/*", r"(?s).*", "the recorded migration: the old names, so that they can be read"),
    ("tests/test_words.py", r"(?s).*", "this test names the words"),
)  # fmt: skip

_ALLOWED = tuple((glob, re.compile(pattern)) for glob, pattern, _ in ALLOWED)
_BINARY = (".png", ".jpg", ".jpeg", ".gif", ".parquet", ".pdf", ".ico", ".gz", ".tgz", ".whl")


def hits_in(rel: str, text: str) -> list[str]:
    """``line: word: text`` for every flagged word of ``text`` (the file ``rel``) that nothing allows."""
    allowed = [pattern for glob, pattern in _ALLOWED if fnmatch.fnmatch(rel, glob)]
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for pattern in allowed:
            line = pattern.sub(" ", line)
        for name, word in WORDS.items():
            if match := word.search(line):
                start = max(match.start() - 40, 0)
                found.append(f"{n}: {name}: {line[start : match.end() + 40].strip()}")
    return found


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_speaks_of_how_the_work_was_organised():
    report = []
    for rel in _tracked():
        path = ROOT / rel
        if rel.endswith(_BINARY) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        # The file's name too: a transcript must not be called session3-call1.log.
        found = [f"its name{hit.partition(':')[2]}" for hit in hits_in(rel, rel)]
        found += hits_in(rel, data.decode(errors="replace"))
        if found:
            report.append(f"{rel} ({len(found)}):\n    " + "\n    ".join(found[:5]))
    assert report == [], "process words in tracked files:\n" + "\n".join(report)


@pytest.mark.parametrize(
    "line,flagged",
    [
        ("measured in lease s7 on the lent H200", {"lease", "lent machine"}),
        ("transcripts _campaign/session6-h200-call5.log", {"session", "call N"}),
        ("30 device-minutes hold ten runs; copy into $OUT", {"device time", "$OUT"}),
        ("Scenarios (#18) in one deployment", {"#N work item"}),
        ("a prestarted worker is leased to it; please release", set()),
        ("Ray's /tmp/ray/session_latest and session_name; ray-project/ray#65477", set()),
        ("tiny baseline #0: ok; frame #3: c10::Error", set()),
    ],
)
def test_the_words_and_their_upstream_meanings(line: str, flagged: set[str]):
    assert {hit.split(": ")[1] for hit in hits_in("coldstart/x.py", line)} == flagged
