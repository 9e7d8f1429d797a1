"""Recognising secrets, and keeping them out of every line we print.

Two layers: structural masking (a password position in a URL, the value of a
credential-shaped key, a ``--requirepass`` argument, a secret-named query
parameter, a ``Bearer`` token) and a safety net that replaces every secret value
found during discovery wherever it appears, in every form it may be written in
(escaped inside quotes, percent-encoded, JSON-escaped, each line of a
multi-line value). Common default passwords (``postgres``) are masked
structurally only, so ``postgres:••••@postgres`` stays readable; short secrets
(a 2-character password) are masked only where they stand as a whole word, so
``x7`` is masked in ``-a x7`` but not inside ``0x7f`` (short numbers only
structurally: as words they are every count and port in the report).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from checks.core.interpolate import is_reference

MASK = "••••"

_CRED_SUBSTRINGS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY", "API_KEY", "ACCESSKEY", "ACCESS_KEY",
                    "PRIVATEKEY", "PRIVATE_KEY", "CREDENTIAL", "PASSPHRASE", "ENCRYPTIONKEY", "ENCRYPTION_KEY",
                    "AUTHKEY", "AUTH_KEY", "SIGNINGKEY", "SIGNING_KEY", "MASTERKEY", "MASTER_KEY", "SALT",
                    "REQUIREPASS")
_CRED_TOKENS = {"PASS", "PWD", "PW", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PSK", "KEY"}
_STRICT_TOKENS = {"PASS", "PWD", "PW", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PSK"}
#: Keys whose value names a file or a flag, not the secret itself.
_NOT_SECRET_SUFFIX = ("_FILE", "_PATH", "_DIR", "_URL_FILE")
_FLAG_KEYS = re.compile(r"ALLOW_EMPTY_PASSWORD|RANDOM_ROOT_PASSWORD|PASSWORD_FILE|_ENABLED$|^ENABLE_|^USE_|^DISABLE_")
#: Quantity words: ``JWT_EXPIRES_IN: 7d`` configures a token, it is not one.
_KNOB_SUBSTRINGS = ("EXPIRE", "EXPIRY", "EXPIRATION", "EXPIRES", "TTL", "MINUTE", "SECOND", "HOUR", "DAYS",
                    "MAX", "MIN", "LIMIT", "LENGTH", "SIZE", "RETENTION", "INTERVAL", "ROTATION",
                    "REQUIREMENT", "BONUS", "CHARACTER", "CHAR", "COUNT", "TIMEOUT", "LIFETIME", "VALIDITY",
                    "THREAD", "TOKENS", "RATE", "DURATION", "AGE", "PREFIX")
_KNOB_TOKENS = {"PORT", "IN", "NUM", "LEN", "DAY", "TYPE", "HEADER", "NAME", "USER", "USERNAME", "HOST", "ALGORITHM"}
_QUANTITY = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|m|h|d|w|y|sec|secs|min|mins|hours?|days?|weeks?)?\s*$", re.I)
_BOOLEAN = {"true", "false", "yes", "no", "on", "off", "y", "n", "0", "1"}

#: A URL scheme is ``[A-Za-z][A-Za-z0-9+.-]*://``; tried at every position, that
#: pattern reads a long run of letters to its end each time (quadratic). _schemes
#: finds each ``://`` instead and reads the run before it once, backwards.
_SCHEME_RUN = re.compile(r"[A-Za-z0-9+.\-]*")
_NOT_LETTERS = re.compile(r"[0-9+.\-]*")
_TOKEN_STOP = re.compile(r"[ \t\"'\n\r]")
#: What may follow the ``@`` of the userinfo, as the pieces of one pattern:
#: host (``[v6]``, a name, ``${VAR}``), an optional ``:port`` and then one of
#: _AFTER_HOST or the end. The pieces' character sets are disjoint from _AFTER_HOST,
#: so each run is only ever taken whole and no backtracking is needed.
_HOST_V6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_HOST_NAME = re.compile(r"[A-Za-z0-9_.\-$]+")
_PORT = re.compile(r":[0-9${}A-Za-z_:\-]*")
_AFTER_HOST = re.compile(r"[/?#\s\"',;)]")
_COLON_EVENTS = re.compile(r"\$\{|\}|:")

#: Values so common that masking every occurrence would garble the report
#: (``postgres`` is also the image, the service and the user). They are still
#: masked wherever they appear in a password position.
_COMMON_VALUES = {"postgres", "password", "desterlib", "changeme", "admin", "root", "secret", "redis", "mysql",
                  "mongo", "example", "dester", "test", "default", "true", "false", "production", "development"}


def _tokens(key: str) -> list[str]:
    return [t for t in re.split(r"[^A-Z0-9]+", key.upper()) if t]


def is_secret_key(key: str) -> bool:
    """Whether a variable name looks like it holds a credential (liberal: for masking)."""
    up = key.upper()
    if up.endswith(_NOT_SECRET_SUFFIX):
        return False
    if any(s in up for s in _CRED_SUBSTRINGS):
        return True
    return any(t in _CRED_TOKENS for t in _tokens(up))


def is_credential_key(key: str) -> bool:
    """Whether a variable name is credential-shaped (strict: SEC-003 reports these)."""
    up = key.upper()
    if up.endswith(_NOT_SECRET_SUFFIX) or _FLAG_KEYS.search(up):
        return False
    if any(s in up for s in _CRED_SUBSTRINGS if s not in ("SALT", "REQUIREPASS")):
        return True
    if "SALT" in _tokens(up):
        return True
    return any(t in _STRICT_TOKENS for t in _tokens(up))


def is_knob_key(key: str) -> bool:
    """Whether a credential-shaped name configures a quantity (``TOKEN_TTL``)."""
    up = key.upper()
    toks = _tokens(up)
    return any(t in _KNOB_TOKENS for t in toks) or any(s in up for s in _KNOB_SUBSTRINGS)


def is_quantity(value: str) -> bool:
    return bool(_QUANTITY.match(value))


def is_flag_value(value: str) -> bool:
    return value.strip().lower() in _BOOLEAN


def url_password_span(text: str) -> tuple[int, int] | None:
    """The span of the password in the first ``scheme://user:password@host`` in ``text``.

    Robust to unencoded ``/``, ``+`` and ``@`` in the password: the userinfo ends
    at the last ``@`` that is followed by something host-like.

    Linear in ``len(text)``: every URL of one whitespace-delimited token shares
    that token's last host-like ``@``, so the token is searched once, and the
    user:password colon of later URLs in it comes from one sweep (_ColonSweep).
    """
    stop_at = -1  # the first stop character at or after the last search's start
    token_end, last_at = -1, -1
    sweep: _ColonSweep | None = None
    for _, start in _schemes(text):
        if start > stop_at:
            s = _TOKEN_STOP.search(text, start)
            stop_at = s.start() if s else len(text)
        if stop_at != token_end:
            token_end, sweep = stop_at, None
            last_at = _last_host_at(text, start, token_end)
        if last_at < start:
            continue  # the token's last host-like @ is before this URL: none after it either
        if sweep is None:
            colon = _top_level_colon(text, start, last_at)
            if colon >= 0:
                return colon + 1, last_at
            sweep = _ColonSweep(text, start, last_at)
            continue
        colon = sweep.first(start)
        if colon >= 0:
            return colon + 1, last_at
    return None


def _schemes(text: str, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, end) of every ``scheme://`` in ``text[:end]``, as ``re.finditer`` of the
    scheme pattern finds them (leftmost first, not overlapping), in linear time."""
    end = len(text) if end is None else end
    q = text.find("://", 0, end)
    rev = text[::-1] if q >= 0 else ""  # the run before "://" is read backwards, as a prefix of rev
    while q >= 0:
        # A run of scheme characters ends at q (":" is not one); a match starts at its first letter.
        k = len(text) - q
        m_run = _SCHEME_RUN.match(rev, k)
        assert m_run is not None  # a * run always matches
        run = m_run.end() - k
        m_first = _NOT_LETTERS.match(text, q - run, q)
        assert m_first is not None
        first = m_first.end()
        if first < q:
            yield first, q + 3
            q = text.find("://", q + 3, end)
        else:
            q = text.find("://", q + 1, end)


def _hostlike(text: str, j: int, end: int, brace: int, tails: dict[int, bool]) -> bool:
    """Whether ``text[j:end]`` starts with a host, an optional port and then a
    delimiter or ``end`` (``brace``: the first ``}`` at or after ``j + 2``, or -1)."""
    ends = []
    for pat in (_HOST_V6, _HOST_NAME):
        m = pat.match(text, j, end)
        if m:
            ends.append(m.end())
    if brace >= 0 and text.startswith("${", j) and j + 2 <= end:
        ends.append(brace + 1)
    for e in ends:
        ok = tails.get(e)
        if ok is None:
            ok = e == end or bool(_AFTER_HOST.match(text, e, end))
            if not ok and text.startswith(":", e):
                m_port = _PORT.match(text, e, end)
                assert m_port is not None  # a * run always matches
                p = m_port.end()
                ok = p == end or bool(_AFTER_HOST.match(text, p, end))
            tails[e] = ok
        if ok:
            return True
    return False


def _last_host_at(text: str, lo: int, end: int) -> int:
    """The last ``@`` in ``text[lo:end]`` followed by something host-like, or -1."""
    # The first "}" at or after brace_from (-1: none before end); searched
    # right to left, so each stretch of text is searched for "}" once.
    brace_from, brace = end, -1
    tails: dict[int, bool] = {}  # one ${...} can end after many @: its port is read once
    i = text.rfind("@", lo, end)
    while i >= 0:
        j = i + 1
        if j + 2 < brace_from:
            k = text.find("}", j + 2, brace_from)
            brace_from, brace = j + 2, (k if k >= 0 else brace)
        if _hostlike(text, j, end, brace if j + 2 <= end else -1, tails):
            return i
        i = text.rfind("@", lo, i)
    return -1


def _top_level_colon(text: str, start: int = 0, end: int | None = None) -> int:
    """The ``user:password`` colon in ``text[start:end]``, skipping colons inside ``${VAR:-x}``."""
    end = len(text) if end is None else end
    if text.find("${", start, end) < 0:
        return text.find(":", start, end)
    depth = 0
    for m in _COLON_EVENTS.finditer(text, start, end):
        tok = m.group()
        if tok == "${":
            depth += 1
        elif tok == "}":
            depth = depth - 1 if depth else 0
        elif depth == 0:
            return m.start()
    return -1


class _ColonSweep:
    """_top_level_colon(text, s, end) for every s >= start, from one pass.

    With P the running count of ``${`` minus ``}``, the depth at i seen from s
    is P(i) - min P over [s, i] (a ``}`` at depth 0 changes nothing), so a colon
    at i is top-level from s when no position in [s, i) has a lower P. Swept
    right to left with a stack of such colons, every s gets its answer.
    """

    def __init__(self, text: str, start: int, end: int) -> None:
        events = [(m.start(), m.group()) for m in _COLON_EVENTS.finditer(text, start, end)]
        level, before = 0, []
        for _, tok in events:
            before.append(level)
            level += 1 if tok == "${" else -1 if tok == "}" else 0
        self.positions = [pos for pos, _ in events]
        self.answers = [-1] * len(events)
        stack: list[tuple[int, int]] = []  # (position, P) of colons, nearest on top
        for k in range(len(events) - 1, -1, -1):
            while stack and stack[-1][1] > before[k]:
                stack.pop()
            if events[k][1] == ":":
                stack.append((events[k][0], before[k]))
            self.answers[k] = stack[-1][0] if stack else -1

    def first(self, s: int) -> int:
        """The top-level colon seen from ``s`` (no event between two events changes it)."""
        import bisect

        k = bisect.bisect_left(self.positions, s)
        return self.answers[k] if k < len(self.answers) else -1


def url_parts(text: str) -> tuple[str, str, str] | None:
    """(user, password, rest after the ``@``) of the first URL with a password, as written."""
    span = url_password_span(text)
    if span is None:
        return None
    user_start = 0
    for _, user_start in _schemes(text, span[0]):  # noqa: B007  (the last scheme's user part is the one)
        pass
    return text[user_start: span[0] - 1], text[span[0]: span[1]], text[span[1] + 1:]


def url_userinfo(text: str) -> tuple[str, str] | None:
    """(user, password) of the first URL with a password in it, as written."""
    parts = url_parts(text)
    return None if parts is None else (parts[0], parts[1])


_KV = re.compile(
    r"""^(?P<pre>\s*(?:-\s*)?(?:export\s+)?["']?)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>["']?\s*[:=]\s*)(?P<val>.*)$""")
_REQUIREPASS = re.compile(
    r"(?P<pre>--requirepass[\"',]?\s+[\"']?|^\s*requirepass\s+[\"']?)(?P<pw>[^\s\"',\]]+)", re.I | re.M)


#: Below this length a value is masked only as a whole word: replacing every
#: occurrence of ``x7`` would garble hashes, ports and words in the report.
SHORT_SECRET = 6
#: A query parameter whose value is a credential whatever the key above it is named.
_QUERY = re.compile(r"(?P<pre>[?&;](?P<name>[A-Za-z][A-Za-z0-9_.\-]*)=)(?P<val>[^&#\s\"'<>]+)")
_QUERY_NAMES = {"SIG", "SIGNATURE", "AUTH", "KEY"}
#: An HTTP authorization header value: ``Bearer TOKEN``, ``Basic BASE64``.
_BEARER = re.compile(r"(?P<pre>\b(?:[Bb]earer|BEARER|Basic)\s+)(?P<val>[A-Za-z0-9._~+/\-]{8,}=*)")
#: What tells a token from prose ("Bearer tokens", "Basic Authentication"): a
#: digit or punctuation, or a capital letter after the first character.
_TOKENISH = re.compile(r"[0-9._~+/\-=]|.[A-Z]")
#: A block (``|``) or folded (``>``) scalar header: its lines follow, each masked by value.
_BLOCK_HEADER = re.compile(r"^[|>][0-9+\-]*\s*(#.*)?$")
#: A PEM armour line: what a multi-line secret is, not the secret.
_ARMOUR = re.compile(r"^-----(BEGIN|END) [A-Z0-9 ]+-----$")
#: Word boundaries for short secrets: whitespace, quotes, brackets, ``=`` and ``,``.
_WORD_BEFORE = r"(?<![^\s\"'=,\[(])"
_WORD_AFTER = r"(?![^\s\"',\])])"


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter's value is a credential (``token``, ``access_token``, ``api_key``)."""
    return is_secret_key(name) or any(t in _QUERY_NAMES for t in _tokens(name))


def structural_values(text: str) -> list[str]:
    """Secret values whose position gives them away: secret query parameters, Bearer/Basic tokens."""
    found = [m.group("val") for m in _QUERY.finditer(text) if is_secret_param(m.group("name"))]
    found += [m.group("val") for m in _BEARER.finditer(text) if _TOKENISH.search(m.group("val"))]
    return [v for v in found if not is_reference(v)]


def written_forms(secret: str) -> set[str]:
    """``secret`` as it may appear in a file or in our own output.

    Escaped inside YAML or dotenv double quotes (``\\"``, ``\\n``), inside single
    quotes (``''``, dotenv's ``\\'``), percent-encoded, JSON-escaped (the JSON and
    SARIF reports are masked after encoding).
    """
    import json
    from urllib.parse import quote

    forms = {secret}
    dq = secret.replace("\\", "\\\\").replace('"', '\\"')
    forms.add(dq)
    for ch, esc in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        dq = dq.replace(ch, esc)
    forms.add(dq)
    forms.add(secret.replace("'", "''"))
    forms.add(secret.replace("\\", "\\\\").replace("'", "\\'"))
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    forms.add(json.dumps(secret)[1:-1])
    for safe in ("", "/"):
        enc = quote(secret, safe=safe)
        forms.add(enc)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), enc))
    return {f for f in forms if f}


class Masker:
    """Masks secrets in text that is about to be shown."""

    def __init__(self, secrets: Iterable[str] = (), mask: str = MASK) -> None:
        self.mask = mask
        secrets = [s for s in secrets if s and s.strip()]
        distinct = {f for s in secrets if s.lower() not in _COMMON_VALUES for f in written_forms(s)}
        # Each line of a multi-line secret (a PEM private key) on its own: a diff shows one line at a
        # time. The armour lines (``-----BEGIN PRIVATE KEY-----``) say what the file is and stay readable.
        distinct |= {p for s in secrets if "\n" in s for line in s.splitlines()
                     if len(p := line.strip()) >= 3 and not _ARMOUR.match(p) and not _BLOCK_HEADER.match(p)}
        distinct = {s for s in distinct if s.lower() not in _COMMON_VALUES}
        # Longest first, so a secret containing another is replaced whole.
        self.values = sorted((s for s in distinct if len(s) >= SHORT_SECRET), key=len, reverse=True)
        # A short number (a 4-digit PIN) is masked structurally only: as a word it
        # is every count, port and line number of the report.
        short = sorted((s for s in distinct if len(s) < SHORT_SECRET and not s.isdigit()), key=lambda s: (-len(s), s))
        self._short = (re.compile(_WORD_BEFORE + "(?:" + "|".join(re.escape(s) for s in short) + ")" + _WORD_AFTER)
                       if short else None)

    def line(self, text: str) -> str:
        """Mask one line of configuration structurally, then by value."""
        m = _KV.match(text)
        if m and is_secret_key(m.group("key")):
            val = m.group("val")
            if val.strip() and not val.strip().startswith("#"):
                text = m.group("pre") + m.group("key") + m.group("sep") + self._mask_value(val)
        text = _REQUIREPASS.sub(
            lambda m: m.group("pre") + (m.group("pw") if is_reference(m.group("pw")) else self.mask), text)
        return self.text(text)

    def _mask_value(self, val: str) -> str:
        stripped = val.strip()
        comment = ""
        if _BLOCK_HEADER.match(stripped):
            return val  # `KEY: |`: the value is on the lines below, masked by value
        quote = stripped[:1] if stripped[:1] in "\"'" else ""
        if quote:
            close = closing_quote(stripped, quote)
            if close < 0:  # the value goes on past this line: mask all of it
                return quote + self.mask
            rest = stripped[close + 1:]
            return (quote + self.mask + quote + rest) if not is_reference(stripped[1:close]) else val
        if " #" in val:
            val, comment = val.split(" #", 1)
            comment = " #" + comment
        if is_reference(val.strip()):
            return val + comment
        return self.mask + comment

    def text(self, text: str) -> str:
        """Mask URL passwords, requirepass arguments and known secret values anywhere."""
        for _ in range(8):  # a line rarely holds more than one URL
            span = url_password_span(text)
            if span is None or text[span[0]:span[1]] == self.mask:
                break
            if span[0] == span[1] or is_reference(text[span[0]:span[1]]):
                break  # no password, or ${VAR}: a name, not a secret
            text = text[: span[0]] + self.mask + text[span[1]:]
        text = _QUERY.sub(lambda m: m.group("pre") + self.mask if is_secret_param(m.group("name"))
                          and not is_reference(m.group("val")) else m.group(0), text)
        text = _BEARER.sub(lambda m: m.group("pre") + self.mask if _TOKENISH.search(m.group("val"))
                           and not is_reference(m.group("val")) else m.group(0), text)
        for value in self.values:
            if value in text:
                text = text.replace(value, self.mask)
        if self._short is not None:
            text = self._short.sub(self.mask, text)
        return text


def closing_quote(text: str, quote: str) -> int:
    """The index of the quote closing ``text[0]``, or -1 when it is not on this line.

    Escapes are skipped whichever file the line comes from: ``\\"`` and ``\\'``
    (YAML double quotes, dotenv) and ``''`` (YAML single quotes). Where that is
    ambiguous (``'a\\'`` in YAML) the value is taken to run on, masking more.
    """
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if quote == "'" and text[i + 1:i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    return -1
