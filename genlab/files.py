"""Files written atomically and read with bounds: the container under networks and checkpoints.

write_npz writes exactly the path it is given (any suffix) through a temporary file in the same
folder, flushed to disk and renamed over the target, so a failure at any point leaves the file
that was there before intact. NpzReader reads one named member at a time, refusing before it
decompresses anything a member whose declared size is larger than the caller allows; members
nobody asks for are never read.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import FileFormatError, SaveError

HEADER_ROOM = 4096  # an .npy member's header and padding, on top of its data


def writable_target(path) -> Path:
    """The path, checked for writing before any work: its folder exists and takes files, and it
    is not a folder itself. Raises SaveError."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise SaveError(f"cannot write {path}: it is a folder")
    if not folder.is_dir():
        raise SaveError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SaveError(f"cannot write {path}: the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise SaveError(f"cannot write {path}: the file is read-only")
    return path


def write_npz(path, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` as an uncompressed .npz to exactly `path`, atomically; return the path. A
    symbolic link is followed: the file it points to is replaced, the link stays."""
    return write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path, write) -> Path:
    """write(f) into a temporary file beside `path` (f: a binary file), flushed to disk and renamed
    over exactly `path`; return the path. Raises SaveError (an OSError) and leaves what was there
    before intact on any failure. A symbolic link is followed: the file it points to is replaced."""
    given = Path(path)
    path = writable_target(given.resolve() if given.is_symlink() else given)
    mode = _mode_for(path)
    try:  # the folder may refuse a new file even where access() said yes (a read-only mount, ACLs)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise SaveError(f"could not write {path} ({e.strerror or e}); the file there before is unchanged") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise SaveError(f"could not write {path} ({e.strerror or e}); the file there before is "
                            "unchanged") from e
        raise
    _sync_folder(path.parent)
    return given


def _mode_for(path: Path) -> int:
    """The permissions of the file being replaced, or the usual ones for a new file."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_folder(folder: Path) -> None:
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


class NpzReader:
    """Reads named .npy members of an .npz file, each only when asked and within a size bound.

    Errors are FileFormatError naming the file and the member; a missing file is
    FileNotFoundError, as Python's open() raises it."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.is_dir():
            raise FileFormatError(f"{self.path} is a folder, not a genlab file")
        try:
            self._zip = zipfile.ZipFile(self.path)
            self._info = {i.filename: i for i in self._zip.infolist()}
            self._read: set[str] = set()
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as e:  # whatever a damaged archive makes zipfile raise (BadZipFile, NotImplementedError...)
            raise FileFormatError(f"{self.path} is not a readable genlab network file "
                                  f"({type(e).__name__}: {e})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._zip.close()

    def has(self, name: str) -> bool:
        return f"{name}.npy" in self._info

    def refuse_unread(self, known=lambda name: False) -> None:
        """FileFormatError if the file holds a member nobody read and known(name) does not name:
        nothing rides along unchecked in a file genlab accepts."""
        extra = sorted(n for n in self._info if n not in self._read and not known(n))
        if extra:
            raise FileFormatError(f"{self.path}: unexpected member {extra[0]!r}"
                                  + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                                  + ": a genlab file holds only the members its format names")

    def names(self) -> list[str]:
        return [n[:-4] for n in self._info if n.endswith(".npy")]

    def array(self, name: str, max_bytes: int) -> np.ndarray:
        """Member `name`, refused unless its declared size is at most max_bytes plus a header."""
        info = self._info.get(f"{name}.npy")
        if info is None:
            raise FileFormatError(f"{self.path}: member {name!r} is missing")
        if info.file_size > max_bytes + HEADER_ROOM:
            raise FileFormatError(f"{self.path}: member {name!r} declares {info.file_size} bytes, more than "
                                  f"the {max_bytes} its description allows")
        self._read.add(info.filename)
        try:
            raw = self._zip.read(info)  # checks the CRC
            return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)
        except Exception as e:  # zipfile's and numpy's errors for damaged bytes, of many types
            raise FileFormatError(f"{self.path}: member {name!r} is damaged ({type(e).__name__}: {e})") from None
