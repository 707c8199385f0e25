"""benchmarks/quality.py and benchmarks/speed.py: their smallest modes run end to end on a tiny corpus, and
user errors (missing data, a checkpoint for another language pair, a zero budget) give one line and exit 2.
"""
import csv
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_tiny_checkpoint, write_multi30k_like

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run(script: str, *args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a benchmark script as a user would, without $TRANSLATOR_DATA_DIR (data come from --data_dir)."""
    env = {k: v for k, v in os.environ.items() if k != "TRANSLATOR_DATA_DIR"}
    return subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def bench_module(name: str):
    """Import benchmarks/<name>.py (the scripts import their sibling _common.py)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A multi30k-like de/en corpus small enough for one short training step."""
    return write_multi30k_like(tmp_path_factory.mktemp("data"), n_train=24, n_val=4, n_test=4)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", kind="transformer", steps=20)


@pytest.fixture(scope="module")
def en_fr_ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "enfr.ckpt", kind="lstm", steps=1,
                                src_lang="en", tgt_lang="fr")


# ---- smallest modes -----------------------------------------------------------------------------
def test_quality_scores_a_given_checkpoint(corpus, ckpt, tmp_path):
    out = tmp_path / "out"
    r = run("quality.py", "--checkpoint", f"transformer={ckpt}", "--max_sentences", 3, "--data_dir", corpus,
            "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "quality.json").read_text())
    entry = result["families"]["transformer"]
    assert list(result["families"]) == ["transformer"] and not entry["trained_here"]
    assert entry["parameters"] > 0 and entry["checkpoint"] == str(ckpt)
    for key in ("greedy", "beam5"):
        assert 0 <= entry[key]["bleu"] <= 100 and entry[key]["n_sentences"] == 3
        assert entry[key]["signature"]["bleu"].startswith("nrefs:1")
    assert result["hardware"]["torch_threads"] >= 1 and result["hardware"]["versions"]["torch"]
    assert len(result["commands"]) == 2 and all("translator evaluate" in c for c in result["commands"])
    assert (out / "bleu_by_length.png").stat().st_size > 0 and (out / "bleu_by_length_greedy.png").is_file()
    markdown = (out / "quality.md").read_text()
    assert "| transformer |" in markdown and "nrefs:1" in markdown and "--decode.method beam" in markdown


@pytest.mark.slow
def test_quality_trains_one_epoch_then_scores(corpus, tmp_path):
    out = tmp_path / "out"
    r = run("quality.py", "--families", "lstm", "--epochs", 1, "--max_sentences", 2, "--data_dir", corpus,
            "--out", out, "--", "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    entry = json.loads((out / "quality.json").read_text())["families"]["lstm"]
    assert entry["trained_here"] and entry["epochs"] == 1 and entry["steps"] >= 1 and entry["train_seconds"] > 0
    assert Path(entry["checkpoint"]).is_file() and (out / "logs" / "lstm-fit.log").stat().st_size > 0
    assert "--trainer.max_epochs 1 --trainer.enable_progress_bar false" in (out / "quality.md").read_text()


@pytest.mark.slow
def test_quality_ablations_train_each_lever_and_score_the_ensemble(corpus, tmp_path):
    out = tmp_path / "out"
    args = ["--families", "lstm", "--ablations", "shipped", "subword", "--epochs", 2, "--ensemble_last", 2,
            "--ensemble_runs", "--max_sentences", 2, "--data_dir", corpus, "--out", out]
    fit = ["--", "--trainer.enable_progress_bar", "false", "--data.vocab_size", 300]
    r = run("quality.py", *args, "--parallel", 2, *fit, cwd=tmp_path)  # both levers train at the same time
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    result = json.loads((out / "ablations.json").read_text())
    assert result["budget"]["parallel"] == 2 and r.stdout.count("$ OMP_NUM_THREADS=") == 2
    for lever in ("shipped", "subword"):  # each training's output went to its own log, not the console
        assert "`Trainer.fit` stopped: `max_epochs=2` reached" in (out / "logs" / f"lstm-{lever}-fit.log").read_text()
    rows = result["rows"]
    assert list(rows) == ["shipped", "subword", "shipped epoch00", "shipped epoch01",
                          "shipped average of last 2", "shipped ensemble of last 2", "ensemble of shipped + subword"]
    assert rows["subword"]["fit_args"] == ["--data.subword_alpha", "0.1", "--data.subword_nbest_size", "64"]
    for label, entry in rows.items():
        for key in ("val greedy", "test greedy", "test beam5"):
            assert 0 <= entry[key]["bleu"] <= 100 and entry[key]["n_sentences"] == 2, (label, key)
    assert rows["subword"]["epochs"] == 2 and rows["subword"]["train_seconds"] > 0
    assert result["selected_on_val"] in rows
    markdown = (out / "ablations.md").read_text()
    assert "--data.subword_alpha 0.1" in markdown and "| shipped ensemble of last 2 |" in markdown
    assert "--ensemble" in markdown and "--split val" in markdown
    members = [rows["shipped"]["checkpoint"], rows["subword"]["checkpoint"]]
    assert rows["ensemble of shipped + subword"]["val greedy"]["n_sentences"] == 2
    assert any(f"--ensemble {' '.join(members)}" in c for c in result["commands"])
    # --reuse scores the finished runs again without training them
    r = run("quality.py", *args, "--reuse", *fit, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not [line for line in r.stdout.splitlines() if line.startswith("$ ") and " translator fit " in line]
    assert json.loads((out / "ablations.json").read_text())["rows"]["subword"]["train_seconds"] > 0


@pytest.mark.slow
def test_malloc_trains_under_each_policy_and_reports_speed_and_memory(corpus, tmp_path):
    out = tmp_path / "out"
    r = run("malloc.py", "--config", ROOT / "translator/configs/lstm.yaml", "--steps", 20, "--policies", "glibc",
            "32MiB-64MiB", "--out", out, "--", "--data.data_dir", corpus, "--data.vocab_size", 300,
            "--trainer.enable_progress_bar", "false", "--trainer.precision", "32-true", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    rows = json.loads((out / "malloc.json").read_text())["rows"]
    assert [row["policy"] for row in rows] == ["glibc", "32MiB-64MiB"]
    assert rows[0]["thresholds"] is None and rows[1]["thresholds"] == [32 << 20, 64 << 20]
    for row in rows:
        assert row["tokens_per_s"] > 0 and row["peak_rss_gb"] > 0.1 and row["wall_seconds"] > 0 and row["steps"] == 20
    assert "| 32MiB-64MiB |" in r.stdout
    assert not list(ROOT.glob("config.yaml")) and not list(tmp_path.glob("config.yaml"))  # nothing left behind


def test_malloc_rejects_bad_options(tmp_path):
    for args, message in ((["--steps", 0], "--steps must be greater than 0"),
                          (["--config", "nope.yaml"], "--config nope.yaml: no such file"),
                          (["--policies", "jemalloc"], "invalid choice")):
        r = run("malloc.py", *args, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_memory_records_rss_every_step_of_runs_side_by_side(corpus, tmp_path):
    out = tmp_path / "out"
    common = "--data.data_dir {} --data.vocab_size 300 --trainer.enable_progress_bar false --trainer.precision 32-true"
    common = common.format(corpus)
    r = run("memory.py", "--config", ROOT / "translator/configs/lstm.yaml", "--steps", 12, "--parallel", "--no_val",
            "--run", f"shipped: {common}", "--run", f"glibc: --malloc glibc --code {ROOT} {common}", "--out", out,
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-3000:]
    result = json.loads((out / "memory.json").read_text())
    assert [run["run"] for run in result["runs"]] == ["shipped", "glibc"] and result["parallel"]
    assert result["runs"][0]["malloc"] == "shipped" and result["runs"][1]["malloc"] is None
    for summary in result["runs"]:
        assert summary["steps"] == 12 and summary["tokens_per_s"] > 0 and summary["peak_rss_gb"] > 0.1
        assert summary["peak_rss_gb"] >= summary["last_rss_gb"] > 0
    with open(out / "memory.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for name in ("shipped", "glibc"):
        steps = [int(row["step"]) for row in rows if row["run"] == name and row["phase"] == "train"]
        assert steps == list(range(1, 13))  # one row after every training step
    assert all(float(row["hwm_mb"]) >= float(row["rss_mb"]) > 0 for row in rows)
    assert all(float(row["cpu_s"]) > 0 for row in rows if row["phase"] == "train")
    assert (out / "memory.png").stat().st_size > 1000 and "| glibc |" in r.stdout
    shipped = result["runs"][0]
    assert shipped["tokens_per_cpu_s"] > 0 and shipped["trims"] >= 1  # the training's HeapTrim, after its first step
    # the rows stay in OUT; --rows_only summarizes them again without training
    (out / "memory.json").unlink()
    r = run("memory.py", "--config", ROOT / "translator/configs/lstm.yaml", "--rows_only", "--run", "shipped:",
            "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads((out / "memory.json").read_text())["runs"]
    assert [x["run"] for x in again] == ["shipped"] and again[0]["peak_rss_gb"] == shipped["peak_rss_gb"]


def test_memory_rejects_bad_run_specs(tmp_path):
    for spec, message in (("no-colon", "write 'LABEL:"), ("a: --malloc jemalloc", "--malloc takes one of"),
                          (f"a: --code {tmp_path}", "--code takes a checkout"),
                          ("a: --trim_slack lots", "--trim_slack takes a number")):
        r = run("memory.py", "--run", spec, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("memory.py", "--run", "a:", "--run", "a:", cwd=tmp_path)
    assert r.returncode == 2 and "labels must differ" in r.stderr


def test_ablation_levers_get_the_same_cpu_budget():
    quality = bench_module("quality")
    assert quality.lever_epochs("shipped", 6, same_epochs=False) == 6
    assert quality.lever_epochs("subword", 6, same_epochs=False) == 6
    assert quality.lever_epochs("rdrop", 6, same_epochs=False) == 3  # two passes per batch
    assert quality.lever_epochs("rdrop", 1, same_epochs=False) == 1  # never zero epochs
    assert quality.lever_epochs("rdrop", 6, same_epochs=True) == 6
    assert quality.lever_epochs("rdrop", None, same_epochs=False) is None  # the shipped max_epochs
    assert quality.lever_epochs("wide", 20, same_epochs=False) == 17  # measured: x1.2 per epoch
    assert quality.lever_epochs("deep", 20, same_epochs=False) == 13  # x1.5
    assert quality.lever_epochs("wide+seed2", 20, same_epochs=False) == 17  # a seed costs nothing
    assert quality.lever_epochs("wide+rdrop", 20, same_epochs=False) == 8  # x1.2 x2: the costs multiply
    assert quality.lever_args("wide+seed2") == [*quality.LEVERS["wide"], "--seed_everything", "2"]
    cmd = quality.fit_command("transformer", quality.parse_args(["--epochs", "6"])[0], Path("out"), "n", "v", [], 3)
    assert cmd[cmd.index("--trainer.max_epochs") + 1] == "3"


@pytest.mark.parametrize("family", ["lstm", "attention", "transformer"])
def test_every_lever_is_an_option_its_family_config_takes(family, capsys):
    # A misspelt option in LEVERS would only fail an hour into a benchmark; `fit --print_config` catches it now.
    from translator.cli import main
    quality = bench_module("quality")
    levers = [lever for lever in quality.LEVERS if quality.LEVER_FAMILY.get(lever, family) == family]
    assert "wd0.1" in levers and ("wide" in levers) == (family == "transformer")
    for lever in levers:
        args = quality.lever_args(lever)
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(ROOT / "translator" / "configs" / f"{family}.yaml"), *args, "--print_config"])
        printed = capsys.readouterr().out
        assert exit_info.value.code in (0, None), (lever, printed)
        for option, value in zip(args[::2], args[1::2]):
            key = option.rsplit(".", 1)[-1].lstrip("-")
            assert f"{key}: {value}\n" in printed, (lever, option, value)


def test_parallel_trainings_share_the_cores_and_a_failure_names_its_log(tmp_path, monkeypatch, capsys):
    quality = bench_module("quality")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(quality.os, "cpu_count", lambda: 4)
    py = [sys.executable, "-c"]
    jobs = {name: ([*py, code], tmp_path / f"{name}.log") for name, code in (
        ("a", "import os, time; time.sleep(0.5); print('threads', os.environ['OMP_NUM_THREADS'])"),
        ("b", "import os; print('threads', os.environ['OMP_NUM_THREADS'])"))}
    seconds = quality.run_parallel(jobs, 2)
    assert set(seconds) == {"a", "b"} and seconds["a"] >= 0.5
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text() == "threads 2\n"
    jobs["fails"] = ([*py, "import sys; print('boom'); sys.exit(3)"], tmp_path / "fails.log")
    jobs["a"] = ([*py, "import time; time.sleep(1.5); open('a.done', 'w')"], tmp_path / "a.log")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        quality.run_parallel(jobs, 3)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "1 of 3 trainings failed" in err and str(tmp_path / "fails.log") in err
    assert (tmp_path / "a.done").is_file()  # the failure did not stop the other training
    assert (tmp_path / "fails.log").read_text() == "boom\n"


def test_reuse_counts_a_run_stopped_by_its_time_budget_as_finished(tmp_path):
    quality = bench_module("quality")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert not quality.finished(run, 6, 10)  # nothing written yet
    (run / "hparams.yaml").write_text("{}")
    for name in ("epoch00.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    start = 1_000_000
    os.utime(run / "hparams.yaml", (start, start))
    for name, minutes in (("epoch00.ckpt", 5), ("last.ckpt", 9.9)):
        os.utime(run / "checkpoints" / name, (start + minutes * 60, start + minutes * 60))
    assert quality.run_seconds(run) == 594.0
    assert quality.finished(run, 6, 10)  # 9.9 of 10 minutes: max_time stopped it
    assert quality.finished(run, None, None)  # the shipped max_epochs: last.ckpt is the end
    # max_time stops mid-epoch: the last checkpoint is from the last validation, metrics.csv from the stop
    os.utime(run / "checkpoints" / "last.ckpt", (start + 300, start + 300))
    assert quality.run_seconds(run) == 300.0  # 5 of 10 minutes, nothing later: not a stop by max_time
    (run / "metrics.csv").write_text("epoch,step\n")
    os.utime(run / "metrics.csv", (start + 598, start + 598))
    assert quality.run_seconds(run) == 598.0 and quality.finished(run, 6, 10)


def test_speed_smallest_mode_with_profile(corpus, ckpt, tmp_path):
    out = tmp_path / "speed.json"
    # Transformer: oneDNN has no bf16 LSTM primitive on AVX2-only CPUs (torch 2.13 raises there).
    r = run("speed.py", "--families", "transformer", "--steps", 1, "--warmup", 0, "--peak_sizes", 128,
            "--peak_repeats", 2,
            "--checkpoint", ckpt, "--decode_sentences", 3, "--batch1_sentences", 2, "--decode_precisions", "fp32", "bf16",
            "--profile",
            "--profile_steps", 1, "--profile_rows", 5, "--data_dir", corpus, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["peak"]) == {"fp32", "bf16"} and all(p["gflops"] > 0 for p in result["peak"].values())
    assert [(t["family"], t["precision"]) for t in result["train"]] == [("transformer", "fp32"),
                                                                        ("transformer", "bf16-mixed")]
    for row in result["train"]:
        assert row["steps"] == 1 and row["tokens_per_s"] > 0 and row["peak_fraction"] > 0
        assert row["flop_parameters"]["per_source_token"] > 0 and row["flop_parameters"]["per_target_token"] > 0
    rows = result["decode"]["rows"]
    assert result["decode"]["trained"] and not result["notes"]
    # fp32/bf16 x greedy/beam x batch 64/1 x Transformer cache on/off; batch 1 limited to --batch1_sentences
    assert len(rows) == 16 and {r_["cache"] for r_ in rows} == {True, False}
    assert [r_["precision"] for r_ in rows] == ["fp32"] * 8 + ["bf16"] * 8
    assert {(r_["batch_size"], r_["sentences"]) for r_ in rows} == {(64, 3), (1, 2)}
    assert all(r_["sentences_per_s"] > 0 for r_ in rows)
    assert result["profile"]["top_ops"] and "aten::" in r.stdout
    assert "matmul peak" in r.stdout and "6 x parameters" in r.stdout


def test_speed_says_when_decoding_is_untrained(corpus, tmp_path):
    out = tmp_path / "speed.json"
    r = run("speed.py", "--families", "lstm", "--parts", "decode", "--decode_sentences", 1, "--batch1_sentences", 1,
            "--data_dir", corpus, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "UNTRAINED" in r.stdout and not json.loads(out.read_text())["decode"]["trained"]


def test_decode_profile_counts_operators_and_the_weights_a_step_reads(corpus, ckpt, tmp_path):
    r = run("decode_profile.py", "--checkpoint", ckpt, "--warmup", 1, "--sentences", 2, "--rows", 3, "--data_dir", corpus,
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "operator calls per sentence" in r.stdout and "aten::" in r.stdout
    from translator.artifacts.checkpoint import load_bundle

    model = load_bundle(ckpt).model
    out_bytes = model.out.weight.numel() * 4  # the output layer is read at every step, tied or not
    printed = float(r.stdout.split("weights read per decoder step: ")[1].split(" MB")[0])
    assert out_bytes / 1e6 <= printed + 0.05
    greedy_rows = float(r.stdout.split("decoder rows per sentence: ")[1].split(";")[0])
    assert greedy_rows >= 1  # at least the step that emits eos (or the length limit)
    r = run("decode_profile.py", "--checkpoint", ckpt, "--warmup", 1, "--sentences", 2, "--batch_size", 2, "--rows", 3,
            "--decode.method", "beam", "--decode.beam_size", 3, "--data_dir", corpus, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "beam batch 2, 2 sentences" in r.stdout
    beam_total = round(2 * float(r.stdout.split("decoder rows per sentence: ")[1].split(";")[0]))
    assert beam_total > 2 and (beam_total - 2) % 3 == 0  # step 0 runs once per sentence, then K rows a live sentence
    r = run("decode_profile.py", "--checkpoint", tmp_path / "missing.ckpt", "--data_dir", corpus, cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_speed_engines_side_by_side(corpus, ckpt, tmp_path):
    pytest.importorskip("ctranslate2")
    out = tmp_path / "speed.json"
    lstm = make_tiny_checkpoint(tmp_path / "lstm.ckpt", kind="lstm", steps=2)
    r = run("speed.py", "--parts", "engines", "--checkpoint", f"transformer={ckpt}", "--checkpoint", f"lstm={lstm}",
            "--decode_sentences", 3, "--batch1_sentences", 2, "--threads", 1, "--export_dir", tmp_path / "exported",
            "--data_dir", corpus, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    engines = json.loads(out.read_text())["engines"]
    rows = engines["rows"]
    # Transformer: 3 PyTorch precisions + 2 CTranslate2 types, x greedy/beam x batch 64/1, + uncached greedy
    assert len([x for x in rows if x["family"] == "transformer"]) == 5 * 4 + 1
    from translator.runtime import cpu_bf16_is_fast

    # an LSTM has no bf16 kernel on CPUs without native bf16: it decodes in fp32 there, so no bf16 row
    bf16 = {"bf16"} if cpu_bf16_is_fast() else set()
    assert {x["precision"] for x in rows if x["family"] == "lstm"} == {"fp32", "int8"} | bf16
    assert all(0 <= x["bleu"] <= 100 and x["sentences_per_s"] > 0 for x in rows)
    assert all(x["p50_ms"] > 0 for x in rows if x["batch_size"] == 1)
    ct2 = [x for x in rows if x["engine"] == "ctranslate2" and x["precision"] == "float32" and x["decoder"] == "greedy"]
    assert all(x["same_as_fp32"] == 1.0 for x in ct2)  # the exported float32 model decodes like PyTorch
    assert any(t["target"].startswith("CT2 int8 beam5 /") for t in engines["targets"])
    assert "ctranslate2" in r.stdout and "met" in r.stdout


def test_flop_parameters_cover_every_non_embedding_weight():
    from helpers import TINY_MODELS

    speed = bench_module("speed")
    for kind, build in TINY_MODELS.items():
        model = build(50, 0)
        counts = speed.flop_parameters(model)
        emb = sum(p.numel() for n, p in model.named_parameters(remove_duplicate=False) if "emb" in n.split(".")[0])
        every = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
        assert counts["embedding"] == emb and sum(counts.values()) == every, kind
        assert counts["per_source_token"] > 0 and counts["per_target_token"] > model.out.weight.numel(), kind


def test_time_budget_becomes_lightning_max_time():
    quality = bench_module("quality")
    assert quality.max_time(1.5) == "00:00:01:30"
    assert quality.max_time(24 * 60 + 61) == "01:01:01:00"


# ---- bad input: one line on stderr, exit 2, no traceback ----------------------------------------
def call(name: str, argv: list[str], capsys) -> str:
    module = bench_module(name)
    with pytest.raises(SystemExit) as exit_info:
        module.run_main(module.PROG, module.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.startswith(f"{module.PROG}: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--time_budget_min", "0"], "--time_budget_min must be greater than 0"),
    (["--time_budget_min", "-5"], "--time_budget_min must be greater than 0"),
    (["--time_budget_min", "0.001"], "at least 1 second"),
    (["--epochs", "0"], "--epochs must be greater than 0"),
    (["--checkpoint", "gru=x.ckpt"], "unknown family 'gru'"),
    (["--checkpoint", "x.ckpt"], "FAMILY=PATH"),
    (["--ablations", "shipped", "subword", "--ensemble_runs", "shipped", "rdrop"], "not a row: rdrop"),
    (["--ablations", "shipped", "subword", "--ensemble_runs", "shipped"], "give two or more"),
    (["--ablations", "shipped", "--ensemble_runs"], "give two or more"),
    (["--ablations", "shipped", "seed2", "--parallel", "0"], "--parallel must be greater than 0"),
    (["--families", "lstm", "--ablations", "shipped", "wide"], "wide is a transformer lever, not one for --families lstm"),
    (["--families", "lstm", "--ablations", "shipped", "seed2+deep"], "deep is a transformer lever"),
    (["--ablations", "shipped", "wide+nope"], "'wide+nope': unknown lever 'nope'; give one of shipped,"),
    (["--ablations", "shipped", "seed2+seed2"], "'seed2+seed2': a lever twice"),
])
def test_quality_rejects_bad_options(argv, message, capsys):
    assert message in call("quality", argv, capsys)


def test_quality_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRANSLATOR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    err = call("quality", ["--families", "lstm", "--data_dir", str(tmp_path / "nowhere")], capsys)
    assert "'multi30k'" in err and "not found" in err and "--data_dir" in err


def test_quality_checkpoint_for_another_language_pair(corpus, en_fr_ckpt, capsys):
    err = call("quality", ["--checkpoint", f"lstm={en_fr_ckpt}", "--data_dir", str(corpus)], capsys)
    assert "translates en->fr, but de->en was asked for" in err
    err = call("quality", ["--checkpoint", f"transformer={en_fr_ckpt}", "--src_lang", "en", "--tgt_lang", "fr",
                           "--data_dir", str(corpus)], capsys)
    assert "is a lstm checkpoint" in err


def test_quality_missing_checkpoint(corpus, tmp_path, capsys):
    err = call("quality", ["--checkpoint", f"lstm={tmp_path / 'none.ckpt'}", "--data_dir", str(corpus)], capsys)
    assert "checkpoint not found" in err


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be greater than 0"),
    (["--steps", "-3"], "--steps must be greater than 0"),
    (["--warmup", "-1"], "--warmup must be 0 or more"),
    (["--batch1_sentences", "0"], "--batch1_sentences must be greater than 0"),
])
def test_speed_rejects_bad_options(argv, message, capsys):
    assert message in call("speed", argv, capsys)


def test_speed_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRANSLATOR_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    err = call("speed", ["--data_dir", str(tmp_path / "nowhere")], capsys)
    assert "'multi30k'" in err and "not found" in err


def test_speed_checkpoint_for_another_language_pair(corpus, en_fr_ckpt, capsys):
    err = call("speed", ["--parts", "decode", "--checkpoint", str(en_fr_ckpt), "--data_dir", str(corpus)], capsys)
    assert "translates en->fr, but de->en was asked for" in err


def test_bad_input_from_the_command_line_is_one_line(tmp_path):
    r = run("speed.py", "--steps", 0, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == "speed.py: error: --steps must be greater than 0, got 0"


def test_random_heldout_withholds_seeded_rows_and_keeps_every_other(tmp_path):
    from collections import Counter

    from helpers import write_chatbot_ko_like
    from translator.data.readers import read_csv_columns
    data = write_chatbot_ko_like(tmp_path / "data", n=60)
    whole = Counter(read_csv_columns(data / "chatbot-ko" / "ChatbotData.csv", "Q", "A"))
    outs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        done = run("random_heldout.py", "chatbot-ko", "--out", tmp_path / name, "--rows", 10, "--seed", seed,
                   "--data_dir", data, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        out = tmp_path / name
        held = list(zip((out / "heldout.source").read_text(encoding="utf-8").splitlines(),
                        (out / "heldout.reference").read_text(encoding="utf-8").splitlines()))
        kept = Counter(read_csv_columns(out / "data" / "chatbot-ko" / "ChatbotData.csv", "Q", "A"))
        assert len(held) == 10 and kept + Counter(held) == whole  # a partition of the rows
        outs[name] = held
    assert outs["a"] == outs["b"] and outs["a"] != outs["c"]  # seeded


@pytest.mark.parametrize("argv,message", [
    (["multi30k"], "has official splits"),
    (["nope"], "unknown dataset 'nope'"),
    (["chatbot-ko", "--rows", "40"], "--rows 40: give 1 to 29"),
    (["chatbot-ko", "--out", "."], "exists; give a new folder"),
])
def test_random_heldout_rejects_bad_options(tmp_path, argv, message):
    from helpers import write_chatbot_ko_like
    data = write_chatbot_ko_like(tmp_path / "data", n=60)
    done = run("random_heldout.py", *argv, *([] if "--out" in argv else ["--out", tmp_path / "new"]),
               "--data_dir", data, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "new").exists()
