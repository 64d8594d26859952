"""`python -m nl2code` = the `nl2code` command."""

from nl2code.cli import entry

entry()
