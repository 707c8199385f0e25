"""A random held-out set for a dataset without official splits: N rows withheld at random, as a scorer withholds them.

    python benchmarks/random_heldout.py chatbot-ko --out runs/ko-random --rows 500
    translator fit --config translator/configs/chat_chatbot_ko.yaml --data.data_dir runs/ko-random/data
    translator evaluate --checkpoint checkpoints/chat-chatbot-ko/version_0/checkpoints/best.ckpt \\
        --source runs/ko-random/heldout.source --reference runs/ko-random/heldout.reference --hits_k 20

The registry's own val/test of such a dataset (`heldout_split`) keep every group of pairs that share a
sentence together, so no reply of val is ever seen in training: the hard case. A scorer who withholds rows
at random (the shared chatbot-ko withholds 500 so) gets a test whose replies often occur in training too
(chatbot-ko: 57% of them), and a model that has learnt its corpus's stock replies scores far higher there
(benchmarks/RESULTS.md, "chatbot-ko on a random held-out set"). This script builds that case to select on:
`OUT/data/<dataset>/` is the dataset folder without the withheld rows (train on it with
`--data.data_dir OUT/data`), and `OUT/heldout.source` / `OUT/heldout.reference` are the withheld pairs,
line-aligned, in the dataset's default direction (`OUT/withheld-rows/` keeps the withheld rows in the
dataset's own file format). Seeded: the same --seed withholds the same rows.
"""
from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
from pathlib import Path

from _common import BenchmarkError, run_main
from translator.atomic import write_bytes
from translator.data.registry import find_dataset, get_spec, read_spec_files, resolve_languages


def split_rows(text: str, reader: str) -> tuple[list[str], list[str]]:
    """A file's (header rows, data rows) as text, each row with a line ending: a CSV file row by row as the csv
    module reads it (a quoted field may hold a line break) and written back by it, a TSV file line by line."""
    if reader == "tsv":
        lines = text.split("\n")
        return [], [line + "\n" for line in (lines[:-1] if lines[-1] == "" else lines)]
    rows = []
    for fields in csv.reader(io.StringIO(text, newline="")):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(fields)
        rows.append(buffer.getvalue())
    return rows[:1], rows[1:]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", help="a registry dataset without official splits (chatbot-ko, tatoeba-eng-fra)")
    p.add_argument("--out", required=True, help="folder to write (must not exist yet)")
    p.add_argument("--rows", type=int, default=500, help="rows withheld (default %(default)s)")
    p.add_argument("--seed", type=int, default=20261207)
    p.add_argument("--data_dir", default=None)
    args = p.parse_args(argv)
    try:
        spec = get_spec(args.dataset)
    except ValueError as err:
        raise BenchmarkError(str(err)) from None
    files = sorted({f for names in spec.files.values() for f in names})
    if spec.holdout is None or len(files) != 1 or spec.reader not in ("csv", "tsv"):
        raise BenchmarkError(f"{args.dataset} has official splits; a random held-out set is only built for "
                             "one-file datasets without them (chatbot-ko, tatoeba-eng-fra)")
    out = Path(args.out)
    if out.exists():
        raise BenchmarkError(f"{out} exists; give a new folder (nothing is overwritten)")
    src, tgt = spec.default_pair
    root = find_dataset(spec.name, "train", *resolve_languages(spec.name, src, tgt), args.data_dir)
    name = files[0]
    header, rows = split_rows((root / name).read_text(encoding="utf-8"), spec.reader)
    if not 0 < args.rows < len(rows) // 2:
        raise BenchmarkError(f"--rows {args.rows}: give 1 to {len(rows) // 2 - 1} ({root / name} has {len(rows)} rows)")
    withheld = set(random.Random(args.seed).sample(range(len(rows)), args.rows))
    kept = [row for i, row in enumerate(rows) if i not in withheld]
    folder = out / "data" / spec.name
    folder.mkdir(parents=True)
    for other in root.iterdir():
        if other.is_file() and other.name != name:
            shutil.copy2(other, folder / other.name)
    write_bytes(folder / name, "".join(header + kept).encode("utf-8"))
    scratch = out / "withheld-rows"
    scratch.mkdir()
    write_bytes(scratch / name, "".join(header + [rows[i] for i in sorted(withheld)]).encode("utf-8"))
    pairs = read_spec_files(spec, [scratch / name], stats={})
    pairs = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    write_bytes(out / "heldout.source", "".join(s.strip() + "\n" for s, _ in pairs).encode("utf-8"))
    write_bytes(out / "heldout.reference", "".join(t.strip() + "\n" for _, t in pairs).encode("utf-8"))
    seen = {t.strip() for _, t in read_spec_files(spec, [folder / name], stats={})}
    shared = sum(t.strip() in seen for _, t in pairs)
    print(f"{spec.name}: {len(pairs)} pairs withheld of {len(rows)} rows (seed {args.seed}); "
          f"{shared / max(len(pairs), 1):.1%} of their targets occur verbatim in the rows kept\n"
          f"train with: --data.data_dir {out / 'data'}\n"
          f"evaluate with: --source {out / 'heldout.source'} --reference {out / 'heldout.reference'}")
    return 0


if __name__ == "__main__":
    run_main("random_heldout.py", main)
