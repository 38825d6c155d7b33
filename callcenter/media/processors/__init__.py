"""Frame processors of the telephone leg: DTMF aggregation and prompt playback."""

from callcenter.media.processors.dtmf_aggregator import DtmfAggregatorProcessor
from callcenter.media.processors.prompt_player import FRAME_BYTES, PromptPlayerProcessor

__all__ = ["FRAME_BYTES", "DtmfAggregatorProcessor", "PromptPlayerProcessor"]
