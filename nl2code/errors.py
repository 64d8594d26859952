"""Typed errors. The library raises these; only the front doors turn them into exits.

Every message is one line and names the fix where there is one.
"""


class Nl2CodeError(Exception):
    """Base class for every error nl2code reports to a user."""

    exit_code = 2


class UsageError(Nl2CodeError):
    """Bad options, empty intents, flags that would do nothing."""


class DataError(Nl2CodeError):
    """A corpus, recipe or source file that cannot be read."""


class CheckpointError(Nl2CodeError):
    """A model folder that is missing, corrupted or not ours."""


class NoParseableCandidate(Nl2CodeError):
    """Generation ran, but no candidate parsed in the requested language."""

    exit_code = 1
