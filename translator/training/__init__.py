"""Training: everything that imports Lightning (`translator fit / validate / test`), nothing that inference needs.

    system.py      Seq2SeqSystem: teacher forcing, loss, AdamW + warmup, validation BLEU
    datamodule.py  Seq2SeqDataModule (options, token stores, batches, context dropout; tokenizers from data/) and `translator data stats`
    loss.py        label-smoothed cross-entropy + NLL in one formula; the contrastive (MMI) term
    callbacks.py   exact resume (random states of every rank), atomic checkpoint writes, data report
    resume.py      what a resumed fit may change; the schedule re-anchored on a new run length
    finetune.py    a run that starts from a trained checkpoint (its model and tokenizer), replay of old data
"""
