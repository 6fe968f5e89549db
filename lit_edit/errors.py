"""Errors that the user can fix (bad data, options, paths, models): the CLI prints their message, not a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, explained in the message (what is at fault and the fix)."""
