"""The vendor's known words: event names, tags and states, as a routing key spells them.

A routing key's words come from the body, so a sender (or anyone who can post) chooses them.
Where a word must come from a closed set, a metric's label for one, :func:`known_words` keeps
the words of this catalogue and gives :data:`OTHER` for any other.
"""

from __future__ import annotations

from pydantic.alias_generators import to_pascal

from shared.callbacks.events import OPERATION_MODELS
from shared.callbacks.moderation import MODERATION_EVENTS, ModerationHits
from shared.callbacks.routing import MISSING

__all__ = ["EVENT_NAMES", "OTHER", "STATES", "TAGS", "known_words"]

#: The word standing for anything outside the catalogue.
OTHER = "other"

#: Event names: tasks, workflows and the moderation events.
EVENT_NAMES = frozenset({"TaskFinish", "WorkflowFinish", *MODERATION_EVENTS})

#: Second words: the task types the model knows (``ImageOCR``, ``Transcode``, ...) and the
#: moderation labels (``Porn``, ``Ads``, ..., ``Normal``, the console's ``Test``). Workflow
#: names are the customer's own, so they count as ``other``.
TAGS = frozenset(
    {
        *(kind for kind in OPERATION_MODELS if kind not in MODERATION_EVENTS),
        *(to_pascal(f.removesuffix("_info")) for f in ModerationHits.model_fields),
        "Normal",
        "Test",
        MISSING,
    }
)

#: Third words: a task's or a workflow's state, a moderation verdict.
STATES = frozenset({"Success", "Failed", "Pass", "Block", "Review", MISSING})


def known_words(routing_key: str) -> tuple[str, str, str]:
    """The three words of ``routing_key``, each one :data:`OTHER` unless catalogued."""
    words = routing_key.split(".")
    if len(words) != 3:
        return OTHER, OTHER, OTHER
    event_name, tag, state = words
    return (
        event_name if event_name in EVENT_NAMES else OTHER,
        tag if tag in TAGS else OTHER,
        state if state in STATES else OTHER,
    )
