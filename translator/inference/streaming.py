"""Streaming input and output for `translator translate`: lines are read as they come, translated in
chunks, and each chunk's translations are written as soon as it is done (flushed to stdout; into the
temporary file of an --output file, which appears whole at the end: `translator.atomic`).

Memory does not grow with the input: at most `window` lines are held (plus a bounded read-ahead),
each at most MAX_LINE_BYTES (a longer line is cut while it is read), whatever the file's length. Order and line alignment are kept: output line i is the translation of
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
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from translator.atomic import Reads, atomic_open, check_output, file_kind, signals_held
from translator.data.readers import count_lines, iter_text_lines  # lines cut at MAX_LINE_BYTES as read


class LineSource:
    """Where `translate` reads from: a file, a pipe or a terminal (stdin for None / "-").

    Opening checks what can be checked before a model loads: missing file, directory, no permission.
    """

    def __init__(self, input: str | Path | None = None, stdin: Any = None):
        self.path: Path | None = None
        if input is not None and str(input) != "-":
            path = Path(input)
            try:
                mode = path.stat().st_mode
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: no such file" + (" (a symbolic link to a missing file)"
                                                                   if path.is_symlink() else "")) from None
            except OSError as e:  # a symlink loop, ...
                raise ValueError(f"{path}: cannot read file ({e.strerror or e})") from None
            if stat.S_ISDIR(mode):
                raise ValueError(f"{path}: cannot read file (it is a directory)")
            regular = stat.S_ISREG(mode)
            if stat.S_ISFIFO(mode):  # opening blocks until a writer opens the other end: say so
                print(f"translator: reading {path}, {file_kind(mode)}: waiting for a writer", file=sys.stderr)
            try:
                self.stream: IO[bytes] = open(path, "rb")
            except OSError as e:
                raise ValueError(f"{path}: cannot read file ({e.strerror or e})") from None
            # a FIFO or a device (`<(cmd)`, /dev/stdin) streams like a pipe, lines cut as they are read
            self.path, self.name, self.interactive, self.pipe = path, str(path), False, not regular
            self.regular = regular
            return
        stdin = sys.stdin if stdin is None else stdin
        if stdin is None:
            raise ValueError("no input: stdin is closed; pass --input FILE")
        self.stream = getattr(stdin, "buffer", None) or stdin
        self.name = "<stdin>"
        self.interactive = isatty(stdin)
        self.pipe = not self.interactive and not _is_regular_file(stdin)
        self.regular = False

    def total(self) -> int | None:
        """Line count when it is known up front (a file), else None."""
        return count_lines(self.path) if self.regular else None

    def chunks(self, window: int, prompt: str = "> ") -> Iterator[list[str]]:
        """Lists of consecutive input lines, cut as the module docstring says."""
        if self.interactive:
            yield from self._prompted(prompt)
        elif self.pipe:
            yield from _as_available(iter_text_lines(self.stream, self.name), window)
        else:
            chunk: list[str] = []
            for line in iter_text_lines(self.stream, self.name):
                chunk.append(line)
                if len(chunk) >= window:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def _prompted(self, prompt: str) -> Iterator[list[str]]:
        print("type one sentence per line (Enter translates it; end with Ctrl-D)", file=sys.stderr)
        lines = iter_text_lines(self.stream, self.name)
        while True:
            print(prompt, end="", file=sys.stderr, flush=True)
            line = next(lines, None)
            if line is None:
                print(file=sys.stderr)
                return
            yield [line]

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
        item = _wait(ready)
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


def _wait(ready: queue.Queue) -> Any:
    """The next item, waited for in short steps: Ctrl-C / SIGTERM may be delivered to the reader thread, and the
    main thread runs Python's handler only when it wakes (one endless wait would ignore them for ever)."""
    while True:
        try:
            return ready.get(timeout=0.25)
        except queue.Empty:
            continue


class LineSink:
    """Where `translate` writes: a file or stdout (UTF-8 bytes whatever the locale).

    A file is written whole or not at all (`translator.atomic`): the lines go to a temporary file
    beside it, renamed over it when every line is written; an interruption or an error removes it
    and leaves an existing file as it was. Stdout gets each chunk as soon as it is translated, in
    one write that SIGINT / SIGTERM cannot cut (what was written is whole lines). The path is checked
    by `translator.atomic.check_output` when the sink is made, before any model loads.
    """

    def __init__(self, output: str | Path | None = None, reads: Reads | None = None, stdin_read: bool = False):
        self.path = None if output is None or str(output) == "-" else Path(output)
        self.stream: IO[bytes] | None = None
        if self.path is not None:
            check_output(self.path, reads, stdin_read=stdin_read)

    @contextmanager
    def open(self) -> Iterator["LineSink"]:
        """The sink, ready to `write`, for the duration of the block (a file appears when it ends)."""
        if self.path is None:
            sys.stdout.flush()
            self.stream = getattr(sys.stdout, "buffer", None)
            yield self
            return
        try:
            with atomic_open(self.path, "wb") as self.stream:
                yield self
        except OSError as err:
            raise ValueError(f"cannot write {self.path}: {err.strerror or err}") from None
        finally:
            self.stream = None

    def write(self, text: str) -> None:
        """Write whole lines (`text` ends with "\\n"); to stdout they are flushed at once."""
        try:
            if self.path is not None:
                self.stream.write(text.encode("utf-8"))
                return
            with signals_held():
                if self.stream is None:  # an in-memory stdout (tests, notebooks)
                    sys.stdout.write(text)
                    sys.stdout.flush()
                else:
                    self.stream.write(text.encode("utf-8"))
                    self.stream.flush()
        except OSError as err:
            raise ValueError(f"cannot write {self.path or 'stdout'}: {err.strerror or err}") from None


def progress_bar(total: int | None, enabled: bool) -> Any:
    """A tqdm bar on stderr (lines), or None; shown whenever stderr is a terminal."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="line", desc="translate", file=sys.stderr, dynamic_ncols=True)


def isatty(stream: Any) -> bool:
    """Whether `stream` is a terminal (False for anything that cannot say)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _is_regular_file(stream: Any) -> bool:
    """stdin redirected from a file (`< in.txt`): read in full chunks, like --input."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, ValueError, OSError):
        return False  # an in-memory stream (tests): treat it as a pipe
