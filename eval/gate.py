"""The retraining gate: a candidate replaces the base model only if no task got worse.

Rules, on the candidate-minus-base comparison of :func:`khabar.eval.compare.compare_runs` (the
same held-out files scored by both models):

1. every task of the base model is scored on at least one held-out file (no data, no promotion);
2. no task's primary metric (topic and stance macro-F1, NER micro-F1; averaged over the task's
   files) drops by more than ``tolerance`` (default 0.005, i.e. 0.5 points);
3. a task that received new training rows does not get worse at all (``new_data_tolerance``,
   default 0): new data for a task is supposed to help it.

The paired-bootstrap p-value of each delta is shown beside it for the reader; the verdict itself
uses the deltas, so a tiny held-out set cannot hide a drop behind "not significant".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

_EPS = 1e-9  # float noise: a delta of exactly -tolerance passes


@dataclass(frozen=True)
class GatePolicy:
    """How much a task may drop (fractions: 0.005 = 0.5 points of F1)."""

    tolerance: float = 0.005
    new_data_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if self.tolerance < 0 or self.new_data_tolerance < 0:
            raise ValueError("gate tolerances are allowed drops and cannot be negative")


def decide(comparison: dict, *, base_tasks: Iterable[str], new_data_tasks: Iterable[str] = (),
           policy: GatePolicy = GatePolicy()) -> dict:
    """The gate's verdict on ``comparison`` (``candidate - base``).

    Returns ``{"passed", "verdict", "reasons", "checks", "notes", "policy", "base", "candidate"}``;
    ``reasons`` has one line per task, failing ones first, and says why.
    """
    new_data = set(new_data_tasks)
    tasks = comparison.get("tasks", {})
    sets = comparison.get("sets", {})
    checks, notes = [], []
    for task in sorted(set(base_tasks)):
        files = [s for s in sets.values() if s["task"] == task]
        allowed = policy.new_data_tolerance if task in new_data else policy.tolerance
        if task not in tasks or not files:
            checks.append({"task": task, "passed": False, "new_data": task in new_data,
                           "reason": f"{task}: no held-out file was scored, so the gate cannot tell whether "
                                     f"it got worse; pass --heldout {task}:FILE"})
            continue
        t = tasks[task]
        base = sum(f["base"] for f in files) / len(files)
        cand = sum(f["candidate"] for f in files) / len(files)
        passed = t["delta"] >= -allowed - _EPS
        why = ("received new rows, so it must not drop" if task in new_data and allowed == 0 else
               f"may drop at most {allowed * 100:.2f} points" + (" (received new rows)" if task in new_data else ""))
        verdict = "ok" if passed else "FAIL"
        checks.append({
            "task": task, "metric": t["metric"], "base": base, "candidate": cand, "delta": t["delta"],
            "ci95": t["ci95"], "p_bootstrap": t["p_bootstrap"], "files": len(files), "allowed_drop": allowed,
            "new_data": task in new_data, "passed": passed,
            "reason": f"{task} {t['metric']} {base:.4f} -> {cand:.4f} ({t['delta'] * 100:+.2f} points, "
                      f"p={t['p_bootstrap']:.3f}, {len(files)} file(s)): {verdict}; {why}"})
        for key, f in sets.items():
            if f["task"] == task and len(files) > 1 and f["delta"] < -allowed - _EPS:
                notes.append(f"{key} dropped {-f['delta'] * 100:.2f} points on its own "
                             f"(p={f['p_bootstrap']:.3f}); the task's mean over its files is what is gated")
    for task in sorted(set(tasks) - set(base_tasks)):
        notes.append(f"{task} is new in the candidate (the base model has no such head); not gated")
    passed = bool(checks) and all(c["passed"] for c in checks)
    reasons = [c["reason"] for c in checks if not c["passed"]] + [c["reason"] for c in checks if c["passed"]]
    return {"passed": passed, "verdict": "pass" if passed else "refuse", "reasons": reasons, "checks": checks,
            "notes": notes, "policy": asdict(policy), "base": comparison.get("base"),
            "candidate": comparison.get("candidate")}


def format_verdict(verdict: dict) -> str:
    """The verdict for a terminal: a headline, then one line per reason and note."""
    head = ("GATE PASSED: the candidate is not worse than the base" if verdict["passed"] else
            "GATE REFUSED: the candidate is worse than the base (or could not be checked)")
    lines = [f"{head} ({verdict['candidate']} vs {verdict['base']})"]
    lines += [f"  - {r}" for r in verdict["reasons"]]
    lines += [f"  note: {n}" for n in verdict["notes"]]
    return "\n".join(lines)
