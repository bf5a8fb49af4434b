"""``segrecipes recipes``: list the presets, or print one fully resolved."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from segrecipes.config import available_recipes, load_config

recipes_app = typer.Typer(help="List the presets or show one resolved.", invoke_without_command=True)


@recipes_app.callback()
def list_recipes(context: typer.Context) -> None:
    """List the presets with their purpose."""
    if context.invoked_subcommand is not None:
        return
    table = Table("recipe", "purpose")
    for name, purpose in available_recipes().items():
        table.add_row(name, purpose)
    Console().print(table)


@recipes_app.command("show")
def show_recipe(name: str) -> None:
    """Print the fully resolved config of a preset (YAML)."""
    print(load_config(name).to_yaml(), end="")
