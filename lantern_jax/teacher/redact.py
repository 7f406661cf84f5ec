"""PII redaction before a profile leaves the machine: emails, phone numbers and URLs.

Applied to member profiles (the only personal text) before any call to a non-loopback teacher by
default (`redact="non_loopback"`); "always" and "never" are the other settings. Placeholders keep
the sentence readable for the teacher: "[EMAIL]", "[PHONE]", "[URL]".
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from urllib.parse import urlsplit

from lantern_jax.data.schema import MemberProfile, Pair

REDACT_MODES = ("non_loopback", "always", "never")

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
URL = re.compile(r"(?i:\b(?:https?://|www\.))[^\s<>\"'()\[\]]+"
                 r"|\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|dev|me|co|ai|app|info|edu|gov|uk|de|fr|in)\b"
                 r"(?:/[^\s<>\"'()\[\]]*)?")
NOT_URLS = {"asp.net", "ado.net", "vb.net"}  # technologies that look like domains
# Digit runs with phone punctuation; 7-15 digits, and not a date or a year range.
PHONE_CANDIDATE = re.compile(r"(?<![\w+(])(?:\+|00)?\(?\d[\d\s().-]{5,}\d(?![\w])")


def _phone(match: re.Match) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    looks_like_dates = re.fullmatch(r"\d{4}\s*[-./]\s*\d{2,4}(\s*[-./]\s*\d{2,4})?", text.strip())
    return "[PHONE]" if 7 <= digits <= 15 and not looks_like_dates else text


def _url(match: re.Match) -> str:
    text = match.group(0)
    core = text.rstrip(".,;:!?")
    if core.lower() in NOT_URLS:
        return text
    return "[URL]" + text[len(core):]  # trailing punctuation belongs to the sentence


def redact_text(text: str) -> str:
    text = EMAIL.sub("[EMAIL]", text)
    text = URL.sub(_url, text)
    return PHONE_CANDIDATE.sub(_phone, text)


def redact_member(member: MemberProfile) -> MemberProfile:
    """The profile with every free-text field redacted (dates and years are structured, kept)."""
    return dataclasses.replace(
        member,
        name=redact_text(member.name), headline=redact_text(member.headline),
        summary=redact_text(member.summary),
        experience=tuple(dataclasses.replace(e, title=redact_text(e.title), company=redact_text(e.company),
                                             description=redact_text(e.description))
                         for e in member.experience),
        education=tuple(dataclasses.replace(e, degree=redact_text(e.degree), field=redact_text(e.field),
                                            school=redact_text(e.school)) for e in member.education),
        skills=tuple(redact_text(s) for s in member.skills))


def redact_pair(pair: Pair) -> Pair:
    return dataclasses.replace(pair, member=redact_member(pair.member))


def is_loopback(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def should_redact(mode: str, base_url: str) -> bool:
    if mode not in REDACT_MODES:
        raise ValueError(f"redact must be one of {', '.join(REDACT_MODES)}, got {mode!r}")
    return mode == "always" or (mode == "non_loopback" and not is_loopback(base_url))
