"""The ``url_filter`` stage: datatrove's ``URLFilter`` offline, plus a scheme rule and our own lists.

datatrove's filter rejects a URL whose registered domain or host is block-listed, that equals a
block-listed URL, or whose words hit its banned / soft-banned word lists or banned sub-words.
Its word lists ship in the datatrove wheel and are used here; its UT1 domain block list ships too
(a 120 MB list once unpacked, several hundred MB of memory per worker), so it is opt-in
(``ut1_blocklist``). Two things are changed so that nothing is fetched at run time: the lists are
passed in rather than "downloaded" into the Hugging Face cache, and tldextract uses the public
suffix list it ships instead of fetching the current one. Documents without a URL pass.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from datatrove.data import Document
from datatrove.pipeline.filters.url_filter import URLFilter, normalize, normalizer
from datatrove.utils._import_utils import ASSETS_PATH

from curation.core.stage import Stage, Verdict

logger = logging.getLogger(__name__)

WORD_LISTS = {"banned_words": "banned_words.txt", "banned_subwords": "banned_subwords.txt", "soft_banned_words": "soft_banned_words.txt"}


def _asset_lines(name: str) -> list[str]:
    return [line.strip() for line in (Path(ASSETS_PATH) / name).read_text().splitlines() if line.strip()]


class FastURLFilter(URLFilter):
    """datatrove's decisions without parsing the URL's domain when no domain is block-listed.

    tldextract's split of the host (about half of datatrove's ~22 us per URL, and ~20 ms to load
    the suffix list in every new filter, i.e. every shard) only serves the domain lists, empty
    unless ``blocked_domains`` or the UT1 list is given. The word lists (the other half: Python
    loops over 290 words) are checked as set operations, which count the same words.
    """

    def filter(self, document: Document) -> bool | tuple[bool, str]:
        self.download_data()
        url = document.metadata.get("url")

        assert url, "Document does not have url in its metadata"
        if self.block_listed_domains:
            url_info = self.tldextractor(url)
            if url_info.registered_domain in self.block_listed_domains:
                return False, "domain"
            if url_info.fqdn in self.block_listed_domains:
                return False, "subdomain"

        if url in self.block_listed_url:
            return False, "url"

        url_words = set(normalizer.split(url))
        if not self.banned_words.isdisjoint(url_words):
            return False, "hard_blacklisted"
        if len(self.soft_banned_words & url_words) >= self.soft_word_threshold:
            return False, "soft_blacklisted"

        if self.banned_subwords and next(self.banned_subwords_automaton.iter(normalize(url)), False):
            return False, "blacklisted_subword"
        return True


class URLFilterStage(Stage):
    name = "url_filter"

    def __init__(
        self,
        blocked_domains: list[str] = (),
        blocked_urls: list[str] = (),
        blocked_words: list[str] = (),
        allowed_schemes: list[str] | None = ("http", "https", "file"),
        datatrove_word_lists: bool = True,
        ut1_blocklist: bool = False,
        soft_word_threshold: int = 2,
        filter_class: type[URLFilter] = FastURLFilter,  # datatrove's own where a benchmark compares with it
    ):
        from tldextract import TLDExtract

        words = {key: _asset_lines(file) if datatrove_word_lists else [] for key, file in WORD_LISTS.items()}
        words["banned_words"] = [*words["banned_words"], *blocked_words]
        self.filter = filter_class(
            soft_word_threshold=soft_word_threshold,
            extra_domains=[d.lower() for d in blocked_domains] or None,
            extra_urls=list(blocked_urls) or None,
            use_integrated_lists=ut1_blocklist,
            **{k: v or None for k, v in words.items()},
        )
        # the suffix list tldextract ships, never the one it would fetch from publicsuffix.org
        self.filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
        self.allowed_schemes = {s.lower() for s in allowed_schemes} if allowed_schemes else None
        # datatrove matches registered domains by the public suffix list, which misses hosts under
        # suffixes it does not know (intranet names, .example); our own list also matches by suffix
        self.blocked_domains = tuple(d.lower().strip(".") for d in blocked_domains)

    def apply(self, doc: Document) -> Verdict:
        url = doc.metadata.get("url")
        if not url:
            return True
        parts = urlsplit(url)
        if self.allowed_schemes is not None:  # mailto:, javascript:, ftp: ... are not pages
            scheme = parts.scheme.lower()
            if scheme not in self.allowed_schemes:
                return False, f"url_scheme:{scheme or 'none'}"
        host = (parts.hostname or "").lower()
        if any(host == d or host.endswith("." + d) for d in self.blocked_domains):
            return False, "url_domain"
        verdict = self.filter.filter(doc)
        if verdict is True:
            return True
        return False, f"url_{verdict[1] if isinstance(verdict, tuple) else 'blocked'}"
