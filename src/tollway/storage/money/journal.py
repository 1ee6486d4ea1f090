"""The settlement journal (SPEC §9.4 "Nothing delivered is ever free"): a write-ahead record of every settlement and
stream checkpoint, and the settlements the database did not take, under ``TOLLWAY_DATA_DIR/journal/``.

One journal per instance: ``<instance id>.journal`` (JSON lines) and ``<instance id>.lock``, on which the owner holds
an exclusive ``flock`` for its whole life. The kernel drops that lock when the process ends however it ends (kill -9
included), so a lock another instance can take is the lock of an owner that is gone: that instance adopts the
journal (copies the latest record of each hold into its own journal, fsynced, then deletes the orphan's files) and
commits them. A record applies at most once per hold (a settlement's usage-log row has the hold's id), so replaying
records that did commit, or the same journal twice, changes nothing.

Two kinds of line, both carrying the hold id and the request id:

- a settlement, ``{"hold_id", "request_id", "charge_nanos", "record"}`` (the ``Settlement`` command);
- a stream's provisional record, ``{"hold_id", "request_id", "checkpoint"}``: what the stream had delivered. Replayed,
  it settles the hold as the sweeper would from that checkpoint (``Recover``). A later settlement of the same hold
  supersedes it.

Either may carry ``"owed": true``: written again, and fsynced, because its commit failed (or it was adopted).

Write-ahead (``write_ahead``): the money writer writes each settlement and checkpoint with one plain ``os.write``
(no fsync) as it is submitted, before the answer's last bytes (or a stream's next bytes) reach the client. The page
cache keeps it through a ``kill -9`` of the process, not through a power cut. It is live until its settlement
commits; the file is emptied (or rewritten with the live records only) once it passes ``COMPACT_BYTES``, so it stays
small. Durable (``append``): a settlement that failed to commit is written again marked ``"owed": true`` and fsynced,
and retried until it commits (``entries``); while any is owed the file is not rewritten, and once none is, it is
compacted at once, so the owed lines in the files are what is still to commit (``read_owed``).

A line without its newline, or that does not parse, is the torn end of a write interrupted by a crash: it is
skipped (and logged); the record it would have held was never acknowledged. Compaction runs on the event loop
(the writer's ``compact``), never while a journal operation runs in a thread; appends of both kinds go through one
``O_APPEND`` descriptor, so lines never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

import orjson

from tollway.domain.holds import Checkpoint, Journaled, Recover, Settlement
from tollway.domain.usage import CallStatus, UsageRecord

log = logging.getLogger("tollway.money.journal")

JOURNAL_SUFFIX = ".journal"
LOCK_SUFFIX = ".lock"
# Past this size the file is emptied, or rewritten with the records still live: a few dozen records to replay
# after a crash, one truncation per hundred or so answers.
COMPACT_BYTES = 64 * 1024
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def encode(entry: Journaled | Checkpoint, owed: bool = False) -> bytes:
    """One line; orjson writes the usage record's dataclass as an object of its fields. ``owed`` marks a record made
    durable because its commit failed (or adopted from an instance that is gone): it is retried until it commits."""
    line: dict[str, Any]
    if isinstance(entry, Settlement):
        line = {
            "hold_id": entry.hold_id,
            "request_id": entry.record.request_id,
            "charge_nanos": entry.charge_nanos,
            "record": entry.record,
        }
    else:
        line = {"hold_id": entry.hold_id, "request_id": entry.request_id, "checkpoint": entry.progress}
    if owed:
        line["owed"] = True
    return orjson.dumps(line) + b"\n"


def decode(line: bytes) -> Journaled:
    return _record(orjson.loads(line))


def _record(entry: dict[str, Any]) -> Journaled:
    if "checkpoint" in entry:
        progress = entry["checkpoint"]
        if not isinstance(progress, dict):
            raise TypeError("a checkpoint is an object")
        return Recover(str(entry["hold_id"]), str(entry["request_id"]), progress)
    fields = dict(entry["record"])
    fields["status"] = CallStatus(fields["status"])
    return Settlement(str(entry["hold_id"]), UsageRecord(**fields), int(entry["charge_nanos"]))


def latest(records: list[Journaled]) -> list[Journaled]:
    """What replay applies: the latest record of each hold, in the order the holds first appear; a settlement is
    never superseded by a provisional record."""
    chosen: dict[str, Journaled] = {}
    for record in records:
        if isinstance(record, Recover) and isinstance(chosen.get(record.hold_id), Settlement):
            continue
        chosen[record.hold_id] = record
    return list(chosen.values())


def supersedes(new: Journaled, old: Journaled) -> bool:
    """Between records of one hold from different journals (adopted together, say): a settlement over a provisional
    record, and the provisional record that saw more of the stream over another."""
    if isinstance(old, Settlement):
        return False
    if isinstance(new, Settlement):
        return True
    return int(new.progress.get("delivered_bytes", 0)) > int(old.progress.get("delivered_bytes", 0))


def read_records(path: Path, owed_only: bool = False) -> list[Journaled]:
    """Every complete line of a journal file (only those marked owed, with ``owed_only``), in order; a torn or
    unreadable line is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    records: list[Journaled] = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        torn = number == len(lines)  # the last piece has no newline: its write never finished
        try:
            if torn:
                raise ValueError("no newline")
            entry = orjson.loads(line)
            if not owed_only or entry.get("owed") is True:
                records.append(_record(entry))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("settlement journal %s: line %d is torn or unreadable; skipped", path.name, number)
    return records


def read_entries(path: Path) -> list[Journaled]:
    """What replaying the file would apply (``latest`` of its records)."""
    return latest(read_records(path))


def read_owed(path: Path) -> list[Journaled]:
    """The records of the file known to be owed (their commit failed, or they were adopted): what an instance still
    has to commit, as opposed to records written ahead of commits that may well have succeeded."""
    return latest(read_records(path, owed_only=True))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SettlementJournal:
    """This instance's journal. ``write_ahead``, ``settled`` and ``compact`` run on the event loop; ``append``,
    ``adopt_orphans`` and ``close`` touch the disk with fsyncs (the writer runs them in a thread, one at a time).

    The files are created on the first record, so an instance that never settles anything leaves nothing on disk.
    ``ahead`` is what was written ahead and has not committed yet (hold id -> its latest line); ``entries`` is what
    is owed: settlements that failed to commit, fsynced, by hold id in journal order.
    """

    def __init__(self, directory: Path, instance_id: str) -> None:
        self.directory = directory
        self.instance_id = instance_id
        self.path = directory / f"{instance_id}{JOURNAL_SUFFIX}"
        self._lock_path = directory / f"{instance_id}{LOCK_SUFFIX}"
        self._lock: IO[bytes] | None = None
        self._fd: int | None = None
        self._opening = threading.Lock()  # the loop and a journal thread may both open the file first
        self._dir_synced = False  # the file's directory entry is durable (fsynced since it was created or renamed)
        self.size = 0  # bytes in the file
        self.ahead: dict[str, bytes] = {}
        self._final: set[str] = set()  # holds in ``ahead`` whose record is their settlement
        self.entries: dict[str, Journaled] = {}
        self._write_failed = False

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

    def _file(self) -> int:
        fd = self._fd
        if fd is not None:
            return fd
        with self._opening:
            if self._fd is None:
                self._claim()
                self._fd = os.open(self.path, _FLAGS, 0o600)
                self.size = os.fstat(self._fd).st_size
                self._dir_synced = False
            return self._fd

    def write_ahead(self, command: Settlement | Checkpoint) -> None:
        """The record of a settlement or a stream checkpoint, with one ``os.write`` and no fsync: it survives the
        process being killed from now on. A failure to write is logged (once) and never reaches the caller; the
        command still goes to the database."""
        line = encode(command)
        try:
            os.write(self._file(), line)
        except OSError:
            if not self._write_failed:
                self._write_failed = True
                log.error("cannot write ahead to the settlement journal in %s", self.directory, exc_info=True)
            return
        self._write_failed = False
        self.size += len(line)
        if isinstance(command, Settlement):
            self._final.add(command.hold_id)
        elif command.hold_id in self._final:
            return  # settled ahead already: a provisional record changes nothing (``latest`` ignores it too)
        self.ahead[command.hold_id] = line

    def settled(self, hold_id: str) -> None:
        """The hold's settlement (or release) committed: its records need no replay any more."""
        if self.ahead.pop(hold_id, None) is not None:
            self._final.discard(hold_id)

    def append(self, records: list[Journaled]) -> None:
        """Write the records marked owed and fsync before returning; they are owed until ``remove``. A hold owed
        already is not written again, unless the new record supersedes the one owed."""
        fresh = [r for r in records if r.hold_id not in self.entries or supersedes(r, self.entries[r.hold_id])]
        if not fresh:
            return
        fd = self._file()
        lines = b"".join(encode(r, owed=True) for r in fresh)
        os.write(fd, lines)
        self.size += len(lines)
        os.fsync(fd)
        if not self._dir_synced:
            _fsync_dir(self.directory)
            self._dir_synced = True
        for record in fresh:
            self.entries.pop(record.hold_id, None)  # a superseded record: the new one takes its place in line
            self.entries[record.hold_id] = record
            self.settled(record.hold_id)

    def remove(self, hold_ids: list[str]) -> None:
        """Forget owed records that committed; the file drops them at its next compaction."""
        for hold_id in hold_ids:
            self.entries.pop(hold_id, None)

    def compact(self, force: bool = False) -> None:
        """Past ``COMPACT_BYTES``: empty the file when nothing in it is live, else rewrite it with the live records
        when they are at most half of it (a temporary file renamed over it; no fsync: those records were only ever
        written ahead). ``force`` (after owed records committed, or when idle) does either whatever the sizes.
        With records owed the file is left alone (they were fsynced in it)."""
        fd = self._fd
        if fd is None or self.size == 0 or (self.size < COMPACT_BYTES and not force) or self.entries:
            return
        if not self.ahead:
            os.ftruncate(fd, 0)
            self.size = 0
            return
        live = b"".join(self.ahead.values())
        if not force and 2 * len(live) > self.size:
            return  # rewriting would not win enough: wait until the file has grown further
        temporary = self.directory / f".{self.instance_id}{JOURNAL_SUFFIX}.new"
        new = os.open(temporary, _FLAGS | os.O_TRUNC, 0o600)
        try:
            os.write(new, live)
            os.replace(temporary, self.path)
        except BaseException:
            os.close(new)
            raise
        self._fd = new
        self.size = len(live)
        self._dir_synced = False
        os.close(fd)

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
            records = read_entries(orphan)
            for record in records:
                kind = "settlement" if isinstance(record, Settlement) else "stream checkpoint"
                log.warning(
                    "adopting the journaled %s of hold %s from instance %s, which is gone",
                    kind,
                    record.hold_id,
                    owner,
                    extra={"request_id": _request_id(record)},
                )
            self.append(records)  # fsynced into our journal before the orphan's files go
            with contextlib.suppress(FileNotFoundError):
                orphan.unlink()
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            _fsync_dir(self.directory)
        return True

    def close(self) -> None:
        """Release the lock. With nothing owed nor in flight the files are deleted; otherwise they stay on disk,
        unlocked, for the next instance to adopt."""
        clean = not self.entries and not self.ahead
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if clean:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        if self._lock is not None:
            if clean:
                with contextlib.suppress(FileNotFoundError):
                    self._lock_path.unlink()
            self._lock.close()
            self._lock = None


def _request_id(record: Journaled) -> str:
    return record.record.request_id if isinstance(record, Settlement) else record.request_id
