// The analysts' page: sends the article to POST /label and draws the answer.
// Plain DOM code, no libraries, so that the page works offline and is easy to audit.
"use strict";

const TOKEN_KEY = "khabar.token";
const STANCE_AR = { favor: "مؤيد", against: "معارض", neutral: "محايد", unrelated: "غير ذي صلة" };
const TYPE_AR = { PERS: "شخص", LOC: "مكان", ORG: "منظمة", MISC: "أخرى" };
const $ = (id) => document.getElementById(id);
const targets = [];
const actors = [];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function typeColor(type) {
  if (TYPE_AR[type]) return `var(--${type})`;
  let h = 0;
  for (const ch of type) h = (h * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${h} 80% 85%)`;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function readError(resp) {
  let text = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) text = body.error;
  } catch (_) { /* not JSON: keep the status line */ }
  if (resp.status === 401) {
    $("token-box").open = true;
    text = `الخادم يطلب رمز الدخول: الصقه في خانة «رمز الدخول» ثم أعد المحاولة. (${text})`;
  }
  return text;
}

// Targets and actors are both chip lists fed by a text box.
function renderChips(listId, items) {
  $(listId).replaceChildren(...items.map((t, i) => {
    const remove = el("button", { type: "button", title: "احذف", "aria-label": `احذف ${t}` }, "×");
    remove.addEventListener("click", () => { items.splice(i, 1); renderChips(listId, items); });
    return el("li", {}, t, remove);
  }));
}

function addChip(inputId, listId, items) {
  const input = $(inputId);
  const value = input.value.trim();
  if (value && !items.includes(value)) items.push(value);
  input.value = "";
  renderChips(listId, items);
}

const addTarget = () => addChip("target-input", "targets", targets);
const addActor = () => addChip("actor-input", "actors", actors);

function bars(scores, best) {
  const rows = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  const grid = el("div", { class: "bars" });
  for (const [label, p] of rows) {
    const pct = (100 * p).toFixed(1);
    grid.append(
      el("span", { class: label === best ? "best" : "" }, STANCE_AR[label] || label),
      el("div", { class: "bar", role: "meter", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
        el("span", { style: `width:${pct}%` })),
      el("span", { class: "pct" }, `${pct}%`));
  }
  return grid;
}

function renderTopic(topic) {
  const box = $("topic");
  if (!topic) { box.replaceChildren(el("p", { class: "muted" }, "لم يُطلب.")); return; }
  box.replaceChildren(
    el("div", { class: "topic-main" }, el("strong", { id: "topic-label" }, topic.label), " ",
      el("span", { class: "pct" }, `${(100 * topic.score).toFixed(1)}%`)),
    bars(topic.scores, topic.label));
}

function renderStance(stance) {
  const box = $("stance");
  if (!stance.length) { box.replaceChildren(el("p", { class: "muted" }, "أضف أهدافًا لمعرفة موقف المقال منها.")); return; }
  const rows = stance.map((s) => el("tr", { class: "stance-row" },
    el("td", {}, s.target),
    el("td", {}, el("span", { class: `tag st-${s.label}`, title: s.label }, STANCE_AR[s.label] || s.label)),
    el("td", { class: "pct" }, `${(100 * s.score).toFixed(1)}%`)));
  box.replaceChildren(el("table", { class: "stance" },
    el("thead", {}, el("tr", {}, el("th", {}, "الهدف"), el("th", {}, "الموقف"), el("th", {}, "الثقة"))),
    el("tbody", {}, ...rows)), ...stance.filter((s) => s.actors).map(renderActors));
}

// Who stands where on one target: each actor's stance, its names in the text, and the
// sentences the label rests on, highlighted in the stance's colour.
function renderActors(s) {
  const items = s.actors.map((a) => el("li", { class: "actor", "data-actor": a.actor, "data-label": a.label },
    el("strong", {}, a.actor), " ",
    el("span", { class: `tag st-${a.label}`, title: a.label }, STANCE_AR[a.label] || a.label), " ",
    el("span", { class: "pct" }, `${(100 * a.score).toFixed(1)}%`),
    el("span", { class: "muted" }, ` · ${[...new Set(a.mentions.map((m) => m.text))].join("، ")}`),
    el("div", { class: "evidence-list" }, ...a.evidence.map((e) =>
      el("q", { class: `evidence st-${a.label}`, "data-start": e.start, "data-end": e.end },
        ...withCues(e, a.cues || []))))));
  return el("div", { class: "actors-block" }, el("h3", {}, `الأطراف من «${s.target}»`),
    items.length ? el("ul", { class: "actors" }, ...items) : el("p", { class: "muted" }, "لم يُعثر على أطراف في النص."));
}

// An evidence clause with the words that decided the actor's side (its cues) marked; offsets are
// code points into the article, as everywhere.
function withCues(e, cues) {
  const chars = Array.from(e.text);
  const parts = [];
  let at = 0;
  for (const c of cues.filter((c) => c.start >= e.start && c.end <= e.end).sort((x, y) => x.start - y.start)) {
    const s = c.start - e.start, t = c.end - e.start;
    if (s < at) continue;
    parts.push(chars.slice(at, s).join(""), el("mark", { class: "cue" }, chars.slice(s, t).join("")));
    at = t;
  }
  parts.push(chars.slice(at).join(""));
  return parts;
}

// Offsets are Python code points; Array.from splits a JS string by code points too, so
// characters outside the BMP (emoji) do not shift the highlights.
function renderEntities(text, entities) {
  const chars = Array.from(text);
  const view = $("entities-text");
  const parts = [];
  let pos = 0;
  for (const e of [...entities].sort((a, b) => a.start - b.start)) {
    if (e.start < pos) continue;
    parts.push(chars.slice(pos, e.start).join(""));
    const name = TYPE_AR[e.label] ? `${TYPE_AR[e.label]} (${e.label})` : e.label;
    parts.push(el("mark", { class: `ent ent-${e.label}`, "data-label": e.label, "data-start": e.start,
      "data-end": e.end, title: `${name} ${(100 * e.score).toFixed(0)}%`,
      style: `background:${typeColor(e.label)}` }, chars.slice(e.start, e.end).join("")));
    pos = e.end;
  }
  parts.push(chars.slice(pos).join(""));
  view.replaceChildren(...parts);
  const types = [...new Set([...(window.khabarTypes || []), ...entities.map((e) => e.label)])];
  $("legend").replaceChildren(...types.map((t) => el("span", { "data-type": t, style: `background:${typeColor(t)}` },
    TYPE_AR[t] ? `${TYPE_AR[t]} ${t}` : t)));
}

async function analyze() {
  const text = $("article").value;
  showError("");
  if (!text.trim()) { showError("الصق نص المقال أولًا."); return; }
  if ($("target-input").value.trim()) addTarget();
  if ($("actor-input").value.trim()) addActor();
  saveToken();
  const button = $("analyze");
  button.disabled = true;
  $("status").textContent = "جارٍ التحليل…";
  const started = performance.now();
  try {
    const body = actors.length ? { text, targets, actors } : { text, targets };
    const resp = await fetch("../label", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!resp.ok) { showError(await readError(resp)); return; }
    const result = await resp.json();
    renderTopic(result.topic);
    renderStance(result.stance);
    renderEntities(text, result.entities);
    $("warnings").replaceChildren(...result.warnings.map((w) => el("li", {}, w)));
    $("result").hidden = false;
    $("status").textContent = `تم في ${Math.round(performance.now() - started)} مللي ثانية · الكيانات: ${result.entities.length}`;
  } catch (err) {
    showError(`تعذّر الاتصال بالخادم: ${err.message}`);
  } finally {
    button.disabled = false;
    if ($("status").textContent === "جارٍ التحليل…") $("status").textContent = "";
  }
}

async function loadInfo() {
  try {
    const resp = await fetch("../info", { headers: headers() });
    if (!resp.ok) { if (resp.status === 401) $("token-box").open = true; return; }
    const info = await resp.json();
    window.khabarTypes = info.tasks.entities || [];
    $("model").textContent = `النموذج: ${info.model.tag}`;
    $("article").maxLength = info.limits.max_chars;
  } catch (_) { /* the page still works; /label reports problems */ }
}

function saveToken() {
  const v = $("token").value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
}

function init() {
  const token = $("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("change", () => { saveToken(); loadInfo(); });
  $("clear-token").addEventListener("click", () => { token.value = ""; sessionStorage.removeItem(TOKEN_KEY); });
  $("add-target").addEventListener("click", addTarget);
  $("target-input").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addTarget(); } });
  $("add-actor").addEventListener("click", addActor);
  $("actor-input").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); addActor(); } });
  $("article").addEventListener("input", () => { $("char-count").textContent = Array.from($("article").value).length; });
  $("analyze").addEventListener("click", analyze);
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
