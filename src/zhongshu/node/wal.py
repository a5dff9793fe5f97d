"""The consensus write-ahead log: every engine input of the current height, fsynced before use."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.consensus.messages import EngineInput

_LEN = struct.Struct(">I")


class WriteAheadLog:
    """Length-prefixed engine inputs of the current height, fsynced on every append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115
        # A torn tail (a crash mid-append) is cut off, so new records follow the last good one.
        _, good = self._scan()
        if good != self._file.tell():
            self._file.truncate(good)
            self._file.seek(good)

    def append(self, event: EngineInput) -> None:
        data = encode(event)
        self._file.write(_LEN.pack(len(data)) + data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def reset(self) -> None:
        self._file.truncate(0)
        self._file.seek(0)

    def read(self) -> list[EngineInput]:
        """Every complete record; a torn last record (crash mid-write) is dropped."""
        return self._scan()[0]

    def _scan(self) -> tuple[list[EngineInput], int]:
        raw = self.path.read_bytes()
        out: list[EngineInput] = []
        pos = 0
        while pos + 4 <= len(raw):
            (n,) = _LEN.unpack_from(raw, pos)
            if pos + 4 + n > len(raw):
                break
            try:
                out.append(decode(raw[pos + 4 : pos + 4 + n], EngineInput))  # type: ignore[arg-type]
            except DecodeError:
                break
            pos += 4 + n
        return out, pos

    def close(self) -> None:
        self._file.close()
