"""A deterministic sample of curated text: what the run's tokenizer is trained on."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import ExitStack

from datatrove.data import Document

from curation.core.document import stable_hash
from curation.core.stage import Stage, TextMeasure, run_stages
from curation.core.stats import StageStats

_HASH_SPACE = 1 << 64


def sample_curated_text(docs: Iterable[Document], stages: list[Stage], rate: float, max_chars: int) -> list[tuple[str, str, int]]:
    """Documents sampled by a hash of their id, run through ``stages``; (domain, text, id hash) of
    those that survive, up to ``max_chars`` of text.

    Running the sample through the run's own stages makes the tokenizer learn from text that
    survives curation. Nothing is measured in tokens: there is no tokenizer yet.
    """
    threshold = int(rate * _HASH_SPACE)
    sampled = (d for d in docs if stable_hash(d.id) < threshold)
    stats = {s.name: StageStats(s.name) for s in stages}
    out, chars = [], 0
    with ExitStack() as stack:
        for stage in stages:
            stack.enter_context(stage)
        for doc in run_stages(stages, sampled, stats, TextMeasure(None), lambda *_: None):
            out.append((doc.metadata["domain"], doc.text, stable_hash(doc.id)))
            chars += len(doc.text)
            if chars >= max_chars:
                break
    return out


def balanced_sample(samples: list[tuple[str, str, int]], budget_chars: int) -> tuple[list[str], dict[str, int]]:
    """An equal share of ``budget_chars`` per domain, taken in id-hash order so it is deterministic."""
    by_domain: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for domain, text, key in samples:
        by_domain[domain].append((key, text))
    share = budget_chars // max(1, len(by_domain))
    texts, used = [], {}
    for domain in sorted(by_domain):
        used[domain] = 0
        for _, text in sorted(by_domain[domain]):
            if used[domain] >= share:
                break
            texts.append(text)
            used[domain] += len(text)
    return texts, used
