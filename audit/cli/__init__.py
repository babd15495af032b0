"""The ``audit`` command line: thin commands that parse arguments, call the library, and map
errors to exit codes.

``common`` holds the helpers every command shares, ``outputs`` the format options built from
the report layer's format registry, and one module per verb group adds its commands:
``run`` (run, models, report, train), ``harden``, ``fairness`` (fairness, mitigate) and
``tools`` (diff, examples, config). The library never imports this package.
"""

from audit.cli._main import app, entry, main

__all__ = ["app", "entry", "main"]
