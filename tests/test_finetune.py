"""Fine-tuning (`translator fit --model.init_from CKPT`): the parent's weights, model and tokenizer (never
retrained), a new optimizer with the fine-tuning defaults, the parent recorded; contradictions refused."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import make_tiny_checkpoint, run_cli, tiny_sentences, write_dailydialog_like, write_multi30k_like
from translator.artifacts.checkpoint import BUNDLE_KEY, EXPORT_FILE, describe_lineage, read_checkpoint
from translator.serve.service import read_info
from translator.tokenizer import Tokenizer
from translator.training.finetune import (FINETUNE_LR_SCALE, FINETUNE_WARMUP_STEPS, WARN_FALLBACK_SHARE, coverage,
                                          coverage_report)

pytestmark = pytest.mark.filterwarnings("ignore")


def _config(tmp: Path, parent: Path, dataset: str, data: Path, **data_options) -> Path:
    """A fit config whose model section is the parent's (as the config of its family would be)."""
    model = dict(read_checkpoint(parent)["hyper_parameters"]["model"])
    init = {k: v for k, v in model["init_args"].items() if k not in ("src_vocab_size", "tgt_vocab_size", "pad_id")}
    config = {
        "seed_everything": 3,
        "trainer": {"max_steps": 1, "precision": "32-true", "logger": False, "enable_progress_bar": False,
                    "default_root_dir": str(tmp / "root"),  # where LightningCLI saves config.yaml: not the cwd
                    "enable_model_summary": False, "limit_val_batches": 0,
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(tmp / "run"), "save_last": True}}]},
        # a config file's lr and warm-up are the from-scratch recipe's: fine-tuning must not take them
        "model": {"model": {"class_path": model["class_path"], "init_args": init}, "val_bleu": False,
                  "compile_loss": False, "lr": 0.05, "warmup_steps": 7},
        "data": {"dataset": dataset, "data_dir": str(data), "cache_dir": str(tmp / "cache"), "max_tokens": 200,
                 "vocab_size": 300, **data_options},
    }
    path = tmp / "finetune.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in read_checkpoint(path)["state_dict"].items() if k.startswith("model.")}


@pytest.mark.parametrize("kind,dataset", [("transformer", "multi30k"), ("attention", "multi30k"),
                                          ("lstm", "multi30k"), ("lstm", "dailydialog")])
def test_finetune_starts_from_the_parent_keeps_its_tokenizer_and_records_it(tmp_path, capsys, kind, dataset):
    chat = dataset == "dailydialog"
    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", kind, steps=30, dataset=dataset,
                                  src_lang="en", tgt_lang="en" if chat else "fr", context_turns=2 if chat else 0,
                                  **({"task": "chat"} if chat else {}))
    data = write_dailydialog_like(tmp_path / "data") if chat else write_multi30k_like(tmp_path / "data")
    langs = ["--data.context_turns", "2"] if chat else ["--data.src_lang", "en", "--data.tgt_lang", "fr"]
    code, _, err = run_cli(capsys, "fit", "--config", _config(tmp_path, parent, dataset, data),
                           "--model.init_from", parent, *langs)
    assert code == 0, err
    assert "fine-tuning from" in err and "byte-fallback" in err  # the defaults and the coverage report

    child = read_checkpoint(tmp_path / "run" / "last.ckpt")
    saved = read_checkpoint(parent)
    # the tokenizer is the parent's, byte for byte: never retrained on the new data
    digest = lambda t: hashlib.sha256(t["src"] + (t["tgt"] or b"")).hexdigest()  # noqa: E731
    assert digest(child[BUNDLE_KEY]["tokenizer"]) == digest(saved[BUNDLE_KEY]["tokenizer"])
    assert child[BUNDLE_KEY]["parent"]["sha256"] == hashlib.sha256(parent.read_bytes()).hexdigest()
    assert child[BUNDLE_KEY]["parent"]["path"] == str(parent.resolve())
    # the fine-tuning defaults: FINETUNE_LR_SCALE times the parent's peak (not the config file's), its own warm-up
    hp = child["hyper_parameters"]
    assert hp["lr"] == pytest.approx(saved["hyper_parameters"]["lr"] * FINETUNE_LR_SCALE)
    assert hp["warmup_steps"] == FINETUNE_WARMUP_STEPS and hp["lr_schedule"] == "cosine"
    # one step at 1/100 of that peak (warm-up): the weights are the parent's, barely moved (random ones are not)
    before, after = _weights(parent), _weights(tmp_path / "run" / "last.ckpt")
    assert before.keys() == after.keys()
    assert max((before[k].float() - after[k].float()).abs().max().item() for k in before) < 1e-3
    assert any(not torch.equal(before[k], after[k]) for k in before)  # and it trained


def test_a_given_learning_rate_wins_and_the_lineage_is_shown(tmp_path, capsys):
    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", "transformer", steps=5, src_lang="en", tgt_lang="fr")
    data = write_multi30k_like(tmp_path / "data")
    code, _, err = run_cli(capsys, "fit", "--config", _config(tmp_path, parent, "multi30k", data),
                           "--model.init_from", parent, "--data.src_lang", "en", "--data.tgt_lang", "fr",
                           "--model.lr", "0.01", "--model.warmup_steps", "7")
    assert code == 0, err
    child = read_checkpoint(tmp_path / "run" / "last.ckpt")
    assert (child["hyper_parameters"]["lr"], child["hyper_parameters"]["warmup_steps"]) == (0.01, 7)
    line = describe_lineage(child[BUNDLE_KEY]["parent"])
    assert str(parent.resolve()) in line and "multi30k en→fr" in line
    # shown by `translator evaluate` (table and JSON) and in the app's model notes
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "run" / "last.ckpt", "--dataset",
                             "multi30k", "--data_dir", data, "--max_sentences", "2", "--decode.method", "greedy",
                             "--json", tmp_path / "report.json")
    assert code == 0, err
    assert f"last: {line}" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["parent"]["sha256"] == hashlib.sha256(parent.read_bytes()).hexdigest()
    assert "Fine-tuned from " + str(parent.resolve()) in read_info(tmp_path / "run" / "last.ckpt").describe()
    assert "Fine-tuned" not in read_info(parent).describe()


def test_a_model_option_that_contradicts_the_parent_is_refused(tmp_path, capsys):
    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", "transformer", steps=2, src_lang="en", tgt_lang="fr")
    data = write_multi30k_like(tmp_path / "data")
    code, out, err = run_cli(capsys, "fit", "--config", _config(tmp_path, parent, "multi30k", data),
                             "--model.init_from", parent, "--model.model.init_args.d_model", "64")
    assert code == 1
    assert "cannot fine-tune from" in err and "--model.model.init_args.d_model 64 (checkpoint: 32)" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_another_tokenizer_is_refused(tmp_path, capsys):
    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", "transformer", steps=2, src_lang="en", tgt_lang="fr")
    other = tmp_path / "other.model"
    Tokenizer.train(tiny_sentences(100, 5), tiny_sentences(100, 6), vocab_size=300).save(other)
    data = write_multi30k_like(tmp_path / "data")
    code, _, err = run_cli(capsys, "fit", "--config", _config(tmp_path, parent, "multi30k", data),
                           "--model.init_from", parent, "--data.tokenizer_path", other)
    assert code == 1 and "keeps the tokenizer of --model.init_from" in err and "Traceback" not in err


def test_an_exported_directory_or_a_parent_of_another_task_is_one_message(tmp_path, capsys):
    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", "lstm", steps=2, dataset="dailydialog",
                                  src_lang="en", tgt_lang="en", context_turns=2, task="chat")
    data = write_multi30k_like(tmp_path / "data")
    config = _config(tmp_path, parent, "multi30k", data)
    code, _, err = run_cli(capsys, "fit", "--config", config, "--model.init_from", parent)
    assert code == 1 and "is a chat checkpoint trained on dailydialog" in err and "translation data" in err
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / EXPORT_FILE).write_text("{}")
    code, _, err = run_cli(capsys, "fit", "--config", config, "--model.init_from", exported)
    assert code == 1 and "exported (CTranslate2) model directory" in err
    assert "Traceback" not in err and err.count("error:") == 1


def test_coverage_counts_byte_fallback_and_warns_above_the_threshold():
    texts = tiny_sentences(200, 1)
    tokenizer = Tokenizer.train(texts, texts, vocab_size=300)
    same = coverage(tokenizer, tiny_sentences(50, 2), "src")
    assert same["byte_share"] == 0.0 and same["unk_share"] == 0.0 and same["pieces_per_word"] >= 1.0
    greek = coverage(tokenizer, ["ο σκύλος τρέχει στο πάρκο"] * 10, "src")
    assert greek["byte_share"] > 0.5  # every Greek letter is two byte pieces
    lines, warnings = coverage_report({"src": greek}, {"src": same})
    assert len(lines) == 1 and "byte-fallback" in lines[0]
    assert any(f"above {WARN_FALLBACK_SHARE:.0%}" in w for w in warnings)
    assert any("pieces per word of the parent's data" in w for w in warnings)
    assert coverage_report({"src": same}, {"src": same})[1] == []


def test_replay_mixes_a_share_of_the_parent_data_into_training(tmp_path, capsys):
    from translator.training.datamodule import Seq2SeqDataModule

    parent = make_tiny_checkpoint(tmp_path / "parent.ckpt", "transformer", steps=2)  # multi30k de->en
    data = write_multi30k_like(tmp_path / "data", transform=str.upper)  # en = the German line upper-cased
    module = Seq2SeqDataModule("multi30k", "en", "fr", str(data), tokenizer_path=str(parent),
                               cache_dir=str(tmp_path / "cache"), replay=0.25, replay_dataset="multi30k",
                               replay_src_lang="de", replay_tgt_lang="en", encode_workers=0)
    module.setup("fit")
    train = module.splits["train"]
    assert len(train) == 200 + round(0.25 / 0.75 * 200) and module.stats["train"]["replayed_pairs"] == 67
    tok = module.tokenizer
    new = tok.decode_tgt([train[i]["tgt"] for i in range(200)])
    replayed = tok.decode_tgt([train[i]["tgt"] for i in range(200, len(train))])
    assert all(t == t.lower() for t in new) and all(t == t.upper() for t in replayed)  # fr = de; en = upper
    with pytest.raises(ValueError, match="--data.replay needs the data to replay"):
        Seq2SeqDataModule("multi30k", replay=0.2)

    # through fit: --data.replay alone replays the parent's own data
    code, _, err = run_cli(capsys, "fit", "--config", _config(tmp_path, parent, "multi30k", data),
                           "--model.init_from", parent, "--data.src_lang", "en", "--data.tgt_lang", "fr",
                           "--data.replay", "0.3")
    assert code == 0, err
    recorded = read_checkpoint(tmp_path / "run" / "last.ckpt")[BUNDLE_KEY]["data"]
    assert (recorded["replay"], recorded["replay_dataset"], recorded["replay_src_lang"],
            recorded["replay_tgt_lang"]) == (0.3, "multi30k", "de", "en")
