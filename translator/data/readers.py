"""Corpus readers: each turns one corpus file (or file pair) into (source, target) text pairs.

Every reader decodes bytes itself so invalid UTF-8 is reported with the file and line number,
and drops pairs whose source or target is empty, counting them in one log line per file.
"""
from __future__ import annotations

import csv
import itertools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from translator.tasks import CHAT, DEFAULT_CONTEXT_TURNS

log = logging.getLogger("translator.data")

Pair = tuple[str, str]


#: Bytes of one line that are kept: a longer line is cut there (at a character boundary) while it is read and
#: the rest of it skipped as it comes, so a file that never ends a line (`/dev/zero`) cannot grow memory. A
#: model reads at most a few hundred tokens of a sentence (`inference.DEFAULT_MAX_SRC_TOKENS`, warning when
#: it truncates), and a SentencePiece piece is at most 16 characters, so 1 MiB always holds more than enough.
MAX_LINE_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file without line endings (LF or CRLF; a final newline is optional); empty lines
    are kept, so line i is segment i. The one line reader: every command reads text files through it."""
    return list(iter_lines(path))


def iter_lines(path: str | Path, block_size: int = 1 << 20) -> Iterator[str]:
    """`read_lines` as a stream, read through a buffer of `block_size` bytes: a file of any size is never
    whole in memory, nor is a line longer than MAX_LINE_BYTES. Invalid UTF-8 (and UTF-16 without a BOM)
    is reported with the file and line number."""
    path = Path(path)
    with _open_binary(path, max(2, block_size)) as f:
        yield from iter_text_lines(f, str(path))


def count_lines(path: str | Path, block_size: int = 1 << 22) -> int:
    """Lines of a file as `iter_lines` reads them (a last line without "\n" counts), counted in binary blocks:
    memory independent of the file's size, nothing decoded."""
    lines, last = 0, b"\n"
    with _open_binary(Path(path)) as f:
        while block := f.read(block_size):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def _open_binary(path: Path, buffering: int = -1) -> IO[bytes]:
    """`path` opened for reading bytes; a missing or unreadable file is one clear message naming it."""
    try:
        return path.open("rb", buffering=buffering)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read file ({err.strerror or err})") from None


def iter_text_lines(stream: IO[bytes], name: str, limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines of a binary stream, split on "\\n" only, read one at a time. A line longer than `limit` bytes
    is cut there (at a character boundary) with a warning and given at once; the rest of it is skipped,
    in bounded reads, when the next line is asked for (so `/dev/zero` gives one line, then never grows)."""
    number, cut = 1, False
    while True:
        if cut:
            _skip_line(stream)
        raw = stream.readline(limit + 1)
        if not raw:
            return
        cut = len(raw) > limit and not raw.endswith(b"\n")
        if cut:
            raw = _whole_characters(raw[:limit])
            log.warning("%s:%d: line longer than %s bytes: cut there, the rest of the line is skipped", name,
                        number, f"{limit:,}")
        yield decode_line(raw, number, name)
        number += 1


def _skip_line(stream: IO[bytes], block: int = 1 << 16) -> None:
    """Read past the next "\\n" in blocks of at most `block` bytes (peeked, so nothing after it is lost)."""
    if not hasattr(stream, "peek"):  # a stream without a buffer (tests): readline in bounded steps
        while (more := stream.readline(block)) and not more.endswith(b"\n"):
            pass
        return
    while head := stream.peek(block)[:block]:
        end = head.find(b"\n")
        stream.read(len(head) if end < 0 else end + 1)  # from the buffer: no copy of the line is kept
        if end >= 0:
            return


def _whole_characters(raw: bytes) -> bytes:
    """`raw` without a UTF-8 character cut at its end."""
    for back in range(1, min(4, len(raw)) + 1):
        byte = raw[-back]
        if byte & 0xC0 != 0x80:  # the lead byte (or ASCII) of the last character
            size = 1 if byte < 0x80 else 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4
            return raw if size <= back else raw[:-back]
    return raw


def decode_line(raw: bytes, number: int, name: str) -> str:
    """One line's bytes (its "\\n", a "\\r" before it and a BOM on line 1 removed) as text; invalid UTF-8 names
    the line, and a first line that looks like UTF-16 says so."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if number == 1:
        raw = raw.removeprefix(BOM)
        _refuse_utf16(raw, name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}:{number}: invalid UTF-8 at byte {e.start} of the line ({raw[e.start:e.start + 1]!r})"
                         ) from None


def _refuse_utf16(raw: bytes, name: str) -> None:
    """ValueError when a first line looks like UTF-16: a UTF-16 byte-order mark, or (without one, when it would
    decode as NUL-filled text) at least a third of its bytes NUL, all at even (big-endian) or odd (little-endian)
    positions."""
    bom = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    nuls = [i for i, b in enumerate(raw) if b == 0]
    if not bom and (len(raw) < 2 or len(nuls) * 3 < len(raw) or len({i % 2 for i in nuls}) != 1):
        return
    order = ("UTF-16LE" if raw[0] == 0xFF else "UTF-16BE") if bom else "UTF-16LE" if nuls[0] % 2 else "UTF-16BE"
    raise ValueError(f"{name}:1: invalid UTF-8: the file looks like {order} text ({'with' if bom else 'without'} a "
                     f"byte-order mark); convert it, e.g. `iconv -f {order} -t UTF-8 {name} > "
                     f"{Path(name).stem}.utf8.txt`")


def iter_parallel(src_path: str | Path, tgt_path: str | Path, *, stats: dict | None = None) -> Iterator[Pair]:
    """`read_parallel` as a stream: stripped pairs with both sides non-empty, in file order.

    The empty-pair count goes into `stats["empty"]` (and one log line) once the files are read
    to the end; a length mismatch is reported then, naming both files and their line counts.
    """
    n = empty = 0
    counts = [0, 0]
    for s, t in itertools.zip_longest(iter_lines(src_path), iter_lines(tgt_path)):
        if s is None or t is None:  # one file ended: count the other to the end for the message
            counts[s is None] += 1
            continue
        n += 1
        s, t = s.strip(), t.strip()
        if s and t:
            yield s, t
        else:
            empty += 1
    if any(counts):
        raise ValueError(f"parallel files differ in length: {src_path} has {n + counts[0]} lines, "
                         f"{tgt_path} has {n + counts[1]} lines")
    if stats is not None:
        stats["empty"] = stats.get("empty", 0) + empty
    if empty:
        log.warning("%s + %s: dropped %d of %d pairs with an empty source or target", src_path, tgt_path, empty, n)


def _keep_nonempty(pairs: list[Pair], what: str, stats: dict | None) -> list[Pair]:
    """Strip both sides, drop pairs with an empty side, and say how many went in one log line.

    `stats`, when given, gets the count added under "empty" (for `translator data stats`).
    """
    kept = [(s.strip(), t.strip()) for s, t in pairs]
    kept = [(s, t) for s, t in kept if s and t]
    if stats is not None:
        stats["empty"] = stats.get("empty", 0) + len(pairs) - len(kept)
    if len(kept) < len(pairs):
        log.warning("%s: dropped %d of %d pairs with an empty source or target", what, len(pairs) - len(kept),
                    len(pairs))
    return kept


def read_parallel(src_path: str | Path, tgt_path: str | Path, *, stats: dict | None = None) -> list[Pair]:
    """Line-aligned parallel files (Multi30k `train.de` / `train.en`): line i of one translates line i of the other."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                         f"{tgt_path} has {len(tgt)} lines")
    return _keep_nonempty(list(zip(src, tgt)), f"{src_path} + {tgt_path}", stats)


#: The start of the third column that newer manythings.org exports carry (attribution), the only third column read.
ATTRIBUTION = "CC-BY"


def read_tsv(path: str | Path, reverse: bool = False, *, stats: dict | None = None) -> list[Pair]:
    """Tab-separated `first<TAB>second` lines (Tatoeba `fra.txt`: English, French); `reverse` swaps the sides.

    The rule that keeps pairs right: every line has 2 fields, or 3 when the third is the attribution
    that newer manythings.org exports carry (it starts with "CC-BY"; it is ignored). Any other line (a
    tab inside a sentence would shift the fields) is an error naming the file and line.
    """
    pairs = []
    for number, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            pairs.append(("", ""))  # counted with the other empty pairs
            continue
        fields = line.split("\t")
        if not (len(fields) == 2 or (len(fields) == 3 and fields[2].startswith(ATTRIBUTION))):
            extra = f" and a third that is not an attribution ({ATTRIBUTION}...)" if len(fields) == 3 else ""
            raise ValueError(f"{path}:{number}: expected 2 tab-separated fields (source<TAB>target), found "
                             f"{len(fields)}{extra}: {line[:80]!r}; a tab inside a sentence would pair the wrong "
                             "texts, so remove it")
        pairs.append((fields[1], fields[0]) if reverse else (fields[0], fields[1]))
    return _keep_nonempty(pairs, str(path), stats)


def read_csv_columns(path: str | Path, src_column: str, tgt_column: str, *,
                     stats: dict | None = None) -> list[Pair]:
    """Two named columns of a CSV file with a header row (ChatbotData.csv: Q -> A)."""
    lines = read_lines(path)
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    for column in (src_column, tgt_column):
        if column not in header:
            raise ValueError(f"{path}: no column {column!r}; columns found: {header}")
    i, j = header.index(src_column), header.index(tgt_column)
    pairs = []
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # blank line, not a pair
        if len(row) <= max(i, j):
            raise ValueError(f"{path}:{reader.line_num}: expected {len(header)} fields, found {len(row)}")
        pairs.append((row[i], row[j]))
    return _keep_nonempty(pairs, str(path), stats)


# DailyDialog text is pre-tokenised ("hello , world .", "don ' t"); these rules undo only the
# spacing that is unambiguous, so replies read like normal text.
_CONTRACTION = re.compile(r"(\w) ?['’] (s|t|m|d|ll|re|ve|clock)\b", re.IGNORECASE)
_SPACE_BEFORE = re.compile(r" +([,.!?;:%)\]])")
_SPACE_AFTER = re.compile(r"([(\[$]) +(?=\S)")


def detokenize(text: str) -> str:
    """Light detokenisation: "hello , world ." -> "hello, world.", "don ' t" -> "don't"."""
    text = " ".join(text.split())
    if "'" in text or "’" in text:  # the regex is the slow part; most turns have no apostrophe
        text = _CONTRACTION.sub(lambda m: f"{m.group(1)}'{m.group(2).lower()}", text)
    return _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))


def dialogue_pairs(turns: list[str], context_turns: int) -> list[Pair]:
    """(context -> reply) pairs from one dialogue: the context is the previous turns (`CHAT.source`)."""
    return [(CHAT.source(turns[max(0, i - context_turns):i]), turns[i]) for i in range(1, len(turns))]


#: What ends each turn in a DailyDialog dialogue line.
EOU = "__eou__"


def read_dailydialog(path: str | Path, context_turns: int = DEFAULT_CONTEXT_TURNS, *,
                     stats: dict | None = None) -> list[Pair]:
    """DailyDialog `dialogues_<split>.txt` (one dialogue per line, turns end with ` __eou__ `) as context -> reply."""
    if context_turns < 1:
        raise ValueError(f"context_turns must be at least 1, got {context_turns}")
    pairs, unmarked, dialogues = [], [], 0
    for number, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        dialogues += 1
        if EOU not in line:  # not a dialogue line: one "turn" that would give no pair, silently
            unmarked.append(number)
            continue
        turns = [detokenize(turn) for turn in line.split(EOU)]
        # an empty turn would make an empty context or reply; keep the rest of the dialogue
        pairs.extend(dialogue_pairs([t for t in turns if t], context_turns))
    if unmarked and len(unmarked) == dialogues:
        raise ValueError(f"{path}: no line has the {EOU} turn marker, so it holds no dialogues (DailyDialog "
                         f"format: one dialogue per line, each turn followed by {EOU})")
    if unmarked:
        log.warning("%s: %d of %d lines have no %s turn marker (line %s%s): skipped, they are not dialogues",
                    path, len(unmarked), dialogues, EOU, ", ".join(map(str, unmarked[:5])),
                    ", ..." if len(unmarked) > 5 else "")
    return _keep_nonempty(pairs, str(path), stats)
