"""Whole test_2016_flickr: exported float32 / int8 vs PyTorch fp32, greedy and beam 5 (identical share, BLEU).

    python benchmarks/engines_equality.py CKPT FLOAT32_DIR INT8_DIR    # dirs from `translator export`
"""
import json, sys
from translator.data import load_pairs
from translator.evaluation.metrics import score
from translator.inference.translator import Translator
pairs = load_pairs("multi30k", "test", "de", "en", None)
src, ref = [s for s, _ in pairs], [t for _, t in pairs]
ck, float32_dir, int8_dir = sys.argv[1:4]
out = {}
engines = {"pytorch fp32": Translator.from_checkpoint(ck), "ct2 float32": Translator.from_checkpoint(float32_dir),
           "ct2 int8": Translator.from_checkpoint(int8_dir)}
for method in ("greedy", "beam"):
    base = None
    for name, tr in engines.items():
        hyp = [r.text for r in tr.translate(src, method=method, beam_size=5)]
        base = base or hyp
        out[f"{name} {method}"] = {"bleu": round(score(hyp, ref, "en")["bleu"], 2), "same_as_pytorch_fp32": sum(a == b for a, b in zip(hyp, base)) / len(hyp)}
        print(name, method, out[f"{name} {method}"], flush=True)
json.dump(out, open("benchmarks/results/engines_full_equality.json", "w"), indent=1)
