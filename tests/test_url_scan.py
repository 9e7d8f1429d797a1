"""The URL-password scan: linear, and finding exactly what the original scan found.

``_reference_span`` is the original (quadratic) scan, kept verbatim as the
oracle: on random inputs built from the characters that matter to it, the new
scan must return the same span, and url_parts the same pieces.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from checks.audit.rules.sec import needs_encoding
from checks.audit.run import run_audit
from checks.core.secrets import url_parts, url_password_span
from checks.install.discovery import discover

from .conftest import FIXED_NOW

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_HOSTLIKE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-$]+|\$\{[^}]*\})(:[0-9${}A-Za-z_:\-]*)?(?=[/?#\s\"',;)]|$)")


def _reference_colon(userinfo: str) -> int:
    depth = 0
    for i, ch in enumerate(userinfo):
        if userinfo.startswith("${", i):
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif ch == ":" and depth == 0:
            return i
    return -1


def _reference_span(text: str):
    for m in _SCHEME.finditer(text):
        start = m.end()
        end_token = len(text)
        for stop in (" ", "\t", "\"", "'", "\n", "\r"):
            k = text.find(stop, start)
            if k >= 0:
                end_token = min(end_token, k)
        chunk = text[start:end_token]
        at = -1
        for i in range(len(chunk) - 1, -1, -1):
            if chunk[i] == "@" and _HOSTLIKE.match(chunk, i + 1):
                at = i
                break
        if at < 0:
            continue
        colon = _reference_colon(chunk[:at])
        if colon < 0:
            continue
        return start + colon + 1, start + at
    return None


def _reference_parts(text: str):
    span = _reference_span(text)
    if span is None:
        return None
    schemes = list(_SCHEME.finditer(text[: span[0]]))
    m = schemes[-1] if schemes else None  # the last scheme before the password
    user_start = m.end() if m else 0
    return text[user_start: span[0] - 1], text[span[0]: span[1]], text[span[1] + 1:]


def _reference_needs_encoding(password: str) -> bool:
    i = 0
    while i < len(password):
        ch = password[i]
        if ch == "%" and re.fullmatch(r"%[0-9A-Fa-f]{2}", password[i:i + 3]):
            i += 3
            continue
        if not re.fullmatch(r"[A-Za-z0-9\-._~]", ch):
            return True
        i += 1
    return False


#: The characters the scan treats specially, plus a few ordinary ones; pieces
#: like "://" and "${" make URLs and references likely rather than rare.
ALPHABET = list("ab1+.-_:/@${}[]%?#;,)\"' \t\n\r\f\u00a0xé")
PIECES = ["://", "${", "}", "@", "pg://", "u:p@", "${A:-x}", "[::1]", ":5432", "@h", "a"]
TEXTS = st.lists(st.one_of(st.sampled_from(ALPHABET), st.sampled_from(PIECES)), max_size=40).map("".join)


@settings(max_examples=3000, deadline=None, database=None)
@given(text=TEXTS)
@example(text="a://${a://${a://x}}}:p@h")
@example(text="a://${b://}:p@h")
@example(text="a://u@${@${}:1@h")
@example(text="x://${a://${b://c}@h ")
@example(text="1a://u:p@[::1]:5432/db")
@example(text="pg://u:p@h@${x")
def test_the_scan_finds_what_the_reference_scan_finds(text):
    assert url_password_span(text) == _reference_span(text)
    assert url_parts(text) == _reference_parts(text)


@settings(max_examples=1000, deadline=None, database=None)
@given(text=st.text(alphabet="aZ09-._~%fF:/@+ é", max_size=30))
def test_needs_encoding_agrees_with_the_reference(text):
    assert needs_encoding(text) == _reference_needs_encoding(text)


def test_long_values_give_the_same_spans_as_the_reference():
    # Big enough to matter, small enough for the quadratic reference to finish.
    for text in ("postgresql://u:" + "p@" * 2000 + "h/db", "a" * 5000 + "://u:p@h",
                 "a://" * 1500 + "u:p@h", "a://${" * 800 + "}" * 800 + ":p@h",
                 "pg://u:p@" + "${@" * 1500 + "x", "pg://u:" + "x@" * 1000 + "${" + "}" * 10 + ":1 tail"):
        assert url_password_span(text) == _reference_span(text), text[:40]
        assert url_parts(text) == _reference_parts(text)


def test_an_install_with_a_2_mb_value_audits(tmp_path):
    """Values this long used to make the audit hang for minutes (the benchmark shows the speed)."""
    root = tmp_path / "install"
    host = tmp_path / "host"
    root.mkdir()
    host.mkdir()
    big = "a" * (2 * 1024 * 1024)
    url = "postgresql://dester:" + "p@ss/" * 200_000 + "word@postgres:5432/desterlib"
    (root / "docker-compose.yml").write_text(
        "services:\n  api:\n    image: desterlib/api:1\n    environment:\n"
        f"      NOTE: {big}\n      DATABASE_URL: \"{url}\"\n")
    inst = discover(str(root), host_root=str(host), now=FIXED_NOW)
    report = run_audit(inst, "local")
    by_id = {f.id: f for f in report.findings}
    assert by_id["SEC-004"].status == "fail"  # the unencoded password in the 1 MB URL was read
    parts = url_parts(url)
    assert parts is not None and parts[1] == "p@ss/" * 200_000 + "word"
    assert url_password_span(big) is None
