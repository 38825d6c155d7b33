"""Voice activity detection on the caller's audio: Silero VAD (the ONNX model in faster-whisper).

Why Silero rather than WebRTC VAD (``webrtcvad-wheels``), measured on the 60 ``fr-speech`` clips
through a G.711 line plus 5 s each of silence, white noise at -40 and -30 dBFS, pink noise at
-35 dBFS and mains hum (``bench/asr.py`` reports the CPU figure):

* CPU: Silero ≈ 90 µs per 20 ms frame including the 8 → 16 kHz resampling (0.5 % of a core per
  listening call, so ~20 % of one core at 40 calls listening at once); WebRTC ≈ 1.5 µs.
* False speech: Silero never triggered on any noise; WebRTC (modes 1-2) triggered on white
  noise at -40 dBFS (line hiss) 61-78 % of frames, mode 3 on 29 %.
* End of speech: Silero's speech end lags the signal by a median -40 ms (p90 +120 ms); WebRTC
  mode 3 by +140 ms (p90 +480 ms), modes 1-2 by +220-270 ms (p90 +820-880 ms). The lag adds to
  the 0.8 s end-of-turn wait on every turn, so it costs voice-to-voice latency directly.

The audio is only examined while the recogniser listens, so the CPU cost is paid by callers
who are being asked something, never by keypad-only calls.

The model takes 512 new samples at 16 kHz (32 ms) plus 64 samples of context and carries an
LSTM state (``h``, ``c``) between chunks: :class:`SileroVadModel` holds the shared ONNX
session, :class:`SileroVad` one call's state. Decisions use hysteresis (speech from
``threshold``, until the probability drops below ``release``), like Silero's own iterator.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["SileroVad", "SileroVadModel", "VadModel", "VoiceDetector"]

_CHUNK = 512
_CONTEXT = 64


def _untyped(module: str) -> Any:
    # faster-whisper, onnxruntime and vosk ship no type information: import them as Any.
    return importlib.import_module(module)


def _default_model_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("faster-whisper is not installed (it ships the Silero model)")
    return Path(spec.origin).parent / "assets" / "silero_vad_v6.onnx"


class VoiceDetector(Protocol):
    """One call's voice activity detector."""

    def reset(self) -> None:
        """Forget the state (a new listening period)."""

    def feed(self, samples: npt.NDArray[np.float32]) -> bool:
        """Add 16 kHz float32 samples; return whether the caller speaks."""


class VadModel(Protocol):
    """A VAD model shared by all calls, making per-call detectors."""

    def stream(self, *, threshold: float = 0.5, release: float = 0.35) -> VoiceDetector:
        """Return a new per-call detector."""


class SileroVadModel:
    """The Silero ONNX session, shared by all calls (``run`` is thread-safe in onnxruntime)."""

    def __init__(self, path: Path | None = None) -> None:
        """Load the model on one thread (a chunk takes well under a millisecond).

        Args:
            path: The ONNX file; defaults to the one shipped inside faster-whisper.
        """
        onnxruntime = _untyped("onnxruntime")
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 4
        self.session: Any = onnxruntime.InferenceSession(
            str(path or _default_model_path()),
            providers=["CPUExecutionProvider"],
            sess_options=options,
        )

    def stream(self, *, threshold: float = 0.5, release: float = 0.35) -> SileroVad:
        """Return a new per-call detector using this model."""
        return SileroVad(self, threshold=threshold, release=release)


class SileroVad:
    """One call's voice activity detector, fed 16 kHz float32 audio in any chunk size."""

    def __init__(self, model: SileroVadModel, *, threshold: float, release: float) -> None:
        """Create a detector.

        Args:
            model: The shared model.
            threshold: Probability at or above which speech starts.
            release: Probability below which speech ends.
        """
        self._session = model.session
        self.threshold = threshold
        self.release = release
        self.reset()

    def reset(self) -> None:
        """Forget the state (a new listening period)."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._buffer = np.zeros(0, dtype=np.float32)
        self.probability = 0.0
        """Speech probability of the latest 32 ms chunk."""
        self.speech = False
        """Current decision (with hysteresis)."""

    def feed(self, samples: npt.NDArray[np.float32]) -> bool:
        """Add 16 kHz samples and return the speech decision after them.

        Args:
            samples: Float32 mono samples in [-1, 1] at 16 kHz.

        Returns:
            Whether the caller is speaking (latest full chunk; unchanged if none completed).
        """
        buffer = np.concatenate((self._buffer, samples)) if self._buffer.size else samples
        offset = 0
        while buffer.size - offset >= _CHUNK:
            chunk = buffer[offset : offset + _CHUNK]
            offset += _CHUNK
            window = np.concatenate((self._context, chunk))[None, :]
            out, self._h, self._c = self._session.run(
                None, {"input": window, "h": self._h, "c": self._c}
            )
            self._context = chunk[-_CONTEXT:]
            self.probability = float(np.asarray(out).reshape(-1)[0])
            if self.speech:
                self.speech = self.probability >= self.release
            else:
                self.speech = self.probability >= self.threshold
        self._buffer = buffer[offset:].copy()
        return self.speech
