"""The bench's report as Markdown (also what the command prints)."""
from __future__ import annotations


def _num(value, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _skipped(status: str | None) -> str | None:
    """``"skipped (why)"`` for a row or section that did not run (its status ``"skipped: why"``),
    else None."""
    if status is None or status == "ok":
        return None
    why = status.removeprefix("skipped: ")
    return f"skipped ({why})" if why != status else status


def _row_skipped(report: dict, key: str) -> str | None:
    return _skipped(next((r["status"] for r in report["rows"] if r["key"] == key), "skipped: not run"))


def _agree(row: dict) -> str:
    a = row.get("agreement")
    if not a:
        return "(reference)" if row["key"] == "baseline" and row.get("status") == "ok" else "–"
    return f"{a['topic']:.0%} / {a['stance']:.0%} / {a['entities_f1']:.2f}"


def table(report: dict) -> str:
    """The rows as a Markdown table."""
    head = ("| row | articles/s | × baseline | p50 ms | p95 ms | peak RSS MB | agreement topic / stance / entity F1 "
            "| topic acc. (gold) |\n|---|---:|---:|---:|---:|---:|---|---:|\n")
    lines = []
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['status']} | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {_num(r['articles_per_s'])} | {_num(r.get('ratio'), '{:.2f}×')} "
                     f"| {_num(r.get('p50_ms'), '{:.0f}')} | {_num(r.get('p95_ms'), '{:.0f}')} "
                     f"| {_num(r.get('peak_rss_mb'), '{:.0f}')} | {_agree(r)} | {_num(r.get('topic_accuracy'), '{:.1%}')} |")
    return head + "\n".join(lines) + "\n"


def training_line(report: dict) -> str:
    """One line on training throughput."""
    t = report["training"]
    if t.get("status") != "ok":
        return f"Training throughput: {t.get('status')}.\n"
    return (f"Training throughput ({t['task']}, batch {t['batch_size']}, {t['steps']} steps, windows of "
            f"≤{t['max_length']} tokens): khabar loop {t['khabar']['examples_per_s']:.2f} examples/s, "
            f"transformers.Trainer {t['trainer']['examples_per_s']:.2f} examples/s: **{t['ratio']:.2f}×**.\n")


def int8_lines(report: dict) -> str:
    """How often the int8 rows give fp32's labels on the bench's articles."""
    out = []
    for r in report["rows"]:
        a = r.get("agreement_with_fp32")
        if a:
            out.append(f"- {r['name']}: same topic as fp32 {a['topic']:.1%}, same stance {a['stance']:.1%}, "
                       f"entity F1 against fp32 {a['entities_f1']:.3f}")
    return ("int8 against fp32 on the bench's articles:\n\n" + "\n".join(out) + "\n") if out else ""


def dev_table(report: dict) -> str:
    """int8 against fp32 on the dev sets, in points."""
    dev = report["int8_vs_fp32_dev"]
    if dev.get("status") != "ok":
        return f"int8 against fp32 on dev sets: {dev.get('status')}.\n"
    eng = dev["engine"]
    out = [f"int8 ({eng}) against fp32 on dev sets:\n", "| set | n | metric | fp32 | int8 | Δ points |",
           "|---|---:|---|---:|---:|---:|"]
    for s in dev["sets"]:
        key = "micro_f1" if s["task"] == "ner" else "macro_f1"
        a, b = s["fp32"][key], s[eng][key]
        out.append(f"| {s['task']}/{s['set']} | {s['n']} | {key} | {a:.4f} | {b:.4f} | {100 * (b - a):+.2f} |")
    return "\n".join(out) + "\n"


def work_table(report: dict) -> str:
    """Where the time goes: encoder work per article and the share of wall time inside the model."""
    rows = [r for r in report["rows"] if r.get("status") == "ok" and r.get("work")]
    if not rows:
        return ""
    out = ["Where the time goes (per article; model share = time inside the model's forward passes; "
           "CPU ms = process CPU time, all threads; load = the machine's 1-minute load average at the "
           "row's start and end, above the thread count means other work shared the cores):\n",
           "| row | encoder passes | tokens | tokens incl. padding | model share of wall time | CPU ms | load |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        w = r["work"]
        load = "–" if not r.get("load_avg") else f"{r['load_avg'][0]:.1f} → {r['load_avg'][1]:.1f}"
        out.append(f"| {r['name']} | {w['windows_per_article']:.2f} | {w['tokens_per_article']:.0f} "
                   f"| {w['padded_tokens_per_article']:.0f} | {_num(w.get('model_share'), '{:.0%}')} "
                   f"| {_num(r.get('cpu_ms_per_article'), '{:.0f}')} | {load} |")
    for r in report["rows"]:
        if r.get("status") == "ok" and not r.get("work"):
            load = "–" if not r.get("load_avg") else f"{r['load_avg'][0]:.1f} → {r['load_avg'][1]:.1f}"
            out.append(f"| {r['name']} | | | | | {_num(r.get('cpu_ms_per_article'), '{:.0f}')} | {load} |")
    profiles = [(r["name"], r["work"]["op_profile"]) for r in rows if r["work"].get("op_profile")]
    if profiles:
        out.append("\nInside the model (share of operator time on one batch, largest first):\n")
        for name, ops in profiles:
            out.append(f"- {name}: " + ", ".join(f"{op} {share:.0%}" for op, share in ops))
    return "\n".join(out) + "\n"


def machine_line(report: dict) -> str:
    """The CPU the figures were measured on (int8 gains depend on VNNI) and the hybrid heads' cost."""
    m = report.get("machine", {})
    line = (f"CPU: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} cores, "
            f"{'with' if m.get('vnni') else 'without'} VNNI{' (AVX-512)' if m.get('avx512') else ''}.")
    shares = report.get("hybrid_share") or {}
    if shares:
        line += " Hybrid heads (TF-IDF linear part + stacker) as a share of the predictor's time: " + \
            ", ".join(f"{k} {v:.1%}" for k, v in shares.items()) + "."
    return line + "\n"


def actors_line(report: dict) -> str:
    """Actor stance's cost: /label latency with and without actors."""
    a = report.get("actors") or {}
    if a.get("status") != "ok":
        return f"Actor stance latency: {a.get('status', 'not measured')}.\n"
    return (f"Actor stance latency ({a['n']} articles cut to {a['words']} words, 1 target, "
            f"{a['actors_per_article']:.1f} actors each, one article per call): p50 {a['actors_ms']['p50']:.0f} ms "
            f"(p95 {a['actors_ms']['p95']:.0f}) with actors against {a['plain_ms']['p50']:.0f} ms "
            f"(p95 {a['plain_ms']['p95']:.0f}) without: {a['ratio_p50']:.2f}× at the median.\n")


def markdown(report: dict) -> str:
    """The whole report: settings, the table, ratios against the targets, training, dev check."""
    r = report["ratios"]
    met = report["met"]
    mark = lambda ok: "–" if ok is None else ("met" if ok else "missed")  # noqa: E731
    peak = report["peak_rss_mb"].get("service")
    int8, service, batch = (_row_skipped(report, k) for k in (report["int8_engine"], "service", "batch"))
    training = _skipped(report["training"].get("status"))
    clients = next((x.get("clients") for x in report["rows"] if x["key"] == "service"), None)
    lines = [
        f"# Bench: {report['model']}\n",
        f"{report['n_articles']} articles of {report['data']} (title + body, seeded sample), one stance target "
        f"each (\"{report['target']}\"); {report['threads']} threads; {report['started']}; "
        f"backbone {report['backbone']}.\n",
        machine_line(report),
        table(report),
        "Latency: from submitting an article to getting its labels (predictor rows: its call of "
        "32 articles; service: one request among concurrent clients). Agreement is with the baseline's labels; "
        "the baseline's topic and stance see only an article's first window, khabar averages all windows.\n",
        f"- int8 predictor ({report['int8_engine']}): " + (int8 or (
            f"{_num(r['predictor_int8'], '{:.2f}×')} the baseline "
            f"(target ≥ {report['targets']['predictor_int8']}×: {mark(met['predictor_int8'])})")),
        f"- service: {service}" if service else (
            f"- service{f', {clients} clients' if clients else ''}: "
            f"{_num(r['service'], '{:.2f}×')} (target ≥ {report['targets']['service']}×: {mark(met['service'])}); "
            f"peak RSS of the worker {_num(peak, '{:.0f}')} MB (target ≤ {report['targets']['service_rss_mb']:.0f}: "
            f"{mark(met['service_rss'])})"),
        f"- batch job: {batch or _num(r['batch'], '{:.2f}×')}",
        "- training: " + (training or (
            f"{_num(r['training'], '{:.2f}×')} transformers.Trainer "
            f"(target ≥ {report['targets']['training']}×: {mark(met['training'])})")) + "\n",
        training_line(report),
        work_table(report),
        int8_lines(report),
        dev_table(report),
        actors_line(report),
    ]
    return "\n".join(lines)
