"""The error every check of user input raises (bad data, options, paths, models)."""


class UserError(Exception):
    """Bad input from the user: the message names the thing at fault and the fix."""
