"""Token store: a split's ids on disk as flat arrays plus offsets, memory-mapped by every process.

One store is a folder `<cache_dir>/tokens/<dataset>-<src>-<tgt>-<split>-<key>/`:

    src.tokens, tgt.tokens    every id of one side back to back: uint16 when the vocabulary fits, else int32
    src.offsets, tgt.offsets  int64, pairs + 1 entries: pair i is tokens[offsets[i]:offsets[i + 1]]
    manifest.json             written last: the key, dtype, pair count, and each file's size and sha256

Why flat arrays and not Arrow (HF `datasets`): a batch needs nothing but the ids of a few rows and
every row's length, and two numpy memmaps give exactly that, with 2 bytes per token on disk, pages
shared by every process on the node through the page cache, and no new dependency. That is
fairseq's binarized-dataset idea in its smallest form.

The key names the corpus files (path, size, mtime), how they are read (dataset, split, languages,
context turns, split seed) and the tokenizer (sha256 of its model bytes), so a store built from
other files or another tokenizer is never reused. A damaged store (a file missing, truncated or
with another checksum) is rebuilt with a warning. A store is built in a temporary folder, each
file fsynced, the manifest written last, and the folder renamed into place only then: a crash or a
full disk leaves no folder that looks valid. Several processes (DDP ranks) may race to build the
same store; the first rename wins and the others use it.

The store keeps every encoded pair; which pairs a split uses (empty after tokenizing, too long)
is decided when it is opened, from the offsets alone, so `max_len` is not part of the key.
Encoding runs in worker processes, chunk by chunk, from a stream of pairs: memory stays bounded
whatever the corpus size.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from translator.data.readers import Pair
from translator.tokenizer import Tokenizer

log = logging.getLogger("translator.data")

FORMAT_VERSION = 1
CHUNK_PAIRS = 8192  # pairs per worker task: large enough to amortise pickling, small enough to bound memory
_SIDES = ("src", "tgt")


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def file_identity(paths: Iterable[str | Path]) -> list[list[Any]]:
    """(resolved path, size, mtime in ns) of each file: what a cache built from them is keyed by."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    return out


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """sha256 of the tokenizer's model bytes (both sides)."""
    digest = hashlib.sha256()
    for payload in tokenizer.to_dict().values():
        digest.update(payload or b"")
        digest.update(b"\0")
    return digest.hexdigest()


class ConcatColumn(Sequence):
    """Two id columns one after the other (a split and the replayed pairs): item i of `first`, then of `second`."""

    def __init__(self, first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i: int) -> Sequence[int]:
        return self.first[i] if i < len(self.first) else self.second[i - len(self.first)]

    @property
    def lengths(self) -> np.ndarray:
        """(n,) int64 tokens per item."""
        side = [getattr(c, "lengths", None) for c in (self.first, self.second)]
        return np.concatenate([x if x is not None else np.fromiter(map(len, c), np.int64, count=len(c))
                               for x, c in zip(side, (self.first, self.second))]).astype(np.int64)


class TokenColumn(Sequence):
    """One side of a split: item i is the id list of row `rows[i]` of flat `tokens` + `offsets`.

    `tokens` and `offsets` may be memmaps; pickling (DataLoader workers, spawned processes) sends
    the file names, not the data, and the receiver maps the same files again.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None):
        self.tokens, self.offsets = tokens, offsets
        self.rows = rows

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]], dtype: np.dtype = np.dtype(np.int32)) -> "TokenColumn":
        """An in-memory column (tests, small splits)."""
        lengths = np.fromiter(map(len, ids), np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.fromiter(itertools.chain.from_iterable(ids), dtype, count=int(offsets[-1])), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.rows is None else len(self.rows)

    def __getitem__(self, i: int) -> list[int]:
        r = int(self.rows[i]) if self.rows is not None else i
        return self.tokens[self.offsets[r]:self.offsets[r + 1]].tolist()

    @property
    def lengths(self) -> np.ndarray:
        """(n,) int64 tokens per item, from the offsets alone (no token is read)."""
        lengths = np.diff(self.offsets)
        return lengths if self.rows is None else lengths[self.rows]

    def select(self, rows: np.ndarray) -> "TokenColumn":
        """The items `rows` (positions in this column), in that order."""
        base = rows if self.rows is None else self.rows[rows]
        return TokenColumn(self.tokens, self.offsets, np.asarray(base, dtype=np.int64))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("tokens", "offsets"):
            array = state[name]
            if isinstance(array, np.memmap) and array.filename:
                state[name] = ("memmap", array.filename, array.dtype.str, array.shape)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("tokens", "offsets"):
            if isinstance(state[name], tuple) and state[name][:1] == ("memmap",):
                _, filename, dtype, shape = state[name]
                state[name] = _map(Path(filename), np.dtype(dtype), shape[0])
        self.__dict__.update(state)


@dataclass
class TokenStore:
    """An opened store: both sides as columns over the same rows, and what the reader reported."""

    path: Path
    src: TokenColumn
    tgt: TokenColumn
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if count == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


# ---- opening ----------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _problem(path: Path, key: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """Why the store at `path` cannot be used for `key` (None: it can), and its manifest."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        return "no manifest.json (an interrupted build?)", None
    except (OSError, ValueError) as err:
        return f"unreadable manifest.json ({err})", None
    if manifest.get("key") != key:
        return "it was built for other files or another tokenizer", None
    for name, want in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing", None
        if file.stat().st_size != want["bytes"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {want['bytes']} (truncated?)", None
        if _sha256(file) != want["sha256"]:
            return f"{name} does not match its checksum", None
    if sorted(manifest.get("files", {})) != sorted(f"{s}.{kind}" for s in _SIDES for kind in ("tokens", "offsets")):
        return "the manifest lists other files", None
    return None, manifest


def open_store(path: Path, key: dict[str, Any]) -> TokenStore | None:
    """The valid store at `path` for `key`, or None; a damaged one is removed with a warning."""
    if not path.is_dir():
        return None
    problem, manifest = _problem(path, key)
    if problem is not None:
        log.warning("token cache %s cannot be used: %s; rebuilding it", path, problem)
        shutil.rmtree(path, ignore_errors=True)
        return None
    dtype, n = np.dtype(manifest["dtype"]), int(manifest["pairs"])
    columns = []
    for side in _SIDES:
        offsets = _map(path / f"{side}.offsets", np.dtype(np.int64), n + 1)
        tokens = _map(path / f"{side}.tokens", dtype, int(offsets[-1]) if n else 0)
        columns.append(TokenColumn(tokens, offsets if n else np.zeros(1, np.int64)))
    return TokenStore(path, *columns, stats=manifest.get("stats", {}))


# ---- building ---------------------------------------------------------------------------------
_worker_tokenizer: Tokenizer | None = None


def _init_worker(model: dict[str, bytes | None]) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer.from_dict(model)


def _flat(ids: list[list[int]], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter(map(len, ids), np.int64, count=len(ids))
    return np.fromiter(itertools.chain.from_iterable(ids), dtype, count=int(lengths.sum())), lengths


def _encode_chunk(src: list[str], tgt: list[str], dtype: str, tokenizer: Tokenizer | None = None,
                  threads: int | None = 1) -> tuple[np.ndarray, ...]:
    """(src tokens, src lengths, tgt tokens, tgt lengths) of one chunk of pairs."""
    tok = tokenizer or _worker_tokenizer
    return (*_flat(tok.encode_src(src, num_threads=threads), np.dtype(dtype)),
            *_flat(tok.encode_tgt(tgt, num_threads=threads), np.dtype(dtype)))


def _chunks(pairs: Iterable[Pair], size: int) -> Iterator[tuple[list[str], list[str]]]:
    it = iter(pairs)
    while chunk := list(itertools.islice(it, size)):
        yield [s for s, _ in chunk], [t for _, t in chunk]


def _progress(desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with Lightning; without it, the final log line still reports pairs/s
        return None
    return tqdm(desc=desc, unit=" pairs", unit_scale=True, file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty(), mininterval=1.0)


class _Writer:
    """Appends chunks to the four files of a store being built, hashing as it goes."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {f"{s}.tokens": (folder / f"{s}.tokens").open("wb") for s in _SIDES}
        self.digests = {name: hashlib.sha256() for name in (*self.files, *(f"{s}.offsets" for s in _SIDES))}
        self.lengths: dict[str, list[np.ndarray]] = {s: [] for s in _SIDES}
        self.pairs = 0

    def add(self, src: np.ndarray, src_lens: np.ndarray, tgt: np.ndarray, tgt_lens: np.ndarray) -> None:
        for side, tokens, lengths in (("src", src, src_lens), ("tgt", tgt, tgt_lens)):
            name = f"{side}.tokens"
            self.files[name].write(memoryview(tokens))
            self.digests[name].update(memoryview(tokens))
            self.lengths[side].append(lengths)
        self.pairs += len(src_lens)

    def finish(self, manifest: dict[str, Any]) -> None:
        for side in _SIDES:
            lengths = np.concatenate(self.lengths[side]) if self.lengths[side] else np.zeros(0, np.int64)
            offsets = np.zeros(len(lengths) + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            with (self.folder / f"{side}.offsets").open("wb") as f:
                f.write(memoryview(offsets))
                f.flush()
                os.fsync(f.fileno())
            self.digests[f"{side}.offsets"].update(memoryview(offsets))
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        manifest["files"] = {name: {"bytes": (self.folder / name).stat().st_size, "sha256": d.hexdigest()}
                             for name, d in self.digests.items()}
        with (self.folder / "manifest.json").open("w") as f:  # last: its presence means the rest is complete
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def default_workers() -> int:
    """Encoding processes: one per CPU this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


#: Folders being built are named TMP_PREFIX + host + "-" + pid + "-" + random: one whose process is gone
#: (killed with -9 mid-build, which no handler sees) is removed by the next build in the same cache folder.
TMP_PREFIX = ".tmp-store-"


def _remove_orphans(folder: Path) -> None:
    """Remove the half-built stores in `folder` whose building process (on this host) no longer runs."""
    host = socket.gethostname()
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        owner, _, rest = tmp.name[len(TMP_PREFIX):].rpartition("-")[0].rpartition("-")
        if owner != host or not rest.isdigit():
            continue
        try:
            os.kill(int(rest), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # alive, another user's
            pass


def build_store(path: Path, key: dict[str, Any], pairs: Iterable[Pair], tokenizer: Tokenizer,
                workers: int | None = None, stats: dict[str, Any] | None = None,
                desc: str = "encoding") -> TokenStore:
    """Encode `pairs` (a stream) into a new store at `path`, atomically; `workers` processes (0: this one).

    `stats` is the dict the pair stream fills while it is read (e.g. the count of empty pairs it
    dropped); it is stored in the manifest once the stream is exhausted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers is None else workers
    dtype = token_dtype(max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size))
    start = time.perf_counter()
    _remove_orphans(path.parent)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"))
    writer, bar = _Writer(tmp), _progress(desc)
    try:
        chunks = _chunks(pairs, CHUNK_PAIRS)
        first = list(itertools.islice(chunks, 2))
        if workers < 2 or len(first) < 2:  # a small split: worker start-up would cost more than it saves
            for src, tgt in itertools.chain(first, chunks):
                writer.add(*_encode_chunk(src, tgt, dtype.str, tokenizer, threads=None))
                bar is not None and bar.update(len(src))
        else:
            _encode_in_workers(itertools.chain(first, chunks), tokenizer, dtype, workers, writer, bar)
        seconds = time.perf_counter() - start
        manifest = {"format": FORMAT_VERSION, "key": key, "dtype": dtype.str, "pairs": writer.pairs,
                    "stats": dict(stats or {}), "seconds": round(seconds, 2)}
        writer.finish(manifest)
        _fsync_dir(tmp)
        _install(tmp, path, key)
    except BaseException as err:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and not isinstance(err, FileNotFoundError):
            raise OSError(err.errno, f"could not write the token cache {path}: {err.strerror or err} "
                                     f"(free some space, or point --data.cache_dir elsewhere)") from None
        raise
    finally:
        if bar is not None:
            bar.close()
    log.info("%s: %d pairs in %.1fs (%.0f pairs/s, %s) -> %s", desc, writer.pairs, seconds,
             writer.pairs / max(seconds, 1e-9), f"{workers} processes" if workers > 1 else "1 process", path)
    store = open_store(path, key)
    if store is None:
        raise OSError(f"the token cache {path} was written but does not read back; is the disk full or failing?")
    return store


def _encode_in_workers(chunks: Iterable[tuple[list[str], list[str]]], tokenizer: Tokenizer, dtype: np.dtype,
                       workers: int, writer: _Writer, bar) -> None:
    """Encode chunks in `workers` processes, at most 2 chunks per worker in flight, written in order."""
    # fork: workers need only sentencepiece and numpy, and start in milliseconds (spawn re-imports torch)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    with context.Pool(workers, initializer=_init_worker, initargs=(tokenizer.to_dict(),)) as pool:
        pending: collections.deque = collections.deque()
        for src, tgt in chunks:
            pending.append((len(src), pool.apply_async(_encode_chunk, (src, tgt, dtype.str))))
            while len(pending) >= 2 * workers:
                n, result = pending.popleft()
                writer.add(*result.get())
                bar is not None and bar.update(n)
        while pending:
            n, result = pending.popleft()
            writer.add(*result.get())
            bar is not None and bar.update(n)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not every platform can open a directory
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _install(tmp: Path, path: Path, key: dict[str, Any]) -> None:
    """Rename the finished `tmp` to `path`; if another process got there first with a valid store, keep that."""
    for _ in range(2):
        try:
            os.rename(tmp, path)
            _fsync_dir(path.parent)
            return
        except OSError:
            if not path.exists():
                raise
            if _problem(path, key)[0] is None:  # a concurrent build finished first: use it
                shutil.rmtree(tmp, ignore_errors=True)
                return
            shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)


def store_path(cache_dir: str | Path, name: str, key: dict[str, Any]) -> Path:
    """Where the store for `key` lives: `<cache_dir>/tokens/<name>-<digest of key>`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / "tokens" / f"{name}-{digest}"


def load_or_build(cache_dir: str | Path, name: str, key: dict[str, Any], pairs: Any, tokenizer: Tokenizer,
                  workers: int | None = None) -> TokenStore:
    """The store for `key` from the cache, or built from `pairs(stats)` (a callable returning a pair stream)."""
    key = {"format": FORMAT_VERSION, **key, "tokenizer": tokenizer_hash(tokenizer)}
    path = store_path(cache_dir, name, key)
    store = open_store(path, key)
    if store is not None:
        return store
    stats: dict[str, Any] = {}
    return build_store(path, key, pairs(stats), tokenizer, workers, stats, desc=f"encoding {name}")


# ---- a seeded sample for tokenizer training --------------------------------------------------
def seeded_sample(items: Iterable[Any], k: int, seed: int) -> list[Any]:
    """k items drawn uniformly from a stream of unknown length, in stream order (all of them when fewer).

    Reservoir sampling with geometric skips (Li's Algorithm L): memory O(k), a few random draws
    per kept item, the same sample for the same (stream, k, seed).
    """
    rng = random.Random(seed)
    reservoir: list[tuple[int, Any]] = []
    it = enumerate(items)
    for i, item in it:
        reservoir.append((i, item))
        if len(reservoir) == k:
            break
    if len(reservoir) < k:
        return [item for _, item in reservoir]
    def u() -> float:
        return 1.0 - rng.random()  # in (0, 1]: log() is defined

    w = math.exp(math.log(u()) / k)
    skip = int(math.log(u()) / math.log(1 - w)) if w < 1 else 0
    for i, item in it:
        if skip:
            skip -= 1
            continue
        reservoir[rng.randrange(k)] = (i, item)
        w *= math.exp(math.log(u()) / k)
        skip = int(math.log(u()) / math.log(1 - w)) if w < 1 else 0
    reservoir.sort(key=lambda x: x[0])
    return [item for _, item in reservoir]
