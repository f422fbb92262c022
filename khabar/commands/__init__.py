"""Subcommands of `khabar`; each module exposes ``register(app: typer.Typer)``."""
