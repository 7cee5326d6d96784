"""Which documents of a component of near-duplicates survive, and the exact-duplicate key.

Exact duplicates (the same word sequence) always share every band, so each exact-duplicate group
lies inside one component; that lets one graph serve both steps: first one document per exact
group survives, then one per component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from curation.dedup.components import equal_runs
from curation.dedup.minhash import words

EXACT_REASON = "exact_duplicate"
FUZZY_REASON = "near_duplicate"


def exact_key(text: str) -> int:
    """64-bit hash of the normalised text: lower-cased words, punctuation and spacing ignored."""
    return xxhash.xxh3_64_intdigest(" ".join(words(text)).encode())


@dataclass(frozen=True)
class Decision:
    reason: str  # EXACT_REASON | FUZZY_REASON
    cluster: int  # the component's smallest document index
    kept: int  # index of the document this one duplicates (the survivor of its step)


def choose_survivors(
    idx: np.ndarray, root: np.ndarray, score: np.ndarray, id_hash: np.ndarray, exact: np.ndarray
) -> dict[int, Decision]:
    """Decide which members of each component are removed, and for which survivor.

    Rank: highest ``score`` first, ties broken by the hash of the document id (then the index),
    so the choice does not depend on input order or on the number of workers.
    Step 1, exact: in each group of equal ``exact`` keys only the best-ranked document survives.
    Step 2, fuzzy: among the exact survivors of a component only the best-ranked survives.
    """
    order = np.lexsort((idx, id_hash, -score, root))
    idx, root, exact = idx[order], root[order], exact[order]
    decisions: dict[int, Decision] = {}
    for start, end in equal_runs(root):
        members = idx[start:end].tolist()
        keys = exact[start:end].tolist()
        cluster = int(root[start])
        exact_survivor: dict[int, int] = {}
        survivors = []
        for member, key in zip(members, keys):  # in rank order
            if key in exact_survivor:
                decisions[member] = Decision(EXACT_REASON, cluster, exact_survivor[key])
            else:
                exact_survivor[key] = member
                survivors.append(member)
        for member in survivors[1:]:
            decisions[member] = Decision(FUZZY_REASON, cluster, survivors[0])
    return decisions
