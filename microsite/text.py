"""Text as people type it, made safe to store: no control or invisible formatting characters.

PostgreSQL refuses NUL outright, and no one types a zero-width space or a direction override
on purpose; they only make two strings that look the same compare different.
"""

from __future__ import annotations

import unicodedata

# Invisible characters real text needs: the joiners of Persian, Indic and emoji sequences.
_JOINERS = {"\u200c", "\u200d"}
# Direction overrides and isolates: they reorder how the text around them is shown.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _kept_format_character(ch: str) -> bool:
    # Tag characters spell out subdivision flags (Scotland, Wales) after a black flag.
    return ch in _JOINERS or 0xE0020 <= ord(ch) <= 0xE007F


def one_line(value: str | None) -> str | None:
    """Text from a single-line box.

    Line breaks and tabs become spaces; NUL and the like, and invisible marks such as
    zero-width spaces or direction overrides, go.
    """
    if not isinstance(value, str):
        return value
    kept = []
    for ch in value:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f":
            kept.append(" ")
        elif category == "Cc" or (category == "Cf" and not _kept_format_character(ch)):
            continue
        else:
            kept.append(ch)
    return "".join(kept)


def multi_line(value: str | None) -> str | None:
    """Text from a text area: line breaks as one character each, no control characters.

    Browsers count a line break as one character against maxlength but send it as CR LF,
    so without this a text that fitted in the box would be refused as too long. Other
    invisible marks are kept (a long text may need them), but not direction overrides.
    """
    if not isinstance(value, str):
        return value
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        ch
        for ch in value
        if ch in "\n\t" or (unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS)
    )
