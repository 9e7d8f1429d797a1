"""How strong a database password is, as the password step shows it."""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

#: token_urlsafe's alphabet: A-Z a-z 0-9 - _ (64 symbols), so DATABASE_URL needs no percent-encoding.
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"
DEFAULT_PASSWORD_BYTES = 32  # 43 characters


@dataclass(frozen=True, slots=True)
class Strength:
    length: int
    alphabet: int
    bits: int
    label: str
    url_safe: bool


def password_strength(password: str, random_bytes: int | None = None) -> Strength:
    """How strong a password is.

    For a generated one (``random_bytes`` given) the entropy is exactly its
    random bytes x 8. Otherwise it is estimated as if drawn at random from the
    character classes it uses: an upper bound for a typed one, which is why
    known weak passwords are judged by the SEC-001 rules instead.
    """
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    size = sum(len(c) for c in classes if any(ch in c for ch in password))
    if any(ch in "-_" for ch in password):
        size += 2
    other = {ch for ch in password if ch not in URLSAFE_ALPHABET}
    if other:
        size += 32
    bits = int(len(password) * math.log2(size)) if size and password else 0
    if random_bytes is not None and not other:
        size, bits = len(URLSAFE_ALPHABET), 8 * random_bytes
    label = ("very strong" if bits >= 192 else "strong" if bits >= 128 else "fair" if bits >= 80 else "weak")
    return Strength(len(password), size, bits, label, not other)
