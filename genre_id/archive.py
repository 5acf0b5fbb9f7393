"""A hardened reader of float arrays in an ``.npz`` archive (a zip of ``.npy`` members), without pickle.

The archive may come from anyone, so nothing in it is trusted before it is
checked: the zip's central directory is bounded before it is parsed, the
sizes the members declare before any is decompressed, and each array's dtype
and shape (from its ``.npy`` header) before its data is read.  Only the
members asked for are read, each exactly as many bytes as its header implies
(the CRC is verified).  Every problem is one :class:`~genre_id.errors.ModelError` line.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import numpy as np

from .errors import ModelError
from .files import open_regular
from .textsafe import one_line

__all__ = ["ArchiveLimits", "read_float_arrays"]

_MAX_ZIP_MEMBERS = 1024
_MAX_ZIP_DIRECTORY_BYTES = 1 << 20
_MAX_NPY_HEADER_BYTES = 10_000


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may make the reader do, checked before it is done."""

    max_bytes: int  #: size of the archive file
    max_unpacked_bytes: int  #: what all its members together declare they unpack to
    max_values: int  #: values of all the arrays read, together


def read_float_arrays(path: Path, keys: Sequence[str], *, limits: ArchiveLimits, missing: str,
                      describe: Callable[[str], str] = lambda key: f"array '{key}'", what: str = "weights",
                      check_shapes: Callable[[Mapping[str, tuple[int, ...]]], None] | None = None,
                      ) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (members ``KEY.npy``) of the archive ``path``, as float32.

    ``missing`` is the message when the file does not exist; ``describe(key)``
    names an array in messages, ``what`` the file (``"corrupt weights file"``).
    ``check_shapes`` sees every array's shape, read from the headers, before
    any data is read, and raises :class:`ModelError` to refuse them.
    """
    with open_regular(path, max_bytes=limits.max_bytes, missing=missing, error=ModelError) as fh:
        try:
            _check_zip_directory(fh, path, what)
            with zipfile.ZipFile(fh) as archive:
                members = {info.filename: info for info in archive.infolist()}
                if sum(info.file_size for info in members.values()) > limits.max_unpacked_bytes:
                    raise ModelError(f"{path}: the {what} archive unpacks to more than "
                                     f"{limits.max_unpacked_bytes} bytes")
                headers = _read_headers(archive, members, keys, limits=limits, describe=describe, what=what)
                if check_shapes is not None:
                    check_shapes({k: h[2] for k, h in headers.items()})
                return {key: _read_npy_data(archive, *header) for key, header in headers.items()}
        except ModelError:
            raise
        except Exception as exc:  # zipfile, zlib, ValueError of a bad header, ...
            raise ModelError(f"{path}: corrupt {what} file ({exc.__class__.__name__}: {one_line(exc)[:200]})") from None


def _read_headers(archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo], keys: Sequence[str], *,
                  limits: ArchiveLimits, describe: Callable[[str], str], what: str,
                  ) -> dict[str, tuple[zipfile.ZipInfo, int, tuple[int, ...], bool, np.dtype]]:
    """Each array's ``(member, data offset, shape, fortran order, dtype)``, checked, from its ``.npy`` header."""
    headers = {}
    total = 0
    for key in keys:
        info = members.get(f"{key}.npy")
        if info is None:
            raise ModelError(f"{describe(key)} is missing")
        with archive.open(info) as member:
            shape, fortran, dtype = _read_npy_header(member)
            offset = member.tell()
        if dtype.kind != "f" or dtype.hasobject or dtype.itemsize > 8:
            raise ModelError(f"{describe(key)} is not floating point ({dtype})")
        if len(shape) > 2 or min(shape, default=1) < 1:
            raise ModelError(f"{describe(key)} has an invalid shape {shape}")
        total += math.prod(shape)
        if total > limits.max_values:
            raise ModelError(f"the {what} hold more than {limits.max_values} values")
        if info.file_size != offset + math.prod(shape) * dtype.itemsize:
            raise ModelError(f"{describe(key)} does not match its declared size")
        headers[key] = (info, offset, shape, fortran, dtype)
    return headers


def _check_zip_directory(fh: BinaryIO, path: Path, what: str) -> None:
    """Refuse an archive whose central directory is too large to parse (many members), before parsing it."""
    size = fh.seek(0, os.SEEK_END)
    tail_size = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise ModelError(f"{path}: corrupt {what} file (not a zip archive)")
    n_members, directory_bytes = struct.unpack("<10xHI6x", tail[at:at + 22])
    if n_members > _MAX_ZIP_MEMBERS or directory_bytes > _MAX_ZIP_DIRECTORY_BYTES:
        raise ModelError(f"{path}: {what} archive has too many members (at most {_MAX_ZIP_MEMBERS})")
    fh.seek(0)


def _read_npy_header(fh: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of an ``.npy`` stream, reading only its header."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh, max_header_size=_MAX_NPY_HEADER_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh, max_header_size=_MAX_NPY_HEADER_BYTES)
    raise ValueError(f"npy format version {version} is not supported")


def _read_npy_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, offset: int, shape: tuple[int, ...],
                   fortran: bool, dtype: np.dtype) -> np.ndarray:
    nbytes = math.prod(shape) * dtype.itemsize
    with archive.open(info) as member:
        member.read(offset)
        data = member.read(nbytes)
        if len(data) != nbytes or member.read(1):  # the last read checks the CRC
            raise ValueError(f"member {info.filename} is truncated or too long")
    values = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return values.astype(np.float32)
