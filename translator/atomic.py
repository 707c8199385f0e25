"""That nothing is overwritten: every output file is written whole or not at all, never onto an input.

The one home of the rule (translations, hypotheses, reports, figures, checkpoints, tokenizers):
- `atomic_open` writes a temp file beside the target, fsyncs it and renames it over the target when
  the block ends without an exception: a kill, Ctrl-C or a full disk at any moment leaves either the
  old file or the new one, never a truncated one;
- `check_output` refuses, before anything is opened for writing, an output that is one of the files
  being read (also through a symlink or a hard link), or lies inside a directory being read (an
  exported model), or that is not a regular file (a FIFO or a device cannot be replaced whole);
- `check_input_file` says in one line why a path that must be a regular file (a checkpoint) is not.
Imports nothing of ours.
"""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Names of the kinds of file that are not regular files, for messages.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a FIFO (named pipe)', 'a character device', ... for a st_mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """Open a temp file for writing that replaces `path` when the block ends without an exception.

    A symlink is followed (its target is replaced, the link kept). The file gets the target's
    permissions when it exists, else 0644 (mkstemp's private 0600 would make a report unreadable to
    others); on an exception (KeyboardInterrupt included) the temp file is removed and `path` is untouched.
    """
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """`Path.write_bytes`, atomically."""
    with atomic_open(path, "wb") as f:
        f.write(payload)
    return Path(path)


Reads = dict[str, "str | os.PathLike | None | Iterable[str | os.PathLike]"]


def check_output(path: str | os.PathLike, reads: Reads | None = None, what: str = "output",
                 stdin_read: bool = False) -> Path:
    """ValueError naming the problem when `path` must not or cannot be written; checked without creating anything.

    `reads`: what the command reads, by role ({"input": path, "checkpoint": [paths]}; None and "-" skipped).
    `stdin_read`: stdin is read as well (a file redirected to stdin counts as an input).
    """
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # missing, or under a file (said below)
        st = None
    except OSError as err:  # a symlink loop, a name too long, ...
        raise ValueError(f"cannot write {what} {path}: {err.strerror or err}") from None
    if st is None and path.is_symlink():
        raise ValueError(f"cannot write {what} {path}: it is a symbolic link to a missing file")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{what} {path} is a directory; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file; it is written whole to a "
                         "temporary file and renamed, which a device or pipe cannot be (write to stdout instead)")
    target = Path(os.path.realpath(path))
    for role, read in _flat(reads):
        relation = _relation(target, st, Path(read))
        if relation:
            place = "" if relation == "same" and str(read) == str(path) else f" {read}"
            raise ValueError(f"{what} {path} is {'inside ' if relation == 'inside' else ''}the {role}{place}, "
                             "which this command reads; writing it would destroy it (give another file name)")
    if stdin_read and st is not None and _stdin_is(st):
        raise ValueError(f"{what} {path} is the file redirected to stdin, which this command reads; writing it "
                         "would destroy it (give another file name)")
    if st is not None:
        if not os.access(path, os.W_OK):
            raise ValueError(f"cannot write {path}: permission denied")
        return path
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: permission denied in {parent}")
    return path


def check_outputs(paths: dict[str, str | os.PathLike | None], reads: Reads | None = None) -> None:
    """`check_output` for each named output (None: not asked for), and no two of them the same file."""
    given = {name: p for name, p in paths.items() if p is not None}
    for name, p in given.items():
        check_output(p, reads, what=name)
    seen: dict[str, str] = {}
    for name, p in given.items():
        key = os.path.realpath(p)
        if key in seen:
            raise ValueError(f"{seen[key]} and {name} are the same file ({p}); give each its own file name")
        seen[key] = name


def check_output_dir(path: str | os.PathLike, reads: Reads | None = None, what: str = "output") -> Path:
    """ValueError when writing the directory `path` (replacing it whole) would write what the command reads:
    a file being read is inside it, or it is one of them."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    for role, read in _flat(reads):
        real = Path(os.path.realpath(read))
        if real == target or target in real.parents:
            raise ValueError(f"{what} {path} holds the {role} {read}, which this command reads; replacing the "
                             "directory would destroy it (give another directory)")
    return path


def _flat(reads: Reads | None) -> Iterator[tuple[str, str | os.PathLike]]:
    for role, value in (reads or {}).items():
        values = [value] if value is None or isinstance(value, (str, os.PathLike)) else list(value)
        yield from ((role, v) for v in values if v is not None and str(v) != "-")


def _relation(target: Path, st: os.stat_result | None, read: Path) -> str:
    """"same" / "inside" when writing `target` (stat `st`, None when missing) would write `read` or a file
    inside it, else ""."""
    try:
        read_st = read.stat()
    except OSError:
        return ""
    if st is not None and (st.st_dev, st.st_ino) == (read_st.st_dev, read_st.st_ino):
        return "same"  # whatever the names (symlinks, hard links, /dev/fd/N)
    if stat.S_ISDIR(read_st.st_mode) and Path(os.path.realpath(read)) in target.parents:
        return "inside"
    return ""


def _stdin_is(st: os.stat_result) -> bool:
    try:
        stdin = os.fstat(0)
    except OSError:
        return False
    return stat.S_ISREG(stdin.st_mode) and (stdin.st_dev, stdin.st_ino) == (st.st_dev, st.st_ino)


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` when it is a regular file, else one message: missing, a broken or looping symlink, a directory,
    a FIFO (which would block until a writer came), a device (/dev/zero never ends)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise FileNotFoundError(f"{what} {path} is a symbolic link to a missing file ({os.readlink(path)})"
                                    ) from None
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except OSError as err:  # ELOOP: a symlink loop; ENAMETOOLONG ...
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"cannot read {what} {path}: it is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file")
    return path


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (one write to stdout is never cut in the middle)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (the one file digest: lineage, exports, attached models)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
