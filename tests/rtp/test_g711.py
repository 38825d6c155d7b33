from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from callcenter.rtp.codecs.base import UnsupportedCodecError, get_codec
from callcenter.rtp.codecs.g711 import (
    PcmaCodec,
    PcmuCodec,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
ALL_PCM = ALL_SAMPLES.astype("<i2").tobytes()
ALL_CODES = bytes(range(256))

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")


def sox(tmp_path: Path, data: bytes, src: list[str], dst: list[str]) -> bytes:
    src_file, dst_file = tmp_path / "in.raw", tmp_path / "out.raw"
    src_file.write_bytes(data)
    subprocess.run(
        # -D: no dither, or sox adds noise before quantizing.
        [
            "sox",
            "-D",
            "-V1",
            "-r",
            "8000",
            "-c",
            "1",
            "-t",
            "raw",
            *src,
            str(src_file),
            "-t",
            "raw",
            *dst,
            str(dst_file),
        ],
        check=True,
    )
    return dst_file.read_bytes()


@needs_sox
@pytest.mark.parametrize(("law", "decode"), [("u-law", ulaw_decode), ("a-law", alaw_decode)])
def test_decode_matches_sox_for_every_code(tmp_path: Path, law: str, decode: object) -> None:
    assert callable(decode)
    expected = sox(tmp_path, ALL_CODES, ["-e", law, "-b", "8"], ["-e", "signed", "-b", "16"])
    assert decode(ALL_CODES) == expected


@needs_sox
def test_alaw_encode_matches_sox_on_the_13_bit_grid(tmp_path: Path) -> None:
    # G.711 A-law quantizes 13-bit samples; how the low 3 bits of a 16-bit sample are
    # dropped is outside G.711 (G.191 truncates, sox rounds), so compare on the grid.
    expected = np.frombuffer(
        sox(tmp_path, ALL_PCM, ["-e", "signed", "-b", "16"], ["-e", "a-law"]), np.uint8
    )
    ours = np.frombuffer(alaw_encode(ALL_PCM), np.uint8)
    grid = ALL_SAMPLES % 8 == 0
    assert np.array_equal(ours[grid], expected[grid])


@needs_sox
def test_ulaw_encode_matches_sox_on_the_14_bit_grid(tmp_path: Path) -> None:
    expected = np.frombuffer(
        sox(tmp_path, ALL_PCM, ["-e", "signed", "-b", "16"], ["-e", "u-law"]), np.uint8
    )
    ours = np.frombuffer(ulaw_encode(ALL_PCM), np.uint8)
    positive = (ALL_SAMPLES % 4 == 0) & (ALL_SAMPLES >= 0)
    assert np.array_equal(ours[positive], expected[positive])
    # For negative samples G.191 takes the one's complement (~x) where sox negates (-x): the
    # two agree once shifted by one 14-bit step.
    negative = np.nonzero((ALL_SAMPLES % 4 == 0) & (ALL_SAMPLES <= -8))[0]
    assert np.array_equal(ours[negative], expected[negative + 4])


def test_known_g191_values() -> None:
    pcm = np.array([0, -1, 32767, -32768, 1000, -1000], dtype="<i2").tobytes()
    assert ulaw_encode(pcm) == bytes([0xFF, 0x7F, 0x80, 0x00, 0xCE, 0x4E])
    assert alaw_encode(pcm) == bytes([0xD5, 0x55, 0xAA, 0x2A, 0xFA, 0x7A])
    assert np.frombuffer(ulaw_decode(b"\xff\x80\x00\x7f"), "<i2").tolist() == [0, 32124, -32124, 0]
    assert np.frombuffer(alaw_decode(b"\xd5\xaa\x2a\x55"), "<i2").tolist() == [8, 32256, -32256, -8]


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_decode_then_encode_is_identity(encode: object, decode: object) -> None:
    assert callable(encode) and callable(decode)
    back = encode(decode(ALL_CODES))
    # µ-law has two zeros (0x7F = -0 and 0xFF = +0); 0 encodes as +0.
    diff = [code for code, again in zip(ALL_CODES, back, strict=True) if code != again]
    assert diff in ([], [0x7F])


def test_quantization_error_is_bounded() -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        back = np.frombuffer(decode(encode(ALL_PCM)), "<i2").astype(np.int32)
        error = np.abs(back - ALL_SAMPLES)
        # The largest segment step is 1024 (µ-law) / 1024 (A-law); error is at most a step.
        assert error.max() <= 1024
        small = np.abs(ALL_SAMPLES) < 64
        assert error[small].max() <= 8


def test_codecs_and_registry() -> None:
    pcmu, pcma = get_codec("pcmu"), get_codec("PCMA")
    assert isinstance(pcmu, PcmuCodec) and pcmu.payload_type == 0 and pcmu.clock_rate == 8000
    assert isinstance(pcma, PcmaCodec) and pcma.payload_type == 8
    assert get_codec("PCMU", 97).payload_type == 97
    frame = bytes(320)
    assert pcmu.encode(frame) == b"\xff" * 160 and pcma.encode(frame) == b"\xd5" * 160
    assert pcmu.samples(pcmu.encode(frame)) == 160
    assert pcma.decode(pcma.encode(frame)) == np.full(160, 8, "<i2").tobytes()
    with pytest.raises(UnsupportedCodecError, match="unsupported codec 'G729'"):
        get_codec("G729")
    with pytest.raises(ValueError, match="even length"):
        pcmu.encode(b"\x00")
