"""``segrecipes data``: check a dataset for every problem at once, count what it holds, or download ADE20k / CamVid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from segrecipes.config import ConfigError, build_config, merge_dicts, moved_keys, parse_override
from segrecipes.data.settings import DataSettings
from segrecipes.data.check import Report, cheap_checks, check_dataset
from segrecipes.data.download import DATASETS, download_dataset
from segrecipes.data.errors import DataError
from segrecipes.data.spec import parse_data_spec
from segrecipes.cache import write_json
from segrecipes.data.stats import DatasetStats, cached_stats, median_frequency_weights

data_app = typer.Typer(help="Check a dataset for problems, count what it holds, or download ADE20k / CamVid.",
                       no_args_is_help=True)
ERROR_EXIT_CODE = 2
SPEC_HELP = "KIND:PATH as for --data: ade20k, camvid, cityscapes, coco, cvat, folder, labelstudio or voc"


@data_app.command("check")
def check_command(
    spec: Annotated[str, typer.Argument(help=SPEC_HELP)],
    splits: Annotated[str, typer.Option(help="Comma-separated splits to check.")] = "train,val",
    num_classes: Annotated[Optional[int], typer.Option(help="folder: the class count without a classes.txt.")] = None,
    ignore_value: Annotated[int, typer.Option(help="folder: the raw mask value that is not evaluated.")] = 255,
    reduce_zero_label: Annotated[bool, typer.Option(help="folder: raw 0 is unlabelled and v -> v - 1.")] = False,
    headers_only: Annotated[bool, typer.Option(help="Read file headers only: fast, but finds no corrupt "
                                                     "pixels or bad label values.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Threads reading files (default: up to 8).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", help="data.KEY=VALUE as for train (e.g. data.palette=FILE, data.label_map={0: 0, 255: 1}).")] = None,
) -> None:
    """Report every problem of a dataset with its file; exit code 0 when clean (notes allowed), 2 on errors."""
    data = {"spec": spec, "num_classes": num_classes, "ignore_value": ignore_value,
            "reduce_zero_label": reduce_zero_label}
    cfg = data_options(data, overrides or [], "data check options")
    wanted = [split.strip() for split in splits.split(",") if split.strip()]
    run = cheap_checks if headers_only else check_dataset
    report = run(cfg, wanted, workers=workers)
    if json_out:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, Console())
    if not report.ok:
        raise typer.Exit(ERROR_EXIT_CODE)


@data_app.command("stats")
def stats_command(
    spec: Annotated[str, typer.Argument(help=SPEC_HELP)],
    split: Annotated[str, typer.Option(help="The split to count.")] = "train",
    out: Annotated[Optional[Path], typer.Option(help="JSON file, or a folder for data-stats-SPLIT.json "
                                                     "(default: in the dataset's folder).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    num_classes: Annotated[Optional[int], typer.Option(help="folder: the class count without a classes.txt.")] = None,
    ignore_value: Annotated[int, typer.Option(help="folder: the raw mask value that is not evaluated.")] = 255,
    reduce_zero_label: Annotated[bool, typer.Option(help="folder: raw 0 is unlabelled and v -> v - 1.")] = False,
    overrides: Annotated[Optional[list[str]], typer.Option(
        "--set", help="data.KEY=VALUE as for train (e.g. data.palette=FILE, data.in_channels=4).")] = None,
) -> None:
    """Pixels per class with median-frequency weights (for loss.class_weights), channel mean/std (for
    data.mean/std), image sizes; also written as JSON."""
    data = {"spec": spec, "num_classes": num_classes, "ignore_value": ignore_value,
            "reduce_zero_label": reduce_zero_label}
    cfg = data_options(data, overrides or [], "data stats options")
    stats = cached_stats(cfg, split)
    summary = {**stats.to_dict(), "frequencies": stats.frequencies,
               "median_frequency_weights": median_frequency_weights(stats)}
    console = Console(stderr=json_out)  # --json: stdout holds the JSON only
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        _print_stats(stats, summary["median_frequency_weights"], console)
    _write_summary(summary, out, spec, split, console)


def _write_summary(summary: dict[str, object], out: Path | None, spec: str, split: str, console: Console) -> None:
    """To ``--out`` (a failure is an error), else next to the dataset (a read-only folder only warns)."""
    name = f"data-stats-{split}.json"
    root = parse_data_spec(spec)[1]
    if out is not None:
        path = out / name if out.is_dir() else out
    elif root is not None:
        path = root / name
    else:  # synthetic data without --out: nowhere to put it
        return
    try:
        write_json(path, summary)
    except OSError as error:
        if out is not None:
            raise DataError(f"{path}: cannot write the statistics ({error.strerror})") from None
        _say(console, ("warning", "yellow"), f": {path} not written ({error.strerror}); pass --out PATH")
        return
    _say(console, f"written: {path}")


def _print_stats(stats: DatasetStats, weights: list[float], console: Console) -> None:
    table = Table("class", "pixels", "frequency", "median-freq weight",
                  title=f"{stats.spec} {stats.split}: {stats.num_images} images, {stats.ignored_pixels} ignored pixels")
    for name, pixels, frequency, weight in zip(stats.class_names, stats.class_pixels, stats.frequencies, weights):
        table.add_row(Text(name), str(pixels), f"{frequency:.4f}", f"{weight:.4f}")
    console.print(table)
    _say(console, f"channel mean: {_numbers(stats.channel_mean)}   std: {_numbers(stats.channel_std)}")
    _say(console, "image sizes (width x height: images): "
         + ", ".join(f"{size}: {count}" for size, count in stats.sizes.items()))


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def data_options(data: dict[str, object], overrides: list[str], source: str) -> DataSettings:
    """The data section from the command's options, then its ``--set data.KEY=VALUE`` overrides."""
    merged: dict[str, object] = {"data": data}
    for override in overrides:
        if not override.startswith("data."):
            raise ConfigError(f"--set {override!r}: only data.* keys apply here")
        merged = merge_dicts(merged, moved_keys(parse_override(override)))
    return build_config(merged, source).data


def _print_report(report: Report, console: Console) -> None:
    """One line per issue (whole paths, easy to grep), the count of each kind, then the summary."""
    for issue in report.issues:
        _say(console, (issue.severity, "red" if issue.severity == "error" else "yellow"), f" {issue.kind}: {issue}")
    if report.issues:
        _say(console, ", ".join(f"{kind}: {count}" for kind, count in sorted(report.counts().items())))
    _say(console, f"{report.spec}: {report.summary()}")


def _say(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line as it is: paths may hold '[' (no markup) and must stay whole (no wrapping)."""
    console.print(Text.assemble(*parts), soft_wrap=True)


@data_app.command("download")
def download_command(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASETS)}.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to put the dataset in (created if needed).")],
    url: Annotated[Optional[str], typer.Option(help="Download from this URL instead of the official one.")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="Expected SHA-256 of the archive (hex); overrides the "
                                                       "known digest.")] = None,
    keep_archive: Annotated[bool, typer.Option(help="Keep the archive after extracting it.")] = False,
) -> None:
    """Download, verify and extract a dataset; prints the --data spec to use.

    An interrupted download resumes when run again. Without a published digest for the URL and no
    --sha256, the archive is used unverified and its SHA-256 is printed: pass it as --sha256 to pin it.
    """
    console = Console()
    result = download_dataset(dataset, to, url=url, sha256=sha256, progress=console.is_terminal,
                              keep_archive=keep_archive)
    if result.verified_by:
        _say(console, f"verified: {result.verified_by}")
    else:
        _say(console, ("not verified", "yellow"), f": no known digest for this URL; its SHA-256 is {result.sha256} "
             f"(pass --sha256 {result.sha256} to check it next time)")
    _say(console, f"ready: --data {result.spec}")
