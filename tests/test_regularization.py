"""Subword regularization (a sampled segmentation per epoch, train only) and R-Drop."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_MODELS, write_multi30k_like
from translator.data.subword import SubwordSampling
from translator.models.transformer import Transformer
from translator.training.datamodule import Seq2SeqDataModule
from translator.training.loss import label_smoothed_loss, symmetric_kl
from translator.training.system import Seq2SeqSystem


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_multi30k_like(tmp_path_factory.mktemp("data"), n_train=200, n_val=20, n_test=20)


def make_dm(data_dir: Path, **kwargs) -> Seq2SeqDataModule:
    options = dict(data_dir=str(data_dir), cache_dir=str(data_dir / "cache"), vocab_size=400, max_tokens=200)
    return Seq2SeqDataModule(**{**options, **kwargs})


def epoch_batches(dm: Seq2SeqDataModule, epoch: int) -> list[dict]:
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)  # what Lightning does at the start of an epoch
    return list(loader)


def ids_by_index(batches: list[dict]) -> dict[int, tuple[list[int], list[int]]]:
    """Pair index -> (source ids, target ids), read back from padded batches."""
    out = {}
    for b in batches:
        for row, i in enumerate(b["index"].tolist()):
            src = b["src"][row][b["src_mask"][row]].tolist()
            tgt = b["tgt_out"][row][b["tgt_out"][row] != 0].tolist()[:-1]  # without eos
            out[i] = (src, tgt)
    return out


# ---- subword regularization ------------------------------------------------------------------------
def test_sampled_segmentation_differs_per_epoch_and_repeats_for_the_same_seed_and_epoch(data_dir):
    dm = make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1)
    dm.setup("fit")
    train = dm.splits["train"]
    epoch0, epoch1 = ids_by_index(epoch_batches(dm, 0)), ids_by_index(epoch_batches(dm, 1))
    assert sorted(epoch0) == sorted(epoch1) == list(range(len(train)))  # every pair once per epoch
    changed = sum(epoch0[i] != epoch1[i] for i in epoch0)
    assert changed > len(train) // 2, f"only {changed} of {len(train)} pairs were segmented differently"
    deterministic = sum(epoch0[i] != (train.src_ids[i], train.tgt_ids[i]) for i in epoch0)
    assert deterministic > len(train) // 2
    # the text is the same, only its segmentation changes
    for i in list(epoch0)[:50]:
        assert dm.tokenizer.decode_src([epoch0[i][0]]) == dm.tokenizer.decode_src([train.src_ids[i]])
        assert dm.tokenizer.decode_tgt([epoch1[i][1]]) == dm.tokenizer.decode_tgt([train.tgt_ids[i]])

    # another process (a fresh DataModule), after other sampling calls, draws the same epoch 1
    SubwordSampling(dm.tokenizer, train.src_text, train.tgt_text, train.src_ids, train.tgt_ids, 0.1, -1,
                    dm.max_len).segment(seed=99, epoch=5)
    again = make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1)
    assert ids_by_index(epoch_batches(again, 1)) == epoch1
    other_seed = make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1, seed=7)
    assert ids_by_index(epoch_batches(other_seed, 1)) != epoch1


def test_sampled_batches_keep_the_token_budget_and_follow_the_epoch_lengths(data_dir):
    dm = make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1)
    plain = make_dm(data_dir)
    loader = dm.train_dataloader()
    sampled_tokens = 0
    for epoch in (0, 1):
        loader.batch_sampler.sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)  # the loader's length is this epoch's batch count
        for b in batches:
            assert b["src"].size(0) * max(b["src"].size(1), b["tgt_in"].size(1)) <= dm.max_tokens
        sampled_tokens = sum(int(b["src_mask"].sum()) for b in batches)
    plain_tokens = sum(int(b["src_mask"].sum()) for b in plain.train_dataloader())
    assert sampled_tokens > plain_tokens  # alpha 0.1 over the whole lattice favours short pieces


def test_sampling_is_off_at_validation_and_test(data_dir):
    dm, plain = make_dm(data_dir, subword_alpha=0.5, subword_nbest_size=-1), make_dm(data_dir)
    dm.setup("fit")
    plain.setup("fit")
    epoch_batches(dm, 3)  # a sampled training epoch first
    for split in ("val", "test"):
        if split == "test":
            dm.setup("test")
            plain.setup("test")
        loader = getattr(dm, f"{split}_dataloader")
        reference = getattr(plain, f"{split}_dataloader")
        for a, b in zip(loader(), reference(), strict=True):
            assert torch.equal(a["src"], b["src"]) and torch.equal(a["tgt_out"], b["tgt_out"])


def test_bpe_dropout_and_option_errors(data_dir):
    dm = make_dm(data_dir, tokenizer_type="bpe", subword_alpha=0.1)
    dm.setup("fit")
    train = dm.splits["train"]
    epoch0 = ids_by_index(epoch_batches(dm, 0))
    assert sum(epoch0[i] != (train.src_ids[i], train.tgt_ids[i]) for i in epoch0) > len(train) // 4
    with pytest.raises(ValueError, match=r"subword_alpha must be a BPE-dropout rate in \[0, 1\)"):
        make_dm(data_dir, tokenizer_type="bpe", subword_alpha=1.0)
    with pytest.raises(ValueError, match="subword_alpha must be a finite number >= 0"):
        make_dm(data_dir, subword_alpha=-0.1)
    with pytest.raises(ValueError, match="subword_nbest_size must be -1"):
        make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=1)


@pytest.mark.filterwarnings("ignore:.*validation_step", "ignore:Be aware that when using", "ignore:.*LeafSpec")
def test_lightning_resume_gets_the_same_sampled_segmentation(data_dir, tmp_path):
    """Through a real Trainer (which rebuilds the train loader every epoch): a run stopped mid-epoch and
    resumed from its checkpoint sees the same sampled batches as one uninterrupted run."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w, self.seen = torch.nn.Parameter(torch.zeros(1)), []

        def training_step(self, batch, batch_idx):
            self.seen.append(batch["src"].tolist())
            return (self.w ** 2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    flags = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                 max_epochs=3, use_distributed_sampler=False)
    dm = make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1)
    full = Recorder()
    L.Trainer(enable_checkpointing=False, **flags).fit(full, dm)
    counts = [len(epoch_batches(make_dm(data_dir, subword_alpha=0.1, subword_nbest_size=-1), e)) for e in range(3)]
    assert len(full.seen) == sum(counts)  # every epoch ran its own batch count
    stop = counts[0] + 2  # mid-way through the second epoch
    first = Recorder()
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=stop, save_top_k=-1)
    L.Trainer(max_steps=stop, callbacks=[saver], **flags).fit(first, make_dm(data_dir, subword_alpha=0.1,
                                                                               subword_nbest_size=-1))
    second = Recorder()
    L.Trainer(enable_checkpointing=False, **flags).fit(second, make_dm(data_dir, subword_alpha=0.1,
                                                                        subword_nbest_size=-1),
                                                        ckpt_path=next((tmp_path / "ckpt").iterdir()))
    assert first.seen + second.seen == full.seen


# ---- R-Drop ------------------------------------------------------------------------------------------
def _system(rdrop_alpha: float, dropout: float = 0.3, seed: int = 0) -> Seq2SeqSystem:
    torch.manual_seed(seed)
    model = Transformer(50, 50, 0, d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                        ff_size=64, dropout=dropout)
    system = Seq2SeqSystem(model, rdrop_alpha=rdrop_alpha, val_bleu=False, compile_loss=False)
    system.log = lambda *args, **kwargs: None  # no Trainer attached
    return system


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 50, (6, 7), generator=g)
    tgt = torch.randint(4, 50, (6, 5), generator=g)
    src[0, 5:] = 0
    tgt[1, 3:] = 0
    tgt_in = torch.cat([torch.full((6, 1), 2), tgt], 1)
    tgt_out = torch.cat([tgt, torch.zeros(6, 1, dtype=torch.long)], 1)
    tgt_out[torch.arange(6), (tgt != 0).sum(1)] = 3  # eos after the last real token
    tgt_in = tgt_in.masked_fill(tgt_out == 0, 0)
    return {"src": src, "src_mask": src != 0, "tgt_in": tgt_in, "tgt_out": tgt_out}


def test_rdrop_with_alpha_zero_is_exactly_the_plain_loss():
    batch = _batch()
    system = _system(0.0)
    system.train()
    torch.manual_seed(5)  # the same dropout masks for both
    loss = system._shared_step(batch, "train")
    torch.manual_seed(5)
    logits = system.model(batch["src"], batch["src_mask"], batch["tgt_in"])  # one plain pass
    expected, _ = label_smoothed_loss(logits.flatten(0, 1), batch["tgt_out"].flatten(), 0.1, 0, fused=False)
    torch.testing.assert_close(loss, expected)  # the plain loss, from the features a chunk at a time (float rounding)


def test_rdrop_without_dropout_adds_nothing_and_with_dropout_adds_the_kl():
    batch = _batch()
    deterministic = _system(1.0, dropout=0.0)
    deterministic.train()
    loss = deterministic._shared_step(batch, "train")
    logits = deterministic.model(batch["src"], batch["src_mask"], batch["tgt_in"])
    plain, _ = label_smoothed_loss(logits.flatten(0, 1), batch["tgt_out"].flatten(), 0.1, 0, fused=False)
    torch.testing.assert_close(loss, plain, rtol=1e-5, atol=1e-6)  # two equal passes: KL 0

    noisy = _system(1.0, dropout=0.3)
    noisy.train()
    loss = noisy._shared_step(batch, "train")
    loss.backward()
    assert loss.isfinite() and all(p.grad is not None for p in noisy.model.parameters() if p.requires_grad)
    assert noisy._shared_step(batch, "val").isfinite()  # validation: one pass, no KL term


def test_symmetric_kl_matches_torch_kl_div():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(10, 13, generator=g), torch.randn(10, 13, generator=g)
    keep = torch.tensor([True] * 7 + [False] * 3)
    lp_a, lp_b = a.log_softmax(-1), b.log_softmax(-1)
    forward = F.kl_div(lp_b, lp_a, log_target=True, reduction="none").sum(-1)  # KL(p_a || p_b)
    backward = F.kl_div(lp_a, lp_b, log_target=True, reduction="none").sum(-1)
    expected = ((forward + backward) / 2)[keep].mean()
    torch.testing.assert_close(symmetric_kl(a, b, keep), expected)
    assert symmetric_kl(a, a, keep) == 0


def test_rdrop_alpha_must_be_non_negative():
    with pytest.raises(ValueError, match="rdrop_alpha must be a finite number >= 0"):
        Seq2SeqSystem(TINY_MODELS["lstm"](30, 0), rdrop_alpha=-1.0)
