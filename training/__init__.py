"""khabar.training."""
