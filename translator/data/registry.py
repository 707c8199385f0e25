"""Dataset registry: the corpora we know by name, where they live on disk, and where they come from.

A dataset lives in `<data_dir>/<name>/`, laid out exactly like ../shared/data/<name>/. The data
directory is searched in order: the explicit `data_dir` argument (`--data.data_dir`), the
`TRANSLATOR_DATA_DIR` environment variable, then `data/` in the current directory.

Splits are always called train / val / test. Datasets without an official split (tatoeba-eng-fra,
chatbot-ko) get a deterministic held-out split: connected groups of pairs that share a source or
a target sentence are kept together, so no sentence appears in two splits. The split seed is
fixed (SPLIT_SEED) and independent of the training seed, so scores stay comparable across runs.
"""
from __future__ import annotations

import functools
import gzip
import io
import os
import random
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from translator.atomic import write_bytes
from translator.data.readers import Pair, iter_parallel, read_csv_columns, read_dailydialog, read_parallel, read_tsv
from translator.tasks import CHAT, DEFAULT_CONTEXT_TURNS, TASKS, get_task

ENV_VAR = "TRANSLATOR_DATA_DIR"
SPLITS = ("train", "val", "test")
SPLIT_SEED = 1234
_SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val"}


@dataclass(frozen=True)
class Source:
    """One upstream file: `kind` is "gz" (gunzip to `target`), "file" (save as `target`) or "zip".

    For "zip", `members` maps a member name (matched on its end) to a target path; a target that
    ends with "/" means the member is itself a zip whose files go into that folder.
    """

    url: str
    kind: str
    target: str = ""
    members: tuple[tuple[str, str], ...] = ()


READERS = ("parallel", "tsv", "csv", "dialogues")


@dataclass(frozen=True)
class DatasetSpec:
    """What the project knows about one corpus, and every rule for reading it. Nothing outside this
    module looks at a dataset's name: code asks its spec.

    files:    split -> paths inside `<data_dir>/<name>/`, with {src} / {tgt} language slots.
    reader:   "parallel" (two line-aligned files: {src} then {tgt}), "tsv" (source<TAB>target),
              "csv" (named columns, `options["columns"] = (src_col, tgt_col)`), or "dialogues"
              (DailyDialog turns -> (previous turns -> reply) pairs).
    holdout:  None = the files are official splits; (n_val, n_test) = one file holds everything and
              a seeded held-out split is drawn from it (no sentence in two splits).
    reversed_pairs: language pairs read with the columns swapped (a TSV stored as en<TAB>fr read fr->en).
    task:     "translation" or "chat".
    multi_turn: chat only: the source is the previous `context_turns` turns (joined by <sep>), so a
              chatbot sends the message and the `context_turns - 1` turns before it; False =
              single-turn pairs, where a chatbot sends the message alone.
    """

    name: str
    description: str
    task: str
    languages: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    files: dict[str, tuple[str, ...]]
    reader: str = "parallel"
    sources: tuple[Source, ...] = ()
    license: str = "unknown"
    holdout: tuple[int, int] | None = None
    reversed_pairs: tuple[tuple[str, str], ...] = ()
    multi_turn: bool = False
    notes: str = ""
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reader not in READERS:
            raise ValueError(f"dataset {self.name!r}: unknown reader {self.reader!r}; choose one of {READERS}")
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: unknown task {self.task!r}; choose one of {tuple(TASKS)}")
        if self.reader == "csv" and len(self.options.get("columns", ())) != 2:
            raise ValueError(f"dataset {self.name!r}: a csv reader needs options={{'columns': (src, tgt)}}")
        missing = [s for s in SPLITS if s not in self.files]
        if missing:
            raise ValueError(f"dataset {self.name!r}: files has no entry for split(s) {missing}")

    @property
    def default_pair(self) -> tuple[str, str]:
        return self.pairs[0]

    def chat_context_turns(self, context_turns: int) -> int | None:
        """Turns a chatbot puts in the source, its message included: None for translation, 1 for single-turn chat."""
        if not get_task(self.task).conversational:
            return None
        return CHAT.turns_for(self.multi_turn, context_turns)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.sources]


_M30K = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
_M30K_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(
        name="multi30k",
        description="Multi30k task 1: Flickr30k image captions in English, German and French",
        task="translation",
        languages=("en", "de", "fr"),
        pairs=(("de", "en"), ("en", "de"), ("fr", "en"), ("en", "fr"), ("de", "fr"), ("fr", "de")),
        files={split: (f"{stem}.{{src}}", f"{stem}.{{tgt}}") for split, stem in _M30K_FILES.items()},
        reader="parallel",
        sources=tuple(Source(f"{_M30K}{stem}.{lang}.gz", "gz", f"{stem}.{lang}")
                      for stem in _M30K_FILES.values() for lang in ("en", "de", "fr")),
        license="non-commercial research and education (Flickr terms of use)",
        notes="official splits: train 29,000 / val 1,014 / test = test_2016_flickr 1,000",
    ),
    DatasetSpec(
        name="tatoeba-eng-fra",
        description="Tatoeba English-French sentence pairs (manythings.org Anki export)",
        task="translation",
        languages=("en", "fr"),
        pairs=(("en", "fr"), ("fr", "en")),
        files={split: ("fra.txt",) for split in SPLITS},
        reader="tsv",
        reversed_pairs=(("fr", "en"),),  # the file is English<TAB>French
        sources=(Source("https://github.com/genimind/seq2seq/raw/4f3f8eb0adde54fcc8b89394336b002e7961244c/"
                        "fra-eng.zip", "zip", members=(("fra.txt", "fra.txt"), ("_about.txt", "_about.txt"))),),
        license="CC BY 2.0 (credit www.manythings.org/anki and tatoeba.org)",
        holdout=(1000, 1000),
        notes="no official split: seeded held-out val/test of about 1,000 pairs each",
    ),
    DatasetSpec(
        name="chatbot-ko",
        description="Korean single-turn chatbot pairs (songys/Chatbot_data), question -> answer",
        task="chat",
        languages=("ko",),
        pairs=(("ko", "ko"),),
        files={split: ("ChatbotData.csv",) for split in SPLITS},
        reader="csv",
        sources=(Source("https://raw.githubusercontent.com/songys/Chatbot_data/master/ChatbotData.csv", "file",
                        "ChatbotData.csv"),),
        license="MIT",
        holdout=(500, 500),
        notes="no official split: seeded held-out val/test of about 500 pairs each",
        options={"columns": ("Q", "A")},
    ),
    DatasetSpec(
        name="dailydialog",
        description="DailyDialog English multi-turn dialogues as (previous turns -> reply) pairs",
        task="chat",
        languages=("en",),
        pairs=(("en", "en"),),
        files={"train": ("train/dialogues_train.txt",), "val": ("validation/dialogues_validation.txt",),
               "test": ("test/dialogues_test.txt",)},
        reader="dialogues",
        multi_turn=True,
        sources=(Source("http://yanran.li/files/ijcnlp_dailydialog.zip", "zip",
                        members=(("train.zip", "train/"), ("validation.zip", "validation/"),
                                 ("test.zip", "test/"))),),
        license="CC BY-NC-SA 4.0 (non-commercial)",
        notes="official train / validation / test; the shared copy withholds test, so evaluate on val",
    ),
)}


# ---- names, splits, languages -------------------------------------------------------------
def get_spec(name: str) -> DatasetSpec:
    """The registry entry for `name`, or a ValueError listing the known names."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def normalize_split(split: str) -> str:
    split = _SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


def resolve_languages(name: str, src_lang: str | None = None, tgt_lang: str | None = None) -> tuple[str, str]:
    """The (src, tgt) pair to use; a missing side comes from the dataset's default pair."""
    spec = get_spec(name)
    default_src, default_tgt = spec.default_pair
    pair = (src_lang or default_src, tgt_lang or default_tgt)
    if pair not in spec.pairs:
        supported = ", ".join(f"{s}->{t}" for s, t in spec.pairs)
        raise ValueError(f"dataset {name!r} does not support {pair[0]}->{pair[1]}; supported: {supported} "
                         f"(leave src_lang and tgt_lang unset for {default_src}->{default_tgt})")
    return pair


# ---- where the data lives -----------------------------------------------------------------
def data_dirs(data_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """The data directories to search, in order, each with how it was configured."""
    places = []
    if data_dir is not None:
        places.append((Path(data_dir), "from data_dir / --data.data_dir"))
    if os.environ.get(ENV_VAR):
        places.append((Path(os.environ[ENV_VAR]), f"from ${ENV_VAR}"))
    places.append((Path("data"), "default: data/ in the current directory"))
    return places


def _split_files(spec: DatasetSpec, split: str, src: str, tgt: str) -> list[str]:
    return [f.format(src=src, tgt=tgt) for f in spec.files[split]]


def find_dataset(name: str, split: str = "train", src_lang: str | None = None, tgt_lang: str | None = None,
                 data_dir: str | Path | None = None) -> Path:
    """The folder `<data_dir>/<name>` holding `split`; FileNotFoundError lists every place looked."""
    spec, split = get_spec(name), normalize_split(split)
    src, tgt = resolve_languages(name, src_lang, tgt_lang)
    needed = _split_files(spec, split, src, tgt)
    looked = []
    for base, how in data_dirs(data_dir):
        root = base / name
        if all((root / f).is_file() for f in needed):
            return root
        looked.append(f"  {root.resolve()}  ({how})")
    train_files = _split_files(spec, "train", src, tgt)
    has_train = any(all((base / name / f).is_file() for f in train_files) for base, _ in data_dirs(data_dir))
    if split != "train" and has_train:
        raise FileNotFoundError(
            f"{name} has no {split} split here: {', '.join(needed)} is missing (the shared copies withhold some "
            f"official test sets). Evaluate on the val split instead, or download the full corpus with "
            f"`translator data download {name}`.")
    raise FileNotFoundError(
        f"dataset {name!r} ({split} split) not found: looked for {', '.join(needed)} in\n" + "\n".join(looked)
        + f"\nProvide it with --data.data_dir DIR (DIR/{name}/ laid out as in the dataset README), "
          f"or set {ENV_VAR}=DIR, or run `translator data download {name}` (needs internet access).")


# ---- reading ------------------------------------------------------------------------------
def _group_ids(pairs: list[Pair]) -> list[int]:
    """Connected-component id per pair, where pairs sharing a source or a target string are connected."""
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def find(x):
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression keeps later finds short
            parent[x], x = root, parent[x]
        return root

    for s, t in pairs:
        a, b = find((0, s)), find((1, t))
        if a != b:
            parent[a] = b
    ids: dict[tuple[int, str], int] = {}
    return [ids.setdefault(find((0, s)), len(ids)) for s, _ in pairs]


def heldout_split(pairs: list[Pair], n_val: int, n_test: int, seed: int = SPLIT_SEED) -> dict[str, list[Pair]]:
    """Deterministic train/val/test split that never puts one source or target sentence in two splits.

    Groups are drawn in a seeded random order until val and then test hold at least n_val / n_test
    pairs (at most a tenth of the corpus each, so tiny corpora still keep most pairs for training).
    Each split keeps the file order.
    """
    groups = _group_ids(pairs)
    members: list[list[int]] = [[] for _ in range(max(groups, default=-1) + 1)]
    for i, g in enumerate(groups):
        members[g].append(i)
    order = list(range(len(members)))
    random.Random(seed).shuffle(order)
    quota = {"val": min(n_val, max(1, len(pairs) // 10)), "test": min(n_test, max(1, len(pairs) // 10))}
    chosen: dict[str, list[int]] = {"val": [], "test": [], "train": []}
    for g in order:
        split = next((s for s in ("val", "test") if len(chosen[s]) < quota[s]), "train")
        chosen[split].extend(members[g])
    return {split: [pairs[i] for i in sorted(idx)] for split, idx in chosen.items()}


def read_spec_files(spec: DatasetSpec, files: list[Path], context_turns: int = DEFAULT_CONTEXT_TURNS,
                    stats: dict | None = None) -> list[Pair]:
    """The pairs of `files` (laid out as the spec's files) with the spec's reader, in the file's own column order."""
    if spec.reader == "parallel":
        return read_parallel(*files, stats=stats)
    if spec.reader == "tsv":
        return read_tsv(files[0], stats=stats)
    if spec.reader == "csv":
        return read_csv_columns(files[0], *spec.options["columns"], stats=stats)
    return read_dailydialog(files[0], context_turns, stats=stats)


@functools.lru_cache(maxsize=4)
def _cached_heldout(name: str, files: tuple[str, ...], stamp: tuple[tuple[int, int], ...], seed: int,
                    context_turns: int) -> tuple[dict[str, list[Pair]], int]:
    """Read a corpus without official splits once and split it (val + train reuse one read).

    Returns the splits and the number of empty pairs dropped from the whole file.
    """
    spec, stats = get_spec(name), {}
    pairs = read_spec_files(spec, [Path(f) for f in files], context_turns, stats)
    return heldout_split(pairs, *spec.holdout, seed=seed), stats.get("empty", 0)


def load_pairs(dataset: str, split: str, src_lang: str | None = None, tgt_lang: str | None = None,
               data_dir: str | Path | None = None, context_turns: int = DEFAULT_CONTEXT_TURNS,
               seed: int = SPLIT_SEED, *, stats: dict | None = None) -> list[Pair]:
    """(source, target) text pairs of one split of a registered dataset, by the rules of its spec.

    `context_turns` is used by multi-turn chat datasets only (previous turns in the context);
    `seed` only by datasets without an official split (keep the default so held-out sets stay the
    same). `stats`, when given, receives "empty": pairs dropped for an empty side (for held-out
    splits, counted over the whole file).
    """
    spec, split = get_spec(dataset), normalize_split(split)
    src, tgt = resolve_languages(dataset, src_lang, tgt_lang)
    read_as = (tgt, src) if (src, tgt) in spec.reversed_pairs else (src, tgt)  # the file's column order
    root = find_dataset(dataset, split, src, tgt, data_dir)
    files = [root / f for f in _split_files(spec, split, *read_as)]
    if spec.holdout is None:
        pairs = read_spec_files(spec, files, context_turns, stats)
    else:
        stamps = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        splits, empty = _cached_heldout(spec.name, tuple(str(f.resolve()) for f in files), stamps, seed,
                                       context_turns)
        if stats is not None:
            stats["empty"] = stats.get("empty", 0) + empty
        pairs = list(splits[split])
    if read_as != (src, tgt):
        return [(t, s) for s, t in pairs]
    return pairs


def split_files(dataset: str, split: str, src_lang: str | None = None, tgt_lang: str | None = None,
                data_dir: str | Path | None = None) -> list[Path]:
    """The files a split is read from (resolved), in the reader's order: what a cache of it is keyed by."""
    spec, split = get_spec(dataset), normalize_split(split)
    src, tgt = resolve_languages(dataset, src_lang, tgt_lang)
    read_as = (tgt, src) if (src, tgt) in spec.reversed_pairs else (src, tgt)
    root = find_dataset(dataset, split, src, tgt, data_dir)
    return [(root / f).resolve() for f in _split_files(spec, split, *read_as)]


def iter_pairs(dataset: str, split: str, src_lang: str | None = None, tgt_lang: str | None = None,
               data_dir: str | Path | None = None, context_turns: int = DEFAULT_CONTEXT_TURNS, seed: int = SPLIT_SEED, *,
               stats: dict | None = None) -> Iterator[Pair]:
    """The pairs of `load_pairs`, in the same order, as a stream.

    Line-aligned parallel files with official splits (the layout large corpora come in) are read
    line by line, never whole; the other readers build their (small) list first, and a held-out
    split needs the whole file anyway to keep shared sentences in one split.
    """
    spec = get_spec(dataset)
    src, tgt = resolve_languages(dataset, src_lang, tgt_lang)
    if spec.reader != "parallel" or spec.holdout is not None:
        yield from load_pairs(dataset, split, src, tgt, data_dir, context_turns, seed, stats=stats)
        return
    files = split_files(dataset, split, src, tgt, data_dir)
    if (src, tgt) in spec.reversed_pairs:
        yield from ((t, s) for s, t in iter_parallel(*files, stats=stats))
    else:
        yield from iter_parallel(*files, stats=stats)


# ---- listing and downloading --------------------------------------------------------------
def _has_train(spec: DatasetSpec, root: Path) -> bool:
    src, tgt = spec.default_pair
    return all((root / f).is_file() for f in _split_files(spec, "train", src, tgt))


def dataset_path(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The first `<data_dir>/<name>` that holds the dataset's train split, or None."""
    spec = get_spec(name)
    return next((base / name for base, _ in data_dirs(data_dir) if _has_train(spec, base / name)), None)


def list_datasets(data_dir: str | Path | None = None) -> list[dict]:
    """One dict per registered dataset: description, languages, pairs, splits, URLs, license, local path."""
    rows = []
    for spec in DATASETS.values():
        path = dataset_path(spec.name, data_dir)
        rows.append({
            "name": spec.name, "description": spec.description, "task": spec.task,
            "languages": list(spec.languages), "pairs": [f"{s}->{t}" for s, t in spec.pairs],
            "splits": list(SPLITS), "split_notes": spec.notes, "urls": spec.urls, "license": spec.license,
            "found": str(path) if path else None,
        })
    return rows


class DownloadError(RuntimeError):
    """A dataset could not be fetched or unpacked (the message names the URL and the reason)."""


def _fetch(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"could not download {url}: {reason}") from None


def _zip_member(archive: zipfile.ZipFile, suffix: str, url: str) -> bytes:
    for member in archive.namelist():
        if member == suffix or member.endswith("/" + suffix):
            return archive.read(member)
    raise DownloadError(f"{url}: the archive has no member {suffix!r}")


def _unpack(source: Source, payload: bytes, root: Path) -> None:
    """Write one downloaded file into `root` in the shared layout."""
    try:
        if source.kind == "gz":
            write_bytes(root / source.target, gzip.decompress(payload))
        elif source.kind == "file":
            write_bytes(root / source.target, payload)
        elif source.kind == "zip":
            archive = zipfile.ZipFile(io.BytesIO(payload))
            for suffix, target in source.members:
                data = _zip_member(archive, suffix, source.url)
                if not target.endswith("/"):
                    write_bytes(root / target, data)
                    continue
                inner = zipfile.ZipFile(io.BytesIO(data))
                for member in inner.namelist():  # keep only file names, never paths from the archive
                    if not member.endswith("/"):
                        write_bytes(root / target / Path(member).name, inner.read(member))
        else:
            raise DownloadError(f"{source.url}: unknown source kind {source.kind!r}")
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DownloadError(f"could not unpack {source.url}: {err}") from None


def download(name: str, data_dir: str | Path | None = None, force: bool = False, timeout: float = 60.0) -> Path:
    """Fetch dataset `name` from upstream into `<data_dir>/<name>/` (first of data_dirs()); returns that folder."""
    spec = get_spec(name)
    root = data_dirs(data_dir)[0][0] / name
    if not force and _has_train(spec, root):
        return root
    try:
        payloads = [_fetch(source.url, timeout) for source in spec.sources]  # all first: no half-written folder
    except DownloadError as err:
        raise DownloadError(f"{err}\n{name} was not downloaded. Without internet access, copy its files into "
                            f"{root.resolve()}/ (laid out as in the dataset README), or point --data.data_dir or "
                            f"${ENV_VAR} at a folder that holds {name}/") from None
    for source, payload in zip(spec.sources, payloads):
        _unpack(source, payload, root)
    return root




# ---- `translator data list | download` ----------------------------------------------------
def list_command(data_dir: str | None = None) -> None:
    """List the registered datasets: languages, splits, upstream URL, license and where they were found.

    Args:
        data_dir: folder holding <name>/ folders; default $TRANSLATOR_DATA_DIR, then data/.
    """
    for row in list_datasets(data_dir):
        urls = row["urls"]
        url = urls[0] if len(urls) == 1 else f"{os.path.commonprefix(urls)}... ({len(urls)} files)"
        print(f"{row['name']}  [{row['task']}: {' '.join(row['pairs'])}]  "
              f"{'found: ' + row['found'] if row['found'] else 'not found locally'}\n"
              f"    {row['description']}\n    splits: {row['split_notes']}\n"
              f"    source: {url}\n    license: {row['license']}")
    print("searched: " + "; ".join(f"{base} ({how})" for base, how in data_dirs(data_dir)))


def download_command(name: str, data_dir: str | None = None, force: bool = False) -> None:
    """Download dataset NAME from upstream into DATA_DIR/NAME/, laid out like ../shared/data/NAME/.

    Args:
        name: a registered dataset (see `translator data list`).
        data_dir: where to put it; default $TRANSLATOR_DATA_DIR, then data/.
        force: download again even if the files are already there.
    """
    try:
        root = download(name, data_dir, force=force)
    except DownloadError as err:
        raise ValueError(str(err)) from None  # the CLI prints ValueErrors as one line
    print(f"{name}: ready in {root}")
