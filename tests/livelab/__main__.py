"""``python -m tests.livelab check``: start the live lab once and stop it, printing its timings.

``.ci/run`` calls it before the suite so the images are built (or loaded) into the cache ahead of
the first live test, and so a machine where the lab cannot start says why in one line. Exit status:
0 when the lab started, 1 when it could not, 2 for bad arguments.
"""

from __future__ import annotations

import os
import sys

from . import LabUnavailable, LiveLab, cache_dir, find_compose_plugin


def main(argv: list[str]) -> int:
    if argv != ["check"]:
        print("usage: python -m tests.livelab check", file=sys.stderr)
        return 2
    cache = cache_dir(os.environ)
    try:
        lab = LiveLab.start(cache, find_compose_plugin(os.environ))
    except LabUnavailable as exc:
        print(f"live lab: cannot start: {exc}")
        return 1
    try:
        print(f"live lab: started in {lab.root} (images {lab.images_how}, cache {cache})")
    finally:
        lab.stop()
    for name, seconds in lab.timings:
        print(f"live lab: {name}: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
