"""What a request may carry, and the check of each field: `UserError` (a message the user can act on) and
the limits every request field is held to before the request is queued.

The bounds of a decoding option live on its `DecodeConfig` field (`DecodeConfig.served`); `served` checks a
request's value against them. Nothing here loads a model.
"""
from __future__ import annotations

from typing import Any

from translator.decoding import DecodeConfig

MAX_BEAM = DecodeConfig.served("beam_size")[1]  # the bounds live on the DecodeConfig fields
MAX_CANDIDATES = DecodeConfig.served("candidates")[1]
#: Limits of every request field, checked before a request is queued (a longer field gets a message naming it).
MAX_HISTORY_TURNS = 100  # turns of chat history a request may carry (the Chat tab keeps its conversation within)
HISTORY_CHARS_PER_INPUT = 10  # characters of chat history a request may carry, in units of max_input_chars
MAX_FIELD_CHARS = 1000  # a checkpoint label or path, a decoder name
MAX_BACKWARD_WEIGHT = DecodeConfig.served("backward_weight")[1]
#: Largest request, in decoded hypothesis-tokens (sum over lines of beam x output length limit): 1,000
#: one-word lines at the largest beam fit; more lines (a raised --max_input_chars) get a message.
MAX_REQUEST_COST = 256_000
#: Cost of one piece of work (a few sentences) that a decoding worker runs before it picks the next
#: piece, from the least-served request (translator.serve.scheduling): about 0.2 s for the 7.6M Transformer on
#: one core, so a one-sentence request waits at most that long behind long ones.
PIECE_COST = 1024
REQUEST_TIME_LIMIT = 300.0  # seconds a request may decode before it is stopped with a message


class UserError(ValueError):
    """A problem with the request that the user can fix; its message is shown as is."""


def shown(value: Any, limit: int = 60) -> str:
    """`value` for a message: its repr, cut to `limit` characters (a request field may be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_field(value: Any, name: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A short text field (checkpoint, decoder) as a string, or UserError when it is longer than `limit`."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        raise UserError(f"The {name} field has {len(text):,} characters; this app takes at most {limit:,}.")
    return text


def served(name: str, value: Any) -> Any:
    """A request's value of decoding option `name`, within the bounds on its DecodeConfig field, or UserError."""
    low, high, label = DecodeConfig.served(name)
    check = int_in if isinstance(low, int) and isinstance(high, int) else float_in
    return check(value, label, low, high)


def int_in(value: Any, name: str, low: int, high: int) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"The {name} must be a number, got {shown(value)}.") from None
    if not low <= number <= high:
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number


def float_in(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"The {name} must be a number, got {shown(value)}.") from None
    if not low <= number <= high:  # also rejects NaN
        raise UserError(f"The {name} must be between {low} and {high}, got {number}.")
    return number
