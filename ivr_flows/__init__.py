"""IVR flows: a YAML flow language, its validating loader and a pure interpreter.

No IO apart from reading flow files, no clock: time is always a parameter.
"""

from pathlib import Path

from .check import check_files
from .errors import FlowError, FlowIssue, Severity
from .events import (
    Action,
    AnswerGiven,
    CollectDigits,
    Command,
    Decision,
    DigitsCollected,
    EnterNode,
    Event,
    HangUp,
    InputTimedOut,
    IntentChoice,
    Listen,
    PlayPrompt,
    PromptFinished,
    QueueCall,
    SlowDown,
    SpeechHeard,
    SpeechTimedOut,
    StopListening,
    StopPrompt,
    Understanding,
    YesNo,
)
from .hours import Schedule, TimeRange
from .interpreter import FlowState, Phase, start, step
from .loader import load_flow, load_flow_text
from .model import (
    AskNode,
    BranchNode,
    Condition,
    ConditionKind,
    ConfirmNode,
    Defaults,
    Flow,
    GotoNode,
    HangupNode,
    MenuNode,
    Node,
    NodeType,
    Prompt,
    QueueNode,
    SayNode,
    SetNode,
)

SOLIDARITES_FLOW = Path(__file__).with_name("solidarites.yaml")
"""Path of the shipped SOLIDARITÉS flow."""

__all__ = [
    "SOLIDARITES_FLOW",
    "Action",
    "AnswerGiven",
    "AskNode",
    "BranchNode",
    "Command",
    "ConfirmNode",
    "Decision",
    "IntentChoice",
    "Listen",
    "SlowDown",
    "SpeechHeard",
    "SpeechTimedOut",
    "StopListening",
    "Understanding",
    "YesNo",
    "Condition",
    "ConditionKind",
    "GotoNode",
    "HangupNode",
    "MenuNode",
    "QueueNode",
    "SayNode",
    "SetNode",
    "CollectDigits",
    "Defaults",
    "DigitsCollected",
    "EnterNode",
    "Event",
    "Flow",
    "FlowError",
    "FlowIssue",
    "FlowState",
    "HangUp",
    "InputTimedOut",
    "Node",
    "NodeType",
    "Phase",
    "PlayPrompt",
    "Prompt",
    "PromptFinished",
    "QueueCall",
    "Schedule",
    "Severity",
    "StopPrompt",
    "TimeRange",
    "check_files",
    "load_flow",
    "load_flow_text",
    "start",
    "step",
]
