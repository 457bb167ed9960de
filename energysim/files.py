"""Writing files so that a kill never leaves a torn one, and JSON that every parser reads.

Every file the tools write goes through :func:`atomic_write_bytes`: a temporary file in
the destination's folder, flushed and fsynced, renamed over the destination with
``os.replace`` (atomic on POSIX), then the folder fsynced. A process killed at any moment
leaves either the old file or the new one. It lives in ``energysim`` (the lower package)
so that both packages use the same one.

:func:`json_text` is the one JSON encoder for files: JSON has no NaN or Infinity (Python
writes them, other parsers reject them), so a non-finite float is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "json_text"]

# The process umask, read once (reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename, fsync folder).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    data : bytes

    Raises
    ------
    OSError
        Of the kind the system raised (disk full, read-only, no such folder), naming
        ``path``; the destination is then unchanged and no temporary file is left.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        # mkstemp creates the file owner-only; give it the permissions open() would.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise
    _fsync_dir(path.parent)


def _naming(exc: OSError, path: Path) -> OSError:
    """The same kind of error with the destination as its file name (a full disk or a read-only
    folder otherwise reports the temporary file, or no file at all): ``[Errno 28] No space left
    on device: 'RUN/checkpoint.pt'``."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text ending in a newline; NaN and infinities become ``null``.

    >>> json_text({"r2": float("nan"), "n": [1, float("inf")]}, indent=None)
    '{"r2": null, "n": [1, null]}\\n'
    """
    return json.dumps(_finite_or_null(obj), indent=indent, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as strict, indented JSON (:func:`json_text`) to ``path`` atomically."""
    atomic_write_text(path, json_text(obj))


def _finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None (dicts, lists and tuples walked)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite_or_null(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(value) for value in obj]
    return obj


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
