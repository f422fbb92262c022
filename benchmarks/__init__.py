"""Speed, memory and load measurements of khabar; run from the checkout, not installed.

``python -m benchmarks.bench`` (``make bench``) and ``python -m benchmarks.loadtest``
(``make loadtest``); see benchmarks/README.md. These modules use the installed ``khabar`` package
and the checkout's ``data/sample``; nothing in ``khabar`` imports them.
"""
from pathlib import Path

# The checkout these benchmarks run from: child rows are started with it on PYTHONPATH, and the
# training row falls back to its data/sample when the shared data has no NER training file.
REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
