"""The settlement journal file (SPEC §9.4): the record format, replay order (the latest record of each hold), the
write-ahead record (one write, no fsync), append and fsync, compaction, a torn last line, adoption of the journal of
an instance that is gone (killed right after writing ahead), and never of one whose owner still holds its lock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tollway.domain.holds import Checkpoint, Journaled, Recover, Settlement
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.storage.money.journal import (
    COMPACT_BYTES,
    SettlementJournal,
    decode,
    encode,
    latest,
    read_entries,
    read_owed,
    read_records,
)


def _settlement(n: int) -> Settlement:
    record = UsageRecord(
        request_id=f"req_{n:032x}", platform_id="p1", end_user_id="u1", request_type="chat.completion",
        provider_id="prov", model="cent", provider_model="fake/echo", prompt_tokens=3, completion_tokens=n,
        cached_tokens=0, latency_ms=12, ttft_ms=4, cost_nanos=1_000 * n, charged_nanos=1_150 * n,
        status=CallStatus.SUCCESS, finish_reason="stop", error_code=None, token_count_method="reported",
        session_id=None, metadata={"k": "v"},
    )  # fmt: skip
    return Settlement(f"hold-{n}", record, 1_150 * n)


def test_an_entry_round_trips_exactly() -> None:
    settlement = _settlement(7)
    assert decode(encode(settlement).rstrip(b"\n")) == settlement


def test_append_is_on_disk_and_fsynced_before_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    journal = SettlementJournal(tmp_path / "journal", "inst-a")
    assert not (tmp_path / "journal").exists()  # nothing on disk until something is owed
    journal.append([_settlement(1), _settlement(2)])
    assert synced, "append must fsync"
    assert read_entries(journal.path) == [_settlement(1), _settlement(2)]
    journal.append([_settlement(2), _settlement(3)])  # an entry already journaled is not written twice
    assert read_entries(journal.path) == [_settlement(1), _settlement(2), _settlement(3)]
    journal.close()


def _checkpoint(n: int, delivered: int) -> Checkpoint:
    return Checkpoint(f"hold-{n}", {"model_id": "m1", "delivered_bytes": delivered}, f"req_{n:032x}")


def _recover(n: int, delivered: int) -> Recover:
    return Recover(f"hold-{n}", f"req_{n:032x}", {"model_id": "m1", "delivered_bytes": delivered})


def test_a_checkpoint_is_recorded_compactly_and_replays_as_a_recovery() -> None:
    line = encode(_checkpoint(3, 120))
    assert orjson.loads(line) == {
        "hold_id": "hold-3",
        "request_id": f"req_{3:032x}",
        "checkpoint": {"model_id": "m1", "delivered_bytes": 120},
    }
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line.rstrip(b"\n")) == _recover(3, 120)
    assert encode(_recover(3, 120)) == line  # an adopted record is written again in the same form
    settlement = orjson.loads(encode(_settlement(3)))
    assert set(settlement) == {"hold_id", "request_id", "charge_nanos", "record"}  # the format of earlier releases
    assert settlement["request_id"] == f"req_{3:032x}" and settlement["record"]["status"] == "success"


def test_replay_applies_the_latest_record_of_each_hold_and_never_a_checkpoint_over_a_settlement() -> None:
    records: list[Journaled] = [
        _recover(1, 10),
        _recover(2, 5),
        _recover(1, 900),  # the 5 s checkpoint supersedes the first one
        _settlement(2),  # the stream ended: its settlement supersedes its checkpoint
        _recover(2, 7),  # (never written after a settlement; if it were, it would change nothing)
        _settlement(3),
    ]
    assert latest(records) == [_recover(1, 900), _settlement(2), _settlement(3)]
    assert latest([]) == []


def test_across_journals_a_settlement_supersedes_a_provisional_record(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "heir")  # adopting the records of one hold from two journals
    journal.append([_recover(1, 10)])
    journal.append([_recover(1, 5)])  # saw less of the stream: ignored
    journal.append([_recover(1, 20)])  # saw more: replaces it
    journal.append([_settlement(1)])
    journal.append([_recover(1, 99)])  # never over a settlement
    assert journal.entries == {"hold-1": _settlement(1)}
    assert read_records(journal.path) == [_recover(1, 10), _recover(1, 20), _settlement(1)]
    assert read_entries(journal.path) == [_settlement(1)]
    journal.remove(["hold-1"])
    journal.close()


def test_write_ahead_is_one_write_without_fsync_and_readable_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = SettlementJournal(tmp_path, "inst-a")
    assert not journal.path.exists()  # nothing on disk before the first record
    journal.write_ahead(_checkpoint(1, 40))  # opens the file (and takes the lock) once
    writes: list[int] = []
    real_write = os.write

    def spy_write(fd: int, data: Any) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    def no_fsync(fd: int) -> None:
        raise AssertionError("write-ahead must not fsync")

    monkeypatch.setattr(os, "write", spy_write)
    monkeypatch.setattr(os, "fsync", no_fsync)
    journal.write_ahead(_settlement(1))
    journal.write_ahead(_checkpoint(2, 8))
    assert writes == [len(encode(_settlement(1))), len(encode(_checkpoint(2, 8)))]
    assert read_records(journal.path) == [_recover(1, 40), _settlement(1), _recover(2, 8)]
    assert read_entries(journal.path) == [_settlement(1), _recover(2, 8)]
    assert list(journal.ahead) == ["hold-1", "hold-2"] and journal.size == journal.path.stat().st_size
    monkeypatch.undo()
    journal.settled("hold-1")
    journal.settled("hold-2")
    journal.close()
    assert list(tmp_path.iterdir()) == []  # a clean exit with nothing in flight leaves nothing behind


def test_a_settlement_whose_commit_failed_is_marked_owed_and_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    journal = SettlementJournal(tmp_path, "inst-a")
    journal.write_ahead(_checkpoint(1, 40))
    journal.write_ahead(_settlement(1))
    journal.write_ahead(_settlement(2))
    assert read_owed(journal.path) == [] and not synced  # written ahead: nothing is known to be owed
    journal.append([_settlement(1)])  # its commit failed
    assert synced and list(journal.entries) == ["hold-1"] and list(journal.ahead) == ["hold-2"]
    assert read_owed(journal.path) == [_settlement(1)]
    assert orjson.loads(journal.path.read_bytes().splitlines()[-1])["owed"] is True
    assert read_entries(journal.path) == [_settlement(1), _settlement(2)]  # replay: each hold once
    journal.append([_settlement(1)])  # already owed: not written again
    assert len(read_records(journal.path)) == 4
    journal.close()
    assert read_owed(tmp_path / "inst-a.journal") == [_settlement(1)]  # owed: the files stay for the next instance


def test_compaction_empties_the_file_or_keeps_only_what_is_live(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "inst-a")
    n = 0
    while journal.size < COMPACT_BYTES:
        n += 1
        journal.write_ahead(_checkpoint(n, n))
        journal.write_ahead(_settlement(n))
    journal.compact()  # every record is live: nothing may go
    assert len(read_entries(journal.path)) == n
    for i in range(1, n):
        journal.settled(f"hold-{i}")
    inode = journal.path.stat().st_ino
    journal.compact()
    assert read_records(journal.path) == [_settlement(n)]  # only the one still in flight, its latest record
    assert journal.path.stat().st_ino != inode  # a new file renamed over the old one, never edited in place
    assert not list(tmp_path.glob(".*.new")) and journal.size == journal.path.stat().st_size
    journal.write_ahead(_settlement(n + 1))  # records go on after a compaction
    assert read_records(journal.path) == [_settlement(n), _settlement(n + 1)]
    journal.settled(f"hold-{n}")
    journal.settled(f"hold-{n + 1}")
    journal.compact()  # small, and forced only on demand
    assert journal.path.stat().st_size > 0
    journal.compact(force=True)  # nothing live: emptied in place
    assert journal.path.stat().st_size == 0 and journal.size == 0
    journal.write_ahead(_settlement(n + 2))
    assert read_records(journal.path) == [_settlement(n + 2)]
    journal.close()


def test_compaction_leaves_a_journal_with_records_owed_alone(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "inst-a")
    journal.append([_settlement(1)])  # owed, fsynced
    n = 1
    while journal.size < COMPACT_BYTES:
        n += 1
        journal.write_ahead(_settlement(n))
        journal.settled(f"hold-{n}")
    journal.compact(force=True)
    assert len(read_records(journal.path)) == n  # the owed record was fsynced in this file: it is not rewritten
    journal.remove(["hold-1"])
    journal.compact(force=True)
    assert read_records(journal.path) == []
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_a_torn_last_line_is_skipped_and_the_rest_survives(tmp_path: Path) -> None:
    path = tmp_path / "inst-x.journal"
    whole = encode(_settlement(1)) + encode(_settlement(2))
    path.write_bytes(whole + encode(_settlement(3))[:40])  # the crash cut the third write short
    assert read_entries(path) == [_settlement(1), _settlement(2)]
    path.write_bytes(whole + b"{not json}\n" + encode(_settlement(4)))
    assert read_entries(path) == [_settlement(1), _settlement(2), _settlement(4)]
    assert read_entries(tmp_path / "missing.journal") == []


def test_a_journal_whose_owner_is_gone_is_adopted_once(tmp_path: Path) -> None:
    # The owner is a real process killed with SIGKILL while holding its lock: the kernel frees the lock.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.unit.test_settlement_journal import _checkpoint, _settlement\n"
        "from tollway.storage.money.journal import SettlementJournal\n"
        "j = SettlementJournal(Path(sys.argv[1]), 'dead')\n"
        "j.append([_settlement(1)])\n"  # owed: fsynced
        "j.write_ahead(_checkpoint(2, 30))\n"  # written ahead only: the page cache keeps them through kill -9
        "j.write_ahead(_settlement(2))\n"
        "j.write_ahead(_checkpoint(3, 50))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, cwd=os.getcwd())
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == b"ready"
        live = SettlementJournal(tmp_path, "other")
        assert live.adopt_orphans() == []  # the owner holds its lock: alive, its journal is left alone
        owner.kill()
        owner.wait()
        assert live.adopt_orphans() == ["dead"]
        assert list(live.entries.values()) == [_settlement(1), _settlement(2), _recover(3, 50)]
        assert read_owed(live.path) == [_settlement(1), _settlement(2), _recover(3, 50)]
        assert not (tmp_path / "dead.journal").exists() and not (tmp_path / "dead.lock").exists()
        assert SettlementJournal(tmp_path, "third").adopt_orphans() == []  # "other" holds its lock now
        live.close()
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_a_locked_journal_is_never_taken(tmp_path: Path) -> None:
    journal = SettlementJournal(tmp_path, "mine")
    journal.append([_settlement(5)])
    with (tmp_path / "mine.lock").open("rb") as lock, pytest.raises(BlockingIOError):
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    journal.close()  # still owed: the files stay, unlocked, for the next instance
    assert read_entries(tmp_path / "mine.journal") == [_settlement(5)]
    heir = SettlementJournal(tmp_path, "heir")
    assert heir.adopt_orphans() == ["mine"]
    assert list(heir.entries) == ["hold-5"]
    heir.close()
