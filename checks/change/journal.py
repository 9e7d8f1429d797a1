"""The undo journal: write-ahead records of every transaction.

Layout of the journal directory (0700, files 0600): ``.dester-harden/`` in the
install dir, or the effective uid's own place outside it (:mod:`checks.change.statedir`)::

    <journal>/
      lock                  flock()ed by whoever applies; holds who that is
      txn/<id>/intent.json  what the transaction changes and how to undo it
      txn/<id>/b<N>, a<N>   file contents before/after, secrets replaced by tokens
      txn/<id>/tree<N>.bin  bulk chmod records (only entries that changed)
      txn/<id>/state        prepared -> [applied-tentative ->] applied | rolled-back | resolved
                            (24 bytes, space-padded; 16 in older releases)
      txn/<id>/progress     started / done / failed / reverted per entry (checks.change.progress)
      txn/<id>/actions      the programs it ran, argv masked, exit codes (checks.change.executor)
      txn/<id>/undone-by    the id of the transaction that undid this one
      baseline.json         the assistant's last audit
      install.json          (outside the install only) which installation this is

Secrets of a transaction go to the keyring, or when none works to
``<state dir>/secrets/<id>.json``, never into the journal (older releases
wrote ``<journal>/secrets/<id>.json``; still read).

Nothing here is read before :func:`checks.change.trust.verify_journal` has checked
every level of it.

A transaction whose ``state`` is missing was never started (nothing on disk was
touched) and is discarded; one left at ``prepared`` is rolled back by the next
command that runs.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import re
import secrets as _secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checks.change.pending import JOURNAL_DIR as JOURNAL_DIR  # re-exported
from checks.change.pending import has_unfinished as has_unfinished  # re-exported
from checks.change.statedir import ensure_dir, journal_dir
from checks.change.trust import read_checked, verify_journal
from checks.core.atomic import fsync_dir as fsync_dir  # re-exported
from checks.core.atomic import write_private as write_private  # re-exported

if TYPE_CHECKING:
    from checks.change.executor import Action

TOKEN = "@@dester-harden-secret-{}@@"
#: The state file's size: every state fits, padded with spaces, so it is overwritten in place.
STATE_SIZE = 24
"""(Older releases: 16; such a file is replaced whole when a longer state, applied-tentative, comes.)"""


def ensure_private_dir(path: str) -> None:
    """Create a journal directory 0700; refuse a link or one another user could write."""
    ensure_dir(path)
    os.chmod(path, 0o700)


def new_txn_id() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S") + "-" + _secrets.token_hex(3)


def holder_info(command: str) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container
        user = str(os.getuid())
    return {"pid": os.getpid(), "user": user, "host": socket.gethostname(), "command": command,
            "since": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}


# -- secrets kept out of the journal's plaintext --------------------------------


class Redactor:
    """Replaces secret values in journal blobs by numbered tokens, reversibly."""

    def __init__(self, secrets: set[str] | dict[str, str]) -> None:
        if isinstance(secrets, dict):
            self.by_token = dict(secrets)
        else:
            ordered = sorted({v for s in secrets if s for v in _forms(s)}, key=lambda s: (-len(s), s))
            self.by_token = {TOKEN.format(i): s for i, s in enumerate(ordered)}

    def redact(self, data: bytes) -> bytes:
        if b"@@dester-harden-secret-" in data:
            raise ValueError("file already contains dester-harden's secret token; refusing to journal it ambiguously")
        # One pass, longest secret first: replacing one secret after another
        # would also rewrite the tokens already put in (a secret such as
        # "dester" occurs inside every token), and restore would not undo it.
        by_secret = {s.encode("utf-8"): t.encode("ascii") for t, s in self.by_token.items()}
        return _one_pass(data, by_secret)

    def restore(self, data: bytes) -> bytes:
        return _one_pass(data, {t.encode("ascii"): s.encode("utf-8") for t, s in self.by_token.items()})


def _forms(secret: str) -> set[str]:
    """A secret as it may be written: raw, escaped inside quotes, percent-encoded in a URL (either hex case)."""
    from urllib.parse import quote

    forms = {secret}
    # Inside YAML or .env quotes: "a\"b" and 'a''b'.
    forms.add(secret.replace("\\", "\\\\").replace('"', '\\"'))
    forms.add(secret.replace("'", "''"))
    for safe in ("", "/", "!*'()~"):
        enc = quote(secret, safe=safe)
        forms.add(enc)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), enc))
    return forms


def _one_pass(data: bytes, mapping: dict[bytes, bytes]) -> bytes:
    if not mapping:
        return data
    pattern = re.compile(b"|".join(re.escape(k) for k in sorted(mapping, key=lambda k: (-len(k), k))))
    return pattern.sub(lambda m: mapping[m.group(0)], data)


@contextmanager
def _keyring_change(kr: Any, commit: bool = True) -> Iterator[None]:
    """Change a keyring so that a kill midway cannot lose what it already holds.

    keyrings.alt's file keyrings rewrite their one file in place on every
    change: a kill during that rewrite would empty it, and with it the secrets
    every earlier transaction needs for its undo. Such a keyring is pointed at
    a private copy of its file for the change (its ``file_path`` is meant to be
    overridden per instance), and the copy is renamed over the file when the
    change is complete (or dropped, with ``commit=False``). Other keyrings are
    left to their own storage.
    """
    try:
        from keyrings.alt.file_base import FileBacked
    except Exception:  # noqa: BLE001 - keyrings.alt not installed
        FileBacked = None
    if FileBacked is None or not isinstance(kr, FileBacked):
        yield
        return
    real = kr.file_path
    d = os.path.dirname(real) or "."
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(real)}.dester-harden.tmp")
    _unlink_missing_ok(tmp)
    try:
        with open(real, "rb") as fh:
            current = fh.read()
    except FileNotFoundError:
        current = None
    if current is not None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(current)
    kr.file_path = tmp
    try:
        yield
    except BaseException:
        _unlink_missing_ok(tmp)
        raise
    finally:
        kr.__dict__.pop("file_path", None)
    if not commit or not os.path.exists(tmp):
        _unlink_missing_ok(tmp)
        return
    fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, real)
    fsync_dir(d)


def _unlink_missing_ok(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


class SecretStore:
    """Keeps a transaction's secrets in the OS keyring, else in a 0600 file of the state directory.

    Keyed by transaction id (ids are unique), so an undo still finds them after
    the installation moved, and whether or not the journal is inside it. The
    key of older releases (``<install path>:<id>``) is still read.
    """

    SERVICE = "dester-harden"

    def __init__(self, journal_root: str) -> None:
        self.root = journal_root
        self._keyring: Any = None
        self._checked = False

    def _backend(self) -> Any:
        if not self._checked:
            self._checked = True
            try:
                import keyring
                from keyring.backends import fail

                kr = keyring.get_keyring()
                if not isinstance(kr, fail.Keyring) and getattr(kr, "priority", 0) > 0:
                    probe = "probe-" + _secrets.token_hex(4)
                    # A file keyring is probed on a copy that is then dropped.
                    with _keyring_change(kr, commit=False):
                        kr.set_password(self.SERVICE, probe, "1")
                        ok = kr.get_password(self.SERVICE, probe) == "1"
                        with suppress(Exception):  # a keyring that cannot delete is still usable
                            kr.delete_password(self.SERVICE, probe)
                    if ok:
                        self._keyring = kr
            except Exception:  # noqa: BLE001 - any keyring trouble means: use the file
                self._keyring = None
        return self._keyring

    @staticmethod
    def _user(txn: str) -> str:
        return f"txn:{txn}"

    def _legacy_user(self, txn: str) -> str:
        return f"{os.path.realpath(os.path.dirname(self.root))}:{txn}"

    def describe(self, where: str | None) -> str:
        """Where secrets are, for a message: names a plaintext keyring file as what it is."""
        if where != "keyring":
            return f"{where} (mode 0600)" if where else "nowhere"
        try:
            import keyring

            kr = keyring.get_keyring()
            path = getattr(kr, "file_path", None)
            if path:
                plain = type(kr).__name__.startswith("Plaintext")
                return f"{'a plaintext' if plain else 'an encrypted'} keyring file ({path})"
        except Exception:  # noqa: BLE001 - a broken keyring: say the generic thing
            pass
        return "the system keyring"

    def put(self, txn: str, secrets: dict[str, str]) -> str:
        """Store; returns where: ``"keyring"`` or the file's path."""
        data = json.dumps(secrets)
        kr = self._backend()
        if kr is not None:
            try:
                with _keyring_change(kr):
                    kr.set_password(self.SERVICE, self._user(txn), data)
                return "keyring"
            except Exception:  # noqa: BLE001
                pass
        from checks.change.statedir import secrets_dir

        d = secrets_dir()
        ensure_dir(os.path.dirname(d), parents=True)
        ensure_private_dir(d)
        path = os.path.join(d, f"{txn}.json")
        write_private(path, data.encode("utf-8"))
        return path

    def keep(self, user: str, value: str) -> str:
        """Keep one secret the user must be able to find again (the proxy's login) under ``user``:
        ``"keyring"``, or the path of a 0600 file in the state directory when no keyring works."""
        kr = self._backend()
        if kr is not None:
            try:
                with _keyring_change(kr):
                    kr.set_password(self.SERVICE, user, value)
                return "keyring"
            except Exception:  # noqa: BLE001 - any keyring trouble means: use the file
                pass
        from checks.change.statedir import secrets_dir

        d = secrets_dir()
        ensure_dir(os.path.dirname(d), parents=True)
        ensure_private_dir(d)
        path = os.path.join(d, "".join(c if c.isalnum() or c in ".-_" else "_" for c in user) + ".txt")
        write_private(path, value.encode("utf-8") + b"\n")
        return path

    def get(self, txn: str, where: str) -> dict[str, str]:
        if where == "keyring":
            # Only read: a rollback must not write the keyring (no probe here).
            try:
                import keyring

                kr = keyring.get_keyring()
                raw = kr.get_password(self.SERVICE, self._user(txn))
                if raw is None:
                    raw = kr.get_password(self.SERVICE, self._legacy_user(txn))
            except Exception:  # noqa: BLE001 - a broken or locked keyring
                raw = None
            if raw is None:
                raise LookupError("the secrets of this transaction are no longer in the keyring")
            data = json.loads(raw)
        else:
            from checks.change.statedir import secrets_dir

            # Only the two places the engine writes, for this very transaction; the
            # recorded directory may be gone with a moved installation (older releases).
            if os.path.basename(where) != f"{txn}.json" or os.path.basename(os.path.dirname(where)) != "secrets":
                raise ValueError(f"secrets file {where} is not where dester-harden keeps them")
            blob: bytes | None = None
            for d in (secrets_dir(), os.path.join(self.root, "secrets")):
                blob = read_checked(os.path.join(d, f"{txn}.json"))
                if blob is not None:
                    break
            if blob is None:
                raise FileNotFoundError(2, "No such file or directory", where)
            data = json.loads(blob)
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError("malformed secrets")
        return data


# -- transactions ------------------------------------------------------------


@dataclass
class Txn:
    """A journaled transaction as stored on disk."""

    id: str
    dir: str
    intent: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str | None:
        raw = read_checked(os.path.join(self.dir, "state"))
        return raw.decode("ascii", "replace").strip() or None if raw is not None else None

    def set_state(self, state: str) -> None:
        """Record the state; over an existing state file in place, so committing needs no new disk block."""
        path = os.path.join(self.dir, "state")
        data = state.encode("ascii").ljust(STATE_SIZE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            write_private(path, data)
            return
        try:
            # One pwrite of a few bytes inside the file's first block: all or nothing.
            size = os.fstat(fd).st_size
            data = state.encode("ascii").ljust(size)  # an older release's 16-byte file too, when it fits
            if size >= len(state) and os.pwrite(fd, data, 0) == len(data):
                os.fsync(fd)
                return
        finally:
            os.close(fd)
        write_private(path, data)

    @property
    def undone_by(self) -> str | None:
        raw = read_checked(os.path.join(self.dir, "undone-by"))
        return raw.decode("ascii", "replace").strip() or None if raw is not None else None

    def blob(self, name: str) -> bytes:
        data = read_checked(os.path.join(self.dir, name), missing_ok=False)
        assert data is not None
        return data

    def blob_or_none(self, name: str) -> bytes | None:
        """A file of the transaction (checked like the rest of the journal), None when absent."""
        return read_checked(os.path.join(self.dir, name))


@dataclass(frozen=True)
class TxnSummary:
    """A transaction as the history shows it (both faces format it their own way)."""

    id: str
    when: _dt.datetime | None
    """When it was made, in local time (from its id)."""
    kind: str
    state: str
    """applied, rolled-back, resolved, prepared or incomplete (as stored)."""
    undone_by: str | None
    checks: list[str]
    undoes: str | None
    files: list[str]
    """Paths of changed files and modes, relative to the install root where inside it."""
    media: list[str]
    """Roots of media trees."""
    actions: list[Action] = field(default_factory=list)
    """The programs the transaction ran (argv masked), with exit codes and times."""
    deadline: float | None = None
    """For an ``applied-tentative`` one: when it is rolled back unless confirmed (seconds since the epoch)."""

    @property
    def undoable(self) -> bool:
        return self.state == "applied" and not self.undone_by and self.kind != "undo"


def summarize(txn: Txn, install_root: str) -> TxnSummary:
    def display(path: str) -> str:
        rel = os.path.relpath(path, install_root)
        return path if rel.startswith("..") else rel

    intent = txn.intent
    try:
        when = _dt.datetime.strptime(txn.id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=_dt.UTC).astimezone()
    except ValueError:
        when = None
    try:
        from checks.change.executor import ACTIONS, read_actions
        from checks.change.handlers import for_entry

        files: set[str] = set()
        media: list[str] = []
        for e in intent.get("entries", []):
            handler = for_entry(e.get("type")) if isinstance(e, dict) else None
            if handler is not None:
                f, m = handler.history(e)
                files.update(display(str(p)) for p in f)
                media += [display(str(p)) for p in m]
        deadline = intent.get("deadline")
        return TxnSummary(
            txn.id, when, str(intent.get("kind", "?")), txn.state or "incomplete", txn.undone_by,
            [str(c) for c in intent.get("checks", [])], intent.get("undoes"), sorted(files), media,
            read_actions(txn.blob_or_none(ACTIONS)), float(deadline) if isinstance(deadline, (int, float)) else None)
    except (AttributeError, KeyError, TypeError, ValueError):
        # Only shown, never acted on (the engine validates before it acts): say it is malformed.
        return TxnSummary(txn.id, when, "?", "malformed", txn.undone_by, [], None, [], [])


def history(install_root: str) -> list[TxnSummary]:
    """Every transaction of the installation, oldest first."""
    return [summarize(t, install_root) for t in list_txns(install_root)]


def txn_root(install_root: str) -> str:
    return os.path.join(journal_dir(install_root), "txn")


def list_txns(install_root: str) -> list[Txn]:
    """The transactions of the installation, oldest first, after checking the whole journal.

    Raises :class:`checks.change.trust.UntrustedJournal` when any level of it fails the checks.
    """
    journal = journal_dir(install_root)
    if not verify_journal(journal):
        return []
    root = os.path.join(journal, "txn")
    try:
        names = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        d = os.path.join(root, name)
        if not os.path.isdir(d) or name.endswith(".tmp"):
            continue
        txn = Txn(name, d)
        created = 0
        try:
            raw = read_checked(os.path.join(d, "intent.json"))
            txn.intent = json.loads(raw) if raw is not None else {}
            if not isinstance(txn.intent, dict):
                txn.intent = {"invalid": True}
            created = os.stat(os.path.join(d, "intent.json")).st_mtime_ns if raw is not None else 0
        except (ValueError, UnicodeDecodeError):
            txn.intent = {"invalid": True}
        out.append((name[:15], created, name, txn))
    # Oldest first. Ids start with the second they were made in; within one
    # second the random part says nothing, the intent's write time does.
    out.sort(key=lambda item: item[:3])
    return [item[3] for item in out]
