"""What subword sampling costs on a training split: token growth, share of pairs segmented anew, seconds per epoch.

    python benchmarks/subword_cost.py                                  # Multi30k de-en, the shipped tokenizer options
    python benchmarks/subword_cost.py --settings -1:0.1 64:0.1 -1:0.5   # nbest_size:alpha pairs

Uses the DataModule's own tokenizer (trained or cached as `translator fit` does) and the per-epoch
sampler of translator/data/subword.py; prints one Markdown table. Run from the repository root.
"""
from __future__ import annotations

import argparse
import sys
import time

from translator.data.subword import SubwordSampling
from translator.training.datamodule import Seq2SeqDataModule


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="multi30k")
    p.add_argument("--settings", nargs="+", default=["64:0.1", "-1:0.1", "-1:0.2", "-1:0.5", "16:0.1"],
                   help="nbest_size:alpha pairs (default %(default)s)")
    p.add_argument("--data_dir", default=None)
    args = p.parse_args(argv)
    dm = Seq2SeqDataModule(args.dataset, data_dir=args.data_dir)
    dm.setup("fit")
    train = dm.splits["train"]
    src_tokens, tgt_tokens = sum(map(len, train.src_ids)), sum(map(len, train.tgt_ids))
    print(f"{args.dataset} {dm.src_lang}->{dm.tgt_lang} train: {len(train)} pairs, {src_tokens} / {tgt_tokens} "
          f"source / target tokens deterministic ({dm.tokenizer_type} {dm.tokenizer.src_vocab_size})\n")
    print("| nbest_size | alpha | source tokens | target tokens | pairs segmented anew | seconds per epoch |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings:
        nbest, alpha = setting.split(":")
        sampling = SubwordSampling(dm.tokenizer, train.src_text, train.tgt_text, train.src_ids, train.tgt_ids,
                                   float(alpha), int(nbest), dm.max_len)
        start = time.perf_counter()
        src, tgt = sampling.segment(seed=dm.seed, epoch=0)
        seconds = time.perf_counter() - start
        anew = sum(s != a or t != b for s, t, a, b in zip(src, tgt, train.src_ids, train.tgt_ids)) / len(train)
        print(f"| {nbest} | {alpha} | {sum(map(len, src)) / src_tokens:.3f}x | {sum(map(len, tgt)) / tgt_tokens:.3f}x "
              f"| {anew:.1%} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
