"""The `khabar` command. Each subcommand lives in its own module under khabar/commands/.

A command module exposes ``register(app)``; modules are discovered so that adding a command does
not mean editing this file. Heavy imports (torch, bentoml) happen inside the commands, so that
``khabar --help`` answers at once.
"""
from __future__ import annotations

import importlib
import pkgutil

import typer

import khabar.commands

app = typer.Typer(
    name="khabar",
    help="Label Arabic news: topic, stance toward named targets, and named entities with exact "
    "character offsets. State lives under KHABAR_HOME (default .khabar/ in the checkout).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _info in sorted(pkgutil.iter_modules(khabar.commands.__path__), key=lambda m: m.name):
    importlib.import_module(f"khabar.commands.{_info.name}").register(app)


def main() -> None:
    """Entry point used by the console script."""
    app()


if __name__ == "__main__":
    main()
