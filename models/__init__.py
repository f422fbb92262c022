"""khabar.models."""
