"""`segrecipes data check`: every planted defect is found, with its file, and nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers.bad_data import (
    folder_dataset,
    write_image,
    write_mask,
    write_palette_mask,
    write_truncated_jpeg,
)

from segrecipes.cli.main import main
from segrecipes.data.settings import DataSettings
from segrecipes.data.ade20k import ADE20k
from segrecipes.data.camvid import CamVid
from segrecipes.data.check import Report, cheap_checks, check_dataset
from segrecipes.data.errors import DataError
from segrecipes.data.folder import SegmentationFolder

LABELS = np.array([[0, 1], [2, 255]], dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)  # 16x16, classes a, b, c


def _pair(root: Path, stem: str, suffix: str = ".jpg", mode: str = "RGB", orientation: int | None = None,
          mask: np.ndarray = LABELS) -> None:
    write_image(root / "images" / "train" / f"{stem}{suffix}", mode=mode, orientation=orientation)
    write_mask(root / "masks" / "train" / f"{stem}.png", mask)


def _folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "classes.txt").write_text("a\nb\nc\n")
    return root


def _found(report: Report, root: Path) -> set[tuple[str, str, str]]:
    return {(str(Path(issue.path).relative_to(root)), issue.kind, issue.severity) for issue in report.issues}


@pytest.fixture
def every_defect(tmp_path: Path) -> tuple[Path, set[tuple[str, str, str]]]:
    """A folder dataset with one file per kind of problem, and the issues it must produce."""
    root = _folder_root(tmp_path)
    (root / "images" / "val").mkdir(parents=True)  # an empty val split
    _pair(root, "good")
    _pair(root, "gray", mode="L")
    _pair(root, "rgba", ".png", mode="RGBA")
    _pair(root, "cmyk", mode="CMYK")
    _pair(root, "deepimage", ".png", mode="I;16")
    _pair(root, "exif", orientation=3)
    write_image(root / "images" / "train" / "palette.jpg")
    write_palette_mask(root / "masks" / "train" / "palette.png", LABELS % 3)
    _pair(root, "deepmask", mask=LABELS.astype(np.uint16))
    _pair(root, "badlabel", mask=np.where(LABELS == 1, 9, LABELS))
    _pair(root, "size", mask=LABELS[:12])
    _pair(root, "rgbmask")
    write_mask(root / "masks" / "train" / "rgbmask.png", LABELS, mode="RGB")
    _pair(root, "bilevel")
    write_mask(root / "masks" / "train" / "bilevel.png", LABELS > 0, mode="1")
    _pair(root, "jpegmask")
    Image.fromarray(LABELS).save(root / "masks" / "train" / "jpegmask.png", format="JPEG")
    _pair(root, "truncated")
    write_truncated_jpeg(root / "images" / "train" / "truncated.jpg", 16)
    _pair(root, "garbage")
    (root / "images" / "train" / "garbage.jpg").write_bytes(b"not an image at all" * 10)
    write_image(root / "images" / "train" / "nomask.jpg")
    write_mask(root / "masks" / "train" / "orphan.png", LABELS)
    _pair(root, "dup")
    write_image(root / "images" / "train" / "dup.png")
    expected = {
        ("images/val", "empty-split", "error"),
        ("images/train/gray.jpg", "converted", "note"),
        ("images/train/rgba.png", "converted", "note"),
        ("images/train/cmyk.jpg", "converted", "note"),
        ("images/train/deepimage.png", "16-bit-image", "error"),
        ("images/train/exif.jpg", "exif-rotated", "error"),
        ("masks/train/deepmask.png", "16-bit-mask", "note"),
        ("masks/train/badlabel.png", "bad-label", "error"),
        ("masks/train/size.png", "size-mismatch", "error"),
        ("masks/train/rgbmask.png", "not-index-mask", "error"),
        ("masks/train/bilevel.png", "not-index-mask", "error"),
        ("masks/train/jpegmask.png", "jpeg-mask", "error"),
        ("images/train/truncated.jpg", "corrupt", "error"),
        ("images/train/garbage.jpg", "unreadable", "error"),
        ("images/train/nomask.jpg", "missing-mask", "error"),
        ("masks/train/orphan.png", "missing-image", "error"),
        ("images/train/dup.png", "duplicate-name", "error"),
    }
    return root, expected


def test_every_defect_is_reported_once_with_its_file(every_defect: tuple[Path, set]) -> None:
    root, expected = every_defect
    report = check_dataset(f"folder:{root}", workers=2)
    assert _found(report, root) == expected
    assert len(report.issues) == len(expected)  # nothing reported twice
    assert report.pairs == {"train": 16, "val": 0} and report.decoded and not report.ok
    messages = {Path(issue.path).name: issue.message for issue in report.issues}
    assert "[9]" in messages["badlabel.png"] and "classes 0..2" in messages["badlabel.png"]
    assert messages["size.png"].startswith("mask is 16x12 but its image size.jpg is 16x16")
    assert "EXIF orientation 3" in messages["exif.jpg"] and "CMYK" in messages["cmyk.jpg"]


def test_cheap_checks_find_header_problems_without_decoding(every_defect: tuple[Path, set]) -> None:
    root, expected = every_defect
    report = cheap_checks(f"folder:{root}")
    decode_only = {
        ("masks/train/badlabel.png", "bad-label", "error"),
        ("images/train/truncated.jpg", "corrupt", "error"),
    }
    assert _found(report, root) == expected - decode_only
    assert not report.decoded


def test_bad_indices_are_the_pairs_the_loader_fails_on(tmp_path: Path) -> None:
    root = _folder_root(tmp_path)
    for stem in ("a", "c", "g"):
        _pair(root, stem)
    _pair(root, "h", mode="L")  # a note only: loads fine
    _pair(root, "b")
    write_mask(root / "masks" / "train" / "b.png", LABELS, mode="RGB")
    _pair(root, "d", mask=np.full((16, 16), 7))
    _pair(root, "e", mask=LABELS[:, :10])
    _pair(root, "f")
    write_truncated_jpeg(root / "images" / "train" / "f.jpg", 16)

    report = check_dataset(f"folder:{root}", splits=("train",))
    dataset = SegmentationFolder(root, "train")
    failing = []
    for index in range(len(dataset)):
        try:
            dataset[index]
        except DataError:
            failing.append(index)
    assert report.bad_indices("train") == failing == [1, 3, 4, 5]  # b, d, e, f in stem order
    assert [issue.severity for issue in report.issues] == ["error"] * 4 + ["note"]
    assert cheap_checks(f"folder:{root}", splits=("train",)).bad_indices("train") == [1, 4]  # RGB mask, size


def test_folder_label_options_decide_which_values_are_valid(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _pair(root, "one", mask=np.array([[0, 1, 3, 200]]).repeat(16, axis=0).repeat(4, axis=1))
    base = DataSettings(spec=f"folder:{root}", num_classes=3, ignore_value=200)
    # raw 0 ignored, 1 -> class 0, 3 -> class 2, 200 ignored: all valid
    assert check_dataset(base.model_copy(update={"reduce_zero_label": True}), ("train",)).ok
    # without the shift, 3 is past the last class 2, and the check says which setting fits the values
    bad, convention = check_dataset(base, ("train",)).issues
    assert bad.kind == "bad-label" and "[3]" in bad.message
    assert convention.kind == "reduce-zero-label" and "set data.reduce_zero_label: true" in convention.message


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [("ade20k", [0, 1, 150], 151), ("camvid", [0, 10, 11], 12)],
)
def test_dataset_label_tables_agree_with_the_loaders(tmp_path: Path, kind: str, good: list[int], bad: int) -> None:
    if kind == "ade20k":
        image_dir = tmp_path / "ADEChallengeData2016" / "images" / "validation"
        mask_dir = tmp_path / "ADEChallengeData2016" / "annotations" / "validation"
    else:
        image_dir, mask_dir = tmp_path / "val", tmp_path / "valannot"
    for stem, values in (("a_good", good), ("b_bad", [*good, bad])):
        write_image(image_dir / f"{stem}.png", 4, len(values))
        write_mask(mask_dir / f"{stem}.png", np.array([values] * 4))
    dataset = (ADE20k if kind == "ade20k" else CamVid)(tmp_path, "val")
    dataset[0]
    with pytest.raises(DataError):
        dataset[1]
    report = check_dataset(f"{kind}:{tmp_path}", splits=("val",))
    assert [(Path(issue.path).name, issue.kind) for issue in report.issues] == [("b_bad.png", "bad-label")]
    assert f"[{bad}]" in report.issues[0].message and report.bad_indices("val") == [1]


def test_raise_if_errors_names_the_first_file_in_one_line(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path / "data", 3, {"bad": "rgb-mask", "lonely": "no-mask"})
    report = cheap_checks(f"folder:{root}")
    with pytest.raises(DataError) as caught:
        report.raise_if_errors()
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{root / 'images' / 'train' / 'lonely.jpg'}: no mask")
    assert "1 more problems" in message and f"data check folder:{root}" in message
    check_dataset(f"folder:{folder_dataset(tmp_path / 'clean', 3)}").raise_if_errors()


def test_synthetic_data_has_nothing_to_check() -> None:
    report = check_dataset("synthetic")
    assert report.ok and report.issues == [] and report.pairs == {}


def test_real_camvid_and_ade20k_samples_are_clean(camvid_root: Path, ade20k_root: Path) -> None:
    camvid = check_dataset(f"camvid:{camvid_root}", splits=("val",))
    assert camvid.ok and camvid.issues == [] and camvid.pairs == {"val": 101}
    ade = check_dataset(f"ade20k:{ade20k_root}")
    assert ade.pairs == {"train": 0, "val": 3}
    assert [(issue.kind, Path(issue.path).name) for issue in ade.issues] == [("empty-split", "training")]


# --- the command line --------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_exit_code_is_0_when_clean_with_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = folder_dataset(tmp_path / "data", 3)
    write_image(root / "images" / "val" / "val0.jpg", 32, 32, mode="L")
    code, out, _ = _cli(capsys, f"folder:{root}")
    assert code == 0
    assert "val0.jpg" in out and "converted" in out
    assert "4 train, 2 val pairs checked (decoded): 0 errors, 1 notes" in out


def test_cli_lists_every_bad_file_and_exits_2(
    every_defect: tuple[Path, set], capsys: pytest.CaptureFixture[str]
) -> None:
    root, expected = every_defect
    code, out, _ = _cli(capsys, f"folder:{root}")
    assert code == 2
    lines = out.splitlines()
    for path, kind, severity in expected:
        assert any(str(root / path) in line and kind in line and line.startswith(severity) for line in lines), path
    assert "13 errors, 4 notes" in lines[-1]


def test_cli_json_report(every_defect: tuple[Path, set], capsys: pytest.CaptureFixture[str]) -> None:
    root, expected = every_defect
    code, out, _ = _cli(capsys, f"folder:{root}", "--json", "--headers-only", "--splits", "train")
    report = json.loads(out)
    assert code == 2 and report["ok"] is False and report["decoded"] is False and report["pairs"] == {"train": 16}
    assert report["counts"]["not-index-mask"] == 2 and report["counts"]["jpeg-mask"] == 1
    assert "bad-label" not in report["counts"]
    assert {(issue["kind"], issue["severity"]) for issue in report["issues"]} == {
        (kind, severity) for path, kind, severity in expected if kind not in ("empty-split", "bad-label", "corrupt")
    }


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["folder:/no/such/folder"], "/no/such/folder"),
        (["imagenet:/data"], "imagenet"),
        (["folder:PLACEHOLDER", "--splits", "train,test"], "test"),
        (["folder:PLACEHOLDER", "--ignore-value", "-1"], "ignore_value"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    root = folder_dataset(tmp_path / "data", 3)
    code, out, err = _cli(capsys, *[arg.replace("PLACEHOLDER", str(root)) for arg in args])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err
