"""The training loop: one encoder, several heads, task batches mixed by temperature sampling.

Read it top to bottom: data -> windows -> model -> (resume) -> epochs of mixed task batches with
warmup/decay and gradient accumulation -> dev evaluation -> best checkpoint -> model store.
A run lives in ``KHABAR_HOME/runs/<name>-<config hash>``; the same command after a crash (even a
SIGKILL) resumes from the last checkpoint there.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from khabar.env import khabar_home
from khabar.models.backbones import backbone_identity, load_encoder, load_tokenizer, resolve_backbone
from khabar.models.files import atomic_path, write_text_atomic
from khabar.models.multitask import KhabarModel
from khabar.models.predictor import Predictor
from khabar.models.schema import ModelSchema
from khabar.models.store import save_model
from khabar.models.windows import collate
from khabar.settings import use_torch_threads
from khabar.training.averaging import average_weights, epoch_weights_path, kept_epochs, save_epoch_weights
from khabar.training.checkpoint import load_checkpoint, save_checkpoint
from khabar.training.config import ConfigError, TrainConfig
from khabar.training.data import IGNORE, build_windows, load_examples, task_labels, window_cap
from khabar.training.freezing import freeze_encoder
from khabar.training.plots import plot_curves
from khabar.training.scoring import primary_metric, score_examples, single_label
from khabar.training.weighting import PER_ROW, WEIGHTED_TASKS, class_weights, row_weights


def run_dir_for(cfg: TrainConfig) -> Path:
    """Where a config's run lives; the config hash makes the same command find it again."""
    return khabar_home() / "runs" / f"{cfg.name}-{cfg.fingerprint()}"


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_plan(sizes: dict[str, list[int]], cfg: TrainConfig, epoch: int) -> list[tuple[str, list[int]]]:
    """The batches of one epoch as (task, window indices).

    Within a task: shuffle, then sort by length inside chunks of 50 batches (length-grouped
    batches pad little but stay random). Across tasks: each step picks a task with probability
    proportional to n_batches ** (1 / T): T=1 is proportional, larger T upsamples small tasks.
    A task's ``repeat`` multiplies its batches per epoch (each extra pass freshly shuffled).
    """
    rng = random.Random(cfg.seed * 1000 + epoch)
    per_task = {}
    for task, lengths in sizes.items():
        spec = cfg.tasks.get(task)
        n_batches = math.ceil(len(lengths) / cfg.batch_size)
        quota = max(1, round(n_batches * (spec.repeat if spec is not None else 1.0)))
        batches: list[list[int]] = []
        while len(batches) < quota:  # a task repeated 2.5x gets three fresh shuffles, cut to quota
            order = list(range(len(lengths)))
            rng.shuffle(order)
            chunk = cfg.batch_size * 50
            one_pass = []
            for c in range(0, len(order), chunk):
                part = sorted(order[c: c + chunk], key=lambda i: lengths[i])
                one_pass += [part[b: b + cfg.batch_size] for b in range(0, len(part), cfg.batch_size)]
            rng.shuffle(one_pass)
            batches += one_pass
        per_task[task] = batches[:quota]
    tasks = list(per_task)
    weights = [len(per_task[t]) ** (1.0 / cfg.sampling_temperature) for t in tasks]
    total = sum(len(b) for b in per_task.values())
    if cfg.max_steps_per_epoch:
        total = min(total, cfg.max_steps_per_epoch)
    cursor = {t: 0 for t in tasks}
    plan = []
    for _ in range(total):
        task = rng.choices(tasks, weights)[0]
        batches = per_task[task]
        plan.append((task, batches[cursor[task] % len(batches)]))
        cursor[task] += 1
    return plan


def make_batch(items: list, idx: list[int], task: str, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the windows of one batch and attach labels (-100 on padding for NER)."""
    windows = [items[i][0] for i in idx]
    batch = collate(windows, pad_id)
    if task == "ner":
        labels = torch.full(batch["input_ids"].shape, IGNORE, dtype=torch.long)
        for r, i in enumerate(idx):
            lab = items[i][1]
            labels[r, : len(lab)] = torch.tensor(lab)
    else:
        labels = torch.tensor([items[i][1] for i in idx], dtype=torch.long)
    batch["labels"] = labels
    return batch


def evaluate_dev(model: KhabarModel, tokenizer, examples: dict, cfg: TrainConfig) -> dict:
    """Dev metrics per task and source, through the same predictor the service uses."""
    predictor = Predictor(model, tokenizer, model.schema, batch_size=cfg.eval_batch_size)
    metrics: dict = {}
    total = sum(len(exs) for te in examples.values() for exs in te.dev.values())
    # Whole dev articles through every window: minutes on a CPU, so it gets its own bar.
    with tqdm(total=total, desc="dev evaluation", unit="ex", dynamic_ncols=True, leave=False) as bar:
        for task, te in examples.items():
            for name, exs in te.dev.items():
                if exs:
                    bar.set_postfix_str(f"{task}/{name}")
                    metrics.setdefault(task, {})[name] = score_examples(
                        predictor, task, exs, model.schema.tasks[task] if task != "ner" else None,
                        progress=bar.update).metrics
    model.train()
    return metrics


def collapsed_heads(metrics: dict) -> list[tuple[str, str, str]]:
    """(task, dev set, label) for each classification dev set whose every row got one label."""
    found = []
    for task, sets in metrics.items():
        if task == "ner":
            continue
        for name, m in sets.items():
            label = single_label(m)
            if label is not None:
                found.append((task, name, label))
    return found


def dev_score(metrics: dict) -> float | None:
    """Mean of the primary metric over every dev set: the number early stopping watches."""
    values = [primary_metric(task, m) for task, sets in metrics.items() for m in sets.values()]
    return float(np.mean(values)) if values else None


def train(cfg: TrainConfig, *, restart: bool = False, log=print) -> dict:
    """Train (or resume) ``cfg``; store the best model; return ``{"tag", "dev_metrics", ...}``."""
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    run_dir = run_dir_for(cfg)
    if restart and run_dir.exists():
        shutil.rmtree(run_dir)
    done = run_dir / "done.json"
    if done.exists():
        result = json.loads(done.read_text())
        log(f"this config was already trained: {result['tag']} (use --restart to train again)")
        return result
    run_dir.mkdir(parents=True, exist_ok=True)
    # More threads than free cores makes OpenMP spin and everything crawl; KHABAR_THREADS caps it.
    # Training owns its process: it sets the threads once, here.
    use_torch_threads()
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str))
    set_seed(cfg.seed)

    # Data and windows.
    resolved = resolve_backbone(cfg.backbone)
    tokenizer = load_tokenizer(resolved)
    examples = load_examples(cfg, log=log)
    labels = {t: task_labels(t, te.train, cfg.tasks[t].labels) for t, te in examples.items()}
    items = {t: build_windows(t, te.train, tokenizer, labels[t], cfg, log=log) for t, te in examples.items()}
    sizes = {t: [len(w) for w, _ in its] for t, its in items.items()}
    loss_weights = {t: class_weights([lab for _, lab in items[t]], len(labels[t]), cfg.class_weighting)
                    for t in items if t in WEIGHTED_TASKS}
    per_row = {t: row_weights([lab for _, lab in items[t]], [examples[t].train_sources[w.item] for w, _ in items[t]])
               for t in items if t in WEIGHTED_TASKS and cfg.class_weighting in PER_ROW}
    for t, w in per_row.items():
        pairs = {(examples[t].train_sources[win.item], labels[t][lab]): float(w[i]) for i, (win, lab) in enumerate(items[t])}
        log(f"{t}: row weights " + ", ".join(f"{s}/{l}={x:.2f}" for (s, l), x in sorted(pairs.items())))
    for t, w in loss_weights.items():
        if w is not None:
            log(f"{t}: loss weights " + ", ".join(f"{l}={x:.2f}" for l, x in zip(labels[t], w.tolist())))

    # Model, optimizer (heads learn faster than the pretrained encoder), schedule.
    schema = ModelSchema(tasks=labels, max_length=cfg.max_length, stride=cfg.stride,
                         backbone=backbone_identity(cfg.backbone, resolved),
                         stance_windows=window_cap(cfg, "stance") if "stance" in labels else None,
                         stance_select="evidence", stance_pool="evidence",
                         ner_own_layers=cfg.ner_own_layers if "ner" in labels else 0)
    model = KhabarModel(load_encoder(resolved), schema, dropout=cfg.dropout)
    if cfg.init_from:
        from khabar.training.warmstart import init_from_stored

        log(init_from_stored(model, cfg.init_from))
    # What stays pretrained, and why it saves time, is in training/freezing.py.
    try:
        frozen = freeze_encoder(model.encoder, embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    except ValueError as err:  # more layers than the backbone has: the config's fault, said as such
        raise ConfigError(str(err)) from None
    if frozen:
        log(frozen)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    # NER's own top layers are pretrained encoder layers too: they learn at the encoder's rate.
    encoder_like = list(model.encoder.named_parameters())
    if model.ner_layers is not None:
        encoder_like += list(model.ner_layers.named_parameters())
    trainable = [(n, p) for n, p in encoder_like if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if not n.endswith(no_decay)],
         "weight_decay": cfg.weight_decay, "lr": cfg.lr},
        {"params": [p for n, p in trainable if n.endswith(no_decay)],
         "weight_decay": 0.0, "lr": cfg.lr},
        {"params": list(model.heads.parameters()), "weight_decay": 0.0, "lr": cfg.head_lr},
    ]
    optimizer = torch.optim.AdamW(groups)
    steps_per_epoch = len(epoch_plan(sizes, cfg, 0))
    total_updates = math.ceil(steps_per_epoch * cfg.epochs / cfg.grad_accum)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_updates), total_updates)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, cpu=not torch.cuda.is_available())
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw_model = accelerator.unwrap_model(model)

    state = {"epoch": 0, "step": 0, "best": None, "bad_epochs": 0, "history": [], "train_seconds": 0.0,
             "examples": 0}
    resumed = load_checkpoint(run_dir, raw_model, optimizer, scheduler)
    if resumed is not None:
        state = resumed
        log(f"resuming {run_dir.name} at epoch {state['epoch'] + 1}, step {state['step']}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    model.train()
    stop = False
    while state["epoch"] < cfg.epochs and not stop:
        epoch = state["epoch"]
        plan = epoch_plan(sizes, cfg, epoch)
        bar = tqdm(total=len(plan), initial=state["step"], desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 15)
        losses, t0, seen = [], time.perf_counter(), 0
        for step in range(state["step"], len(plan)):
            task, idx = plan[step]
            batch = make_batch(items[task], idx, task, pad_id)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            target = batch.pop("labels")
            with accelerator.accumulate(model):
                logits = model(**batch, tasks=(task,))[task]
                weight = loss_weights.get(task)
                if task in per_row:  # a weighted mean over the batch's rows
                    rows = per_row[task][idx].to(logits.device)
                    each = torch.nn.functional.cross_entropy(logits, target, reduction="none")
                    loss = (each * rows).sum() / rows.sum()
                else:
                    loss = torch.nn.functional.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                        weight=None if weight is None else weight.to(logits.device))
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            seen += len(idx)
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", ex_s=f"{seen / max(elapsed, 1e-9):.1f}")
            bar.update(1)
            state["step"] = step + 1
            if cfg.checkpoint_every_steps and state["step"] % cfg.checkpoint_every_steps == 0:
                state["train_seconds"] += time.perf_counter() - t0
                state["examples"] += seen
                t0, seen = time.perf_counter(), 0
                save_checkpoint(run_dir, raw_model, optimizer, scheduler, state)
        bar.close()
        state["train_seconds"] += time.perf_counter() - t0
        state["examples"] += seen

        scored = cfg.dev_every_epoch or epoch + 1 == cfg.epochs
        metrics = evaluate_dev(raw_model, tokenizer, examples, cfg) if scored else None
        score = dev_score(metrics) if scored else None
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                 "dev_score": score, "dev": metrics,
                 "examples_per_s": state["examples"] / max(state["train_seconds"], 1e-9)}
        state["history"].append(entry)
        with open(run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        # No loss when a run resumes from a checkpoint taken at the epoch's last step.
        loss_text = "n/a" if entry["train_loss"] is None else f"{entry['train_loss']:.4f}"
        shown = "not scored (dev_every_epoch: false)" if not scored else "n/a" if score is None else f"{score:.4f}"
        log(f"epoch {epoch + 1}: loss {loss_text}, dev score {shown}")
        for task, name, label in collapsed_heads(metrics or {}):
            log(f"warning: the {task} head labels every row of dev set {name} {label!r}: it has collapsed to "
                f"one label (a lower --set lr, or more warmup, usually avoids this)")
        if not scored:
            pass  # nothing to compare: the last epoch is scored and kept (dev_every_epoch: false)
        elif score is None or state["best"] is None or score > state["best"]:
            state["best"], state["bad_epochs"] = score, 0
            from safetensors.torch import save_file
            with atomic_path(run_dir / "best.safetensors") as tmp:
                save_file({k: v.contiguous() for k, v in raw_model.state_dict().items()}, str(tmp))
            state["best_epoch"] = epoch + 1
        else:
            state["bad_epochs"] += 1
            stop = state["bad_epochs"] >= cfg.patience
            if stop:
                log(f"early stopping: no dev improvement for {cfg.patience} epoch(s)")
        if cfg.average_last_epochs > 1:
            save_epoch_weights(run_dir, raw_model, epoch + 1, keep=cfg.average_last_epochs)
        state["epoch"], state["step"] = epoch + 1, 0
        save_checkpoint(run_dir, raw_model, optimizer, scheduler, state)
        plot_curves(state["history"], run_dir / "curves.png")

    state["averaged"] = _try_average(cfg, run_dir, raw_model, tokenizer, examples, state, log)
    return _finish(cfg, run_dir, raw_model, tokenizer, examples, state, log)


def _try_average(cfg: TrainConfig, run_dir: Path, model: KhabarModel, tokenizer, examples: dict, state: dict,
                 log) -> dict | None:
    """Score the mean of the last epochs' weights on dev; when it beats the best epoch, it becomes
    ``best.safetensors``. Returns what was measured (also written to ``averaged.json``, so a run
    resumed after this step does not measure it again), or None when there is nothing to average."""
    from safetensors.torch import save_file

    done = run_dir / "averaged.json"
    if done.exists():
        return json.loads(done.read_text())
    epochs = kept_epochs(run_dir)[-cfg.average_last_epochs:]
    if cfg.average_last_epochs < 2 or len(epochs) < 2:
        return None
    weights = average_weights([epoch_weights_path(run_dir, e) for e in epochs])
    model.load_state_dict(weights)
    metrics = evaluate_dev(model, tokenizer, examples, cfg)
    score = dev_score(metrics)
    kept = score is not None and state["best"] is not None and score > state["best"]
    label = f"mean of epochs {epochs[0]}-{epochs[-1]}"
    shown = ["n/a" if x is None else f"{x:.4f}" for x in (score, state["best"])]
    log(f"{label}: dev score {shown[0]} against {shown[1]} (epoch {state.get('best_epoch')}): "
        f"{'kept' if kept else 'not kept'}")
    if kept:
        with atomic_path(run_dir / "best.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp))
    result = {"epochs": epochs, "dev_score": score, "dev": metrics, "kept": kept}
    write_text_atomic(done, json.dumps(result, sort_keys=True))
    return result


def _finish(cfg, run_dir: Path, model: KhabarModel, tokenizer, examples: dict, state: dict, log) -> dict:
    """Load the best weights, write the artifact to the store, mark the run done."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    best = next((h for h in state["history"] if h["epoch"] == state.get("best_epoch")), state["history"][-1])
    averaged = state.get("averaged") or {}
    training = {
        "config": cfg.to_dict(),
        "data": {t: te.sources for t, te in examples.items()},
        "dev_metrics": averaged["dev"] if averaged.get("kept") else best["dev"],
        "best_epoch": state.get("best_epoch"),
        "averaged": averaged or None,
        "history": state["history"],
        "examples_per_s": state["examples"] / max(state["train_seconds"], 1e-9),
        "train_seconds": state["train_seconds"],
        "code_version": _code_version(),
    }
    heads = _fit_hybrid_heads(cfg, model, tokenizer, log)
    if heads:
        training["hybrid"] = {t: h.info for t, h in heads.items()}
    tag = save_model(model, tokenizer, training=training, labels={"stage": "trained", "run": run_dir.name},
                     extra_files=[run_dir / "log.jsonl", run_dir / "curves.png"], hybrid=heads)
    result = {"tag": tag, "dev_metrics": training["dev_metrics"], "run_dir": str(run_dir)}
    write_text_atomic(run_dir / "done.json", json.dumps(result, indent=2))
    log(f"saved {tag}")
    return result


def _fit_hybrid_heads(cfg: TrainConfig, model: KhabarModel, tokenizer, log) -> dict:
    """Hybrid topic/stance heads (training/hybrid.py) when the config leaves training rows outside
    the encoder's (a topic ``limit``, a ``blend_holdout``); none otherwise."""
    from khabar.models.store import LoadedModel
    from khabar.training.hybrid import fit_hybrid

    if not any(spec.blend_holdout or any(s.limit for s in spec.train)
               for task, spec in cfg.tasks.items() if task != "ner"):
        return {}
    loaded = LoadedModel(tag=f"{cfg.name}:training", model=model.eval(), tokenizer=tokenizer,
                         schema=model.schema, training={}, path=Path("."))
    try:
        return fit_hybrid(loaded, cfg, log=log)
    except Exception as err:  # noqa: BLE001 - the trained encoder must not be lost to a blend failure
        log(f"warning: hybrid heads not fitted ({type(err).__name__}: {err}); the model is stored without "
            f"them; `khabar hybrid --model TAG` fits them later")
        return {}


def _code_version() -> str:
    import subprocess

    import khabar
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{khabar.__version__}+{rev}" if rev else khabar.__version__
