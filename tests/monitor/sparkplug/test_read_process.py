"""The read process, a real child: batches read there as in the worker; a dead, stuck or closed one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from monitor.sparkplug import payload as spb
from monitor.sparkplug.data_read import ReadBatch, read_many
from monitor.sparkplug.read_process import ReadProcess

PAYLOADS = [spb.data_payload(1000 + i, i % 256, [(j, float(i * j)) for j in range(26)]) for i in range(300)]
PAYLOADS[7] = b"\xff\xff"  # undecodable: None there as in the worker


def _records(reads: ReadBatch | None) -> list[object]:
    assert reads is not None
    return [reads.record(i) for i in range(len(reads))]


def submitted(p: ReadProcess, payloads: list[bytes] = PAYLOADS) -> tuple[int, int]:
    """Submit once the process has said it is ready (until then submit() declines: the worker reads)."""
    deadline = time.monotonic() + 20
    while (ticket := p.submit(payloads)) is None:
        assert time.monotonic() < deadline, "the read process never got ready"
        time.sleep(0.05)
    return ticket


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def process() -> ReadProcess:
    p = ReadProcess(retry_s=0.0, timeout_s=10.0)
    yield p
    p.close()


def test_batches_are_read_in_order_as_the_worker_would_read_them(process: ReadProcess) -> None:
    first, second = submitted(process), submitted(process, PAYLOADS[:5])  # two in flight
    assert _records(process.result(first)) == _records(ReadBatch.decode(read_many(PAYLOADS)))
    assert len(_records(process.result(second))) == 5
    pid = process.pid
    assert pid is not None
    process.close()
    assert process.pid is None and _gone(pid)


def test_a_killed_process_means_reading_in_the_worker_then_a_new_one(process: ReadProcess) -> None:
    assert process.result(submitted(process)) is not None
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    ticket = process.submit(PAYLOADS)  # the write may still land in the pipe: the reply never comes
    assert ticket is None or process.result(ticket) is None
    assert process.failures == 1 and process.pid is None
    assert process.result(submitted(process)) is not None  # retry_s=0: a new process at once
    assert process.pid not in (None, first)


def test_a_reply_asked_out_of_order_or_of_an_earlier_process_is_none(process: ReadProcess) -> None:
    a, b = submitted(process), submitted(process)
    assert process.result(b) is None and process.failures == 1  # out of step: that process is dropped
    assert process.result(a) is None  # its tickets are void


@pytest.mark.parametrize("interpreter", ["/bin/false", "/nonexistent/python"])
def test_a_process_that_never_starts_means_reading_in_the_worker(
    interpreter: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One that exits at once having said nothing, and one that cannot even be started."""
    p = ReadProcess(retry_s=3600.0)
    monkeypatch.setattr("sys.executable", interpreter)
    try:
        deadline = time.monotonic() + 10
        while p.failures == 0 and time.monotonic() < deadline:
            assert p.submit(PAYLOADS) is None
            time.sleep(0.05)
        assert p.failures == 1 and p.pid is None
    finally:
        p.close()


def test_a_process_that_never_says_it_is_ready_is_given_up_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hangs = tmp_path / "python"
    hangs.write_text("#!/bin/sh\nexec sleep 60\n")
    hangs.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(hangs))
    p = ReadProcess(retry_s=3600.0, start_s=0.5)
    try:
        assert p.submit(PAYLOADS) is None and p.pid is not None
        pid = p.pid
        time.sleep(0.7)
        assert p.submit(PAYLOADS) is None and p.failures == 1 and p.pid is None
        assert _gone_soon(pid)
    finally:
        p.close()


def _gone_soon(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _gone(pid)


def test_a_stuck_process_times_out() -> None:
    p = ReadProcess(retry_s=3600.0, timeout_s=0.5)
    try:
        assert p.result(submitted(p, PAYLOADS[:2])) is not None and p.pid is not None
        os.kill(p.pid, signal.SIGSTOP)
        ticket = p.submit(PAYLOADS[:2])  # fits in the pipe: written, never answered
        assert ticket is not None
        started = time.monotonic()
        assert p.result(ticket) is None
        assert time.monotonic() - started < 5 and p.failures == 1
        assert p.submit(PAYLOADS) is None  # no new process before retry_s
    finally:
        p.close()
