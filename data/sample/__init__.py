"""The project's own labelled sample (see README.md here), installed as package data ``khabar.sample``.

khabar reads it through ``importlib.resources.files("khabar.sample")``, never through the
checkout, so an installed wheel has the same sample: the demo model of ``khabar serve
--ensure-model`` trains on it, and the int8 export calibrates its smoothing on topic.jsonl.
"""
