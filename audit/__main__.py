"""``python -m audit``: same as the ``audit`` command."""

from audit.cli import entry

entry()
