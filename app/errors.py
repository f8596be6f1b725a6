"""Errors the CLI turns into one-line messages."""


class UsageError(Exception):
    """Bad arguments or configuration: printed as one line, exit code 2."""
