"""The media walk's journal: what the bulk chmod changed, to put it back byte for byte.

A records file (``txn/<id>/tree<N>.bin``) is a series of groups, one per
directory (or per chunk of a large one): a :data:`HEADER` then its records,
each written before any of that group's chmods. Two formats are read:

* The current one starts with :data:`MAGIC`; a record (:data:`RECORD`, 16
  bytes) is the inode, the mode before and after, and a :func:`fingerprint`
  of the entry: a different file that later reuses the inode number (a
  video deleted, another written) does not match it, so undo leaves its mode
  alone.
* Journals of the release before it have no magic and 12-byte records
  (:data:`RECORD_V1`: inode, before, after); their undo matches by inode,
  type and the mode the fix gave, as that release did.

A group cut short (the process killed while writing it) keeps the records
that made it to the file; none of its chmods had started.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from bisect import bisect_left

MAGIC = b"DHtree2\n"
"""The first 8 bytes of a records file in the current format (a v1 file starts with a
device number, which is never this)."""
HEADER = struct.Struct("<QQI")  # dev, directory inode (0: the root itself), entries
RECORD = struct.Struct("<QHHI")  # inode, mode before, mode after, fingerprint
RECORD_V1 = struct.Struct("<QHH")  # inode, mode before, mode after

_FP = struct.Struct("<qqII")
_BIG_GROUP = 16384  # records of one directory above which they stay packed


def fingerprint(st: os.stat_result) -> int:
    """32 bits of what a chmod leaves alone and a new file would not share: mtime, size, owner, group.

    Not the ctime: the chmod itself changes it. A different file matches only
    by having the same owner, size and nanosecond mtime -- that owner could
    set its mode anyway -- or by a 1 in 2**32 accident. An entry touched
    since (written, renamed into, chowned) no longer matches either: undo
    leaves it with the narrower mode the fix gave it.
    """
    return zlib.crc32(_FP.pack(st.st_mtime_ns, st.st_size, st.st_uid, st.st_gid))


class Records:
    """A records file's bytes, its format and its index: (dev, dir inode) -> [(offset, count)]."""

    __slots__ = ("data", "record", "index")

    def __init__(self, data: bytes) -> None:
        self.data = data
        start = 0
        self.record = RECORD_V1
        if data.startswith(MAGIC):
            self.record, start = RECORD, len(MAGIC)
        self.index = _parse_index(data, start, self.record.size)

    @property
    def v1(self) -> bool:
        return self.record is RECORD_V1

    def count(self) -> int:
        """How many changes the file records."""
        return sum(n for spans in self.index.values() for _, n in spans)

    def group(self, key: tuple[int, int]) -> dict[int, tuple[int, int, int | None]] | SortedRecords | None:  # noqa: E501
        """One directory's records: inode -> (before, after, fingerprint or None for v1).

        A dict, or for a huge directory a :class:`SortedRecords` (16 bytes a
        record rather than a dict's ~200); None when there are none.
        """
        spans = self.index.get(key)
        if not spans:
            return None
        view = memoryview(self.data)
        size = self.record.size
        if sum(count for _, count in spans) > _BIG_GROUP:
            return SortedRecords(view, spans, self.record)
        out: dict[int, tuple[int, int, int | None]] = {}
        if self.v1:
            for offset, count in spans:
                for ino, before, after in RECORD_V1.iter_unpack(view[offset:offset + count * size]):
                    out[ino] = (before, after, None)
        else:
            for offset, count in spans:
                for ino, before, after, fp in RECORD.iter_unpack(view[offset:offset + count * size]):
                    out[ino] = (before, after, fp)
        return out


def _parse_index(data: bytes, offset: int, rsize: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    index: dict[tuple[int, int], list[tuple[int, int]]] = {}
    unpack, hsize = HEADER.unpack_from, HEADER.size
    end = len(data)
    while offset + hsize <= end:
        dev, dir_ino, count = unpack(data, offset)
        offset += hsize
        count = min(count, (end - offset) // rsize)
        spans = index.get((dev, dir_ino))
        if spans is None:
            index[(dev, dir_ino)] = [(offset, count)]
        else:
            spans.append((offset, count))
        offset += count * rsize
    return index


def load(path: str) -> Records:
    """The records file at ``path`` (none when it does not exist: nothing was changed)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        data = b""
    return Records(data)


class SortedRecords:
    """The records of a huge directory as sorted arrays: the part of a dict the restore walk uses."""

    __slots__ = ("inos", "modes", "fps", "v1")

    def __init__(self, view: memoryview, spans: list[tuple[int, int]], record: struct.Struct) -> None:
        size = record.size
        self.v1 = record is RECORD_V1
        keyed = []
        for offset, count in spans:
            for rec in record.iter_unpack(view[offset:offset + count * size]):
                keyed.append((rec[0], (rec[1] << 16) | rec[2], 0 if self.v1 else rec[3]))
        keyed.sort()
        self.inos = array("Q", [k[0] for k in keyed])
        self.modes = array("I", [k[1] for k in keyed])
        self.fps = array("I", [k[2] for k in keyed])

    def get(self, ino: int,
            default: tuple[int, int, int | None] | None = None) -> tuple[int, int, int | None] | None:
        i = bisect_left(self.inos, ino)
        if i < len(self.inos) and self.inos[i] == ino:
            m = self.modes[i]
            return (m >> 16, m & 0xFFFF, None if self.v1 else self.fps[i])
        return default

    def __contains__(self, ino: int) -> bool:
        return self.get(ino) is not None

    def __getitem__(self, ino: int) -> tuple[int, int, int | None]:
        rec = self.get(ino)
        if rec is None:
            raise KeyError(ino)
        return rec

    def __len__(self) -> int:
        return len(self.inos)
