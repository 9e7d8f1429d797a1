"""Screens of the Textual assistant (one Screen per file)."""
