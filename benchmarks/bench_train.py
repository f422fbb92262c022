"""Training throughput for the bench: khabar's loop against a plain ``transformers.Trainer``.

Both train the same backbone on the same task (NER: the encoder plus a token head, i.e. the same
size as ``BertForTokenClassification``), from the same pool of windows, with the same batch size,
number of steps, learning rate and threads. The figure is training examples (windows) per second
over the optimisation steps only (model loading, evaluation and saving left out), for both.

Runs in a child process whose KHABAR_HOME is a scratch folder: the khabar run stores a model, and
it must not land in the user's store (it would become ``khabar:latest``).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _config(spec: dict):
    from khabar.training.config import Source, TaskData, TrainConfig

    steps, batch = int(spec["steps"]), int(spec["batch_size"])
    # Enough sentences for every step to draw a fresh batch; both sides read this same subset.
    source = Source(path=spec["ner_train"], name="bench", limit=steps * batch + 64)
    return TrainConfig(name="bench-train", backbone=spec["backbone"], tasks={"ner": TaskData(train=[source])},
                       max_length=int(spec["max_length"]), stride=int(spec["stride"]),
                       max_windows_per_example=1, epochs=1, batch_size=batch, lr=5e-5, head_lr=1e-3,
                       warmup_ratio=0.1, patience=1, checkpoint_every_steps=0,
                       max_steps_per_epoch=steps, eval_batch_size=32)


def khabar_loop(spec: dict) -> dict:
    """Examples/s of :func:`khabar.training.loop.train` (its own count: windows over step time)."""
    from khabar.training.loop import train

    cfg = _config(spec)
    t0 = time.perf_counter()
    result = train(cfg, restart=True, log=lambda m: print(f"  khabar: {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in Path(result["run_dir"], "log.jsonl").read_text().splitlines() if line]
    return {"examples_per_s": history[-1]["examples_per_s"], "wall_s": wall, "steps": int(spec["steps"])}


def trainer_loop(spec: dict) -> dict:
    """Examples/s of ``transformers.Trainer`` on the windows khabar's loop trains on."""
    import torch
    from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer,
                              TrainerCallback, TrainingArguments)

    from khabar.models.backbones import load_tokenizer
    from khabar.training.data import build_windows, load_examples, task_labels

    cfg = _config(spec)
    tokenizer = load_tokenizer(cfg.backbone)
    examples = load_examples(cfg, log=lambda m: None)["ner"].train
    labels = task_labels("ner", examples, None)
    items = build_windows("ner", examples, tokenizer, labels, cfg, log=lambda m: None)
    data = []
    for window, tags in items:
        row = {"input_ids": window.input_ids, "attention_mask": [1] * len(window), "labels": tags}
        if window.token_type_ids is not None:
            row["token_type_ids"] = window.token_type_ids
        data.append(row)
    model = AutoModelForTokenClassification.from_pretrained(
        cfg.backbone, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)}, use_safetensors=True)

    class Clock(TrainerCallback):
        """Time from the first step's start to the last step's end (the loop only)."""

        start = end = None

        def on_step_begin(self, args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

    clock = Clock()
    steps, batch = int(spec["steps"]), int(spec["batch_size"])
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=batch, max_steps=steps, learning_rate=cfg.lr,
            weight_decay=cfg.weight_decay, warmup_steps=max(1, int(0.1 * steps)), max_grad_norm=1.0,
            use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no",
            disable_tqdm=True, seed=cfg.seed, dataloader_num_workers=0, dataloader_pin_memory=False)
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=DataCollatorForTokenClassification(tokenizer), callbacks=[clock])
        t0 = time.perf_counter()
        metrics = trainer.train().metrics
        wall = time.perf_counter() - t0
    seconds = clock.end - clock.start
    return {"examples_per_s": steps * batch / seconds, "wall_s": wall, "steps": steps,
            "trainer_reported_samples_per_s": metrics.get("train_samples_per_second"),
            "threads": torch.get_num_threads()}


def row_training(spec: dict) -> dict:
    """Both loops, one after the other, in this (scratch-home) process."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    os.environ["KHABAR_THREADS"] = str(spec["threads"])  # the khabar loop reads it
    khabar = khabar_loop(spec)
    trainer = trainer_loop(spec)
    return {"task": "ner", "batch_size": int(spec["batch_size"]), "steps": int(spec["steps"]),
            "max_length": int(spec["max_length"]), "khabar": khabar, "trainer": trainer,
            "ratio": khabar["examples_per_s"] / trainer["examples_per_s"]}
