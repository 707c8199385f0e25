"""Inference engines: what runs a model's search and scoring for `Translator`, behind one protocol.

An engine turns batches of source ids into hypotheses (`search`) and scores given targets
(`score`); `Translator` holds one and never asks which. What every engine shares is done once,
above them, by `Translator` and `decoding.rank`: source truncation to `max_src_len`, the output
cap `max_tgt_len`, re-ranking (anti-LM, scored through `score`) and the n-best cut.

    base.py      the `Engine` protocol (search, score, step_scores, max_src_len, max_tgt_len) and precisions
    pytorch.py   `PyTorchEngine`: the decoders of translator/decoding/ over any `Seq2Seq` (an `Ensemble`
                 included), with the precision rules (bf16 autocast, int8 dynamic quantization on the CPU);
                 `engine_of`, which picks the engine of a bundle
    ct2.py       `CT2Model`: an exported directory run by CTranslate2
    ensemble.py  several checkpoints as one `Seq2Seq` (the mean of their log-probabilities)
    quantize.py  torch's dynamic int8 quantization (--precision int8)

A new engine is a module here with a class that implements `Engine`, returned by `engine_of` for the
bundles it runs.
"""
