"""The project's own DesterLib installations, one per layout, insecure and hardened.

Each builder writes an installation into a temporary directory the way the real
installer leaves it: the same keys, the same values that matter (ports,
passwords, ``env_file`` paths, image tags, media mounts) and the same file modes.
The text is ours (shorter comments, our own example password), not a copy of
the files in ../shared/real-desterlib: the project must not carry copies of
those; tests/test_real_desterlib.py audits the real ones when ../shared exists.

Layouts (docs: CHECKS.md "Installation layouts"):

* CLI install: ``~/.desterlib/docker-compose.yml`` + ``.env`` + ``README.md``,
  the database password inline in the compose file, both files 0644.
* Setup-script install: a clone of the repository in ``~/.desterlib`` with
  ``docker-compose.yml`` at the root, ``env_file: apps/api/.env`` and the
  script's defaults (user and password ``postgres``, database ``desterlib_prod``).
* Newer layout: ``docker/docker-compose.yml`` + root ``.env`` copied from
  ``.env.example``; SQLite, Redis without a password on 0.0.0.0:6379, the
  scanner on 8080.

The hardened counterparts keep the layout and apply every fix the catalog asks
for: no database port on a public address, a 32+ character URL-safe password
only in the env file and referenced as ``${VAR}``, env files 0600, compose
files 0644 without secrets, media mounted ``:ro`` from a tree of 0755
directories and 0644 files, ``no-new-privileges``, pinned image tags, log
rotation, the ``desterlib-net`` bridge network, Redis with ``--requirepass
${REDIS_PASSWORD}`` and a backup dump younger than a week.

Every builder returns the install directory. The media library lives next to
it (``<tmp>/<name>/Media``), like ``~/Media`` next to ``~/.desterlib``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .conftest import FIXED_NOW

#: The insecure CLI install's password: the CLI asks for one (8 characters at
#: least, no default), so a user's short password stands in for it.
CLI_PASSWORD = "Kx7pLm2Qw9"
#: Hardened passwords: 40 characters from the URL-safe alphabet.
HARDENED_DB_PASSWORD = "r8VqT2mWx5Lk9ZpN3cHs7JdF4gBy6Qe1Ua0Ro5Xi"
HARDENED_REDIS_PASSWORD = "Hq3Zt8Wm1Kc6Vx9Pb2Ln5Rs7Dj4Fg0Ya3Ue8Mo2T"
#: Every secret a fixture holds: tests assert none of them reaches any output.
SECRETS = (CLI_PASSWORD, HARDENED_DB_PASSWORD, HARDENED_REDIS_PASSWORD)

#: The age of the hardened installs' newest backup dump.
BACKUP_AGE_SECONDS = 86400


# -- CLI install ---------------------------------------------------------------

CLI_COMPOSE = """\
# Written by the DesterLib CLI (desterlib-cli)

services:
  postgres:
    image: postgres:15-alpine
    container_name: desterlib-postgres
    restart: unless-stopped
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: @PASSWORD@
      POSTGRES_DB: desterlib
    ports:
      - "5432:5432"
    volumes:
      - postgres_data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U desterlib"]
      interval: 10s
      timeout: 5s
      retries: 5

  api:
    image: desterlib/api:latest
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      postgres:
        condition: service_healthy
    environment:
      DATABASE_URL: postgresql://desterlib:@PASSWORD@@postgres:5432/desterlib?schema=public
      NODE_ENV: production
      PORT: 3001
      RATE_LIMIT_WINDOW_MS: 900000  # 15 min
      RATE_LIMIT_MAX: 100
    ports:
      # all interfaces: the mobile apps connect over the LAN
      - "0.0.0.0:3001:3001"
    volumes:
      - @MEDIA@:/media:ro
    healthcheck:
      test: ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]
      interval: 30s
      timeout: 10s
      retries: 3
      start_period: 40s

volumes:
  postgres_data:
    driver: local
"""

CLI_ENV = """\
# Written by the DesterLib CLI
DATABASE_URL=postgresql://desterlib:@PASSWORD@@postgres:5432/desterlib?schema=public

NODE_ENV=production
PORT=3001

RATE_LIMIT_WINDOW_MS=900000  # 15 min
RATE_LIMIT_MAX=100
"""

CLI_README = """\
# DesterLib

Start with `docker-compose up -d`; the API answers on http://localhost:3001.
"""

CLI_COMPOSE_HARDENED = """\
# DesterLib CLI install, hardened: secrets live in .env (0600)

services:
  postgres:
    image: postgres:15.8-alpine
    container_name: desterlib-postgres
    restart: unless-stopped
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: desterlib
    ports:
      # loopback only: pg_dump and a database client on this host
      - "127.0.0.1:5432:5432"
    volumes:
      - postgres_data:/var/lib/postgresql/data
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U desterlib"]
      interval: 10s
      timeout: 5s
      retries: 5

  api:
    image: desterlib/api:0.2.0
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      postgres:
        condition: service_healthy
    environment:
      DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib?schema=public
      NODE_ENV: production
      PORT: 3001
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - @MEDIA@:/media:ro
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"

networks:
  desterlib-net:
    driver: bridge

volumes:
  postgres_data:
    driver: local
"""

CLI_ENV_HARDENED = """\
# DesterLib: secrets (mode 0600)
POSTGRES_PASSWORD=@PASSWORD@
DATABASE_URL=postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib?schema=public
NODE_ENV=production
PORT=3001
"""


def cli_install(tmp: Path | str, hardened: bool = False, now: float = FIXED_NOW) -> Path:
    """``~/.desterlib`` as the DesterLib CLI writes it (docker-compose.yml, .env, README.md).

    Insecure: the media tree has the modes of the docs' ``chmod -R 755`` (every
    video executable). ``now`` dates the hardened install's backup dump.
    """
    base = _base(tmp, "cli", hardened)
    root = _dir(base / ".desterlib")
    media = base / "Media"
    if hardened:
        _media(media, 0o755, 0o644)
        _write(root / "docker-compose.yml", _fill(CLI_COMPOSE_HARDENED, media=media), 0o644)
        _write(root / ".env", _fill(CLI_ENV_HARDENED, password=HARDENED_DB_PASSWORD), 0o600)
        _backup(root, "desterlib-20260920.sql", now)
    else:
        _media(media, 0o755, 0o755)
        _write(root / "docker-compose.yml", _fill(CLI_COMPOSE, media=media, password=CLI_PASSWORD), 0o644)
        _write(root / ".env", _fill(CLI_ENV, password=CLI_PASSWORD), 0o644)
    _write(root / "README.md", CLI_README, 0o644)
    return root


# -- setup-script install -------------------------------------------------------

SETUP_COMPOSE = """\
# The repository's docker-compose.yml after scripts/setup/unix.sh filled it in
services:
  postgres:
    image: postgres:15-alpine
    container_name: desterlib-postgres
    restart: unless-stopped
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: desterlib_prod
    ports:
      - "5432:5432"
    volumes:
      - postgres_data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 10s
      timeout: 5s
      retries: 5

  api:
    build:
      context: .
      dockerfile: Dockerfile
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      postgres:
        condition: service_healthy
    env_file:
      - apps/api/.env
    environment:
      # read by the startup script
      POSTGRES_HOST: postgres
      POSTGRES_PORT: 5432
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: desterlib_prod
      DATABASE_URL: postgresql://postgres:postgres@postgres:5432/desterlib_prod?schema=public
      NODE_ENV: production
      PORT: 3001
      FRONTEND_URL: http://localhost:3001
      HOST_MEDIA_PATH: @MEDIA@
      CONTAINER_MEDIA_PATH: /media
    ports:
      # all interfaces, for the mobile apps on the LAN
      - "0.0.0.0:3001:3001"
    volumes:
      - @MEDIA@:/media:ro
    healthcheck:
      test: ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]
      interval: 30s
      timeout: 10s
      retries: 3
      start_period: 40s

volumes:
  postgres_data:
"""

SETUP_API_ENV = """\
DATABASE_URL=postgresql://postgres:postgres@postgres:5432/desterlib_prod?schema=public
NODE_ENV=production
PORT=3001
FRONTEND_URL=http://localhost:3001
# host/container media paths
HOST_MEDIA_PATH=@MEDIA@
CONTAINER_MEDIA_PATH=/media
"""

#: apps/api/.env.example of the clone: a local development database.
SETUP_API_ENV_EXAMPLE = """\
DATABASE_URL=postgresql://postgres:postgres@localhost:5433/desterlib_test
NODE_ENV=development
PORT=3001
"""

SETUP_COMPOSE_HARDENED = """\
# Setup-script install, hardened: every secret in apps/api/.env (0600)
services:
  postgres:
    image: postgres:15.8-alpine
    container_name: desterlib-postgres
    restart: unless-stopped
    env_file:
      - apps/api/.env
    volumes:
      - postgres_data:/var/lib/postgresql/data
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U desterlib"]
      interval: 10s
      timeout: 5s
      retries: 5

  api:
    build:
      context: .
      dockerfile: Dockerfile
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      postgres:
        condition: service_healthy
    env_file:
      - apps/api/.env
    environment:
      POSTGRES_HOST: postgres
      POSTGRES_PORT: 5432
      NODE_ENV: production
      PORT: 3001
      CONTAINER_MEDIA_PATH: /media
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - @MEDIA@:/media:ro
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"

networks:
  desterlib-net:
    driver: bridge

volumes:
  postgres_data:
"""

SETUP_API_ENV_HARDENED = """\
# secrets for postgres and the API (mode 0600)
POSTGRES_USER=desterlib
POSTGRES_PASSWORD=@PASSWORD@
POSTGRES_DB=desterlib_prod
DATABASE_URL=postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib_prod?schema=public
NODE_ENV=production
PORT=3001
FRONTEND_URL=http://localhost:3001
HOST_MEDIA_PATH=@MEDIA@
CONTAINER_MEDIA_PATH=/media
"""

DOCKERFILE = """\
FROM node:20-alpine
WORKDIR /app
COPY . .
CMD ["node", "apps/api/dist/index.js"]
"""


def setup_script_install(tmp: Path | str, hardened: bool = False, now: float = FIXED_NOW) -> Path:
    """``~/.desterlib`` as scripts/setup/unix.sh leaves it: a clone with apps/api/.env.

    Insecure: the script's defaults, and a media path that does not exist on
    this host (the script asks for one and does not check it).
    """
    base = _base(tmp, "setup-script", hardened)
    root = _dir(base / ".desterlib")
    _dir(root / "apps")
    api_dir = _dir(root / "apps" / "api")
    _write(root / "Dockerfile", DOCKERFILE, 0o644)
    _write(api_dir / ".env.example", SETUP_API_ENV_EXAMPLE, 0o644)
    if hardened:
        media = base / "Media"
        _media(media, 0o755, 0o644)
        _write(root / "docker-compose.yml", _fill(SETUP_COMPOSE_HARDENED, media=media), 0o644)
        _write(api_dir / ".env", _fill(SETUP_API_ENV_HARDENED, media=media, password=HARDENED_DB_PASSWORD), 0o600)
        _backup(root, "desterlib_prod-20260920.sql.gz", now)
    else:
        media = base / "srv-media"  # never created
        _write(root / "docker-compose.yml", _fill(SETUP_COMPOSE, media=media), 0o644)
        _write(api_dir / ".env", _fill(SETUP_API_ENV, media=media), 0o644)
    return root


# -- newer layout ----------------------------------------------------------------

NEWER_COMPOSE = """\
# docker/docker-compose.yml of the newer layout (SQLite, Redis, Go scanner)
services:
  redis:
    image: redis:7-alpine
    container_name: desterlib-redis
    restart: unless-stopped
    ports:
      - "6379:6379"
    volumes:
      - redis_data:/data
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 10s
      timeout: 5s
      retries: 5

  api:
    build:
      context: ..
      dockerfile: apps/api/Dockerfile
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      redis:
        condition: service_healthy
    env_file:
      - ../.env
    environment:
      DATABASE_URL: file:/app/db/main.db
      REDIS_URL: redis://redis:6379
      NODE_ENV: production
      PORT: 3001
      SCANNER_SERVICE_URL: http://scanner-service:8080
      METADATA_PATH: /app/metadata
      API_LOG_PATH: /app/logs
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - ../desterlib-data/db:/app/db
      - ../desterlib-data/metadata:/app/metadata
      - ../desterlib-data/logs:/app/logs
      - @MEDIA@:/media:ro

  scanner-service:
    build:
      context: ../apps/go-service
    container_name: desterlib-scanner
    restart: unless-stopped
    env_file:
      - ../.env
    environment:
      SCANNER_PORT: 8080
      DATABASE_URL: file:/app/db/main.db
      REDIS_URL: redis://redis:6379/0
    ports:
      - "8080:8080"
    volumes:
      - ../desterlib-data/db:/app/db
      - @MEDIA@:/media:ro

volumes:
  redis_data:
"""

#: The clone's .env.example, which the README says to copy to .env: it still
#: names a local PostgreSQL that the compose file overrides with SQLite.
NEWER_ENV_EXAMPLE = """\
# Copy to .env
DATABASE_URL=postgresql://postgres:postgres@localhost:5432/desterlib_test
METADATA_PATH=./desterlib-data/metadata
API_LOG_PATH=./desterlib-data/logs
PORT=3001
NODE_ENV=development
REDIS_URL=redis://localhost:6379
SCANNER_SERVICE_URL=http://localhost:8080
RATE_LIMIT_WINDOW_MS=900000
RATE_LIMIT_MAX=100
HOST_MEDIA_PATH=@MEDIA@
CONTAINER_MEDIA_PATH=/media
SCANNER_PORT=8080
"""

NEWER_COMPOSE_HARDENED = """\
# Newer layout, hardened: Redis needs a password and publishes nothing
services:
  redis:
    image: redis:7.2-alpine
    container_name: desterlib-redis
    restart: unless-stopped
    command: ["redis-server", "--requirepass", "${REDIS_PASSWORD}"]
    volumes:
      - redis_data:/data
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"

  api:
    build:
      context: ..
      dockerfile: apps/api/Dockerfile
    container_name: desterlib-api
    restart: unless-stopped
    depends_on:
      - redis
    env_file:
      - ../.env
    environment:
      DATABASE_URL: file:/app/db/main.db
      REDIS_URL: redis://:${REDIS_PASSWORD}@redis:6379
      NODE_ENV: production
      PORT: 3001
      SCANNER_SERVICE_URL: http://scanner-service:8080
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - ../desterlib-data/db:/app/db
      - @MEDIA@:/media:ro
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"

  scanner-service:
    build:
      context: ../apps/go-service
    container_name: desterlib-scanner
    restart: unless-stopped
    env_file:
      - ../.env
    environment:
      SCANNER_PORT: 8080
      DATABASE_URL: file:/app/db/main.db
      REDIS_URL: redis://:${REDIS_PASSWORD}@redis:6379/0
    volumes:
      - ../desterlib-data/db:/app/db
      - @MEDIA@:/media:ro
    networks:
      - desterlib-net
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"

networks:
  desterlib-net:
    driver: bridge

volumes:
  redis_data:
"""

NEWER_ENV_HARDENED = """\
# DesterLib secrets and paths (mode 0600)
REDIS_PASSWORD=@PASSWORD@
DATABASE_URL=file:/app/db/main.db
METADATA_PATH=./desterlib-data/metadata
API_LOG_PATH=./desterlib-data/logs
PORT=3001
NODE_ENV=production
HOST_MEDIA_PATH=@MEDIA@
CONTAINER_MEDIA_PATH=/media
"""


def newer_install(tmp: Path | str, hardened: bool = False, now: float = FIXED_NOW) -> Path:
    """A clone with docker/docker-compose.yml and ``cp .env.example .env`` done."""
    base = _base(tmp, "newer", hardened)
    root = _dir(base / ".desterlib")
    media = base / "Media"
    _media(media, 0o755, 0o644)
    _dir(root / "docker")
    _dir(root / "apps")
    _dir(root / "apps" / "api")
    data = _dir(root / "desterlib-data")
    for sub in ("db", "metadata", "logs"):
        _dir(data / sub)
    # The API's SQLite database (FS-007): created by Prisma under Docker's umask, 0644 in a 0755 directory;
    # hardened, 0600 in a 0700 one.
    _sqlite(data / "db" / "main.db", 0o600 if hardened else 0o644)
    if hardened:
        _dir(data / "db", 0o700)
    _write(root / ".env.example", _fill(NEWER_ENV_EXAMPLE, media="/Volumes/External/Library/Media"), 0o644)
    if hardened:
        _write(root / "docker" / "docker-compose.yml", _fill(NEWER_COMPOSE_HARDENED, media=media), 0o644)
        _write(root / ".env", _fill(NEWER_ENV_HARDENED, media=media, password=HARDENED_REDIS_PASSWORD), 0o600)
        _backup(root, "main-20260920.db.bak", now)
    else:
        _write(root / "docker" / "docker-compose.yml", _fill(NEWER_COMPOSE, media=media), 0o644)
        _write(root / ".env", _fill(NEWER_ENV_EXAMPLE, media=media), 0o644)
    return root


# -- helpers ---------------------------------------------------------------------

def line_no(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that contains ``needle`` (exactly one must)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    if len(hits) != 1:
        raise AssertionError(f"{needle!r} is on {len(hits)} lines, expected exactly one")
    return hits[0]


def _base(tmp: Path | str, name: str, hardened: bool) -> Path:
    # A stand-in for the user's home directory; 0755 like a typical $HOME.
    return _dir(Path(tmp) / (name + ("-hardened" if hardened else "")))


def _dir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(exist_ok=True)
    os.chmod(path, mode)  # explicit: the umask of whoever runs the tests must not matter
    return path


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


def _sqlite(path: Path, mode: int) -> None:
    """A real SQLite database (the API stand-in of the live lab opens it; a header alone is no database)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS library (id INTEGER PRIMARY KEY, name TEXT)")
        con.commit()
    finally:
        con.close()
    os.chmod(path, mode)


def _fill(template: str, media: Path | str = "", password: str = "") -> str:
    return template.replace("@MEDIA@", str(media)).replace("@PASSWORD@", password)


def _media(top: Path, dir_mode: int, file_mode: int) -> None:
    """A small library: two movies and an episode; explicit modes, no symlinks."""
    files = ("Movies/Heat (1995)/Heat (1995).mkv", "Movies/Alien (1979)/Alien (1979).mp4",
             "TV Shows/Severance/Season 01/Severance S01E01.mkv")
    dirs = {top}
    for rel in files:
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x1a\x45\xdf\xa3 not really a video")
        os.chmod(path, file_mode)
        parent = path.parent
        while parent != top.parent:
            dirs.add(parent)
            parent = parent.parent
    for d in dirs:
        os.chmod(d, dir_mode)


def _backup(root: Path, name: str, now: float) -> None:
    """``backups/<name>``, a day older than ``now`` (0700 dir, 0600 file)."""
    backups = _dir(root / "backups", 0o700)
    dump = backups / name
    _write(dump, "-- database dump made by the nightly cron job\n", 0o600)
    os.utime(dump, (now - BACKUP_AGE_SECONDS, now - BACKUP_AGE_SECONDS))


# -- input that holds terminal control characters (issue 8, item 7) -----------------------------

#: Any byte or character a terminal acts on, as it must never appear in text output.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def control_name_install(tmp: Path | str) -> Path:
    """A service named with ESC sequences and a \\r, an env key with a bidi override, paths with a newline."""
    root = Path(tmp)
    (root / "me\ndia").mkdir(parents=True)
    _write(root / "docker-compose.yml", """\
services:
  "db\\e[2J\\e[H\\rfake":
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    ports:
      - "5432:5432"
  api:
    image: desterlib/api:1.0.0
    env_file: "api\\u202e.env"
    volumes:
      - "./me\\ndia:/media"
""", 0o644)
    _write(root / ".env", "POSTGRES_PASSWORD=weakpass12\nX\u202eKEY=1\n", 0o644)
    _write(root / "api\u202e.env", "PORT=3001\nB\u202e=2\n", 0o644)
    return root


def control_plan_install(tmp: Path | str) -> Path:
    """Plannable (Docker Compose accepts it): ESC, \\r and a bidi override in .env, markup and a newline in a
    file name."""
    root = Path(tmp)
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "docker-compose.yml", """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: Wk7-pass_ctl_1234
    ports:
      - "5432:5432"
  api:
    image: desterlib/api:1.0.0
    env_file: "[red]api\\nx.env"
""", 0o644)
    _write(root / ".env", 'NODE_ENV="production\x1b[2J\x1b[H\rfake line"\nK\u202eEY=1\n', 0o644)
    _write(root / "[red]api\nx.env", "PORT=3001\n", 0o644)
    return root


def tree_snapshot(top: Path | str, skip: tuple[str, ...] = (), inodes: bool = False) -> dict[str, tuple]:
    """rel path -> (type and mode, uid, gid, link count of a regular file, [inode,] content or link
    target) of ``top`` and everything under it, never following a link; directories named in
    ``skip`` are left out at any depth. The attack tests compare a victim tree with it byte for byte.
    """
    import stat

    top = str(top)
    out: dict[str, tuple] = {}
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if x not in skip]
        for p in ([d] if d == top else []) + [os.path.join(d, n) for n in dirs + files]:
            st = os.lstat(p)
            regular = stat.S_ISREG(st.st_mode)
            data = Path(p).read_bytes() if regular else os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            # A directory's link count follows its subdirectories: only a file's says "hard-linked".
            out[os.path.relpath(p, top)] = ((st.st_mode, st.st_uid, st.st_gid, st.st_nlink if regular else None)
                                            + ((st.st_ino,) if inodes else ()) + (data,))
    return out
