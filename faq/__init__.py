"""FAQ knowledge base and matcher (pure domain logic; see issue 3).

Load a knowledge base with :func:`load_knowledge_base`, then match caller utterances with
:class:`Matcher`; :mod:`faq.commands` recognises control words and yes/no,
:mod:`faq.answers` fills and voices answers, :mod:`faq.cli` is the command line.
"""

from faq.answers import DOSSIER_PLACEHOLDERS, fill_answer, to_spoken
from faq.commands import Command, YesNo, classify_command, classify_yes_no
from faq.loader import FaqError, Issue, default_knowledge_base_path, load_knowledge_base
from faq.matcher import Candidate, Decision, Matcher, MatcherConfig, MatchResult, Scorer
from faq.model import OUT_OF_SCOPE, Handoff, Intent, KnowledgeBase, Priority
from faq.normalize import normalize

__all__ = [
    "DOSSIER_PLACEHOLDERS",
    "OUT_OF_SCOPE",
    "Command",
    "YesNo",
    "classify_command",
    "classify_yes_no",
    "fill_answer",
    "to_spoken",
    "Candidate",
    "Decision",
    "FaqError",
    "Handoff",
    "Intent",
    "Issue",
    "KnowledgeBase",
    "MatchResult",
    "Matcher",
    "MatcherConfig",
    "Priority",
    "Scorer",
    "default_knowledge_base_path",
    "load_knowledge_base",
    "normalize",
]
