"""Retraining: merge new rows into a model's training data, fine-tune a candidate, gate, promote.

Read top to bottom, :func:`retrain` is the whole story:

1. *prepare* (cheap, before any training; every input mistake stops here): read the base model's
   recorded training sources and the new files, read the held-out files (the base model's
   recorded dev sets plus ``--heldout``), merge (:mod:`khabar.training.merge`), write the merged
   set to ``KHABAR_HOME/retrain/<content hash>/`` and build a config from the base config that
   points at it (``init_from: <base tag>`` unless starting from the backbone);
2. *train* with the ordinary loop: the same merged data gives the same config hash, so a killed
   retraining resumes in the same run folder, and nothing reaches the store before the end;
3. *compare* candidate and base on the same held-out files and write the `khabar eval --compare`
   report to ``KHABAR_HOME/reports/retrain-<candidate version>/``;
4. *gate* (:mod:`khabar.eval.gate`): the verdict goes to ``gate.json`` beside the report and into
   the stages file; only a passing candidate is promoted, in one atomic replace.

It trains (:mod:`khabar.training`) and then evaluates (:mod:`khabar.eval`), so it sits in a layer
above both: neither imports it, and training never imports eval.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

from khabar.env import khabar_home, reports_dir
from khabar.eval.datasets import EvalSet, read_sets
from khabar.eval.gate import GatePolicy, decide, format_verdict
from khabar.eval.pipeline import model_tasks, run_evaluation
from khabar.eval.report import write_report
from khabar.models.registry import promote, promoted_tag, record_gate
from khabar.training.config import ConfigError, Source, TrainConfig, apply_overrides, expand_vars, from_dict
from khabar.training.data import task_labels
from khabar.training.loop import train
from khabar.training.merge import (MERGED_NAMES, TASKS, MergeError, TaskMerge, content_id, merge_rows,
                                   merged_bytes, parse_new, read_rows, text_key, write_atomic)

# Share of the merged rows held out of a retrained encoder so its hybrid heads are refitted.
RETRAIN_BLEND_HOLDOUT = 0.15


@dataclass
class RetrainOptions:
    """What `khabar retrain` was asked to do."""

    base: str
    new: list[str]  # FILE or TASK:FILE
    config: Path | None = None  # settings that replace the base config's (not its data)
    overrides: list[str] = field(default_factory=list)  # key=value, as `khabar train --set`
    heldout: list[str] = field(default_factory=list)  # FILE or TASK:FILE, scored besides the dev sets
    tolerance: float = 0.005  # largest drop of a task's primary metric (fraction)
    new_data_tolerance: float = 0.0  # largest drop of a task that received new rows
    start_from: str = "base"  # "base" (fine-tune the base model) or "backbone"
    promote: bool = True
    limit: int | None = None  # score at most this many examples per held-out file
    n_boot: int = 1000


@dataclass
class Prepared:
    """Everything decided before training."""

    base: str
    base_tasks: dict[str, list[str]]
    cfg: TrainConfig
    folder: Path
    merges: dict[str, TaskMerge]
    sets: list[EvalSet]
    settings: dict

    @property
    def new_data_tasks(self) -> list[str]:
        """Tasks whose merged training set holds at least one new row."""
        return sorted(t for t, m in self.merges.items() if m.new_kept)


@dataclass
class RetrainResult:
    """The candidate, the gate's verdict, and where the report is."""

    base: str
    candidate: str
    verdict: dict
    promoted: bool
    report_dir: Path
    folder: Path


def _group(specs: list[str], what: str) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for spec in specs:
        task, path = parse_new(spec)
        if not path.is_file():
            raise MergeError(f"{what} file {path} does not exist")
        out.setdefault(task, []).append(path)
    return out


def _sources(specs: list[dict]) -> list[Source]:
    """Sources as a stored config records them (``asdict`` of :class:`Source`)."""
    return [Source(**copy.deepcopy(s)) for s in specs]


def prepare(opts: RetrainOptions, log=print) -> Prepared:
    """Check inputs, merge, write the merged set and build the candidate's config (no training)."""
    if opts.start_from not in {"base", "backbone"}:
        raise ConfigError(f"--from must be 'base' or 'backbone', not {opts.start_from!r}")
    if not opts.new:
        raise MergeError("nothing to merge: pass --new FILE (or --new topic:FILE)")
    base, base_tasks, training = model_tasks(opts.base)
    base_cfg = training.get("config") or {}
    if not base_cfg.get("tasks"):
        raise MergeError(f"model {base} records no training config; retrain needs one (train it with `khabar train`)")
    seed, repair = int(base_cfg.get("seed", 13)), bool(base_cfg.get("repair_bio", True))
    new = _group(opts.new, "--new")
    heldout = _group(opts.heldout, "--heldout")
    tasks = [t for t in TASKS if t in base_cfg["tasks"] or t in new]

    # Rows, oldest first: what the base model was trained on (as recorded), then the new files.
    rows: dict[str, list] = {}
    for task in tasks:
        spec = base_cfg["tasks"].get(task) or {}
        recorded = (training.get("data", {}).get(task) or {}).get("train", [])
        rows[task] = read_rows(task, _sources(spec.get("train", [])), seed=seed, repair_bio=repair, is_new=False,
                               expect_sha=[r.get("sha256") for r in recorded], log=log)
        rows[task] += read_rows(task, [Source(path=str(p)) for p in new.get(task, [])], seed=seed,
                                repair_bio=repair, is_new=True, log=log)

    # The candidate's labels: the base model's, in the same order, then labels only new rows use.
    labels: dict[str, list[str]] = {}
    for task in tasks:
        known = list(base_tasks.get(task) or task_labels(task, [r[0] for r in rows[task]], None))
        if task == "topic":
            known += sorted({r[0].label for r in rows[task]} - set(known))
        labels[task] = known

    # Held-out files: read now, so a bad one costs a second, and their texts stay out of training.
    plan = {t: _sources((base_cfg["tasks"].get(t) or {}).get("dev", [])) + [Source(path=str(p)) for p in heldout.get(t, [])]
            for t in tasks}
    plan = {t: s for t, s in plan.items() if s}
    for extra in heldout:
        if extra not in tasks:
            raise MergeError(f"--heldout {extra} file(s) given, but neither the base model nor the new data has {extra}")
    for sources in plan.values():
        for src in sources:
            if opts.limit is not None and (src.limit is None or src.limit > opts.limit):
                src.limit = opts.limit
    sets = read_sets(plan, labels, seed) if plan else []
    keys = {t: {text_key(t, e) for s in sets if s.task == t for e in s.examples} for t in tasks}

    merges = {t: merge_rows(t, rows[t], keys[t], base_tasks.get(t, [])) for t in tasks}
    parts = {MERGED_NAMES[t]: merged_bytes(m.examples) for t, m in merges.items()}
    folder = khabar_home() / "retrain" / content_id(parts, base)
    for name, data in parts.items():
        write_atomic(folder / name, data)

    raw = _candidate_config(base_cfg, folder, labels, base_tasks, opts, tuple(training.get("hybrid") or ()))
    raw["init_from"] = base if opts.start_from == "base" else None
    cfg = from_dict(raw, where=f"retraining config of {base}")
    summary = {"base": base, "new": {t: [str(p) for p in ps] for t, ps in new.items()},
               "heldout": {t: [str(p) for p in ps] for t, ps in heldout.items()},
               "tasks": {t: m.summary() for t, m in merges.items()}, "config": cfg.to_dict()}
    write_atomic(folder / "merge.json", json.dumps(summary, ensure_ascii=False, indent=2, default=str).encode())
    settings = {"model": None, "compare": base, "limit": opts.limit, "seed": seed, "data_dir": None,
                "files": {s.key: {"path": s.path, "n": len(s.examples), "skipped": s.skipped,
                                  "repaired": s.repaired} for s in sets}}
    return Prepared(base, base_tasks, cfg, folder, merges, sets, settings)


def _candidate_config(base_cfg: dict, folder: Path, labels: dict[str, list[str]],
                      base_tasks: dict, opts: RetrainOptions, base_hybrid: tuple[str, ...] = ()) -> dict:
    """The base config with the merged files as training data (dev sets kept), ``--config``
    settings and ``--set`` overrides applied."""
    import yaml

    raw = copy.deepcopy(base_cfg)
    raw.pop("init_from", None)
    name = str(raw.get("name", "model"))
    raw["name"] = name if name.endswith("-retrain") else f"{name}-retrain"
    old_tasks = raw.get("tasks", {})
    raw["tasks"] = {}
    for task, task_labels in labels.items():
        spec = old_tasks.get(task) or {}
        # Topic labels are pinned in the base model's order (plus new ones); stance and NER keep
        # their fixed sets unless the base config named some.
        pinned = task_labels if task == "topic" or task not in base_tasks else spec.get("labels")
        raw["tasks"][task] = {"train": [{"path": str(folder / MERGED_NAMES[task]), "name": f"merged-{task}"}],
                              "dev": spec.get("dev", []), "labels": pinned,
                              **{k: spec[k] for k in ("max_windows", "repeat", "blend_holdout") if k in spec}}
        if task in base_hybrid and not spec.get("blend_holdout"):
            # The merged file has no rows outside the encoder's (a topic subsample is merged as
            # read): hold some out so the candidate refits its hybrid head on the merged data.
            raw["tasks"][task]["blend_holdout"] = RETRAIN_BLEND_HOLDOUT
    if opts.config is not None:
        path = Path(opts.config)
        if not path.exists():
            raise ConfigError(f"config {path} does not exist (see configs/ for examples)")
        over = expand_vars(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        for key, value in over.items():
            if key == "tasks":  # its training files are replaced by the merged set; dev sets count
                for task, spec in (value or {}).items():
                    if task in raw["tasks"] and (spec or {}).get("dev"):
                        raw["tasks"][task]["dev"] = spec["dev"]
            elif key != "name":
                raw[key] = value
    return apply_overrides(raw, opts.overrides)


def evaluate_and_gate(prep: Prepared, candidate: str, opts: RetrainOptions, log=print) -> tuple[dict, Path]:
    """Score candidate and base on the held-out sets, write the report and ``gate.json``."""
    out_dir = reports_dir() / f"retrain-{candidate.partition(':')[2]}"
    policy = GatePolicy(tolerance=opts.tolerance, new_data_tolerance=opts.new_data_tolerance)
    if prep.sets:
        ev = run_evaluation(candidate, prep.sets, dict(prep.settings, model=candidate), compare=prep.base,
                            n_boot=opts.n_boot, log=log)
        write_report(ev, out_dir)
        comparison = ev.vs_other
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        comparison = {"base": prep.base, "candidate": candidate, "sets": {}, "tasks": {}}
    verdict = decide(comparison, base_tasks=list(prep.base_tasks), new_data_tasks=prep.new_data_tasks,
                     policy=policy)
    verdict["merge"] = {t: {k: v for k, v in m.summary().items() if k != "conflicts"} | {"conflicts": len(m.conflicts)}
                        for t, m in prep.merges.items()}
    verdict["retrain_dir"] = str(prep.folder)
    verdict["config"] = {"init_from": prep.cfg.init_from, "name": prep.cfg.name, "fingerprint": prep.cfg.fingerprint()}
    write_atomic(out_dir / "gate.json", json.dumps(verdict, ensure_ascii=False, indent=2, default=str).encode())
    record_gate(candidate, verdict, str(out_dir))
    return verdict, out_dir


def retrain(opts: RetrainOptions, log=print) -> RetrainResult:
    """Merge, train, compare, gate and (if it passes) promote; see the module docstring."""
    prep = prepare(opts, log=log)
    for task, m in prep.merges.items():
        log(merge_line(task, m))
        for c in m.conflicts[:10]:
            log(f"  conflict ({c['why']}): {c['text']!r}: {c['old']['label']} ({c['old']['source']}) -> "
                f"{c['new']['label']} ({c['new']['source']})")
        if len(m.conflicts) > 10:
            log(f"  ... {len(m.conflicts) - 10} more conflicts in {prep.folder / 'merge.json'}")
    log(f"merged training set: {prep.folder}; starting from "
        f"{prep.cfg.init_from or 'the backbone ' + prep.cfg.backbone}")
    candidate = train(prep.cfg, log=log)["tag"]
    verdict, out_dir = evaluate_and_gate(prep, candidate, opts, log=log)
    log(format_verdict(verdict))
    promoted = False
    if verdict["passed"] and opts.promote:
        current = promoted_tag()
        if current and current != prep.base:
            log(f"note: the promoted model was {current}, not the base {prep.base}; the candidate replaces it")
        promote(candidate, reason=f"retrain gate passed against {prep.base} ({out_dir / 'gate.json'})")
        promoted = True
        log(f"promoted {candidate}")
    elif verdict["passed"]:
        log(f"not promoted (--no-promote): `khabar models promote {candidate}` does it")
    else:
        log(f"not promoted: the served model stays {promoted_tag() or '(none promoted yet)'}")
    log(f"report: {out_dir}")
    return RetrainResult(prep.base, candidate, verdict, promoted, out_dir, prep.folder)


def merge_line(task: str, m: TaskMerge) -> str:
    """One line per task: rows in, duplicates and conflicts resolved, rows out."""
    dup = m.duplicates["same_id"] + m.duplicates["same_text"]
    extra = f", new labels {', '.join(m.new_labels)}" if m.new_labels else ""
    held = f", {m.heldout_dropped} new rows dropped as held-out texts" if m.heldout_dropped else ""
    return (f"{task}: {m.base_rows} base + {m.new_rows} new rows -> {len(m.examples)} "
            f"({dup} duplicates removed, {len(m.conflicts)} conflicting labels resolved by the newer row{held}{extra})")
