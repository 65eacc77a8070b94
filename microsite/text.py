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


# Letters that are a base letter with a stroke, or two letters in one, which Unicode does
# not decompose: without these "lukasz" would never find "Łukasz". Lower case only, as
# search_key looks them up after folding capitals.
_UNDECOMPOSED = str.maketrans(
    {
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "ŧ": "t",
        "\N{LATIN SMALL LETTER DOTLESS I}": "i",
        "ǥ": "g",
        "ƶ": "z",
        "þ": "th",
        "æ": "ae",
        "œ": "oe",
        # Catalan writes the double l as l·l; Unicode's ŀ decomposes to l and this dot.
        "·": "",
        # Phones type O'Neill with a curly apostrophe, computers mostly with a straight one.
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{MODIFIER LETTER APOSTROPHE}": "'",
        # A double name is written with a hyphen or a space: "jean pierre" finds Jean-Pierre.
        "-": " ",
        "\N{HYPHEN}": " ",
        "\N{NON-BREAKING HYPHEN}": " ",
    }
)


def search_key(value: str | None) -> str | None:
    """A name as staff search for it, and as it is kept to be searched: without capitals,
    accents or other marks on its letters, so "novak" finds "Jan Novák", "muller" finds
    "Müller", "lukasz" finds "Łukasz", and "Zoë" finds "Zoe" as well as "Zoë".

    Made the same way for what is stored and for what is typed, so either side may carry the
    accents. Compatibility forms are folded too (a full-width A is "a", the ligature ﬁ is "fi"),
    as are runs of spaces. Marks written as letters of their own, as the vowel signs of
    Indic scripts are, stay: only marks that sit on a letter (any with a combining class)
    go. ß is ss, as casefold() makes it.
    """
    if value is None:
        return None
    # Decomposed before and after folding capitals: casefold() may give a letter that
    # decomposes further ("İ" gives i and a dot above), and NFKD may give a capital
    # (the black-letter H of mathematics gives H).
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", value).casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.translate(_UNDECOMPOSED).split())
