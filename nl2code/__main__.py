"""`python -m nl2code` = the `nl2code` command."""

from nl2code.client import entry

entry()
