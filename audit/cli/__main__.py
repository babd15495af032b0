"""``python -m audit.cli``: same as the ``audit`` command."""

from audit.cli import entry

entry()
