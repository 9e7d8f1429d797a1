"""Plans, the change engine, its handlers, the journal, trust checks, the media walk; imports nothing from install, audit or fix."""
