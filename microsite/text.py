"""Text as people type it, made safe to store: no control characters or misleading marks.

PostgreSQL refuses NUL outright, and no one types a zero-width space or a direction override
on purpose; they only make two strings that look the same compare different, or show text
in another order than it was typed.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

# Direction overrides, embeddings and isolates reorder how the text around them is shown:
# "Maria\u202eissoR" looks like "MariaRossi" but is not.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
# Marks that are only ever invisible and stand for nothing in any script: the zero-width
# space, the word joiner and the byte order mark (a zero-width no-break space).
_INVISIBLE_SPACES = {"\u200b", "\u2060", "\ufeff"}
# Every other invisible formatting character is kept: scripts are written with them. The
# joiners of Persian, Indic and emoji sequences, the Mongolian vowel separator, the Arabic
# letter mark, the Egyptian hieroglyph format controls, the tag characters that spell out
# the flags of Scotland and Wales.
_DROPPED_FROM_ONE_LINE = _BIDI_CONTROLS | _INVISIBLE_SPACES


def one_line(value: str | None) -> str | None:
    """Text from a single-line box.

    Line breaks and tabs become spaces; NUL and the like, zero-width spaces and direction
    overrides go.
    """
    if not isinstance(value, str):
        return value
    kept = []
    for ch in value:
        if ch in "\t\n\r\v\f":
            kept.append(" ")
        elif unicodedata.category(ch) == "Cc" or ch in _DROPPED_FROM_ONE_LINE:
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


def looks_like_an_address(value: str) -> bool:
    """An email or web address, as people type one by mistake (or to advertise) where a
    name belongs: "maria@example.org", "https://example.org", "www.example.org". Compared
    in NFKC, so a full-width at sign counts too."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    return "@" in folded or "://" in folded or any(w.startswith("www.") for w in folded.split())


def stored_email(value: str) -> str:
    """An email address in the form the site's forms store it: email_validator's normalised
    form (the domain in Unicode and lower case, "xn--bcher-kva.example" as "bücher.example";
    the local part in NFC). Text that is not an address comes back trimmed, as typed.

    What staff type to find a person must meet what that person typed into a form, however
    their mail program showed the address.
    """
    value = value.strip()
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return value
