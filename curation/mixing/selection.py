"""The mix over a whole run: each curated shard encoded once, each document's repeats from the
per-domain plans, the seeded order of the selected copies and the token shards they are cut into,
and the ``mix`` stage that accounts for every document of a shard.

The plan needs only a few numbers per document (its domain, tokens, order key and whether the
domain classifier gave its domain), gathered per shard while it is encoded, so the driver holds
about 16 bytes per document of the run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.core.document import stable_hash
from curation.core.stage import Stage, Verdict
from curation.core.stats import StageStats
from curation.mixing.plan import DomainPlan, mixture_total, plan_domain
from curation.writers.shards import read_documents
from curation.writers.stage_outputs import write_stage_outputs
from tokenizer.encode import encode_flat
from tokenizer.model import Tokenizer
from tokenizer.shards import cut_into_shards, write_flat_token_shard
from tokenizer.store_path import readable

logger = logging.getLogger(__name__)

MIX_REASON = "mix_not_selected"


def mix_keys(ids: Sequence[str], seed: int) -> np.ndarray:
    """Each document's place in its domain's fixed pseudo-random order."""
    return np.array([stable_hash(f"{seed}:{i}") for i in ids], dtype=np.uint64)


def classified_flags(metadata: pa.ChunkedArray) -> np.ndarray:
    """Whether the domain classifier gave each document its domain (metadata is sorted JSON, so the text is fixed)."""
    return pc.match_substring(metadata, '"domain_source": "classified"').to_numpy(zero_copy_only=False)


@dataclass
class ShardSummary:
    """What the plan needs of one curated shard, per document in shard order."""

    domain: list[str]
    tokens: np.ndarray  # without EOS
    key: np.ndarray  # mix_keys
    classified: np.ndarray  # classified_flags


def encode_shard(tokenizer_model: Path, documents: Path, staged: Path, mix_seed: int) -> ShardSummary:
    """Encode one curated shard into a staging token file; return what the mix plan needs of it."""
    table = pq.read_table(readable(documents), columns=["id", "text", "domain", "metadata"])
    ids, domains = table["id"].to_pylist(), table["domain"].to_pylist()
    flat, lengths = encode_flat(Tokenizer(tokenizer_model), table["text"].to_pylist())
    write_flat_token_shard(staged, flat, lengths, domains, ids)
    return ShardSummary(domains, lengths, mix_keys(ids, mix_seed), classified_flags(table["metadata"]))


@dataclass
class Mixture:
    plans: dict[str, DomainPlan]
    repeats: dict[tuple[int, int], int]  # (shard index, row) -> copies in the token shards
    classified: dict[str, dict[str, int]]  # per domain: classified documents and tokens (EOS included) in the shards

    def figures(self, domain: str) -> dict:
        """What the manifest says of the mix for one domain."""
        plan = self.plans[domain]
        return {
            "target_share": plan.target_share,
            "available_tokens": plan.available_tokens,
            "epochs": round(plan.epochs, 4),
            # of which the domain classifier chose the domain (untagged sources); the rest were tagged
            "classified_documents": self.classified[domain]["documents"],
            "classified_tokens": self.classified[domain]["tokens"],
        }


def plan_mixture(shards: list[ShardSummary], targets: dict[str, float] | None, total_tokens: int | None, repeat_limit: float) -> Mixture:
    """Per-domain plans over every document of the run; each document's EOS counts, so the ratios
    hold for the tokens the shards really hold. ``targets=None``: every document once, each domain
    at its natural share."""
    by_domain: dict[str, list[tuple[int, int]]] = defaultdict(list)  # domain -> (shard index, row)
    for s, summary in enumerate(shards):
        for row, domain in enumerate(summary.domain):
            by_domain[domain].append((s, row))
    available = {d: int(sum(shards[s].tokens[r] + 1 for s, r in by_domain.get(d, []))) for d in (targets or sorted(by_domain))}
    if targets is None:
        everything = sum(available.values())
        targets = {d: n / everything for d, n in available.items()}
        total_tokens = everything  # round(share * total) is each domain's own count: one epoch of each
    empty = [d for d, n in available.items() if n == 0 and targets[d] > 0]
    if empty:
        raise RuntimeError(f"mix: no curated tokens left in domain(s) {empty}; the target ratios cannot be met")
    total = mixture_total(available, targets, total_tokens)
    mixture = Mixture({}, {}, defaultdict(lambda: {"documents": 0, "tokens": 0}))
    for domain, share in targets.items():
        members = by_domain.get(domain, [])
        tokens = np.array([shards[s].tokens[r] for s, r in members], dtype=np.int64)
        keys = np.array([shards[s].key[r] for s, r in members], dtype=np.uint64)
        plan = mixture.plans[domain] = plan_domain(domain, share, total, tokens + 1, keys)
        if plan.epochs > repeat_limit:
            logger.warning("mix: domain %s is repeated %.2f epochs, past mix.repeat_limit=%s", domain, plan.epochs, repeat_limit)
        for (s, r), n, rep in zip(members, tokens.tolist(), plan.repeats.tolist()):
            mixture.repeats[(s, r)] = rep
            if rep and shards[s].classified[r]:
                mixture.classified[domain]["documents"] += rep
                mixture.classified[domain]["tokens"] += (n + 1) * rep
    return mixture


def shuffled_copies(mixture: Mixture, shards: list[ShardSummary], seed: int) -> list[tuple[int, int, int]]:
    """Every selected copy (shard index, row, copy number) in an order fixed by a hash of the seed."""
    selected = [(s, r, k) for (s, r), rep in sorted(mixture.repeats.items()) for k in range(rep)]
    return sorted(selected, key=lambda e: (stable_hash(f"{seed}:{shards[e[0]].key[e[1]]}:{e[2]}"), e[0], e[1], e[2]))


def token_shard_cuts(
    order: list[tuple[int, int, int]], shards: list[ShardSummary], names: list[str], per_domain: bool, shard_tokens: int
) -> list[tuple[str, int, list[tuple[str, int]]]]:
    """The copies in ``order`` cut into token shards of about ``shard_tokens`` (EOS included), one set
    per domain if ``per_domain``: (domain or "", index in the set, its copies as (shard name, row))."""
    groups: dict[str, list[tuple[int, int, int]]] = {"": order}
    if per_domain:
        groups = defaultdict(list)
        for e in order:
            groups[shards[e[0]].domain[e[1]]].append(e)
    cuts = []
    for group, entries in sorted(groups.items()):
        sizes = [int(shards[s].tokens[r]) + 1 for s, r, _ in entries]
        cuts += [(group, i, cut) for i, cut in enumerate(cut_into_shards([(names[s], r) for s, r, _ in entries], sizes, shard_tokens))]
    return cuts


def repeats_per_shard(mixture: Mixture, shards: list[ShardSummary]) -> list[np.ndarray]:
    """Copies of each document, per shard in row order (0: left out)."""
    out = [np.zeros(len(summary.domain), dtype=np.int64) for summary in shards]
    for (s, r), rep in mixture.repeats.items():
        out[s][r] = rep
    return out


class MixSelection(Stage):
    """The ``mix`` stage: keeps a document the plan selected, as many times as it repeats it."""

    name = "mix"

    def __init__(self, repeats: dict[str, int]):
        self.repeats = repeats

    def apply(self, doc) -> Verdict:
        return True if self.repeats.get(doc.id, 0) else (False, MIX_REASON)

    def copies(self, doc) -> int:
        return self.repeats[doc.id]


def account_shard(curated: Path, repeats: np.ndarray, tokens: np.ndarray, rejected: Callable[[str], Path]) -> StageStats:
    """The ``mix`` stage over one curated shard: its funnel, and the documents left out to ``rejected``.

    The selected documents go to the token shards by another step; their tokens were counted when
    they were encoded, so nothing is encoded twice.
    """
    ids = pq.read_table(readable(curated), columns=["id"])["id"].to_pylist()
    token_count = dict(zip(ids, tokens.tolist()))

    def measure(doc) -> tuple[int, int]:
        return len(doc.text.encode("utf-8", errors="surrogatepass")), token_count[doc.id]

    [stats] = write_stage_outputs([MixSelection(dict(zip(ids, repeats.tolist())))], read_documents(curated), measure, None, rejected)
    return stats
