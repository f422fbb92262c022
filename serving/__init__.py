"""khabar.serving."""
