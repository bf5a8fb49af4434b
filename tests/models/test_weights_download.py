"""Pretrained weights download into the torch hub cache, verified, from a local server (never the internet).

An ``http.server`` on 127.0.0.1 serves a ResNet-18 state dict under a torchvision-style name
(``resnet18-<first 8 hex of its SHA-256>.pth``); torchvision's URL is swapped for the server's.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers.http_server import local_server
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchvision.models import get_model

from segrecipes.cli.main import main
from segrecipes.models import ModelError, ResNetBackbone
from segrecipes.models import weights as weights_module

STALL_S = 2.0


@dataclass
class WeightsServer:
    """Serves ``files``; ``truncated`` paths send half the body under the full Content-Length, ``stalled``
    ones send half and then go silent. ``requests`` records every path asked for."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)


def _handler(state: WeightsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            state.requests.append(self.path)
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in state.truncated | state.stalled:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if self.path in state.stalled:
                    time.sleep(STALL_S)
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    state = WeightsServer()
    with local_server(_handler(state)) as url:
        state.url = url
        yield state


@pytest.fixture(scope="module")
def checkpoint() -> tuple[str, bytes, dict[str, torch.Tensor]]:
    """(torchvision-style file name, its bytes, the state dict) of a random ResNet-18."""
    torch.manual_seed(7)
    state = get_model("resnet18", weights=None).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    body = buffer.getvalue()
    return f"resnet18-{hashlib.sha256(body).hexdigest()[:8]}.pth", body, state


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$TORCH_HOME``, downloads allowed, no mirror."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights_module.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(weights_module.MIRROR_ENV, raising=False)
    return tmp_path / "torch"


@pytest.fixture
def served(server: WeightsServer, checkpoint, torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The checkpoint on the server, and torchvision's ResNet-18 URL pointing at it; returns the file name."""
    name, body, _ = checkpoint
    server.files[f"/{name}"] = body
    monkeypatch.setattr(weights_module, "hub_weights_url", lambda arch, weights: f"{server.url}/{name}")
    return name


def _cache(torch_home: Path) -> Path:
    return torch_home / "hub" / "checkpoints"


def _assert_holds(backbone: ResNetBackbone, state: dict[str, torch.Tensor]) -> None:
    loaded = backbone.state_dict()
    for key, tensor in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], tensor), key


def test_missing_weights_are_downloaded_into_the_hub_cache_and_loaded(server, served, checkpoint, torch_home):
    backbone = ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    _assert_holds(backbone, checkpoint[2])
    assert os.listdir(_cache(torch_home)) == [served]
    assert (_cache(torch_home) / served).read_bytes() == checkpoint[1]
    ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    assert server.requests == [f"/{served}"]  # the second build reads the cache


def test_a_truncated_download_is_refused_and_leaves_nothing(server, served, torch_home):
    server.truncated.add(f"/{served}")
    with pytest.raises(ModelError) as error:
        ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    message = str(error.value)
    assert f"{server.url}/{served}: connection closed after" in message and "\n" not in message
    assert os.listdir(_cache(torch_home)) == []


def test_a_tampered_download_is_refused_and_leaves_nothing(server, served, checkpoint, torch_home):
    body = bytearray(checkpoint[1])
    body[len(body) // 2] ^= 0xFF
    server.files[f"/{served}"] = bytes(body)
    with pytest.raises(ModelError, match=f"{server.url}/{served}: the download's SHA-256 does not start with "
                                         f"{served[9:17]} as {served} says; nothing was saved$"):
        ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    assert os.listdir(_cache(torch_home)) == []


def test_a_stalled_server_ends_with_an_error_after_the_timeout(server, served, torch_home, monkeypatch):
    monkeypatch.setattr(weights_module, "DOWNLOAD_TIMEOUT_S", 0.2)
    server.stalled.add(f"/{served}")
    started = time.monotonic()
    with pytest.raises(ModelError, match=f"{served}: the server sent nothing for 0.2 s after"):
        ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    assert time.monotonic() - started < STALL_S
    assert os.listdir(_cache(torch_home)) == []


def test_offline_never_asks_the_server_and_names_the_path(server, served, torch_home, monkeypatch):
    monkeypatch.setenv(weights_module.OFFLINE_ENV, "1")
    with pytest.raises(ModelError) as error:
        ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
    assert f"copy {served} to {_cache(torch_home) / served}" in str(error.value)
    assert server.requests == []


def test_the_mirror_serves_the_same_file_name(server, checkpoint, torch_home, monkeypatch):
    name, body, state = checkpoint
    server.files[f"/mirror/{name}"] = body
    monkeypatch.setattr(weights_module, "hub_weights_url", lambda arch, weights: f"https://unreachable.invalid/{name}")
    monkeypatch.setenv(weights_module.MIRROR_ENV, f"{server.url}/mirror/")
    _assert_holds(ResNetBackbone("resnet18", weights="IMAGENET1K_V1"), state)
    assert server.requests == [f"/mirror/{name}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, port: int, url: str, torch_home: str, first_key: str, expected: torch.Tensor) -> None:
    os.environ.update(TORCH_HOME=torch_home, LOCAL_RANK=str(rank))
    weights_module.hub_weights_url = lambda arch, weights: url
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        backbone = ResNetBackbone("resnet18", weights="IMAGENET1K_V1")
        assert torch.equal(backbone.state_dict()[first_key], expected)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_under_torch_distributed_only_rank_zero_downloads(server, served, checkpoint, torch_home):
    state = checkpoint[2]
    mp.spawn(_rank_main, args=(_free_port(), f"{server.url}/{served}", str(torch_home), "conv1.weight",
                               state["conv1.weight"]), nprocs=2, join=True)
    assert server.requests == [f"/{served}"]
    assert os.listdir(_cache(torch_home)) == [served]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["weights", *args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_downloads_then_lists_the_verified_file(server, served, torch_home, capsys):
    code, out, _ = _cli(capsys, "download", "resnet18:IMAGENET1K_V1")
    assert code == 0 and out.strip() == str(_cache(torch_home) / served)
    (_cache(torch_home) / "resnet18-00000000.pth").write_bytes(b"not it")
    (_cache(torch_home) / "custom.pth").write_bytes(b"mine")
    code, out, _ = _cli(capsys, "list")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith("custom.pth") and lines[0].endswith("no hash in name")
    assert lines[1].startswith("resnet18-00000000.pth") and lines[1].endswith("mismatch")
    assert lines[2].startswith(served) and lines[2].endswith("verified")


def test_cli_bad_specs_are_one_line_errors(torch_home, capsys, monkeypatch):
    monkeypatch.setenv(weights_module.OFFLINE_ENV, "1")
    for spec, named in [("resnet18", "expected ARCH:WEIGHTS"), ("resnet18:IMAGENET9K", "unknown weights"),
                        ("resnet18:IMAGENET1K_V1", "downloads are disabled")]:
        code, _, err = _cli(capsys, "download", spec)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err, err
