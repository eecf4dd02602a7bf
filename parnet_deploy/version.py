"""The package version (pyproject.toml says the same; tests/test_layering.py holds the two equal)."""

__version__ = "0.1.0"
