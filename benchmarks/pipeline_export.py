"""Export one task of a stored model as a plain Hugging Face folder that ``transformers.pipeline``
loads with no khabar code and no ``trust_remote_code``.

The bench's baseline (three plain pipelines on khabar's weights, :mod:`benchmarks.bench_rows`) is
built from these folders; that is why this lives with the benchmarks and not in the package.
``python -m benchmarks.pipeline_export --task entities --out DIR [--model TAG]`` writes one by hand.

* ``entities``: a ``BertForTokenClassification``: the encoder plus our NER head. Exact.
* ``topic`` / ``stance``: a ``BertForSequenceClassification``. khabar pools by the *mean* of the
  token states, while that class classifies BERT's pooler output (a dense + tanh over the first
  token). To give the same labels *and* the same scores, the export appends one extra encoder
  layer whose weights compute the mean (see :func:`mean_pool_layer`), and sets the pooler and the
  classifier so that they pass our head's logits through. The price is one more layer of compute
  (1/13 more for a 12-layer encoder), and the folder must stay fp32 (the layer uses large
  constants; do not quantize or run it in fp16).

khabar normalizes text before the model sees it (AraBERT's preprocessing, offsets kept); a user of
the exported folder should pass ``khabar.models.normalize.normalize(text).text`` to the pipeline to
get khabar's labels. Topic and stance pipelines see only the first window of a long article
(``truncation=True``); khabar averages over all windows, so long articles can differ.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import typer

from khabar.models.schema import API_TASKS

# Large constants of the mean-pooling layer (see mean_pool_layer): the logits travel through a
# LayerNorm as +-C * logit on pairs of dimensions, beside a +-S pair that fixes the norm.
C_SCALE = 1e5
S_SCALE = 1e9
POOLER_GAIN = 1e-2  # keeps tanh in its linear range (relative error < 1e-8)
EXPORT_FILE = "khabar_export.json"


class ExportError(ValueError):
    """A model or task that cannot be exported; the message says why."""


def export_task(loaded, task: str, out_dir: Path) -> Path:
    """Write task ``task`` (topic, stance or entities) of ``loaded`` as a pipeline-ready folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    if task not in API_TASKS:
        raise ExportError(f"unknown task {task!r}: choose topic, stance or entities")
    internal = API_TASKS[task]
    schema = loaded.schema
    if internal not in schema.tasks:
        have = [api for api, t in API_TASKS.items() if t in schema.tasks]
        raise ExportError(f"model {loaded.tag} has no {task} head (it has {have})")
    encoder = loaded.model.encoder
    if encoder.config.model_type != "bert":
        raise ExportError(f"only BERT-type encoders can be exported as plain pipelines "
                          f"(this one is {encoder.config.model_type!r})")
    labels = list(schema.tasks[internal])
    config = BertConfig.from_dict(encoder.config.to_dict())
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {lab: i for i, lab in enumerate(labels)}
    head = loaded.model.heads[internal]
    state = {f"bert.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}
    if internal == "ner":
        config.architectures = ["BertForTokenClassification"]
        model = BertForTokenClassification(config)
        state["classifier.weight"] = head.weight.detach().clone()
        state["classifier.bias"] = head.bias.detach().clone()
    else:
        config.architectures = ["BertForSequenceClassification"]
        config.problem_type = "single_label_classification"
        extra = config.num_hidden_layers
        config.num_hidden_layers = extra + 1
        model = BertForSequenceClassification(config)
        layer, pooler, classifier = mean_pool_layer(head.weight.detach(), head.bias.detach(),
                                                    config.hidden_size, config.intermediate_size)
        state.update({f"bert.encoder.layer.{extra}.{k}": v for k, v in layer.items()})
        state.update({f"bert.pooler.{k}": v for k, v in pooler.items()})
        state.update({f"classifier.{k}": v for k, v in classifier.items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Buffers such as position_ids may be absent from a state dict; weights may not.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ExportError(f"export of {task} does not line up (missing {missing[:3]}, unexpected {unexpected[:3]})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer = loaded.tokenizer
    old_max = tokenizer.model_max_length
    tokenizer.model_max_length = schema.max_length  # pipelines truncate/stride at khabar's window
    try:
        tokenizer.save_pretrained(out_dir)
    finally:
        tokenizer.model_max_length = old_max
    info = {"model": loaded.tag, "task": task, "labels": labels, "max_length": schema.max_length,
            "stride": schema.stride, "pooling": "mean (extra encoder layer)" if internal != "ner" else "tokens",
            "normalize_input": "khabar.models.normalize.normalize(text).text"}
    (out_dir / EXPORT_FILE).write_text(json.dumps(info, ensure_ascii=False, indent=2), encoding="utf-8")
    (out_dir / "README.md").write_text(_card(info), encoding="utf-8")
    return out_dir


def mean_pool_layer(head_w: torch.Tensor, head_b: torch.Tensor, hidden: int,
                    intermediate: int) -> tuple[dict, dict, dict]:
    """Weights of one BERT layer, pooler and classifier that turn BERT's first-token pooling into
    khabar's masked mean pooling followed by the head ``logits = head_w @ mean + head_b``.

    * Attention: query and key weights are zero, so every score is 0 and softmax spreads evenly
      over the unmasked tokens; value is the identity. Every position's attention output is
      therefore the masked mean ``m`` of the previous layer's states.
    * Attention output: dimensions ``2j, 2j+1`` get ``+-C * (head_w[j] @ m + head_b[j])`` and
      dimensions ``2K, 2K+1`` get ``+-S``; the pairs sum to zero, so the LayerNorm's mean is the
      residual's, and its scale is set by ``S`` (``S >> C * |logits|``), i.e. a constant. The
      residual (the first token's own state) enters the logits as ``residual / C``: below 1e-4.
    * Feed-forward weights are zero (GELU(0) = 0), so the second LayerNorm passes its input on.
    * Pooler reads ``(y[2j] - y[2j+1]) / 2`` times a small gain (tanh stays linear) and the
      classifier multiplies back by the LayerNorm's constant scale.
    """
    head_w = head_w.float()
    head_b = head_b.float()
    k = head_w.shape[0]
    if 2 * k + 2 > hidden:
        raise ExportError(f"{k} labels need a hidden size of at least {2 * k + 2} (it is {hidden})")
    zeros = lambda *shape: torch.zeros(*shape)  # noqa: E731
    dense_w, dense_b = zeros(hidden, hidden), zeros(hidden)
    for j in range(k):
        dense_w[2 * j], dense_b[2 * j] = C_SCALE * head_w[j], C_SCALE * head_b[j]
        dense_w[2 * j + 1], dense_b[2 * j + 1] = -C_SCALE * head_w[j], -C_SCALE * head_b[j]
    dense_b[2 * k], dense_b[2 * k + 1] = S_SCALE, -S_SCALE
    layer = {
        "attention.self.query.weight": zeros(hidden, hidden), "attention.self.query.bias": zeros(hidden),
        "attention.self.key.weight": zeros(hidden, hidden), "attention.self.key.bias": zeros(hidden),
        "attention.self.value.weight": torch.eye(hidden), "attention.self.value.bias": zeros(hidden),
        "attention.output.dense.weight": dense_w, "attention.output.dense.bias": dense_b,
        "attention.output.LayerNorm.weight": torch.ones(hidden), "attention.output.LayerNorm.bias": zeros(hidden),
        "intermediate.dense.weight": zeros(intermediate, hidden), "intermediate.dense.bias": zeros(intermediate),
        "output.dense.weight": zeros(hidden, intermediate), "output.dense.bias": zeros(hidden),
        "output.LayerNorm.weight": torch.ones(hidden), "output.LayerNorm.bias": zeros(hidden),
    }
    pool_w = zeros(hidden, hidden)
    for j in range(k):
        pool_w[j, 2 * j], pool_w[j, 2 * j + 1] = POOLER_GAIN / 2, -POOLER_GAIN / 2
    pooler = {"dense.weight": pool_w, "dense.bias": zeros(hidden)}
    # LayerNorm scale: sqrt(mean of squares) ~ S * sqrt(2 / hidden) (the +-S pair dominates).
    sigma = S_SCALE * (2.0 / hidden) ** 0.5
    cls_w = zeros(k, hidden)
    for j in range(k):
        cls_w[j, j] = sigma / (C_SCALE * POOLER_GAIN)
    classifier = {"weight": cls_w, "bias": zeros(k)}
    return layer, pooler, classifier


def _card(info: dict) -> str:
    pipeline_task = "token-classification" if info["task"] == "entities" else "text-classification"
    example = {
        "topic": 'clf(normalize(text).text, truncation=True)',
        "stance": 'clf({"text": normalize(target).text, "text_pair": normalize(text).text}, truncation="only_second")',
        "entities": f'clf(normalize(text).text)  # created with aggregation_strategy="first", stride={info["stride"]}',
    }[info["task"]]
    return (f"# khabar {info['task']} head of {info['model']}\n\n"
            f"Exported by `python -m benchmarks.pipeline_export`; plain transformers, no remote code.\n\n"
            f"```python\nfrom transformers import pipeline\nfrom khabar.models.normalize import normalize\n"
            f"clf = pipeline(\"{pipeline_task}\", model=\"<this folder>\")\n{example}\n```\n\n"
            f"Labels: {', '.join(info['labels'])}. Window: {info['max_length']} tokens.\n\n"
            "Inputs should be normalized as khabar does (AraBERT preprocessing) to get khabar's labels. "
            "Topic and stance: the last encoder layer is a fixed mean-pooling layer (khabar pools by the "
            "mean of token states); keep the weights in fp32. The pipeline sees only the first window of a "
            "long article, while khabar averages all windows.\n")


def export_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model tag in the store (default: the promoted model, else the newest)."),
    task: str = typer.Option(..., "--task", "-t", help="topic, stance or entities."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (created; files in it are replaced)."),
) -> None:
    """Write TASK of MODEL as a folder that `transformers.pipeline` loads without khabar.

    topic/stance -> text-classification (stance: {"text": target, "text_pair": article});
    entities -> token-classification (aggregation_strategy="first"). See the folder's README.md.
    """
    from khabar.models.registry import serving_tag
    from khabar.models.store import ModelStoreError, load_model

    if task not in API_TASKS:
        typer.echo(f"error: --task must be topic, stance or entities, not {task!r}", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_model(serving_tag(model))
        path = export_task(loaded, task, out)
    except (ModelStoreError, ExportError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    typer.echo(f"exported the {task} head of {loaded.tag} to {path}", err=True)
    typer.echo(str(path))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(export_command)

if __name__ == "__main__":
    app(prog_name="python -m benchmarks.pipeline_export")
