"""dester-harden's domain core: discovery, the check catalog, findings and reports.

Never imports textual, tui or screens (enforced by tests/test_architecture.py
and the import-linter contract in pyproject.toml).
"""

__version__ = "0.1.0"
