"""The one reader and writer of torch files (``.pt``): checksummed, loaded safely on the CPU.

What :func:`dumps` returns is exactly what ``torch.save`` writes (a zip archive), except
that the archive's comment holds ``ecc-sha256:`` and the hex SHA-256 of every byte
before the digest. The file stays an ordinary torch file: ``torch.load`` and zip tools
read it, since a comment is part of the zip format. :func:`load` checks the digest
before it unpickles anything (with ``weights_only=True``), so a flipped byte anywhere
is an error; ``torch.load`` alone checks nothing, and a flipped byte in a tensor's
data loads silently as a different number.

A file without the comment (``torch.save`` output from elsewhere, or a run folder
written before checksums) is read unverified, and :func:`load` says so. Damage does
not turn a checksummed file into such a file: torch's zip end record closes its file
(an empty comment), ours is followed by the 75-byte comment, and a file whose end
record sits where ours does is verified. Damage to that record itself leaves a zip
that ``torch.load`` cannot open.

compress writes its checkpoints and ``model.pt`` through this module and reads every
torch file through :func:`load`; it lives here because energysim reads ``model.pt``
too and must not import compress.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path
from typing import Any

import torch

__all__ = ["TorchFileError", "dumps", "load"]

_MARKER = b"ecc-sha256:"
_DIGEST_HEX = 64
_COMMENT = len(_MARKER) + _DIGEST_HEX
# The zip "end of central directory" record: signature ... 2-byte comment length, then the comment.
_END_SIGNATURE = b"PK\x05\x06"
_END_RECORD = 22


class TorchFileError(ValueError):
    """A torch file is empty, damaged (checksum mismatch), truncated or not a torch file."""


def dumps(obj: Any) -> bytes:
    """``torch.save(obj)`` as bytes, with the SHA-256 of its content in the zip comment.

    Parameters
    ----------
    obj : object
        Anything ``torch.save`` writes; to be read back by :func:`load` it must hold
        tensors, numbers, strings, None and lists/tuples/dicts of them only.

    Returns
    -------
    bytes
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    if data[-_END_RECORD:-_END_RECORD + 4] != _END_SIGNATURE or data[-2:] != b"\0\0":
        raise RuntimeError("torch.save wrote no zip archive with an empty comment: cannot add the checksum")
    head = data[:-2] + struct.pack("<H", _COMMENT) + _MARKER
    return head + hashlib.sha256(head).hexdigest().encode("ascii")


def load(path: str | os.PathLike, what: str = "PyTorch checkpoint") -> tuple[Any, bool]:
    """Read the torch file ``path`` on the CPU with ``weights_only=True``, checksum first.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file should be, for the error messages ("checkpoint", ...).

    Returns
    -------
    obj : object
        What was saved.
    verified : bool
        True if the file carried a checksum (which matched); False for a file
        written without one.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    TorchFileError
        If the file is empty, fails its checksum or is not a readable torch file; the
        one-line message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    data = path.read_bytes()
    if not data:
        raise TorchFileError(f"{path}: empty file (0 bytes), expected a {what}")
    # Where torch's end record would be, ours holds hex digits, never its signature (see above).
    plain = data[-_END_RECORD:-_END_RECORD + 4] == _END_SIGNATURE and data[-2:] == b"\0\0"
    verified = not plain and data[-_COMMENT - _END_RECORD:-_COMMENT - _END_RECORD + 4] == _END_SIGNATURE
    if verified:
        stored = data[-_DIGEST_HEX:]
        actual = hashlib.sha256(data[:-_DIGEST_HEX]).hexdigest().encode("ascii")
        marked = data[-_COMMENT - 2:-_DIGEST_HEX] == struct.pack("<H", _COMMENT) + _MARKER
        if not marked or stored != actual:
            raise TorchFileError(
                f"{path}: checksum mismatch: the {what} was damaged after it was written "
                "(the SHA-256 of its content differs from the one recorded in it)"
            )
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds (and some with no message) for a corrupt or foreign file
        lines = str(exc).strip().splitlines()
        raise TorchFileError(
            f"{path}: not a readable {what} ({type(exc).__name__}: {lines[0] if lines else 'no detail'})"
        ) from None
    return obj, verified
