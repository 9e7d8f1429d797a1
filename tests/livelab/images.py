"""The lab's images, built locally from Debian packages (no registry) and cached between runs.

One debootstrap ``minbase`` rootfs (bookworm: postgresql-15, redis-server, python3-psycopg2,
busybox) is imported as a base image; ``Dockerfile.postgres``, ``Dockerfile.redis`` and
``Dockerfile.api`` beside this file build ``postgres:15-alpine``, ``redis:7-alpine`` and
``desterlib/api:latest`` on it with the legacy builder (``DOCKER_BUILDKIT=0``: there is no
buildx). The three images are saved in one compressed ``docker save`` archive keyed by a hash
of their sources, the suite and the PostgreSQL major; the rootfs tar is cached on its own, so a
change to a source file costs an import and three builds (seconds), not a debootstrap.

Two pytest sessions never build at once: the build runs under an exclusive lock in the cache
directory, and the second session loads what the first one saved.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
PG_MAJOR = "15"
#: Bump to rebuild the cached rootfs (the package list or the slimming changed).
ROOTFS_REV = "1"
PACKAGES = (f"postgresql-{PG_MAJOR}", "redis-server", "redis-tools", "python3", "python3-psycopg2", "busybox")
#: (tag, Dockerfile, files copied into its context)
IMAGES = (
    (f"postgres:{PG_MAJOR}-alpine", "Dockerfile.postgres", ("postgres-entrypoint.sh",)),
    ("redis:7-alpine", "Dockerfile.redis", ("redis-entrypoint.sh",)),
    ("desterlib/api:latest", "Dockerfile.api", ("api_standin.py",)),
)
KEY_LABEL = "dester-harden.live.key"

Docker = Callable[..., subprocess.CompletedProcess[str]]
Timer = Callable[[str, float], None]


class BuildError(RuntimeError):
    """The images could not be built or loaded; the message is one line."""


def image_key() -> str:
    """A hash of everything the images are made of."""
    digest = hashlib.sha256(f"{SUITE} {PG_MAJOR} {ROOTFS_REV} {' '.join(PACKAGES)}\n".encode())
    for _tag, dockerfile, sources in IMAGES:
        for name in (dockerfile, *sources):
            digest.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def rootfs_name() -> str:
    digest = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:8]
    return f"rootfs-{SUITE}-pg{PG_MAJOR}-r{ROOTFS_REV}-{digest}.tar"


# -- apt's own sources: which mirror to debootstrap from -----------------------------

def apt_mirrors(etc: Path = Path("/etc/apt")) -> tuple[str | None, str | None]:
    """(the Debian mirror for SUITE, its security mirror) from apt's deb822 and one-line sources."""
    main: str | None = None
    security: str | None = None
    files = sorted((etc / "sources.list.d").glob("*.sources")) if (etc / "sources.list.d").is_dir() else []
    for path in files:
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith((" ", "\t", "#")):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                continue
            uris = fields.get("uris", "").split()
            suites = fields.get("suites", "").split()
            if not uris:
                continue
            if SUITE in suites and main is None:
                main = uris[0]
            if f"{SUITE}-security" in suites and security is None:
                security = uris[0]
    lists = [etc / "sources.list"]
    if (etc / "sources.list.d").is_dir():
        lists += sorted((etc / "sources.list.d").glob("*.list"))
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) < 3 or words[0] != "deb":
                continue
            uri, suite = words[1], words[2]
            if suite == SUITE and main is None:
                main = uri
            elif suite == f"{SUITE}-security" and security is None:
                security = uri
    return main, security


# -- the cache -----------------------------------------------------------------------

@contextmanager
def build_lock(cache: Path) -> Iterator[None]:
    """An exclusive lock on the cache: one build at a time across pytest sessions."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _compressor() -> tuple[str, list[str], list[str]]:
    """(suffix, compress argv, decompress argv): zstd where it exists, else gzip."""
    if shutil.which("zstd"):
        return ".tar.zst", ["zstd", "-q", "-3", "-T0", "-c"], ["zstd", "-q", "-dc"]
    return ".tar.gz", ["gzip", "-1", "-c"], ["gzip", "-dc"]


def _archives(cache: Path, key: str) -> list[Path]:
    return [p for p in (cache / f"images-{key}.tar.zst", cache / f"images-{key}.tar.gz") if p.is_file()]


def _pipe(first: list[str], second: list[str], env: dict[str, str], *, stdin_path: Path | None = None,
          stdout_path: Path | None = None) -> None:
    """``first | second`` with files at either end; raises BuildError with stderr's last line."""
    with contextlib.ExitStack() as stack:
        err1 = stack.enter_context(tempfile.TemporaryFile())
        err2 = stack.enter_context(tempfile.TemporaryFile())
        src: Any = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
        dst: Any = stack.enter_context(open(stdout_path, "wb")) if stdout_path else subprocess.DEVNULL
        one = subprocess.Popen(first, stdin=src, stdout=subprocess.PIPE, stderr=err1, env=env)
        two = subprocess.Popen(second, stdin=one.stdout, stdout=dst, stderr=err2, env=env)
        assert one.stdout is not None
        one.stdout.close()
        rc2, rc1 = two.wait(), one.wait()
        if rc1 or rc2:
            err1.seek(0)
            err2.seek(0)
            text = (err2.read() or err1.read()).decode(errors="replace").strip().splitlines()
            why = text[-1] if text else rc1 or rc2
            raise BuildError(f"{' '.join(first[:2])} | {' '.join(second[:2])} failed: {why}")


def ensure_images(docker: Docker, env: dict[str, str], cache: Path, work: Path, timer: Timer) -> str:
    """Make the three images exist in the lab's dockerd; return how ("present", "loaded", "built")."""
    key = image_key()
    if _have(docker, key):
        return "present"
    with build_lock(cache):
        for archive in _archives(cache, key):
            start = time.monotonic()
            try:
                _pipe(_decompressor(archive), ["docker", "load", "-q"], env, stdin_path=archive)
            except BuildError:
                archive.unlink(missing_ok=True)  # a torn archive: build anew below
                continue
            timer("image load (cache)", time.monotonic() - start)
            if _have(docker, key):
                return "loaded"
        start = time.monotonic()
        rootfs = _rootfs(cache, work, timer)
        _build(docker, env, key, rootfs, work, timer)
        timer("image build (cold, total)", time.monotonic() - start)
        start = time.monotonic()
        suffix, compress, _ = _compressor()
        tmp = cache / f".images-{key}{suffix}.{os.getpid()}"
        try:
            _pipe(["docker", "save", *[tag for tag, _d, _s in IMAGES]], compress, env, stdout_path=tmp)
            os.replace(tmp, cache / f"images-{key}{suffix}")
        finally:
            tmp.unlink(missing_ok=True)
        timer("image save (cache)", time.monotonic() - start)
        _prune(cache, key)
        return "built"


def _decompressor(archive: Path) -> list[str]:
    return ["zstd", "-q", "-dc"] if archive.name.endswith(".zst") else ["gzip", "-dc"]


def _have(docker: Docker, key: str) -> bool:
    for tag, _dockerfile, _sources in IMAGES:
        proc = docker("image", "inspect", "-f", f'{{{{ index .Config.Labels "{KEY_LABEL}" }}}}', tag)
        if proc.returncode != 0 or proc.stdout.strip() != key:
            return False
    return True


def _prune(cache: Path, key: str, keep: int = 3) -> None:
    """Archives of old keys go (each is ~70 MB), but not the newest few: branches with other image
    sources share the cache, and each would otherwise delete the other's archive and rebuild."""
    old = sorted((p for p in cache.glob("images-*.tar.*") if key not in p.name),
                 key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[keep - 1:]:
        path.unlink(missing_ok=True)


def _build(docker: Docker, env: dict[str, str], key: str, rootfs: Path, work: Path, timer: Timer) -> None:
    start = time.monotonic()
    base = f"dester-harden-live/base:{key}"
    with open(rootfs, "rb") as fh:
        proc = subprocess.run(
            ["docker", "import",
             "--change", f"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"
                         f"/usr/lib/postgresql/{PG_MAJOR}/bin",
             "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["bash"]', "-", base],
            stdin=fh, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise BuildError("docker import failed: " + _last(proc.stderr))
    timer("image import (base)", time.monotonic() - start)
    start = time.monotonic()
    for tag, dockerfile, sources in IMAGES:
        ctx = work / ("ctx-" + re.sub(r"[^a-z0-9]+", "-", tag))
        shutil.rmtree(ctx, ignore_errors=True)
        ctx.mkdir(parents=True)
        shutil.copyfile(HERE / dockerfile, ctx / "Dockerfile")
        for name in sources:
            shutil.copy2(HERE / name, ctx / name)
        proc = docker("build", "-q", "--build-arg", f"BASE={base}", "--label", f"{KEY_LABEL}={key}", "-t", tag,
                      str(ctx))
        if proc.returncode:
            raise BuildError(f"docker build of {tag} failed: " + _last(proc.stderr or proc.stdout))
    timer("image build (3 Dockerfiles)", time.monotonic() - start)


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _rootfs(cache: Path, work: Path, timer: Timer) -> Path:
    """The slimmed Debian rootfs as a tar, from the cache or from debootstrap."""
    out = cache / rootfs_name()
    if out.is_file() and out.stat().st_size > 0:
        return out
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap is not installed (apt-get install debootstrap): the lab's images need it")
    mirror, security = apt_mirrors()
    if not mirror:
        raise BuildError(f"no Debian {SUITE} mirror in apt's sources (/etc/apt/sources.list*)")
    root = work / "rootfs"
    log = work / "debootstrap.log"
    start = time.monotonic()
    with open(log, "ab") as fh:
        proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror],
                              stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise BuildError(f"debootstrap {SUITE} from {mirror} failed: " + _last(log.read_text(errors="replace")))
    timer("debootstrap", time.monotonic() - start)
    # No package may start a daemon while installing.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    if security:
        (root / "etc/apt/sources.list.d/security.list").write_text(f"deb {security} {SUITE}-security main\n")
    # A snapshot mirror's Release files are past their Valid-Until, as the host's apt is told too.
    (root / "etc/apt/apt.conf.d/99dester-harden-lab").write_text(
        'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n')
    start = time.monotonic()
    _chroot(log, ["chroot", str(root), "apt-get", "update", "-q"], "apt-get update")
    _chroot(log, ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", "--download-only",
                  *PACKAGES], "apt-get download")
    # The install runs with no network and private mounts: a postinst that starts a server binds nothing.
    script = ('mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && root=$1 && shift && '
              'chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends '
              '--no-download "$@"')
    _chroot(log, ["unshare", "--net", "--mount", "--pid", "--fork", "--propagation", "private", "sh", "-c", script,
                  "sh", str(root), *PACKAGES], "apt-get install")
    slim = ('dpkg --purge --force-depends $(dpkg-query -W -f "\\${Package}\\n" | '
            'grep -E "^(libllvm[0-9]+|libz3-[0-9]+|perl|perl-modules-.*|libperl5.*|locales)$") >/dev/null 2>&1; '
            f'rm -rf /usr/lib/postgresql/{PG_MAJOR}/lib/llvmjit* /usr/lib/postgresql/{PG_MAJOR}/lib/bitcode '
            f'/etc/postgresql/{PG_MAJOR} /var/lib/postgresql/{PG_MAJOR} /usr/share/i18n /usr/share/locale/* '
            '/var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* /usr/share/doc/* '
            '/usr/share/man/* /usr/share/info/* /etc/resolv.conf /etc/hostname /usr/sbin/policy-rc.d; '
            'for b in psql pg_isready initdb pg_ctl postgres createdb createuser pg_dump pg_dumpall pg_restore; do '
            f'ln -sf /usr/lib/postgresql/{PG_MAJOR}/bin/$b /usr/local/bin/$b; done; '
            'ln -sf /bin/busybox /usr/local/bin/wget; true')
    _chroot(log, ["chroot", str(root), "sh", "-c", slim], "slimming")
    timer("rootfs packages", time.monotonic() - start)
    tmp = cache / f".{out.name}.{os.getpid()}"
    tar = subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(tmp), "."], capture_output=True,
                         text=True)
    if tar.returncode:
        tmp.unlink(missing_ok=True)
        raise BuildError("tar of the rootfs failed: " + _last(tar.stderr))
    os.replace(tmp, out)
    shutil.rmtree(root, ignore_errors=True)
    return out


def _chroot(log: Path, argv: list[str], what: str) -> None:
    with open(log, "ab") as fh:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise BuildError(f"{what} in the rootfs failed: " + _last(log.read_text(errors="replace")))
