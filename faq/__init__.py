"""FAQ knowledge base and matcher (pure domain logic; see issue 3).

Load a knowledge base with :func:`load_knowledge_base`, then match caller utterances with
:class:`Matcher`; ``python -m faq check|eval`` wraps both for the command line.
"""

from faq.loader import FaqError, Issue, default_knowledge_base_path, load_knowledge_base
from faq.matcher import Candidate, Decision, Matcher, MatcherConfig, MatchResult, Scorer
from faq.model import OUT_OF_SCOPE, Handoff, Intent, KnowledgeBase, Priority
from faq.normalize import normalize

__all__ = [
    "OUT_OF_SCOPE",
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
