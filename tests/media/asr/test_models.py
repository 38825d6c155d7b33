"""callcenter models install: checksums, progress, clear errors without network."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.media.asr.base import AsrError
from callcenter.media.asr.models import VOSK_MODELS, install_vosk_model, models_main


def _zip_model() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        root = VOSK_MODELS["vosk-fr-small"].archive
        archive.writestr(f"{root}/am/final.mdl", b"model")
        archive.writestr(f"{root}/conf/model.conf", b"--beam=10")
    return buf.getvalue()


@pytest.fixture
def server() -> Iterator[tuple[str, bytes]]:
    body = _zip_model()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="model-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/model.zip", body
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_official_checksums_recorded() -> None:
    spec = VOSK_MODELS["vosk-fr-small"]
    assert spec.url == "https://alphacephei.com/vosk/models/vosk-model-small-fr-0.22.zip"
    assert len(spec.sha256) == 64 and len(spec.md5) == 32 and spec.size == 42_233_323


def test_install_from_mirror_with_progress(tmp_path: Path, server: tuple[str, bytes]) -> None:
    url, body = server
    seen: list[tuple[int, int | None]] = []
    path = install_vosk_model(
        "vosk-fr-small",
        tmp_path,
        url=url,
        sha256=hashlib.sha256(body).hexdigest(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert path == tmp_path / "vosk-model-small-fr-0.22"
    assert (path / "am" / "final.mdl").read_bytes() == b"model"
    assert seen[-1] == (len(body), len(body))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left
    # Installed: a second call does not download.
    assert install_vosk_model("vosk-fr-small", tmp_path, url="http://127.0.0.1:9/") == path


def test_checksum_mismatch_installs_nothing(tmp_path: Path, server: tuple[str, bytes]) -> None:
    url, _ = server
    with pytest.raises(AsrError, match="does not match"):
        install_vosk_model("vosk-fr-small", tmp_path, url=url)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_network_is_a_clear_error(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(AsrError) as info:
        install_vosk_model("vosk-fr-small", tmp_path, url="http://127.0.0.1:9/x.zip", timeout_s=2)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "http://127.0.0.1:9/x.zip" in message and "vosk_model_dir" in message
    assert VOSK_MODELS["vosk-fr-small"].sha256 in message


def test_unknown_model() -> None:
    with pytest.raises(AsrError, match="unknown model"):
        install_vosk_model("vosk-xx", Path("/nonexistent"))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = models_main(
        ["install", "vosk-fr-small", "--dest", str(tmp_path), "--url", "http://127.0.0.1:9/"]
    )
    assert status == 1
    assert "cannot download" in capsys.readouterr().err
    assert models_main(["install", "nope"]) == 2
    assert models_main(["install", "whisper-base", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert Path(out) == tmp_path / "whisper-base"
