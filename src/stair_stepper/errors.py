"""The one exception type for mistakes a user can make and fix, and the one number check."""


class UserError(Exception):
    """A problem the user caused (bad flag, missing library, busy port...).

    The command line prints its message as one sentence and exits non-zero,
    never a traceback.
    """


def non_negative_int(name: str, text: str) -> int:
    """``text`` as a whole number >= 0 (digits only: no sign, no point), else UserError."""
    stripped = str(text).strip()
    if not (stripped.isascii() and stripped.isdigit()):
        raise UserError(f"{name} must be a non-negative integer, got {str(text)!r}.")
    return int(stripped)
