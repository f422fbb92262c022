"""What an evaluation writes: ``metrics.json`` for machines, ``report.md`` and a self-contained
``report.html`` for people.

The report's content is built once as a list of blocks (headings, tables, figures, error
examples); :mod:`khabar.eval.render` turns the same blocks into Markdown (figures as PNG files
beside it) and HTML (figures embedded as base64), so the two never disagree.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from khabar.eval import plots
from khabar.eval.pipeline import Evaluation
from khabar.eval.render import Block, render_html, render_md
from khabar.training.scoring import PRIMARY

N_ERRORS = 8
_KEEP = ("n", "accuracy", "macro_f1", "per_label", "n_sentences", "micro_f1", "per_type", "ci95",
         "labels", "confusion", "calibration", "unknown_labels", "official", "variants")


def _by_task(ev: Evaluation, run) -> dict:
    """``{"topic": metrics, "stance": {name: metrics}, "ner": {name: metrics}}`` for one run."""
    out: dict = {}
    for eset in ev.sets:
        result = run.results.get(eset.key)
        if result is None:
            continue
        m = {k: v for k, v in result.metrics.items() if k in _KEEP}
        if eset.task == "topic":
            out["topic"] = m
        else:
            out.setdefault(eset.task, {})[eset.name] = m
    return out


def metrics_json(ev: Evaluation) -> dict:
    """The machine-readable result (the issue's shape plus intervals, comparisons, warnings)."""
    out = {"model": {"tag": ev.model.name}, **_by_task(ev, ev.model)}
    tp = ev.model.throughput()
    tp["per_set"] = {k: {"n": len(r.gold), "seconds": r.seconds,
                         "articles_per_s": len(r.gold) / r.seconds if r.seconds else 0.0}
                     for k, r in ev.model.results.items()}
    out["throughput"] = tp
    if ev.baseline is not None:
        out["baseline"] = {**_by_task(ev, ev.baseline), "info": ev.baseline.info,
                           "warnings": ev.baseline.warnings}
        out["vs_baseline"] = ev.vs_baseline
    if ev.other is not None:
        out["compare"] = {"model": {"tag": ev.other.name}, **_by_task(ev, ev.other),
                          "throughput": ev.other.throughput(), "deltas": ev.vs_other}
    out["unknown_labels"] = {s.key: {"n": sum(s.unknown_labels.values()), "labels": s.unknown_labels}
                             for s in ev.sets if s.unknown_labels}
    out["files"] = ev.settings.get("files", {})
    out["settings"] = {k: v for k, v in ev.settings.items() if k != "files"}
    out["warnings"] = ev.warnings
    return out


def write_report(ev: Evaluation, out_dir: Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` (+ ``figures/``) and ``report.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(
        json.dumps(metrics_json(ev), ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    blocks = build_blocks(ev)
    (out_dir / "report.md").write_text(render_md(blocks, out_dir / "figures"), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(blocks, f"khabar eval: {ev.model.name}"), encoding="utf-8")
    return {"metrics": out_dir / "metrics.json", "md": out_dir / "report.md", "html": out_dir / "report.html"}


# ---------------------------------------------------------------------------- content


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _with_ci(m: dict | None, metric: str) -> str:
    if m is None:
        return "–"
    lo, hi = m.get("ci95", [None, None])
    return f"{m[metric]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else _fmt(m[metric])


def _delta(entry: dict | None, p_key: str = "p_bootstrap") -> str:
    if entry is None:
        return "–"
    lo, hi = entry["ci95"]
    text = f"{entry['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}] {_p(entry[p_key])}"
    if "p_mcnemar" in entry:
        text += f", McNemar {_p(entry['p_mcnemar'])}"
    return text


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def build_blocks(ev: Evaluation) -> list[Block]:
    """The report, top to bottom."""
    b: list[Block] = [Block("h1", f"Evaluation of {ev.model.name}")]
    b.append(Block("p", f"Written {time.strftime('%Y-%m-%d %H:%M')}. Files: "
                   + "; ".join(f"{k} = {v['path']} ({v['n']} examples)" for k, v in ev.settings.get("files", {}).items())
                   + (f". Fixed subset of at most {ev.settings['limit']} per file." if ev.settings.get("limit") else ".")
                   + (f" Engine: {ev.settings['engine']}." if ev.settings.get("engine") else "")))
    for w in ev.warnings:
        b.append(Block("warn", w))
    b += _headline(ev)
    tp = ev.model.throughput()
    b.append(Block("h2", "Throughput"))
    b.append(Block("p", f"{tp['articles_per_s']:.1f} articles/s while evaluating ({tp['n']} articles, stance "
                   f"pairs and sentences in {tp['seconds']:.1f} s of prediction, whole articles in windows)."))
    b.append(Block("table", ["file", "n", "seconds", "per second"],
                   [[k, str(len(r.gold)), f"{r.seconds:.1f}", f"{len(r.gold) / r.seconds:.1f}" if r.seconds else "–"]
                    for k, r in ev.model.results.items()]))
    for eset in ev.sets:
        b += _set_section(ev, eset)
    cals = {s.key: ev.model.results[s.key].metrics["calibration"] for s in ev.sets
            if "calibration" in ev.model.results[s.key].metrics}
    if cals:
        b.append(Block("h2", "Calibration"))
        b.append(Block("p", "Reliability diagrams of the model's top-label confidence (10 equal bins); ECE is the "
                       "example-weighted mean gap between confidence and accuracy. Bars under the diagonal "
                       "mean over-confidence."))
        b.append(Block("img", "reliability", plots.reliability_png(cals)))
    b += _notes(ev)
    return b


def _headline(ev: Evaluation) -> list[Block]:
    header = ["file", "metric", "n", "model [95% CI]"]
    if ev.baseline is not None:
        header += ["baseline [95% CI]", "Δ model − baseline"]
    if ev.other is not None:
        header += [f"compared {ev.other.name} [95% CI]", "Δ model − compared"]
    rows = []
    for eset in ev.sets:
        metric = PRIMARY[eset.task]
        m = ev.model.results[eset.key].metrics
        row = [eset.key, metric, str(len(eset.examples)), _with_ci(m, metric)]
        for run, cmp in ((ev.baseline, ev.vs_baseline), (ev.other, ev.vs_other)):
            if run is not None:
                r = run.results.get(eset.key)
                row += [_with_ci(r.metrics if r else None, metric),
                        _delta((cmp or {}).get("sets", {}).get(eset.key))]
        rows.append(row)
    blocks = [Block("h2", "Headline"), Block("table", header, rows)]
    for what, cmp in (("the baseline", ev.vs_baseline), (f"{ev.other.name if ev.other else ''}", ev.vs_other)):
        if cmp and cmp["sets"]:
            blocks.append(Block("p", _summary(what, cmp)))
    return blocks + _official(ev) + _variants(ev)


def _official(ev: Evaluation) -> list[Block]:
    """Each dataset's published metric beside the unified one, for the model and the baseline."""
    rows = []
    for eset in ev.sets:
        m = ev.model.results[eset.key].metrics
        if "official" not in m:
            continue
        base = ev.baseline.results.get(eset.key) if ev.baseline is not None else None
        rows.append([eset.key, m["official"]["metric"], _fmt(m["official"]["value"]),
                     _fmt(base.metrics.get("official", {}).get("value")) if base else "–"])
    if not rows:
        return []
    return [Block("h2", "Official metrics"),
            Block("p", "How each dataset's paper scores it (Mawqif leaves its none class out), next to the "
                  "unified macro-F1 above."),
            Block("table", ["file", "official metric", "model", "baseline"], rows)]


def _variants(ev: Evaluation) -> list[Block]:
    """Hybrid heads taken apart: encoder alone, linear part alone, blend, blend with offsets."""
    from khabar.eval.evaluate import VARIANTS

    rows = []
    for eset in ev.sets:
        v = ev.model.results[eset.key].metrics.get("variants")
        if not v:
            continue
        key = "official" if "official" in v["encoder"] else "macro_f1"
        rows.append([eset.key, key.replace("_", "-")] + [_fmt(v[name].get(key)) for name in VARIANTS])
    if not rows:
        return []
    return [Block("h2", "Hybrid heads, part by part"),
            Block("p", "The same predictions with only one part, the blend without its decision offsets, and "
                  "the served blend (offsets fitted on held-out training rows, never on these files)."),
            Block("table", ["file", "metric", *VARIANTS], rows)]


def _summary(what: str, cmp: dict) -> str:
    """One sentence: on how many files the model is above the reference, and by how much."""
    sets = cmp["sets"]
    above = [k for k, v in sets.items() if v["delta"] > 0]
    sig = [k for k, v in sets.items() if v["delta"] > 0 and v["p_bootstrap"] < 0.05]
    below = [k for k, v in sets.items() if v["delta"] < 0 and v["p_bootstrap"] < 0.05]
    parts = [f"The model is above {what} on {len(above)} of {len(sets)} file(s)"
             f" ({len(sig)} significantly, paired bootstrap p<0.05)"]
    parts.append("; mean primary-metric gain per task: " + ", ".join(
        f"{t} {v['delta']:+.3f}" for t, v in cmp["tasks"].items()))
    if below:
        parts.append(f"; significantly below on {', '.join(below)}")
    return "".join(parts) + "."


def _set_section(ev: Evaluation, eset) -> list[Block]:
    res = ev.model.results[eset.key]
    m = res.metrics
    out = [Block("h2", eset.key)]
    systems = {"model": ev.model, "baseline": ev.baseline, "compared": ev.other}
    systems = {k: r for k, r in systems.items() if r is not None and eset.key in r.results}
    if eset.task == "ner":
        types = list(m["per_type"])
        rows = [[t, _fmt(m["per_type"][t]["precision"]), _fmt(m["per_type"][t]["recall"]),
                 _fmt(m["per_type"][t]["f1"]), str(m["per_type"][t]["support"])]
                + [_fmt(r.results[eset.key].metrics["per_type"].get(t, {}).get("f1")) for k, r in systems.items() if k != "model"]
                for t in types]
        header = ["type", "precision", "recall", "F1", "support"] + [f"{k} F1" for k in systems if k != "model"]
        out.append(Block("p", f"{m['n_sentences']} sentences; strict entity-level micro-F1 {m['micro_f1']:.3f}."))
        out.append(Block("table", header, rows))
        series = {k: {t: v["f1"] for t, v in r.results[eset.key].metrics["per_type"].items()} for k, r in systems.items()}
        out.append(Block("img", f"{eset.key} entity F1", plots.grouped_bars_png(series, f"{eset.key}: F1 per entity type")))
        out += _ner_errors(eset, res)
        return out
    labels = m["labels"]
    rows = [[lab, _fmt(m["per_label"][lab]["precision"]), _fmt(m["per_label"][lab]["recall"]),
             _fmt(m["per_label"][lab]["f1"]), str(m["per_label"][lab]["support"])]
            + [_fmt(r.results[eset.key].metrics["per_label"].get(lab, {}).get("f1")) for k, r in systems.items() if k != "model"]
            for lab in labels]
    header = ["label", "precision", "recall", "F1", "support"] + [f"{k} F1" for k in systems if k != "model"]
    ece = m.get("calibration", {}).get("ece")
    out.append(Block("p", f"{m['n']} examples; accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} over "
                     f"{', '.join(labels)}" + (f"; ECE {ece:.3f}." if ece is not None else ".")))
    out.append(Block("table", header, rows))
    series = {k: {lab: r.results[eset.key].metrics["per_label"].get(lab, {}).get("f1", 0.0) for lab in labels}
              for k, r in systems.items()}
    out.append(Block("imgs", [
        (f"{eset.key} per-label F1", plots.grouped_bars_png(series, f"{eset.key}: F1 per label")),
        (f"{eset.key} confusion", plots.confusion_png(labels, m["confusion"]["matrix"],
                                                       f"{eset.key}: confusion matrix (model)"))]))
    out += _class_errors(eset, res)
    return out


def _excerpt(text: str, n: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def _class_errors(eset, res) -> list[Block]:
    conf = res.confidence or [1.0] * len(res.gold)
    wrong = sorted((i for i, (g, p) in enumerate(zip(res.gold, res.pred)) if g != p), key=lambda i: -conf[i])
    if not wrong:
        return [Block("p", "No errors.")]
    items = []
    for i in wrong[:N_ERRORS]:
        ex = eset.examples[i]
        head = f"gold {res.gold[i]}, predicted {res.pred[i]} ({conf[i]:.2f})"
        if eset.task == "stance":
            items.append({"head": head, "context": ("target", ex.target), "text": _excerpt(ex.text)})
        else:
            items.append({"head": head, "context": ("headline", ex.title) if ex.title else None,
                          "text": _excerpt(ex.text)})
    return [Block("h3", f"Most confident errors ({len(wrong)} errors in all)"), Block("errors", items)]


def _ner_errors(eset, res) -> list[Block]:
    from khabar.eval.metrics import entity_spans

    scored = []
    for i, (g, p) in enumerate(zip(res.gold, res.pred)):
        gs, ps = entity_spans(g), entity_spans(p)
        bad = len(gs - ps) + len(ps - gs)
        if bad:
            scored.append((bad, -len(g), i))
    if not scored:
        return [Block("p", "No entity errors.")]
    items = []
    for bad, _, i in sorted(scored, reverse=True)[:N_ERRORS]:
        tokens = list(eset.examples[i].tokens)
        items.append({"head": f"{bad} entity error(s)", "tokens": tokens, "gold": res.gold[i], "pred": res.pred[i]})
    return [Block("h3", f"Sentences with the most entity errors ({len(scored)} sentences with errors)"),
            Block("ner_errors", items)]


def _notes(ev: Evaluation) -> list[Block]:
    notes = [
        "Topic and stance: macro-F1 over the labels that occur in the file's gold labels (predicting a label "
        "the file never uses still costs recall); stance on the unified labels (favor, against, neutral, unrelated).",
        "NER: strict entity-level micro-F1 (seqeval's default) on the file's tokens.",
        f"95% intervals: percentile bootstrap over examples ({ev.settings.get('n_boot', 1000)} resamples). "
        "Δ columns: paired bootstrap on the same resamples, two-sided p; McNemar: exact test on the "
        "examples exactly one of the two systems gets right.",
        "Whole articles go through the service's predictor, long ones in the same overlapping windows.",
    ]
    if ev.baseline is not None:
        info = ev.baseline.info
        parts = [f"{t}: {v.get('model', v.get('chosen'))}, {v.get('train_rows', v.get('train_sentences'))} training examples"
                 for t, v in info.items() if isinstance(v, dict)]
        notes.append("Baseline (trained on the model's recorded training data, capped for time): " + "; ".join(parts)
                     + ". NER baseline: CRF or gazetteer, whichever scored higher on a held-out 10% of training.")
    return [Block("h2", "How these numbers were computed"), Block("list", notes)]
