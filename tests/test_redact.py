"""PII redaction: emails, phones and URLs go; dates, years and technology names stay."""
import re

import pytest

from lantern_jax.data import prompts
from lantern_jax.teacher.redact import is_loopback, redact_member, redact_text, should_redact
from teacher_fixtures import synth_pairs


@pytest.mark.parametrize("text, expected", [
    ("Reach me at jane.doe+jobs@mail.example.co.uk today.", "Reach me at [EMAIL] today."),
    ("Email: ana.silva@example.org", "Email: [EMAIL]"),
    ("Call me on +1 555 0123 4567.", "Call me on [PHONE]."),
    ("Phone (555) 010-1234 or 555.010.9999", "Phone [PHONE] or [PHONE]"),
    ("UK: 0044 20 7946 0958", "UK: [PHONE]"),
    ("Portfolio: https://example.com/jane-doe, and www.Jane.io.", "Portfolio: [URL], and [URL]."),
    ("See github.com/jane/projects for code", "See [URL] for code"),
])
def test_redacts(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize("text", [
    "Worked 2018-2022 and 2019 - 2021; 5-10 years; started 2022-03.", "Skills: ASP.NET, Node.js, C++ 17, Python 3.11",
    "Managed a budget of $1,250,000 across 12 sites.", "U.S. citizen, e.g. eligible; B.Sc. in Physics",
    "Certified Plant Maintenance Manager (CPMM)"])
def test_keeps_what_is_not_pii(text):
    assert redact_text(text) == text


def test_redacted_profiles_carry_no_contact_details():
    pairs = synth_pairs(120)
    with_pii = [p for p in pairs if re.search(r"@example\.|555|https?://", prompts.render_member(p.member))]
    assert len(with_pii) >= 10  # the generator plants contact lines in a quarter of summaries
    for pair in with_pii:
        text = prompts.render_member(redact_member(pair.member))
        assert not re.search(r"@|https?://|example\.(com|org)|\+1 555", text), text
        assert "[EMAIL]" in text or "[PHONE]" in text or "[URL]" in text
        assert redact_member(pair.member).experience[0].start == pair.member.experience[0].start


def test_redaction_applies_to_non_loopback_teachers_by_default():
    assert is_loopback("http://127.0.0.1:8011/v1") and is_loopback("http://localhost/v1")
    assert is_loopback("http://[::1]:80/v1") and not is_loopback("https://api.openai.com/v1")
    assert should_redact("non_loopback", "https://api.openai.com/v1")
    assert not should_redact("non_loopback", "http://127.0.0.1:9/v1")
    assert should_redact("always", "http://127.0.0.1:9/v1") and not should_redact("never", "https://x.ai/v1")
    with pytest.raises(ValueError):
        should_redact("sometimes", "https://x.ai/v1")
