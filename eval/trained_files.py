"""What a model's training config says about the files it is scored on.

A model trained on Mawqif learnt its targets under the names its config gave them and held out a
20 % split of its train file (by hash of id, with a pinned seed or the run's seed). Evaluation
scores it under those names and on exactly that split; comparing two models on such a file is
fair only when both held out the same split.
"""
from __future__ import annotations

from pathlib import Path


def _config_sources(training: dict, parts: tuple[str, ...] = ("train", "dev")) -> list:
    """Every source (a path string or a dict with ``path``) of every task in the model's config,
    from its ``parts`` (train and dev lists)."""
    cfg_tasks = (training.get("config") or {}).get("tasks") or {}
    out = []
    for task in cfg_tasks.values():
        for part in parts:
            sources = (task or {}).get(part) or []
            out += [sources] if isinstance(sources, (str, dict)) else list(sources)
    return out


def apply_trained_target_maps(plan: dict, training: dict) -> dict[str, dict]:
    """Give each planned stance file the ``target_map`` the model was trained with for the same
    file (matched on its last two path parts, e.g. ``mawqif/train.jsonl``), unless the file
    already has one: a model that learnt Mawqif's targets under Arabic names is scored under those
    names. Returns ``{file: map}`` for the report's settings."""
    trained = {}
    for src in _config_sources(training):
        mapping = ((src.get("options") or {}) if isinstance(src, dict) else {}).get("target_map")
        if mapping:
            trained[Path(src["path"]).parts[-2:]] = mapping
    applied = {}
    for src in plan.get("stance", []):
        mapping = trained.get(Path(src.path).parts[-2:])
        if mapping and "target_map" not in src.options:
            src.options = {**src.options, "target_map": mapping}
            applied[str(src.path)] = mapping
    return applied


def _pinned_holdouts(training: dict) -> dict[tuple[str, ...], dict]:
    """``{last two path parts: holdout}`` for each file the model's config split with a fixed seed."""
    pinned = {}
    for src in _config_sources(training):
        holdout = src.get("holdout") if isinstance(src, dict) else None
        if holdout and "seed" in holdout:
            pinned[Path(src["path"]).parts[-2:]] = holdout
    return pinned


def apply_trained_holdouts(plan: dict, training: dict) -> dict[str, dict]:
    """Give each planned split of a file without a dev split (Mawqif's held-out 20 %) the hash
    seed the model's config fixed for the same file (matched on its last two path parts), so the
    rows scored are exactly those the model never trained on. Without a recorded seed the split
    follows the model's run seed, as training did. Returns ``{file: holdout}`` for the settings."""
    pinned = _pinned_holdouts(training)
    applied = {}
    for sources in plan.values():
        for src in sources:
            trained = pinned.get(Path(src.path).parts[-2:])
            if src.holdout and trained and "seed" not in src.holdout:
                src.holdout = {**src.holdout, "fraction": trained["fraction"], "seed": trained["seed"]}
                applied[str(src.path)] = src.holdout
    return applied


def holdout_splits(plan: dict, training: dict) -> dict[str, tuple[float, int]]:
    """``{file: (fraction, hash seed)}`` of the split a model's training held out of each planned
    file that has no dev split: the fraction its config gave the file and the seed it pinned, else
    the run's seed (as training drew it)."""
    run_seed = int((training.get("config") or {}).get("seed", 13))
    drawn = {Path(src["path"]).parts[-2:]: src["holdout"] for src in _config_sources(training, ("train",))
             if isinstance(src, dict) and src.get("holdout")}
    out = {}
    for sources in plan.values():
        for src in sources:
            if src.holdout:
                mine = drawn.get(Path(src.path).parts[-2:]) or {}
                out[str(src.path)] = (float(mine.get("fraction", src.holdout.get("fraction", 0.2))),
                                      int(mine.get("seed", run_seed)))
    return out


def scored_splits(plan: dict, training: dict) -> dict[str, tuple[float, int]]:
    """``{file: (fraction, hash seed)}`` of the split evaluation scores a model on: what
    :func:`apply_trained_holdouts` makes of the plan (applied to a copy; the plan is not changed),
    its seed otherwise the run's."""
    import copy

    run_seed = int((training.get("config") or {}).get("seed", 13))
    scored = {task: [copy.copy(src) for src in sources] for task, sources in plan.items()}
    apply_trained_holdouts(scored, training)
    return {str(src.path): (float(src.holdout.get("fraction", 0.2)), int(src.holdout.get("seed", run_seed)))
            for sources in scored.values() for src in sources if src.holdout}


def unfair_for_compare(plan: dict, training: dict, other_training: dict) -> dict[str, str]:
    """Files the compared model may have trained on rows of: the split it held out of the file
    differs from the one scored (another seed or fraction). ``{file: why}``; the comparison leaves
    them out rather than credit a model for rows it saw. A model that never trained on the file is fair."""
    scored, theirs = scored_splits(plan, training), holdout_splits(plan, other_training)
    read = {Path(src if isinstance(src, str) else src.get("path", "")).parts[-2:]
            for src in _config_sources(other_training, ("train",))}
    return {path: f"the compared model held out another split of it (fraction {theirs[path][0]:g}, hash "
                  f"seed {theirs[path][1]}; scored: fraction {split[0]:g}, seed {split[1]}), so it trained "
                  f"on some of the rows scored here"
            for path, split in scored.items() if Path(path).parts[-2:] in read and theirs[path] != split}
