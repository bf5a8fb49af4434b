"""The ``segrecipes`` command: one typer app, one module per command group.

Bad input (config, data, checkpoints, usage) ends with a one-line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from segrecipes.cli.bench import bench_app
from segrecipes.cli.data import data_app
from segrecipes.cli.errors import USER_ERRORS
from segrecipes.cli.evaluate import eval_command
from segrecipes.cli.lr_find import lr_find_command
from segrecipes.cli.export import export_command
from segrecipes.cli.predict import predict_command
from segrecipes.cli.recipes import recipes_app
from segrecipes.cli.report import report_command
from segrecipes.cli.train import train_command
from segrecipes.cli.tune import tune_command
from segrecipes.cli.weights import weights_app
from segrecipes.data.healing import LoaderFailed
from segrecipes.deploy.errors import ExportCheckFailed
from segrecipes.engine.checkpoint import CheckpointWriteError
from segrecipes.engine.distributed import CollectiveError
from segrecipes.engine.interrupt import RunInterrupted, TrainingDiverged
from segrecipes.engine.remote import UploadError
from segrecipes.errors import one_line

app = typer.Typer(
    name="segrecipes",
    help="Train semantic-segmentation models fast: the MosaicML DeepLabv3+ recipes as one-command presets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("predict")(predict_command)
app.command("export")(export_command)
app.command("report")(report_command)
app.command("lr-find")(lr_find_command)
app.command("tune")(tune_command)
app.add_typer(recipes_app, name="recipes")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(weights_app, name="weights")


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True)
    except ExportCheckFailed as failed:  # a DeployError, but no bad input: the export was written and failed its check
        print(f"error: {one_line(failed)}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except RunInterrupted as stopped:
        print(str(stopped), file=sys.stderr)
        sys.exit(0)
    except (TrainingDiverged, CollectiveError, UploadError, CheckpointWriteError, LoaderFailed) as failed:
        # the run itself failed (not bad input); what it saved is intact and the message says how to go on
        print(f"error: {failed}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
