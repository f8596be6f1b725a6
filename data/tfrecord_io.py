"""TFRecord framing with CRC checks, without TensorFlow.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)

with `masked_crc(x) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2**32)` over CRC-32C (Castagnoli).
The `tfrecord` package reads the CRC bytes but never compares them, so a flipped bit goes unnoticed;
this module checks both CRCs and names the file and byte offset of the first bad record.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import crc32c

from preprocessing.fileio import atomic_path

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_FOOTER = struct.Struct("<I")  # masked crc of the data


class TFRecordError(ValueError):
    """A TFRecord file is truncated or fails a CRC check. The message names the file and byte offset."""


def masked_crc32c(data: bytes | memoryview) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_records(
    path: str | os.PathLike, *, check_crc: bool = True, skip: Iterable[bool] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield `(byte_offset, data)` for every record of one file, checking both CRCs.

    `skip`, if given, is an iterator of booleans, one per record: a record whose flag is True is
    stepped over without reading or checking its data (its header CRC is still checked) and is not
    yielded. Used to split one file's records between several readers.
    """
    path = Path(path)
    skips = iter(skip) if skip is not None else None
    with open(path, "rb", buffering=1 << 20) as f:
        for offset, length in _headers(path, f, check_crc):
            if skips is not None and next(skips):
                f.seek(length + _FOOTER.size, os.SEEK_CUR)
                continue
            data = f.read(length)
            (data_crc,) = _FOOTER.unpack(f.read(_FOOTER.size))
            if check_crc and masked_crc32c(data) != data_crc:
                raise TFRecordError(f"{path}: corrupt record at byte {offset} (data CRC mismatch)")
            yield offset, data


def _headers(path: Path, f: BinaryIO, check_crc: bool) -> Iterator[tuple[int, int]]:
    """Read each record header at the file position; yield (offset, length). The caller must move
    the position past the data and footer before asking for the next one."""
    size = os.fstat(f.fileno()).st_size
    offset = 0
    while offset < size:
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise TFRecordError(f"{path}: truncated record header at byte {offset}")
        length, length_crc = _HEADER.unpack(header)
        if check_crc and masked_crc32c(header[:8]) != length_crc:
            raise TFRecordError(f"{path}: corrupt record at byte {offset} (length CRC mismatch)")
        end = offset + _HEADER.size + length + _FOOTER.size
        if end > size:
            raise TFRecordError(
                f"{path}: truncated record at byte {offset} (needs {end - offset} bytes, {size - offset} left)"
            )
        yield offset, length
        offset = end


def count_records(path: str | os.PathLike) -> int:
    """Number of records in a file (framing and header CRCs checked, data not read)."""
    path = Path(path)
    n = 0
    with open(path, "rb") as f:
        for _, length in _headers(path, f, True):
            f.seek(length + _FOOTER.size, os.SEEK_CUR)
            n += 1
    return n


def frame_record(data: bytes) -> bytes:
    """One record's bytes on disk."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write records to `path` atomically; returns how many were written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for data in records:
            f.write(frame_record(bytes(data)))
            n += 1
    return n
