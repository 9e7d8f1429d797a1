"""``python -m tui`` is the same as the ``dester-harden`` command."""

from .cli import main

raise SystemExit(main())
