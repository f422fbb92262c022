"""The target names and held-out splits a model's config fixed, as evaluation and comparison use them."""
import json


def test_eval_names_targets_as_the_model_learnt_them():
    """A model trained with Mawqif's targets renamed (target_map) is scored under those names; a
    file that names its own map, and other files, are left alone."""
    from khabar.eval.trained_files import apply_trained_target_maps
    from khabar.training.config import Source

    arabic = {"Covid Vaccine": "لقاح كورونا"}
    training = {"config": {"tasks": {"stance": {
        "train": [{"path": "/data/stance/mawqif/train.jsonl", "options": {"target_map": arabic}}],
        "dev": [{"path": "/data/stance/ans/dev.jsonl", "options": {}}]}}}}
    plan = {"stance": [Source(path="/elsewhere/stance/mawqif/train.jsonl", name="mawqif"),
                       Source(path="/elsewhere/stance/ans/dev.jsonl"),
                       Source(path="/x/mawqif/train.jsonl", options={"target_map": {"a": "b"}})]}
    applied = apply_trained_target_maps(plan, training)
    assert applied == {"/elsewhere/stance/mawqif/train.jsonl": arabic}
    assert plan["stance"][0].options == {"target_map": arabic}
    assert plan["stance"][1].options == {} and plan["stance"][2].options == {"target_map": {"a": "b"}}
    assert apply_trained_target_maps({"stance": [Source(path="/m/mawqif/train.jsonl")]}, {}) == {}


def test_eval_scores_the_exact_complement_of_a_pinned_training_holdout(tmp_path):
    """A config that fixes the hash seed of Mawqif's 20 % split is scored on that split whatever
    the run's seed was: the held-out rows and the training rows are disjoint and cover the file."""
    from khabar.eval.trained_files import apply_trained_holdouts
    from khabar.training.config import Source
    from khabar.training.data import read_source

    path = tmp_path / "stance" / "mawqif" / "train.jsonl"
    path.parent.mkdir(parents=True)
    rows = [{"id": f"m{i}", "target": "لقاح كورونا", "text": f"نص رقم {i}", "label": "favor"} for i in range(200)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    trained = {"fraction": 0.2, "take": "train", "seed": 13}
    training = {"config": {"seed": 7, "tasks": {"stance": {"train": [{"path": "/data/stance/mawqif/train.jsonl",
                                                                      "holdout": trained}]}}}}
    plan = {"stance": [Source(path=str(path), name="mawqif", holdout={"fraction": 0.2, "take": "heldout"}),
                       Source(path=str(tmp_path / "ans" / "dev.jsonl"))]}
    applied = apply_trained_holdouts(plan, training)
    assert applied == {str(path): {"fraction": 0.2, "take": "heldout", "seed": 13}}
    assert plan["stance"][1].holdout is None
    # The run's seed (7) no longer moves the split: scored rows are exactly those training left out.
    scored = {e.id for e in read_source("stance", plan["stance"][0], seed=7).examples}
    train_ids = {e.id for e in read_source("stance", Source(path=str(path), holdout=trained), seed=7).examples}
    assert scored and train_ids and not scored & train_ids
    assert scored | train_ids == {r["id"] for r in rows}
    # A model whose config pinned nothing keeps following its run seed.
    loose = {"config": {"tasks": {"stance": {"train": [{"path": str(path), "holdout": {"fraction": 0.2}}]}}}}
    again = {"stance": [Source(path=str(path), holdout={"fraction": 0.2, "take": "heldout"})]}
    assert apply_trained_holdouts(again, loose) == {} and "seed" not in again["stance"][0].holdout


def test_a_compared_model_that_held_out_another_split_is_not_credited_with_its_rows():
    """Two models that drew Mawqif's 20 % with different seeds: the file is left out of the
    comparison (the other model trained on rows scored); same pinned seed, or a model that never
    read the file, compares."""
    from khabar.eval.trained_files import holdout_splits, scored_splits, unfair_for_compare
    from khabar.training.config import Source

    def trained(seed, holdout):
        # As the store records a config: the train split and its dev complement, same fraction and seed.
        return {"config": {"seed": seed, "tasks": {"stance": {
            "train": ["/d/stance/ans/train.jsonl", {"path": "/d/stance/mawqif/train.jsonl", "holdout": holdout}],
            "dev": [{"path": "/d/stance/mawqif/train.jsonl", "holdout": {**holdout, "take": "heldout"}}]}}}}

    def plan():
        return {"stance": [Source(path="/x/stance/mawqif/train.jsonl", holdout={"fraction": 0.2, "take": "heldout"}),
                           Source(path="/x/stance/ans/dev.jsonl")]}

    pinned13 = trained(7, {"fraction": 0.2, "seed": 13})
    assert holdout_splits(plan(), pinned13) == {"/x/stance/mawqif/train.jsonl": (0.2, 13)}
    assert holdout_splits(plan(), trained(7, {"fraction": 0.2})) == {"/x/stance/mawqif/train.jsonl": (0.2, 7)}
    assert scored_splits(plan(), pinned13) == {"/x/stance/mawqif/train.jsonl": (0.2, 13)}
    assert scored_splits(plan(), trained(7, {"fraction": 0.3})) == {"/x/stance/mawqif/train.jsonl": (0.2, 7)}
    assert unfair_for_compare(plan(), pinned13, trained(13, {"fraction": 0.2})) == {}
    assert unfair_for_compare(plan(), pinned13, trained(5, {"fraction": 0.2, "seed": 13})) == {}
    why = unfair_for_compare(plan(), pinned13, trained(7, {"fraction": 0.2}))
    assert list(why) == ["/x/stance/mawqif/train.jsonl"] and "seed 7" in why["/x/stance/mawqif/train.jsonl"]
    assert list(unfair_for_compare(plan(), pinned13, trained(13, {"fraction": 0.3}))) == ["/x/stance/mawqif/train.jsonl"]
    never_read = {"config": {"seed": 7, "tasks": {"stance": {"train": ["/d/stance/ans/train.jsonl"]}}}}
    assert unfair_for_compare(plan(), pinned13, never_read) == {}
    # Scoring itself on the file (dev only) is not training on it.
    dev_only = {"config": {"seed": 7, "tasks": {"stance": {"train": ["/d/stance/ans/train.jsonl"], "dev": [
        {"path": "/d/stance/mawqif/train.jsonl", "holdout": {"fraction": 0.2, "take": "heldout"}}]}}}}
    assert unfair_for_compare(plan(), pinned13, dev_only) == {}
