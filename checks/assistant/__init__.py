"""The guided assistant's steps, session, baseline and checklist (UI-free)."""
