"""Names every layer agrees on."""

JOURNAL_DIR = ".dester-harden"
"""The in-install journal directory (used only when the running user owns the install; see
checks/change/statedir.py)."""

SETTINGS_FILE = "settings.toml"
"""The settings file, in the journal directory (see checks/audit/settings.py)."""
