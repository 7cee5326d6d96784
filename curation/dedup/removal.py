"""The ``dedup`` stage: removes, shard by shard, the documents the run-wide clustering decided against."""

from __future__ import annotations

from curation.core.stage import Stage


class DuplicateRemoval(Stage):
    """The ``dedup`` stage: removes the documents the clustering decided against.

    ``decisions`` maps a document id to (reason, cluster id, id of the survivor it duplicates);
    the removed document keeps both ids in its metadata, so ``rejected/dedup/`` says which
    document stood in for it.
    """

    name = "dedup"

    def __init__(self, decisions: dict[str, tuple[str, int, str]]):
        self.decisions = decisions

    def apply(self, doc) -> bool | tuple[bool, str]:
        decision = self.decisions.get(doc.id)
        if decision is None:
            return True
        reason, cluster, kept_id = decision
        doc.metadata["dedup_cluster"] = cluster
        doc.metadata["duplicate_of"] = kept_id
        return False, reason
