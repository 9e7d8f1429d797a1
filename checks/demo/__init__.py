"""The bundled demo: a deliberately insecure DesterLib installation.

It follows the CLI layout the way DesterLib's installers leave it (database
published on 0.0.0.0 with a default password, the password inline in a 0644
compose file, a 0644 .env and a stray .env.bak) plus a Redis without a password
and a media library after the docs' ``chmod -R 755``. Git does not keep file
modes, so :func:`materialize` sets them.
"""

from __future__ import annotations

import os
import shutil
from importlib.resources import files

#: (path in the install, mode) for what the installers leave behind.
_FILES = (
    ("docker-compose.yml", "docker-compose.yml", 0o644),
    ("dot.env", ".env", 0o644),
    ("dot.env.bak", ".env.bak", 0o644),
)

#: A small media library: (relative path, mode).
_MEDIA = (
    ("Movies", 0o777),
    ("Movies/Big Buck Bunny (2008)", 0o755),
    ("Movies/Big Buck Bunny (2008)/Big Buck Bunny (2008).mkv", 0o755),
    ("Movies/Sintel (2010)", 0o755),
    ("Movies/Sintel (2010)/Sintel (2010).mkv", 0o755),
    ("Movies/Sintel (2010)/Sintel (2010).en.srt", 0o666),
    ("TV Shows", 0o755),
    ("TV Shows/Elephants Dream", 0o775),
    ("TV Shows/Elephants Dream/Season 01", 0o755),
    ("TV Shows/Elephants Dream/Season 01/Elephants Dream S01E01.mp4", 0o644),
)


def materialize(parent: str) -> str:
    """Write the demo installation under ``parent``; return its directory."""
    root = os.path.join(parent, ".desterlib")
    os.makedirs(root, mode=0o755)
    os.chmod(root, 0o755)
    data = files(__package__).joinpath("install")
    for name, target, mode in _FILES:
        dest = os.path.join(root, target)
        with data.joinpath(name).open("rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(dest, mode)
    media = os.path.join(root, "media")
    os.makedirs(media)
    os.chmod(media, 0o755)
    for rel, mode in _MEDIA:
        path = os.path.join(media, rel)
        if os.path.splitext(rel)[1]:
            with open(path, "wb") as fh:
                fh.write(b"\x1a\x45\xdf\xa3 demo media file\n")
        else:
            os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    return root
