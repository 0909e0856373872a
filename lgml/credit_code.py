"""Unified social credit codes (统一社会信用代码, GB 32100-2015): normalise and verify.

A code has 18 characters from :data:`ALPHABET` (digits and upper-case letters without
I, O, S, V, Z): registration authority (1), organisation type (1), administrative region (6),
organisation code (9) and a check character computed from the first 17.

Example:
    >>> code = with_check("91320500MA1M87775")
    >>> code, is_valid(code), is_valid(" ９１３２０５００ma1m877758 ")
    ('91320500MA1M877758', True, True)
    >>> is_valid(code[:-1] + "0")
    False
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18
RULE = "must be an 18-character unified social credit code with a valid check character (GB 32100-2015)"

_VALUE = np.full(256, -1, dtype=np.int64)
_VALUE[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))


def normalise(code: object) -> str:
    """``code`` as compared: full-width characters made half-width, stripped, upper case."""
    return unicodedata.normalize("NFKC", str(code)).strip().upper()


def check_char(first17: str) -> str:
    """The check character of the first 17 characters of a code.

    Raises:
        ValueError: ``first17`` is not 17 characters of :data:`ALPHABET`.
    """
    if len(first17) != LENGTH - 1 or any(c not in ALPHABET for c in first17):
        raise ValueError(f"need 17 characters of {ALPHABET}, got {first17!r}")
    total = sum(ALPHABET.index(c) * w for c, w in zip(first17, WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


def with_check(first17: str) -> str:
    """The full code: ``first17`` and its check character."""
    return first17 + check_char(first17)


def is_valid(code: object) -> bool:
    """Whether ``code`` (normalised first) is a well-formed code with the right check character."""
    text = normalise(code)
    if len(text) != LENGTH or any(c not in ALPHABET for c in text):
        return False
    return check_char(text[:-1]) == text[-1]


def valid_mask(codes: pd.Series) -> np.ndarray:
    """Vectorised :func:`is_valid` of already normalised codes; missing values count as valid.

    Args:
        codes: Text, shape (n,).

    Returns:
        Boolean array of shape (n,).
    """
    ok = np.ones(len(codes), dtype=bool)
    given = codes.notna().to_numpy()
    text = codes[given].astype(str)
    shaped = text.str.fullmatch(f"[{ALPHABET}]{{{LENGTH}}}").to_numpy(dtype=bool)
    if shaped.any():
        raw = np.frombuffer("".join(text[shaped]).encode("ascii"), dtype=np.uint8).reshape(-1, LENGTH)
        values = _VALUE[raw]
        check = (31 - (values[:, :-1] @ np.array(WEIGHTS)) % 31) % 31
        good = shaped.copy()
        good[shaped] = check == values[:, -1]
        shaped = good
    ok[given] = shaped
    return ok
