"""The seams above the models: task objects, the one checkpoint-metadata record, the engine protocol,
and the decoding bounds that the serving layer derives from DecodeConfig."""
from __future__ import annotations

import dataclasses

import pytest
from helpers import make_tiny_checkpoint

from translator.artifacts.checkpoint import Bundle, CheckpointMeta, load_bundle
from translator.data.readers import dialogue_pairs
from translator.decoding import CHAT_DECODING, DecodeConfig, DecodeOptions, Hypothesis
from translator.inference.chatbot import Chatbot
from translator.inference.translator import Translator
from translator.tasks import CHAT, DEFAULT_CONTEXT_TURNS, TRANSLATION, get_task


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    return {
        # written before the task, the chat context length and the languages were recorded
        "legacy_chat": make_tiny_checkpoint(root / "legacy_chat.ckpt", kind="lstm", steps=5, dataset="dailydialog",
                                            src_lang=None, tgt_lang=None, context_turns=0),
        "chat": make_tiny_checkpoint(root / "chat.ckpt", kind="lstm", steps=5, dataset="dailydialog", src_lang="en",
                                     tgt_lang="en", context_turns=2, task="chat", chat_context_turns=2,
                                     context_dropout=0.1),
        "legacy_translation": make_tiny_checkpoint(root / "mt.ckpt", kind="lstm", steps=5, src_lang=None,
                                                   tgt_lang=None),
    }


def test_tasks_are_objects_found_by_name_and_never_equal_a_string():
    assert get_task("chat") is CHAT and get_task("translation") is TRANSLATION
    with pytest.raises(ValueError, match="translation, chat"):
        get_task("poetry")
    with pytest.raises(TypeError, match="task.name"):
        CHAT == "chat"  # noqa: B015 - a leftover string comparison must fail loudly, not be silently False


def test_one_sep_writer_for_the_reader_and_the_chatbot(checkpoints):
    turns = ["Hi there.", "Hello!", "How are you?"]
    assert dialogue_pairs(turns, 2)[-1] == (CHAT.source(turns[:2]), turns[2])
    bot = Chatbot(load_bundle(checkpoints["chat"]))
    assert bot.build_context(turns[:2], turns[2]) == CHAT.source(turns[1:])  # 2 turns: the message and one before
    assert CHAT.source(["a", "b"]) == f"a {bot.tokenizer.sep_token} b"


def test_checkpoint_meta_resolves_legacy_defaults_once(checkpoints):
    meta = CheckpointMeta.from_path(checkpoints["legacy_chat"])
    assert meta.task is CHAT and meta.context_turns == DEFAULT_CONTEXT_TURNS
    assert (meta.src_lang, meta.tgt_lang) == ("en", "en")
    assert meta.tokenizer_id and len(meta.tokenizer_id) == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.path = checkpoints["chat"]  # type: ignore[misc]
    translation = CheckpointMeta.from_path(checkpoints["legacy_translation"])
    assert translation.task is TRANSLATION and translation.context_turns == 1
    assert (translation.src_lang, translation.tgt_lang) == ("de", "en")
    bundle = load_bundle(checkpoints["legacy_chat"])
    assert bundle.meta.data == meta.data and bundle.chat_context_turns == DEFAULT_CONTEXT_TURNS
    with pytest.raises(ValueError, match="not a chat model"):
        Chatbot(load_bundle(checkpoints["legacy_translation"]))


def test_the_task_owns_the_empty_source_and_the_default_decoding(checkpoints):
    chat = load_bundle(checkpoints["chat"])
    assert chat.empty_source == [chat.tokenizer.sep_id] and Translator(chat).default_decoding == CHAT_DECODING
    legacy = load_bundle(checkpoints["legacy_chat"])  # no context dropout: no reply LM, no anti-LM term
    assert legacy.empty_source is None and Translator(legacy).default_decoding.lm_weight == 0.0
    mt = load_bundle(checkpoints["legacy_translation"])
    assert mt.empty_source is None and Translator(mt).default_decoding == DecodeConfig()


class ListEngine:
    """An engine that answers every sentence with fixed hypotheses and scores p(r) by their length."""

    max_src_len, max_tgt_len, precision = 8, None, "fp32"

    def __init__(self) -> None:
        self.model = self
        self.scored: list[tuple[list[int], list[int]]] = []

    def search(self, batch, config, return_attention=False, on_step=None):
        return [[Hypothesis([5, 6], -1.0, -1.0, True), Hypothesis([5], -2.0, -2.0, True),
                 Hypothesis([6, 6, 6], -3.0, -3.0, True)][:config.num_candidates] for _ in batch]

    def score(self, sources, targets, finished=None):
        self.scored += list(zip(sources, targets))
        return [-10.0 * len(t) for t in targets]  # longer replies are much less likely without context


def test_translator_holds_any_engine_and_ranks_once_above_it(checkpoints):
    chat = load_bundle(checkpoints["chat"])
    engine = ListEngine()
    translator = Translator(Bundle(model=engine, tokenizer=chat.tokenizer, meta=chat.meta))  # type: ignore[arg-type]
    assert translator.engine is engine and translator.max_src_tokens == 8
    plain = DecodeConfig(method="sample", nbest=2, candidates=3)
    assert [h[1] for h in translator.translate(["a b c"], plain)[0].nbest] == [-1.0, -2.0]  # the n-best cut
    assert not engine.scored
    reranked = translator.translate(["a b c"], plain.replace(lm_weight=1.0))[0]
    # score - lm: [5, 6] -1 + 20 = 19, [5] -2 + 10 = 8, [6, 6, 6] -3 + 30 = 27
    assert [s for _, s in reranked.nbest] == [27.0, 19.0]
    assert {tuple(src) for src, _ in engine.scored} == {tuple(chat.empty_source)}
    long = translator.translate(["a " * 20], plain)[0]
    assert long.truncated and len(long.src_pieces) == 8


def test_serving_bounds_come_from_the_decode_config_fields():
    from translator.serve.service import MAX_BEAM, MAX_CANDIDATES, UserError, served

    assert (MAX_BEAM, MAX_CANDIDATES) == (DecodeConfig.served("beam_size")[1], DecodeConfig.served("candidates")[1])
    low, high, label = DecodeConfig.served("temperature")
    with pytest.raises(UserError, match=f"temperature must be between {low} and {high}"):
        served("temperature", high + 1)
    assert served("temperature", high) == high
    with pytest.raises(KeyError):
        DecodeConfig.served("max_len")  # not an option a request may set
    assert "(>= 1)" in DecodeOptions.__doc__.split("beam_size:")[1].splitlines()[0]  # the CLI help states it


def test_app_sliders_and_api_chat_use_the_same_bounds_and_optional_values(checkpoints):
    import gradio as gr

    from translator.serve.app import TranslatorApp, build_app
    from translator.serve.service import ModelRegistry

    demo = build_app([checkpoints["legacy_translation"]], chat_checkpoint=checkpoints["chat"], checkpoints_dir=None)
    sliders = {b.label: b for b in demo.blocks.values() if isinstance(b, gr.Slider)}
    for label, name in (("Temperature (sampling)", "temperature"), ("Anti-LM weight λ (0 = off)", "lm_weight"),
                        ("Beam size (beam search)", "beam_size"), ("Top-p (sampling)", "top_p")):
        low, high, _ = DecodeConfig.served(name)
        assert (sliders[label].minimum, sliders[label].maximum) == (low, high)
    app = TranslatorApp(ModelRegistry([], chat_checkpoint=checkpoints["chat"], checkpoints_dir=None))
    assert isinstance(app.api_chat("hello", None, None, temperature=None, candidates=None), str)
    with pytest.raises(gr.Error, match="temperature"):
        app.api_chat("hello", temperature=-1.0)  # -1 is a value now, not "not given"


def test_a_recipe_records_its_decoding_and_the_checkpoint_decodes_with_it(checkpoints, tmp_path):
    import torch

    from translator.decoding import CHAT_BIDI_DECODING, decode_config
    from translator.training.system import Seq2SeqSystem
    from helpers import TINY_MODELS

    checkpoint = torch.load(checkpoints["chat"], weights_only=True)
    checkpoint["hyper_parameters"]["decoding"] = {"candidates": 8, "temperature": 0.7}
    recipe = tmp_path / "recipe.ckpt"
    torch.save(checkpoint, recipe)
    bundle = load_bundle(recipe)
    assert Translator(bundle).default_decoding == CHAT_DECODING.replace(candidates=8, temperature=0.7)
    assert bundle.default_decoding(backward=True) == CHAT_BIDI_DECODING.replace(candidates=8, temperature=0.7)
    assert CheckpointMeta.from_path(recipe).default_decoding() == bundle.default_decoding()
    # options given by the user still win over the recipe
    assert decode_config(None, Translator(bundle).default_decoding, candidates=2).candidates == 2
    # checkpoints without a recorded decoding keep the task's default
    assert Translator(load_bundle(checkpoints["chat"])).default_decoding == CHAT_DECODING

    with pytest.raises(ValueError, match="unknown decoding option.*'beams'.*known: .*beam_size"):
        Seq2SeqSystem(TINY_MODELS["lstm"](30, 0), decoding={"beams": 3})
    with pytest.raises(ValueError, match="temperature"):
        Seq2SeqSystem(TINY_MODELS["lstm"](30, 0), decoding={"temperature": -1.0})


def test_every_decode_option_has_its_field_docstring_as_cli_help(capsys):
    """The help of each --decode.FIELD is the docstring under the DecodeConfig field (read here with ast, apart
    from the library parser the CLI uses), whitespace collapsed, with the field's lower bound when it has one."""
    import ast
    import inspect
    import textwrap

    from translator.cli import main
    from translator.decoding import config as config_module

    body = ast.parse(textwrap.dedent(inspect.getsource(DecodeConfig))).body[0].body
    docs = {node.target.id: " ".join(after.value.value.split()) for node, after in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)}
    assert set(docs) == {f.name for f in dataclasses.fields(DecodeConfig)}  # every option documented
    with pytest.raises(SystemExit):
        main(["translate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(DecodeConfig):
        bound = f" (>= {field.metadata['low']})" if "low" in field.metadata else ""
        assert f"--decode.{field.name} " in help_text
        assert f"{docs[field.name]}{bound} (type: Optional[" in help_text, field.name
    assert config_module._field_docs(DecodeConfig) == docs
