"""Streaming input and output for `translator translate`: lines are read as they come, translated in
chunks, and each chunk's translations are written (and flushed) as soon as it is done.

Memory does not grow with the input: at most `window` lines are held (plus a bounded read-ahead),
whatever the file's length. Order and line alignment are kept: output line i is the translation of
input line i, and an empty input line gives an empty output line.

How a chunk is cut depends on where the lines come from:
- a file: full chunks of `window` lines (long chunks sort by length well and pad little);
- a pipe: whatever has arrived when the decoder is free, up to `window` lines, so a line typed or
  sent alone is translated at once instead of waiting for end of input;
- a terminal: one line at a time after a prompt on stderr.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

BOM = b"\xef\xbb\xbf"


def decode_line(raw: bytes, number: int, name: str) -> str:
    """One line's bytes (its "\\n" and a "\\r" before it removed) as text; invalid UTF-8 names the line."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}:{number}: invalid UTF-8 at byte {e.start} of the line ({raw[e.start:e.start + 1]!r})"
                         ) from None


def iter_lines(stream: IO[bytes], name: str) -> Iterator[str]:
    """Lines of a binary stream, split on "\\n" only (as `evaluation.split_lines`), read one at a time."""
    for number, raw in enumerate(iter(stream.readline, b""), start=1):
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM):]
        yield decode_line(raw, number, name)


def count_lines(path: Path) -> int:
    """Lines of a file (a last line without "\\n" counts), read in 1 MiB blocks."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


class LineSource:
    """Where `translate` reads from: a file, a pipe or a terminal (stdin for None / "-").

    Opening checks what can be checked before a model loads: missing file, directory, no permission.
    """

    def __init__(self, input: str | Path | None = None, stdin: Any = None):
        self.path: Path | None = None
        if input is not None and str(input) != "-":
            path = Path(input)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
            if path.is_dir():
                raise ValueError(f"{path}: cannot read file (it is a directory)")
            try:
                self.stream: IO[bytes] = open(path, "rb")
            except OSError as e:
                raise ValueError(f"{path}: cannot read file ({e.strerror or e})") from None
            self.path, self.name, self.interactive, self.pipe = path, str(path), False, False
            return
        stdin = sys.stdin if stdin is None else stdin
        if stdin is None:
            raise ValueError("no input: stdin is closed; pass --input FILE")
        self.stream = getattr(stdin, "buffer", None) or stdin
        self.name = "<stdin>"
        self.interactive = _isatty(stdin)
        self.pipe = not self.interactive and not _is_regular_file(stdin)

    def total(self) -> int | None:
        """Line count when it is known up front (a file), else None."""
        return count_lines(self.path) if self.path is not None else None

    def chunks(self, window: int, prompt: str = "> ") -> Iterator[list[str]]:
        """Lists of consecutive input lines, cut as the module docstring says."""
        if self.interactive:
            yield from self._prompted(prompt)
        elif self.pipe:
            yield from _as_available(iter_lines(self.stream, self.name), window)
        else:
            chunk: list[str] = []
            for line in iter_lines(self.stream, self.name):
                chunk.append(line)
                if len(chunk) >= window:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def _prompted(self, prompt: str) -> Iterator[list[str]]:
        print("type one sentence per line (Enter translates it; end with Ctrl-D)", file=sys.stderr)
        number = 0
        while True:
            print(prompt, end="", file=sys.stderr, flush=True)
            raw = self.stream.readline()
            if not raw:
                print(file=sys.stderr)
                return
            number += 1
            yield [decode_line(raw[len(BOM):] if number == 1 and raw.startswith(BOM) else raw, number, self.name)]

    def close(self) -> None:
        if self.path is not None:
            self.stream.close()


def _as_available(lines: Iterator[str], window: int) -> Iterator[list[str]]:
    """Chunks of whatever lines a reader thread has ready (at least one; at most `window`)."""
    done = object()
    ready: queue.Queue = queue.Queue(maxsize=2 * window)  # bounded read-ahead

    def read() -> None:
        try:
            for line in lines:
                ready.put(line)
            ready.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(err)

    threading.Thread(target=read, name="translate-stdin", daemon=True).start()
    while True:
        item = ready.get()
        chunk: list[str] = []
        while True:
            if item is done:
                if chunk:
                    yield chunk
                return
            if isinstance(item, BaseException):
                if chunk:
                    yield chunk
                raise item
            chunk.append(item)
            if len(chunk) >= window:
                break
            try:
                item = ready.get_nowait()
            except queue.Empty:
                break
        yield chunk


class LineSink:
    """Where `translate` writes: a file or stdout (UTF-8 bytes whatever the locale), flushed per chunk.

    `check` runs before any decoding: the path must be writable (and is neither a directory nor
    under a file); the file itself is only opened (and truncated) by `open`, once the model is loaded.
    """

    def __init__(self, output: str | Path | None = None):
        self.path = None if output is None or str(output) == "-" else Path(output)
        self.stream: IO[bytes] | None = None
        if self.path is not None:
            check_writable(self.path)

    def open(self) -> None:
        if self.path is None:
            sys.stdout.flush()
            self.stream = getattr(sys.stdout, "buffer", None)
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.stream = open(self.path, "wb")
        except OSError as err:
            raise ValueError(f"cannot write {self.path}: {err.strerror or err}") from None

    def write(self, text: str) -> None:
        if self.stream is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        try:
            self.stream.write(text.encode("utf-8"))
            self.stream.flush()
        except OSError as err:
            raise ValueError(f"cannot write {self.path or 'stdout'}: {err.strerror or err}") from None

    def close(self) -> None:
        if self.path is not None and self.stream is not None:
            self.stream.close()


def check_writable(path: Path) -> None:
    """ValueError naming the problem when `path` cannot be written (checked without creating anything)."""
    if path.is_dir():
        raise ValueError(f"output {path} is a directory; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"cannot write {path}: permission denied")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: permission denied in {parent}")


def progress_bar(total: int | None, enabled: bool) -> Any:
    """A tqdm bar on stderr (lines), or None; shown whenever stderr is a terminal."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="line", desc="translate", file=sys.stderr, dynamic_ncols=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _is_regular_file(stream: Any) -> bool:
    """stdin redirected from a file (`< in.txt`): read in full chunks, like --input."""
    import stat

    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, ValueError, OSError):
        return False  # an in-memory stream (tests): treat it as a pipe
