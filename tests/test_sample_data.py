"""Checks on the project's own labelled sample in data/sample/.

Standard library + pytest only, so this runs before (and independently of) the khabar modules.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"

TOPIC_LABELS = {"culture", "economy", "internationalNews", "middleEast", "sport", "technology"}
STANCE_LABELS = {"favor", "against", "neutral", "unrelated"}
NER_TYPES = {"PERS", "LOC", "ORG", "MISC"}

MIN_TOPIC_PER_LABEL = 21
MIN_TOPIC_TOTAL = 126
MIN_STANCE_PER_LABEL = 28
MIN_STANCE_TOTAL = 112
MIN_STANCE_TARGETS = 15
MIN_NER_SENTENCES = 210
MIN_NER_PER_TYPE = 60
MAX_SHARED_5GRAMS = 0.60
# A sample sentence found verbatim in the shared corpora would mean it was copied, not written.
# Short strings (a dateline, a name) can match by chance, so only sentences this long count.
MIN_OVERLAP_CHARS = 60


def _shared_data_dir() -> Path:
    env = os.environ.get("KHABAR_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:  # strict UTF-8: a bad byte raises here
        for n, line in enumerate(f, 1):
            assert line.strip(), f"{path.name}:{n}: blank line in JSON Lines file"
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                pytest.fail(f"{path.name}:{n}: invalid JSON ({e})")
    return rows


def _read_conll(path: Path) -> list[list[tuple[str, str]]]:
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        parts = line.split(" ")
        assert len(parts) == 2 and all(parts), f"ner.conll:{n}: expected 'token TAG', got {line!r}"
        current.append((parts[0], parts[1]))
    if current:
        sentences.append(current)
    return sentences


@pytest.fixture(scope="module")
def topic() -> list[dict]:
    return _read_jsonl(SAMPLE / "topic.jsonl")


@pytest.fixture(scope="module")
def stance() -> list[dict]:
    return _read_jsonl(SAMPLE / "stance.jsonl")


@pytest.fixture(scope="module")
def ner() -> list[list[tuple[str, str]]]:
    return _read_conll(SAMPLE / "ner.conll")


@pytest.fixture(scope="module")
def actors() -> list[dict]:
    return _read_jsonl(SAMPLE / "actors.jsonl")


def test_actors_file_is_an_evaluation_set(actors):
    """At least 20 articles (politics, economy, sport), 60 (article, target, actor) rows, every
    label, two or more actors per target, and every mention written as it stands in the text."""
    assert len(actors) >= 20
    assert {a["domain"] for a in actors} == {"politics", "economy", "sport"}
    rows = [(a["id"], t["target"], x) for a in actors for t in a["targets"] for x in t["actors"]]
    assert len(rows) >= 60
    assert {x["stance"] for _, _, x in rows} == {"favor", "against", "neutral"}
    assert len({a["id"] for a in actors}) == len(actors)
    for a in actors:
        for t in a["targets"]:
            assert len(t["actors"]) >= 2 and t["target"].strip()
            for x in t["actors"]:
                assert x["mentions"] and x["actor"] in x["mentions"]
                for m in x["mentions"]:
                    assert m in a["text"], f"{a['id']}: mention {m!r} is not in the text"


@pytest.mark.parametrize("name", ["actors_heldout.jsonl", "actors_heldout2.jsonl", "actors_heldout3.jsonl"])
def test_heldout_actors_file_is_an_evaluation_set(name):
    """The held-out actor files (each written blind to the actor method): 12 articles, 40+ rows,
    at least 12 of each label, every actor and mention written as it stands in the text."""
    rows_by_article = _read_jsonl(SAMPLE / name)
    assert len(rows_by_article) >= 12
    rows = [(a, x) for a in rows_by_article for t in a["targets"] for x in t["actors"]]
    assert len(rows) >= 40
    for label in ("favor", "against", "neutral"):
        assert sum(x["stance"] == label for _, x in rows) >= 12
    for a, x in rows:
        assert x["actor"] in a["text"]
        assert all(m in a["text"] for m in x.get("mentions", []))


# --- topic -----------------------------------------------------------------------------------

def test_topic_schema(topic):
    for row in topic:
        assert set(row) == {"id", "title", "text", "label", "source"}, row.get("id")
        assert row["label"] in TOPIC_LABELS, row["id"]
        assert row["source"] == "khabar-sample", row["id"]
        assert row["title"].strip() and row["text"].strip(), row["id"]
        assert re.fullmatch(r"sample-topic-\d{3}", row["id"]), row["id"]


def test_topic_counts(topic):
    counts = Counter(r["label"] for r in topic)
    assert len(topic) >= MIN_TOPIC_TOTAL
    assert set(counts) == TOPIC_LABELS
    short = {k: v for k, v in counts.items() if v < MIN_TOPIC_PER_LABEL}
    assert not short, f"labels under {MIN_TOPIC_PER_LABEL} articles: {short}"


def test_topic_ids_unique(topic):
    ids = [r["id"] for r in topic]
    assert len(ids) == len(set(ids))


def test_topic_article_length(topic):
    for row in topic:
        words = len(row["text"].split())
        sentences = len(re.findall(r"[.!?؟](?=\s|$)", row["text"]))
        assert 60 <= words <= 150, f"{row['id']}: {words} words"
        assert 2 <= sentences <= 5, f"{row['id']}: {sentences} sentences"


def test_topic_texts_are_arabic(topic):
    for row in topic:
        arabic = len(re.findall(r"[\u0600-\u06FF]", row["text"]))
        assert arabic / len(row["text"]) > 0.6, row["id"]


# --- stance ----------------------------------------------------------------------------------

def test_stance_schema(stance):
    for row in stance:
        assert set(row) == {"id", "target", "text", "label"}, row.get("id")
        assert row["label"] in STANCE_LABELS, row["id"]
        assert row["target"].strip() and row["text"].strip(), row["id"]
        assert re.fullmatch(r"sample-stance-\d{3}", row["id"]), row["id"]


def test_stance_counts(stance):
    counts = Counter(r["label"] for r in stance)
    assert len(stance) >= MIN_STANCE_TOTAL
    assert set(counts) == STANCE_LABELS
    short = {k: v for k, v in counts.items() if v < MIN_STANCE_PER_LABEL}
    assert not short, f"labels under {MIN_STANCE_PER_LABEL} pairs: {short}"
    assert len({r["target"] for r in stance}) >= MIN_STANCE_TARGETS


def test_stance_ids_unique(stance):
    ids = [r["id"] for r in stance]
    assert len(ids) == len(set(ids))


def test_stance_pairs_unique(stance):
    pairs = [(r["target"], r["text"]) for r in stance]
    assert len(pairs) == len(set(pairs))


def test_stance_has_iraq_us_example(stance):
    """The product brief's example: the government welcomes the agreement, factions reject it."""
    rows = [r for r in stance if "العراق" in r["target"] and "الولايات المتحدة" in r["target"]]
    labels = {r["label"] for r in rows}
    assert {"favor", "against"} <= labels


# --- NER -------------------------------------------------------------------------------------

def test_ner_bio_valid(ner):
    for i, sentence in enumerate(ner, 1):
        previous = "O"
        for token, tag in sentence:
            assert tag == "O" or re.fullmatch(r"[BI]-(PERS|LOC|ORG|MISC)", tag), (i, token, tag)
            if tag.startswith("I-"):
                assert previous in (f"B-{tag[2:]}", tag), f"sentence {i}: {tag} after {previous}"
            previous = tag


def test_ner_counts(ner):
    assert len(ner) >= MIN_NER_SENTENCES
    entities = Counter(tag[2:] for s in ner for _, tag in s if tag.startswith("B-"))
    short = {t: entities[t] for t in NER_TYPES if entities[t] < MIN_NER_PER_TYPE}
    assert not short, f"entity types under {MIN_NER_PER_TYPE}: {short}"
    multi = sum(1 for s in ner for _, tag in s if tag.startswith("I-"))
    assert multi >= 100, "multi-token entities should be common"


def test_ner_punctuation_is_split(ner):
    """ANERcorp style: punctuation marks are their own tokens, tagged O."""
    for sentence in ner:
        for token, tag in sentence:
            if token in {"،", ".", "«", "»", "(", ")", ":", "؟", "!", "؛"}:
                assert tag == "O", token
            else:
                assert not re.search(r"^[،«»():؟!؛]|[،«»():؟!؛.]$", token), token


def test_ner_sentences_unique(ner):
    texts = [" ".join(t for t, _ in s) for s in ner]
    assert len(texts) == len(set(texts))


# --- originality -----------------------------------------------------------------------------

def _five_grams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text)
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def test_no_near_duplicate_texts(topic, stance):
    texts = [(r["id"], r["text"]) for r in topic + stance]
    grams = [(i, _five_grams(t)) for i, t in texts]
    for (id_a, a), (id_b, b) in combinations(grams, 2):
        if not a or not b:
            continue
        shared = len(a & b) / min(len(a), len(b))
        assert shared <= MAX_SHARED_5GRAMS, f"{id_a} and {id_b} share {shared:.0%} of 5-grams"


_SENTENCE_END = re.compile(r"[.!?؟\n]+")


def _sentences(text: str) -> set[str]:
    """Whitespace-normalized sentences long enough that an exact match means copying."""
    parts = (" ".join(p.split()) for p in _SENTENCE_END.split(text))
    return {p for p in parts if len(p) >= MIN_OVERLAP_CHARS}


def _shared_sentences(shared: Path) -> tuple[set[str], set[str]]:
    """Sentences of the shared JSON Lines corpora, and the token-joined sentences of the CoNLL ones."""
    prose: set[str] = set()
    for path in sorted(shared.rglob("*.jsonl")):
        with path.open(encoding="utf-8") as f:  # iterate on \n only: texts hold U+2028 separators
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    for field in ("title", "text", "target"):
                        if isinstance(row.get(field), str):
                            prose |= _sentences(row[field])
    tokenized: set[str] = set()
    for path in sorted(shared.rglob("*.conll")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            tokens = [line.split(" ")[0] for line in block.split("\n") if line.strip()]
            tokenized.add(" ".join(tokens))
    return prose, tokenized


@pytest.mark.shared
def test_no_sample_text_in_shared_data(topic, stance, ner, actors):
    shared = _shared_data_dir()
    if not shared.is_dir():
        pytest.skip(f"shared data not found at {shared}; set KHABAR_SHARED_DATA to check originality")
    prose, tokenized = _shared_sentences(shared)
    for row in topic + stance + actors:
        for field in ("title", "text", "target"):
            copied = _sentences(row.get(field, "")) & prose
            assert not copied, f"{row['id']} {field} copies shared data: {sorted(copied)[0]!r}"
    for i, sentence in enumerate(ner, 1):
        joined = " ".join(token for token, _ in sentence)
        assert joined not in tokenized, f"ner sentence {i} copies a shared CoNLL sentence"
