"""The package version, in one place: pyproject.toml reads it (dynamic version) and every
result records it."""

__version__ = "0.1.0"
