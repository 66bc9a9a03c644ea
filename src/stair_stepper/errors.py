"""The one exception type for mistakes a user can make and fix."""


class UserError(Exception):
    """A problem the user caused (bad flag, missing library, busy port...).

    The command line prints its message as one sentence and exits non-zero,
    never a traceback.
    """
