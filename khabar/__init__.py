"""khabar: label Arabic news with topic, stance and named entities."""
from khabar.env import configure as _configure

__version__ = "0.1.0"

# Done at import so that any later `import bentoml` / `import transformers` sees our folders and
# has telemetry off.
_configure()
