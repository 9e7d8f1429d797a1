"""The live system: what really runs, read once per command and handed to the checks as data.

Layered over :mod:`checks.install` (the project name comes from the files) and under the audit:
the checks read a :class:`checks.live.model.LiveState` and never talk to Docker themselves.
Importing this package loads no Docker code; :mod:`checks.live.docker` imports the SDK only
once the Engine's socket answers.
"""
