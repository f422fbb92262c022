"""Render report blocks as Markdown or as one self-contained HTML page.

The HTML needs nothing else: styles inline, figures as ``data:image/png;base64`` URIs, no
scripts, no links out. Arabic text is shown right-to-left; entities are ``<mark>``ed by type.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from khabar.eval.metrics import entity_spans


class Block:
    """One piece of a report: ``kind`` (h1, h2, h3, p, warn, list, table, img, imgs, errors,
    ner_errors) and its arguments (text; items; header and rows; name and PNG bytes; a list of
    (name, PNG bytes) shown side by side; error items)."""

    def __init__(self, kind: str, *args) -> None:
        self.kind, self.args = kind, args

    def __repr__(self) -> str:
        return f"Block({self.kind!r})"


def segments(tokens: list[str], tags: list[str]) -> list[tuple[str, str | None]]:
    """Consecutive pieces of a sentence: ``(text, entity type)`` or ``(text, None)`` outside."""
    starts = {s: (e, kind) for kind, s, e in entity_spans(tags)}
    out, i = [], 0
    while i < len(tokens):
        if i in starts:
            end, kind = starts[i]
            out.append((" ".join(tokens[i: end + 1]), kind))
            i = end + 1
        else:
            j = i
            while j < len(tokens) and j not in starts:
                j += 1
            out.append((" ".join(tokens[i:j]), None))
            i = j
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "figure"


# ---------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_entities(tokens: list[str], tags: list[str]) -> str:
    return " ".join(f"**[{t}]**{{{k}}}" if k else t for t, k in segments(tokens, tags))


def render_md(blocks: list[Block], fig_dir: Path) -> str:
    """Markdown; figures are written as PNG files into ``fig_dir`` and linked relatively."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    used: set[str] = set()
    for b in blocks:
        k, a = b.kind, b.args
        if k in ("h1", "h2", "h3"):
            lines += ["#" * int(k[1]) + " " + a[0], ""]
        elif k == "p":
            lines += [a[0], ""]
        elif k == "warn":
            lines += [f"> **Warning:** {a[0]}", ""]
        elif k == "list":
            lines += [f"- {item}" for item in a[0]] + [""]
        elif k == "table":
            header, rows = a
            lines.append("| " + " | ".join(map(_md_cell, header)) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            lines.append("")
        elif k in ("img", "imgs"):
            for title, png in ([a] if k == "img" else a[0]):
                name = _slug(title)
                while name in used:
                    name += "-x"
                used.add(name)
                (fig_dir / f"{name}.png").write_bytes(png)
                lines += [f"![{title}]({fig_dir.name}/{name}.png)", ""]
        elif k == "errors":
            for item in a[0]:
                ctx = f" — {item['context'][0]}: {item['context'][1]}" if item.get("context") else ""
                lines += [f"- **{item['head']}**{ctx}", f"  > {item['text']}"]
            lines.append("")
        elif k == "ner_errors":
            for item in a[0]:
                lines += [f"- **{item['head']}**",
                          f"  - gold: {_md_entities(item['tokens'], item['gold'])}",
                          f"  - predicted: {_md_entities(item['tokens'], item['pred'])}"]
            lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Naskh Arabic",sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #2f6db5}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .6em;
text-align:left}th{background:#f3f6fa}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;margin:.6em 0}.figs{display:flex;gap:1em;align-items:flex-start}
.figs img{min-width:0;flex:0 1 auto;max-width:100%}.scroll{overflow-x:auto}td.num{white-space:nowrap}
.what{color:#777;font-size:.85em}.pair{display:grid;grid-template-columns:6em 1fr;gap:.2em .6em;align-items:baseline}.warn{background:#fff4e0;border-left:4px solid #e08a1e;
padding:.5em .8em;margin:.6em 0}.err{border:1px solid #e3e3e3;border-radius:6px;padding:.5em .8em;margin:.5em 0}
.err .head{font-weight:600}.ar{direction:rtl;text-align:right;font-size:1.05em}.target{color:#555}
mark{padding:0 .15em;border-radius:3px;background:#fff3a8}mark sub{font-size:.65em;margin-inline-start:.2em;color:#333}
mark.PERS{background:#ffd8d8}mark.LOC{background:#d5f0d5}mark.ORG{background:#d8e4ff}
mark.MISC{background:#f3e3ff}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _html_entities(tokens: list[str], tags: list[str]) -> str:
    return " ".join(f'<mark class="{_e(k)}">{_e(t)}<sub>{_e(k)}</sub></mark>' if k else _e(t)
                    for t, k in segments(tokens, tags))


def _td(cell) -> str:
    # Numbers with their intervals read best unbroken; a cell "0.812 [0.79, 0.83]" stays on one line.
    text = str(cell)
    cls = ' class="num"' if text[:1] in "0123456789+-–" and len(text) < 48 else ""
    return f"<td{cls}>{_e(text)}</td>"


def _img(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(title)}" title="{_e(title)}" src="data:image/png;base64,{data}">'


def render_html(blocks: list[Block], title: str) -> str:
    """One HTML page with everything inside it."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        k, a = b.kind, b.args
        if k in ("h1", "h2", "h3"):
            out.append(f"<{k}>{_e(a[0])}</{k}>")
        elif k == "p":
            out.append(f"<p>{_e(a[0])}</p>")
        elif k == "warn":
            out.append(f'<div class="warn"><b>Warning:</b> {_e(a[0])}</div>')
        elif k == "list":
            out.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in a[0]) + "</ul>")
        elif k == "table":
            header, rows = a
            out.append('<div class="scroll"><table><tr>' + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"
                       + "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
                       + "</table></div>")
        elif k in ("img", "imgs"):
            out.append('<div class="figs">' + "".join(_img(t, png) for t, png in ([a] if k == "img" else a[0]))
                       + "</div>")
        elif k == "errors":
            for item in a[0]:
                ctx = item.get("context")
                ctx_html = (f'<div class="ar target"><span class="what">{_e(ctx[0])}:</span> {_e(ctx[1])}</div>'
                            if ctx else "")
                out.append(f'<div class="err"><div class="head">{_e(item["head"])}</div>{ctx_html}'
                           f'<div class="ar">{_e(item["text"])}</div></div>')
        elif k == "ner_errors":
            for item in a[0]:
                out.append(f'<div class="err"><div class="head">{_e(item["head"])}</div><div class="pair">'
                           f'<span class="what">gold</span><div class="ar">{_html_entities(item["tokens"], item["gold"])}</div>'
                           f'<span class="what">predicted</span><div class="ar">{_html_entities(item["tokens"], item["pred"])}</div>'
                           "</div></div>")
    out.append("</body></html>")
    return "\n".join(out)
