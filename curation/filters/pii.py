"""The ``pii`` stage: email addresses, IP addresses and phone numbers replaced, and counted by type.

Emails and IPv4 addresses are found by datatrove's ``PIIFormatter`` patterns (its IPv4 validator
keeps private and loopback addresses, which identify no one, unless ``only_public_ips`` is off)
and replaced, as datatrove does, by addresses reserved for examples, so the text still reads as
text. datatrove has no IPv6 or phone rule; those are added here: IPv6 candidates are validated
by ``ipaddress`` and replaced by the documentation prefix (2001:db8::/32); phone numbers are
matched only in separated telephone layouts (``+44 20 7946 0958``, ``(212) 555-0123``,
``212-555-0123``), never bare digit runs, so amounts, dates and account codes in financial text
stay, and are replaced by numbers from the 555-01xx fiction range.

datatrove's IPv4 pattern also matches section numbers (``Section 4.2.13.1``, ``15.4.1.3.1``),
which manuals are full of: a match inside a longer dotted number is skipped, and so is one whose
four parts are all under 32 (chapter-like; the public addresses this spares, such as 8.8.8.8,
are well-known servers, not anyone's data).

The stage never rejects: every document is kept, redacted; ``metadata["pii_redactions"]`` and the
funnel's counters (``pii:email`` ...) say how many of each type were replaced.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from datatrove.data import Document
from datatrove.pipeline.formatters.pii import PIIFormatter, public_ip_validator

from curation.core.stage import Stage, Verdict

IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)")  # candidates; ipaddress decides
PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){2,3}"  # international: +44 20 7946 0958
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"  # North American: (212) 555-0123
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 212-555-0123, 212.555.0123
    r")(?![\w-])"
)
IPV6_REPLACEMENT = "2001:db8::1"
PHONE_REPLACEMENTS = ("555-0100", "555-0142", "555-0199")


def _ipv4_validator(only_public: bool) -> Callable[[str], bool]:
    def valid(candidate: str) -> bool:
        return max(int(part) for part in candidate.split(".")) >= 32 and public_ip_validator(candidate, only_public)

    return valid


def _ipv6_validator(only_public: bool) -> Callable[[str], bool]:
    def valid(candidate: str) -> bool:
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return False
        return address.is_global or not only_public

    return valid


class PIIRedaction(Stage):
    name = "pii"

    def __init__(self, emails: bool = True, ips: bool = True, phones: bool = True, only_public_ips: bool = True):
        datatrove = PIIFormatter(only_remove_public_ips=only_public_ips)
        self.rules: list[tuple[str, re.Pattern, Callable[[str], bool] | None, tuple[str, ...]]] = []
        if emails:
            self.rules.append(("email", datatrove.emails_replacer.regex, None, datatrove.emails_replacer.replacements))
        if ips:
            ipv4 = re.compile(rf"(?<![\d.])(?:{datatrove.ip_replacer.regex.pattern})(?!\.?\d)")  # not inside a longer dotted number
            self.rules.append(("ipv4", ipv4, _ipv4_validator(only_public_ips), datatrove.ip_replacer.replacements))
            self.rules.append(("ipv6", IPV6, _ipv6_validator(only_public_ips), (IPV6_REPLACEMENT,)))
        if phones:
            self.rules.append(("phone", PHONE, None, PHONE_REPLACEMENTS))

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with every match replaced, and the number of replacements per type."""
        counts: dict[str, int] = {}
        for kind, pattern, valid, replacements in self.rules:
            n = 0

            def replace(match: re.Match) -> str:
                nonlocal n
                if valid is not None and not valid(match.group(0)):
                    return match.group(0)
                n += 1
                return replacements[(n - 1) % len(replacements)]

            text = pattern.sub(replace, text)
            if n:
                counts[kind] = n
        return text, counts

    def apply(self, doc: Document) -> Verdict:
        text, counts = self.redact(doc.text)
        if counts:
            doc.text = text
            doc.metadata["pii_redactions"] = counts
            for kind, n in counts.items():
                self.count(f"pii:{kind}", n)
        return True
