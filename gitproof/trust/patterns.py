"""OpenSSH's name patterns (``match_pattern``, ``match_pattern_list``), as allowed_signers
principals and namespaces use them, and as the policy's ``signers`` lists do."""
from __future__ import annotations

_PATTERN_MAX = 1023  # OpenSSH gives up (no match) on a longer sub-pattern


def match_pattern(value: str, pattern: str) -> bool:
    """OpenSSH match_pattern: `*` and `?` wildcards, case-sensitive, on the raw bytes.

    Text read from files keeps bytes that are not UTF-8 as surrogate escapes; they are
    matched as those same bytes, as ssh-keygen matches them."""
    s, p = value.encode("utf-8", "surrogateescape"), pattern.encode("utf-8", "surrogateescape")
    si = pi = 0
    star, mark = -1, 0
    while si < len(s):
        if pi < len(p) and p[pi] != 0x2A and (p[pi] == 0x3F or p[pi] == s[si]):
            si, pi = si + 1, pi + 1
        elif pi < len(p) and p[pi] == 0x2A:
            star, mark, pi = pi, si, pi + 1
        elif star >= 0:
            mark += 1
            si, pi = mark, star + 1
        else:
            return False
    while pi < len(p) and p[pi] == 0x2A:
        pi += 1
    return pi == len(p)


def match_pattern_list(value: str, patterns: str) -> bool:
    """OpenSSH match_pattern_list: comma-separated patterns, `!` negation wins over any match."""
    raw = patterns.encode("utf-8", "surrogateescape")
    got_positive, i = False, 0
    while i < len(raw):
        negated = raw[i:i + 1] == b"!"
        i += negated
        end = raw.find(b",", i)
        end = len(raw) if end < 0 else end
        sub = raw[i:end]
        i = end + 1
        if len(sub) >= _PATTERN_MAX:
            return False
        if match_pattern(value, sub.decode("utf-8", "surrogateescape")):
            if negated:
                return False
            got_positive = True
    return got_positive
