"""A durable, bounded, append-only spool of batches for while the database is unreachable.

Layout: ``<dir>/<sequence>.spool`` segment files, written in order and replayed in order. Each
record is one batch::

    magic b"DXS1" | payload length (u32) | CRC-32 of payload (u32) | unit count (u32) | payload

A record is ``fsync``'d before :meth:`Spool.append` returns, so the caller may acknowledge the
messages in it. A crash in the middle of a write leaves a torn record at the tail of the last
segment; :meth:`Spool.open` cuts it off (its messages were never acknowledged, so the broker
delivers them again). A segment is deleted once every record in it has been written to the
database. Replaying a record twice (a crash during replay) is harmless: writes are idempotent.

The spool is bounded by ``max_bytes``; :class:`SpoolFull` tells the caller to stop accepting.
Every disk error on the write path — creating a segment at rollover, writing, ``fsync`` — is a
:class:`SpoolWriteError` (a kind of :class:`SpoolFull`): the caller reacts as to a full spool
(stops acknowledging, the broker keeps its copy) and nothing half-written stays behind, so the
next append, once the disk has room again, continues a clean file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.units import SpoolFormatError, Unit, decode_units, encode_units

log = logging.getLogger(__name__)

MAGIC = b"DXS1"
_HEADER = struct.Struct(">4sIII")
SUFFIX = ".spool"


class SpoolFull(RuntimeError):
    """Appending would exceed the spool's bound (or the disk refused the write)."""


class SpoolWriteError(SpoolFull):
    """The disk refused a spool write (no space, I/O error): the batch is not in the spool."""


class SpoolLocked(RuntimeError):
    """Another process holds this spool (a second collector with the same id and DOXA_HOME)."""


@dataclass
class _Segment:
    path: Path
    size: int  # bytes of whole records
    units: int  # units in records not yet replayed
    sealed: bool = False  # a failed write could not be cut off: append to a new segment


class Spool:
    """Append batches durably; replay them in order through a writer callback."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 * 1024 * 1024):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._replay_offset = 0  # bytes of the first segment already replayed (this process)
        self._replayed_units = 0
        self._next_seq = 1
        self._lock_fd: int | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Units (messages and polls) waiting in the spool."""
        return sum(s.units for s in self._segments) - self._replayed_units

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def __bool__(self) -> bool:
        return self.depth > 0

    # -- opening -------------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, find existing segments, cut a torn tail record."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(
                f"spool {self.directory} is in use by another collector process "
                "(two collectors with the same id on one DOXA_HOME?)"
            ) from None
        self._lock_fd = fd
        paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        self._segments = []
        for path in paths:
            size, units = self._scan(path)
            if size == 0:
                path.unlink()
                continue
            self._segments.append(_Segment(path, size, units))
        if paths:
            self._next_seq = int(paths[-1].stem) + 1
        if self._segments:
            log.warning(
                "spool %s holds %d message(s) from an earlier run; they are written when the "
                "database answers",
                self.directory,
                self.depth,
            )

    def close(self) -> None:
        """Release the directory lock (the kernel also releases it if the process dies)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _scan(self, path: Path) -> tuple[int, int]:
        """(bytes of whole records, units) of one segment; truncates a torn tail.

        Records are appended in order, so a crash mid-write leaves a prefix of one record at the
        end: a short header or a short payload. Anything else wrong is corruption, which replay
        detects by checksum."""
        offset = units = 0
        with path.open("r+b") as fh:
            size = os.fstat(fh.fileno()).st_size
            while offset < size:
                header = fh.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                _magic, length, _crc, count = _HEADER.unpack(header)
                if offset + _HEADER.size + length > size:
                    break
                fh.seek(length, os.SEEK_CUR)
                offset += _HEADER.size + length
                units += count
            if offset != size:
                log.warning("spool %s: cutting a torn record at byte %d", path.name, offset)
                fh.truncate(offset)
                os.fsync(fh.fileno())
        return offset, units

    # -- appending -----------------------------------------------------------------------------

    def append(self, units: Sequence[Unit]) -> None:
        """Write one batch durably (fsync'd); raises :class:`SpoolFull` past the bound and
        :class:`SpoolWriteError` when the disk refuses (nothing of the batch is kept then)."""
        payload = encode_units(units)
        record = _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), len(units)) + payload
        if self.size_bytes + len(record) > self.max_bytes:
            raise SpoolFull(
                f"spool {self.directory} is full ({self.size_bytes} of {self.max_bytes} bytes)"
            )
        try:
            segment = self._segments[-1] if self._segments else None
            if segment is None or segment.sealed or segment.size >= self.segment_bytes:
                segment = self._new_segment()
            self._write_record(segment, record)
        except OSError as exc:
            raise SpoolWriteError(
                f"cannot write to spool {self.directory}: {exc.strerror or exc}"
            ) from exc
        segment.size += len(record)
        segment.units += len(units)

    def _write_record(self, segment: _Segment, record: bytes) -> None:
        """Append ``record`` and fsync; on failure cut the file back to its whole records."""
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view) :]  # (a full disk may take part of it first)
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, segment.size)  # no torn record before the next append
            except OSError:
                segment.sealed = True  # replay reads only its whole records; append elsewhere
            raise
        finally:
            os.close(fd)

    def _new_segment(self) -> _Segment:
        """Create the next segment file (its name made durable); only then is it used."""
        path = self.directory / f"{self._next_seq:012d}{SUFFIX}"
        self._next_seq += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        try:
            self._fsync_dir()
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        segment = _Segment(path, 0, 0)
        self._segments.append(segment)
        return segment

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- replaying -----------------------------------------------------------------------------

    def replay(
        self, write: Callable[[list[Unit]], object], should_stop: Callable[[], bool] = lambda: False
    ) -> int:
        """Pass each batch, oldest first, to ``write``; returns the units replayed.

        An exception from ``write`` stops the replay and propagates; that batch stays first in
        line. ``should_stop()`` is checked between batches (a graceful stop).
        """
        done = 0
        while self._segments:
            segment = self._segments[0]
            try:
                for end, units in self._records(segment.path, self._replay_offset, segment.size):
                    if should_stop():
                        return done
                    write(units)
                    self._replay_offset = end
                    self._replayed_units += len(units)
                    done += len(units)
            except _CorruptRecord as exc:
                # Not a torn tail (open() cut those): the disk damaged an acknowledged record.
                # Keep the file for inspection and go on rather than block every later batch.
                bad = segment.path.with_suffix(".corrupt")
                segment.path.rename(bad)
                log.error(
                    "spool segment %s is corrupt at byte %d; %d message(s) after that point are "
                    "not replayed; kept as %s",
                    segment.path.name,
                    exc.offset,
                    segment.units - self._replayed_units,
                    bad.name,
                )
            else:
                try:
                    segment.path.unlink()
                    self._fsync_dir()
                except OSError as exc:  # replayed again by the next run: writes are idempotent
                    log.warning("spool segment %s not removed: %s", segment.path.name, exc)
            self._segments.pop(0)
            self._replay_offset = 0
            self._replayed_units = 0
        return done

    def _records(self, path: Path, offset: int, limit: int) -> Iterator[tuple[int, list[Unit]]]:
        """(end offset, units) of each record from ``offset`` up to ``limit`` (the whole
        records); :class:`_CorruptRecord` on a bad checksum."""
        with path.open("rb") as fh:
            fh.seek(offset)
            while offset < limit:
                header = fh.read(_HEADER.size)
                if not header:
                    return
                if len(header) < _HEADER.size:
                    raise _CorruptRecord(offset)
                magic, length, crc, _count = _HEADER.unpack(header)
                payload = fh.read(length)
                if magic != MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                    raise _CorruptRecord(offset)
                try:
                    units = decode_units(payload)
                except SpoolFormatError as exc:
                    raise _CorruptRecord(offset) from exc
                offset = fh.tell()
                yield offset, units


class _CorruptRecord(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(f"corrupt spool record at byte {offset}")
        self.offset = offset
