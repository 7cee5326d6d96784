"""The url_filter and pii stages, through the shared accounting."""

import re

from curation.core.document import new_document
from curation.core.stage import TextMeasure, run_stage
from curation.core.stats import StageStats
from curation.filters.pii import PIIRedaction
from curation.filters.url_filter import URLFilterStage
from curation.training.classifiers import DEFAULT_DATA, read_rows


def _run(stage, docs):
    stats, rejected = StageStats(stage.name), []
    with stage:
        kept = list(run_stage(stage, docs, stats, TextMeasure(lambda t: len(t.split())), lambda d, r, raw: rejected.append((d, r))))
    assert stats.invariant_violations() == []
    return kept, dict((d.metadata["url"], r) for d, r in rejected), stats


def test_url_filter_rejects_by_rule_with_reasons_and_lets_pages_without_a_url_pass():
    stage = URLFilterStage(blocked_domains=["spam-farm.example", "tracker.net"], blocked_words=["casino"])
    urls = {
        "https://www.iana.org/domains/reserved": None,
        "file:///usr/share/doc/gnucash-docs/gnucash-guide-en/index.html": None,
        "https://spam-farm.example/page": "url_domain",
        "https://ads.tracker.net/x?id=1": "url_domain",  # subdomains of a blocked host too
        "ftp://mirror.example.org/pub/file.html": "url_scheme:ftp",
        "javascript:void(0)": "url_scheme:javascript",
        "http://best-casino-bonus.com/slots": "url_hard_blacklisted",  # our word, through datatrove's rule
        "http://www.example.com/free-porn-videos": "url_hard_blacklisted",  # datatrove's shipped word list
        "https://xxxvideos.example.net/a": "url_blacklisted_subword",
    }
    docs = [new_document("text", f"d{i}", "crawl", "general", url) for i, url in enumerate(urls)]
    docs.append(new_document("text", "no-url", "jsonl", "general", None))
    kept, rejected, stats = _run(stage, docs)
    assert rejected == {u: r for u, r in urls.items() if r}
    assert {d.metadata["url"] for d in kept} == {u for u, r in urls.items() if r is None} | {None}
    assert stats.domains["general"].reasons["url_domain"].docs == 2


def test_pii_is_redacted_and_counted_by_type_and_the_bytes_balance():
    rows, _ = read_rows(DEFAULT_DATA)
    # real pages of the Debian handbook: one whose DNS examples hold email, IPv4 and IPv6 addresses,
    # and one full of section numbers (4.2.13.1) that look like IPv4 addresses and are not
    page = next(r for r in rows if r["url"].endswith("sect.domain-name-servers.html") and r["kind"] == "page")
    sections = next(r for r in rows if r["url"].endswith("sect.installation-steps.html") and r["kind"] == "page")
    contact = (
        "For questions about the merger, contact Jane Doe (jane.doe@acme-holdings.com, +1 212-555-0143)\n"
        "or the investor relations desk at (415) 555-0199; the data room is at 93.184.216.34 and "
        "2a00:1450:4007:80e::200e. Net income was 1,234,567 dlrs on 1987-03-02, see section 4.2.13.1; "
        "the office LAN 192.168.1.20 is private."
    )
    docs = [
        new_document(contact, "contact", "s", "finance", None),
        new_document(page["text"], "handbook", "s", "general", page["url"]),
        new_document(sections["text"], "sections", "s", "general", sections["url"]),
    ]
    before = {d.id: d.text for d in docs}
    kept, rejected, stats = _run(PIIRedaction(), docs)
    assert not rejected and len(kept) == 3
    text = kept[0].text
    assert kept[0].metadata["pii_redactions"] == {"email": 1, "ipv4": 1, "ipv6": 1, "phone": 2}
    for secret in ("jane.doe@acme-holdings.com", "212-555-0143", "(415) 555-0199", "93.184.216.34", "2a00:1450:4007:80e::200e"):
        assert secret not in text
    for kept_text in ("1,234,567 dlrs", "1987-03-02", "section 4.2.13.1", "192.168.1.20"):  # not PII
        assert kept_text in text
    handbook = kept[1].metadata["pii_redactions"]
    assert handbook["email"] >= 1 and handbook["ipv4"] >= 1 and handbook["ipv6"] >= 1
    assert re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", before["sections"]) and "pii_redactions" not in kept[2].metadata
    assert kept[2].text == before["sections"]
    assert stats.domains["finance"].counters == {"pii:email": 1, "pii:ipv4": 1, "pii:ipv6": 1, "pii:phone": 2}
    total = stats.total()
    # in == kept (the text as it entered); out measures the redacted text
    assert total.in_.bytes == total.kept.bytes == sum(len(t.encode()) for t in before.values())
    assert total.out.bytes == sum(len(d.text.encode()) for d in kept) != total.in_.bytes
