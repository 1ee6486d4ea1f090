"""The durable settlement journal (SPEC §9.4 "Nothing delivered is ever free"): settlements the database did not take,
kept in a file under ``TOLLWAY_DATA_DIR/journal/`` until they commit.

One journal per instance: ``<instance id>.journal`` (JSON lines) and ``<instance id>.lock``, on which the owner holds
an exclusive ``flock`` for its whole life. The kernel drops that lock when the process ends however it ends (kill -9
included), so a lock another instance can take is the lock of an owner that is gone: that instance adopts the
journal (copies its entries into its own journal, fsynced, then deletes the orphan's files). A crash between the
copy and the delete leaves an entry in two journals; replaying it twice is harmless, because the money writer's
batch applies a settlement at most once per hold (the settlement's usage-log row has the hold's id).

Format: one JSON object per line, ``{"hold_id", "request_id", "charge_nanos", "record"}`` (the ``Settlement``
command). Appends are written and fsynced before ``append`` returns. A line without its newline, or that does not
parse, is the torn end of a write interrupted by a crash: it is skipped (and logged); the settlement it would have
held was never acknowledged as journaled, so nothing else relied on it. Removing committed entries rewrites the
file atomically (a temporary file, fsync, rename, fsync of the directory); an empty journal is deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

import orjson

from tollway.domain.holds import Settlement
from tollway.domain.usage import CallStatus, UsageRecord

log = logging.getLogger("tollway.money.journal")

JOURNAL_SUFFIX = ".journal"
LOCK_SUFFIX = ".lock"


def encode(settlement: Settlement) -> bytes:
    record = dataclasses.asdict(settlement.record)
    entry = {
        "hold_id": settlement.hold_id,
        "request_id": settlement.record.request_id,
        "charge_nanos": settlement.charge_nanos,
        "record": record,
    }
    return orjson.dumps(entry) + b"\n"


def decode(line: bytes) -> Settlement:
    entry: dict[str, Any] = orjson.loads(line)
    fields = dict(entry["record"])
    fields["status"] = CallStatus(fields["status"])
    return Settlement(str(entry["hold_id"]), UsageRecord(**fields), int(entry["charge_nanos"]))


def read_entries(path: Path) -> list[Settlement]:
    """Every complete entry of a journal file, in order; a torn or unreadable line is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries: list[Settlement] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        torn = number == len(lines)  # the last piece has no newline: its write never finished
        try:
            if torn:
                raise ValueError("no newline")
            entries.append(decode(line))
        except (ValueError, KeyError, TypeError):
            log.warning("settlement journal %s: line %d is torn or unreadable; skipped", path.name, number)
    return entries


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SettlementJournal:
    """This instance's journal. Synchronous: each call touches the disk (the writer runs them off the event loop).

    The files are created on the first append, so an instance whose settlements always commit leaves nothing on
    disk; ``entries`` is what is still owed, by hold id, in journal order.
    """

    def __init__(self, directory: Path, instance_id: str) -> None:
        self.directory = directory
        self.instance_id = instance_id
        self.path = directory / f"{instance_id}{JOURNAL_SUFFIX}"
        self._lock_path = directory / f"{instance_id}{LOCK_SUFFIX}"
        self._lock: IO[bytes] | None = None
        self._file: IO[bytes] | None = None
        self.entries: dict[str, Settlement] = {}

    def __contains__(self, hold_id: str) -> bool:
        return hold_id in self.entries

    def _claim(self) -> None:
        """Create and lock this instance's lock file. Created under a temporary name and renamed once locked, so no
        other instance ever sees it unlocked and takes it for an orphan."""
        if self._lock is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{self.instance_id}{LOCK_SUFFIX}.new"
        lock = temporary.open("wb")
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(orjson.dumps({"instance_id": self.instance_id, "pid": os.getpid()}) + b"\n")
        lock.flush()
        os.replace(temporary, self._lock_path)
        self._lock = lock

    def append(self, settlements: list[Settlement]) -> None:
        """Write the entries and fsync before returning; entries already journaled are not written again."""
        fresh = [s for s in settlements if s.hold_id not in self.entries]
        if not fresh:
            return
        self._claim()
        if self._file is None:
            self._file = self.path.open("ab")
            _fsync_dir(self.directory)
        self._file.write(b"".join(encode(s) for s in fresh))
        self._file.flush()
        os.fsync(self._file.fileno())
        for settlement in fresh:
            self.entries[settlement.hold_id] = settlement

    def remove(self, hold_ids: list[str]) -> None:
        """Forget committed entries: the journal is rewritten atomically without them (deleted when empty)."""
        gone = [i for i in hold_ids if i in self.entries]
        if not gone:
            return
        for hold_id in gone:
            del self.entries[hold_id]
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            _fsync_dir(self.directory)
            return
        self._claim()
        temporary = self.directory / f".{self.instance_id}{JOURNAL_SUFFIX}.new"
        with temporary.open("wb") as out:
            out.write(b"".join(encode(s) for s in self.entries.values()))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.directory)

    def adopt_orphans(self) -> list[str]:
        """Take over the journals whose owner is gone (their lock is free); returns the instance ids adopted."""
        if not self.directory.is_dir():
            return []
        adopted: list[str] = []
        for lock_path in sorted(self.directory.glob(f"*{LOCK_SUFFIX}")):
            owner = lock_path.name.removesuffix(LOCK_SUFFIX)
            if owner == self.instance_id or owner.startswith("."):
                continue
            if self._adopt(owner, lock_path):
                adopted.append(owner)
        return adopted

    def _adopt(self, owner: str, lock_path: Path) -> bool:
        try:
            lock = lock_path.open("rb")
        except FileNotFoundError:
            return False  # adopted by another instance meanwhile
        with lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its owner is alive
            orphan = self.directory / f"{owner}{JOURNAL_SUFFIX}"
            entries = read_entries(orphan)
            for settlement in entries:
                log.warning(
                    "adopting the journaled settlement of hold %s from instance %s, which is gone",
                    settlement.hold_id,
                    owner,
                    extra={"request_id": settlement.record.request_id},
                )
            self.append(entries)  # fsynced into our journal before the orphan's files go
            with contextlib.suppress(FileNotFoundError):
                orphan.unlink()
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            _fsync_dir(self.directory)
        return True

    def close(self) -> None:
        """Release the lock; entries still owed stay on disk for the next instance to adopt."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            if not self.entries:
                with contextlib.suppress(FileNotFoundError):
                    self._lock_path.unlink()
            self._lock.close()
            self._lock = None
