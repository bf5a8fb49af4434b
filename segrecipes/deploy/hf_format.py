"""A Hugging Face Hub model folder: ``config.json``, ``model.safetensors`` and a ``README.md`` model card, the
layout ``huggingface-cli upload OWNER/REPO FOLDER`` publishes as it is; ``hf://OWNER/REPO`` loads one back
through the Hub's own cache (``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE``).

The weights file is the safetensors export, metadata header included, so the folder is loaded from it alone;
``config.json`` and the card are its human- and Hub-readable description, written from the same metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from segrecipes.cache import write_bytes_atomic
from segrecipes.deploy.trained_model import TrainedModel

from .errors import DeployError
from .extras import require
from .metadata import CONFIG_KEY, EXPORT_CHECK_KEY, INPUT_KEY, MEAN_KEY, STD_KEY, model_metadata, read_metadata
from .safetensors_format import (
    add_safetensors_metadata, load_exported_safetensors, read_safetensors_metadata, write_safetensors,
)

HUB_PREFIX = "hf://"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
RUN_EVALUATION_KEY = "segrecipes.run_evaluation"  # the training run's final scores (its summary.json), JSON
DEFAULT_LICENSE = "other"  # the weights' licence is the user's to state: --license


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def _run_evaluation(source: Path) -> dict[str, str]:
    """The final scores of the run ``source`` came from (its ``summary.json``), where that file exists."""
    for folder in (source, source.parent.parent) if source.is_dir() else (source.parent.parent,):
        summary = folder / "summary.json"
        if summary.is_file():
            scores = json.loads(summary.read_text())
            kept = {key: scores.get(key) for key in ("miou", "pixel_acc", "mean_acc", "best_miou", "epoch", "step")}
            return {RUN_EVALUATION_KEY: json.dumps(kept)}
    return {}


def write_hf_folder(trained: TrainedModel, folder: Path, license_name: str = DEFAULT_LICENSE) -> None:
    """The three files into ``folder`` (created); the card's licence field is ``license_name``."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = {**_run_evaluation(trained.source), "segrecipes.license": license_name}
    write_safetensors(trained, folder / WEIGHTS_FILE, extra)
    _describe(folder, {**model_metadata(trained), **extra})


def add_hf_metadata(folder: Path, extra: dict[str, str]) -> None:
    add_safetensors_metadata(folder / WEIGHTS_FILE, extra)
    _describe(folder, read_safetensors_metadata(folder / WEIGHTS_FILE))


def _describe(folder: Path, metadata: dict[str, str]) -> None:
    """``config.json`` and ``README.md`` from the weights' metadata."""
    info = read_metadata(metadata, folder / WEIGHTS_FILE)
    config = info.config
    hub_config = {
        "library_name": "segrecipes",
        "architecture": config.model.name,
        "backbone": config.model.backbone,
        "num_classes": len(info.class_names),
        "id2label": {str(index): name for index, name in enumerate(info.class_names)},
        "label2id": {name: index for index, name in enumerate(info.class_names)},
        "ignore_index": info.ignore_index,
        "in_channels": config.data.in_channels,
        "input": metadata[INPUT_KEY],
        "normalization": {"mean": json.loads(metadata[MEAN_KEY]), "std": json.loads(metadata[STD_KEY])},
        "segrecipes_config": json.loads(metadata[CONFIG_KEY]),
        **{key.removeprefix("segrecipes."): json.loads(metadata[key])
           for key in (RUN_EVALUATION_KEY, EXPORT_CHECK_KEY) if key in metadata},
    }
    write_bytes_atomic(folder / CONFIG_FILE, (json.dumps(hub_config, indent=2) + "\n").encode())
    write_bytes_atomic(folder / CARD_FILE, _card(hub_config, metadata.get("segrecipes.license", DEFAULT_LICENSE)))


def _dataset_name(spec: str) -> str:
    return spec.split(":", 1)[0] if ":" in spec else spec


def _card(hub: dict[str, Any], license_name: str) -> bytes:
    hub_lib = require("huggingface_hub", "hf", "A Hugging Face model card")
    config = hub["segrecipes_config"]
    dataset = _dataset_name(config["data"]["spec"])
    protocol = config["eval"]
    results = []
    run = hub.get("run_evaluation") or {}
    if run.get("miou") is not None:
        results.append(hub_lib.EvalResult(
            task_type="image-segmentation", dataset_type=dataset, dataset_name=dataset, dataset_split="val",
            metric_type="mean_iou", metric_value=round(run["miou"], 2), metric_name="mIoU"))
    card_data = hub_lib.ModelCardData(
        license=license_name, library_name="segrecipes", pipeline_tag="image-segmentation", datasets=[dataset],
        tags=["semantic-segmentation", "segrecipes", config["model"]["name"].removeprefix("smp:")],
        model_name=f"{config['model']['name']} {config['model']['backbone']} on {dataset}",
        eval_results=results or None, metrics=["mean_iou"],
    )
    check = hub.get("export_check")
    rows = [f"| run's final evaluation (val) | {run['miou']:.2f} |"] if run.get("miou") is not None else []
    if check:
        rows.append(f"| export check on {check['images']} images of `{check['data']}` | "
                    f"{check['exported_miou']:.2f} (PyTorch {check['reference_miou']:.2f}) |")
    lines = [
        f"# {card_data.model_name}", "",
        "A semantic-segmentation model trained with segrecipes (`pip install \"segrecipes[hf]\"`).", "",
        "## Model", "",
        f"- architecture: `{config['model']['name']}`, backbone `{config['model']['backbone']}`, "
        f"output stride {config['model']['output_stride']}",
        f"- input: {hub['input']}; mean {hub['normalization']['mean']}, std {hub['normalization']['std']}",
        f"- classes ({hub['num_classes']}): {', '.join(hub['id2label'].values())}; ignore index "
        f"{hub['ignore_index']}", "",
        "## Training", "",
        f"- data: `{config['data']['spec']}` ({dataset})",
        f"- recipe: {(config.get('recipe') or {}).get('name') or 'none (a config of its own)'}; the full config is "
        "`segrecipes_config` in `config.json`",
        f"- license: {license_name}", "",
        "## Evaluation", "",
        f"Protocol: `{protocol['protocol']}` at size {protocol['size']}, TTA `{protocol['tta']}`, mode "
        f"`{protocol['mode']}`.", "",
        "| what | mIoU |", "|---|---|", *(rows or ["| (no evaluation recorded) | |"]), "",
        "## Use", "",
        "```", "segrecipes predict images/ --checkpoint hf://OWNER/REPO --out predictions/", "```", "",
    ]
    return hub_lib.ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)).content.encode()


def load_hf_folder(folder: Path, device: torch.device) -> TrainedModel:
    trained = load_exported_safetensors(folder / WEIGHTS_FILE, device)
    trained.source = folder
    return trained


def hub_folder(uri: str) -> Path:
    """The local snapshot of ``hf://OWNER/REPO[@REVISION]`` in the Hub's cache, downloaded when missing and
    allowed (``HF_HUB_OFFLINE`` unset)."""
    hub_lib = require("huggingface_hub", "hf", f"{uri}: loading from the Hugging Face Hub")
    repo, _, revision = uri.removeprefix(HUB_PREFIX).partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise DeployError(f"{uri}: expected hf://OWNER/REPO (optionally @REVISION)")
    try:
        folder = hub_lib.snapshot_download(repo, revision=revision or None,
                                           allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE])
    except hub_lib.errors.LocalEntryNotFoundError:
        raise DeployError(f"{uri}: not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE) or the "
                          "Hub is unreachable") from None
    except hub_lib.errors.HfHubHTTPError as error:
        raise DeployError(f"{uri}: the Hub refused it ({str(error).splitlines()[0][:160]})") from None
    if not is_hf_folder(Path(folder)):
        raise DeployError(f"{uri}: no {CONFIG_FILE} and {WEIGHTS_FILE} in this repository")
    return Path(folder)
