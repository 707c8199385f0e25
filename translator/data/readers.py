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

from translator.tasks import CHAT, DEFAULT_CONTEXT_TURNS

log = logging.getLogger("translator.data")

Pair = tuple[str, str]


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file without line endings (LF or CRLF; a final newline is optional)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: invalid UTF-8 ({err.reason} at byte {err.start})") from None
    text = text.removeprefix("\ufeff")  # a BOM is not part of the first sentence
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def iter_lines(path: str | Path, block_size: int = 1 << 20) -> Iterator[str]:
    """`read_lines` as a stream, read in blocks of about `block_size` bytes: a file of any size is never
    whole in memory. Invalid UTF-8 is reported with the file and line number, as `read_lines` does."""
    path = Path(path)
    line_no, rest = 1, b""
    with path.open("rb") as f:
        while True:
            block = f.read(block_size)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)  # whole lines only, until the end
            data, rest = data[:cut], data[cut:]
            if not data:
                if not block:
                    break
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                line = line_no + data.count(b"\n", 0, err.start)
                raise ValueError(f"{path}:{line}: invalid UTF-8 ({err.reason})") from None
            if line_no == 1:
                text = text.removeprefix("\ufeff")  # a BOM is not part of the first sentence
            lines = text.split("\n")
            if lines[-1] == "":
                lines.pop()
            line_no += len(lines)
            for line in lines:
                yield line.removesuffix("\r")


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


def read_tsv(path: str | Path, reverse: bool = False, *, stats: dict | None = None) -> list[Pair]:
    """Tab-separated `first<TAB>second` lines (Tatoeba `fra.txt`: English, French); `reverse` swaps the sides.

    A third column (the attribution that newer manythings.org exports carry) is ignored.
    """
    pairs = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            pairs.append(("", ""))  # counted with the other empty pairs
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise ValueError(f"{path}:{number}: expected 2 tab-separated fields (source<TAB>target), "
                             f"found {len(fields)}: {line[:80]!r}")
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


def read_dailydialog(path: str | Path, context_turns: int = DEFAULT_CONTEXT_TURNS, *, stats: dict | None = None) -> list[Pair]:
    """DailyDialog `dialogues_<split>.txt` (one dialogue per line, turns end with ` __eou__ `) as context -> reply."""
    if context_turns < 1:
        raise ValueError(f"context_turns must be at least 1, got {context_turns}")
    pairs = []
    for line in read_lines(path):
        turns = [detokenize(turn) for turn in line.split("__eou__")]
        # an empty turn would make an empty context or reply; keep the rest of the dialogue
        pairs.extend(dialogue_pairs([t for t in turns if t], context_turns))
    return _keep_nonempty(pairs, str(path), stats)
