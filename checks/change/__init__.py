"""Plans, the change engine, its handlers, the journal, trust checks, the media walk.

Imports nothing from install, audit or fix.
"""
