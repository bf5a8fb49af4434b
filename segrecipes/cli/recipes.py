"""``segrecipes recipes``: list the presets, or print one fully resolved."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from segrecipes.config import Duration, RunConfig, available_recipes, load_config
from segrecipes.data.spec import DataError, build_raw_dataset
from segrecipes.run import timed_constants

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
def show_recipe(
    name: str,
    data: Annotated[Optional[str], typer.Option(help="The dataset the constants are resolved for (SPEC).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="section.key=value override (repeatable).")] =
        None,
    train_size: Annotated[Optional[int], typer.Option(help="Training images to resolve for, instead of counting "
                                                           "the dataset's.", min=1)] = None,
) -> None:
    """Print the fully resolved config of a preset (YAML), then, as YAML comments, each constant as the
    preset writes it, as carried over to this run (recipe.transfer) and in this run's batches."""
    overrides = [*([f"data.spec={data}"] if data else []), *(set_ or [])]
    config = load_config(name, overrides=overrides)
    written = load_config(name, overrides=[*overrides, "recipe.transfer=none"])
    images, counted = _train_size(config, train_size)
    print(config.to_yaml(), end="")
    print(f"# constants for this run: {config.data.spec}, {images} training images ({counted}), "
          f"global batch {config.train.global_batch_size}, transfer {config.recipe.transfer}")
    rows = [("optimizer.lr", *(f"{lr:g}" if lr != "auto" else "auto"
                               for lr in (written.optimizer.lr, config.optimizer.lr)), "-")]
    literal = timed_constants(written, images)
    for key, (value, resolved) in timed_constants(config, images).items():
        rows.append((key, _text(literal[key][0]), _text(value), _text(resolved)))
    widths = [max(len(row[column]) for row in [HEADER, *rows]) for column in range(4)]
    for row in [HEADER, *rows]:
        print("#   " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


HEADER = ("constant", "as written", "for this run", "in batches")  # or seconds, for what counts time


def _text(value: Duration | None) -> str:
    return "-" if value is None else str(value)


def _train_size(config: RunConfig, given: int | None) -> tuple[int, str]:
    """The training images to resolve for: given, counted in the dataset, or the reference's when the
    dataset cannot be read here."""
    if given is not None:
        return given, "given"
    try:
        return len(build_raw_dataset(config.data, "train")), "counted"
    except DataError:
        reference = config.recipe.reference_train_size
        if reference is None:
            raise
        return reference, f"{config.data.spec} not found here: the reference's count"
