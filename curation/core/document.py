"""The one document representation of the pipeline: datatrove's ``Document``.

Every document carries ``source``, ``domain`` and ``url`` in its metadata; stages add fields
(``language``, ``language_score``, quality signals...) but never rename or drop these core ones.
On disk a document is a row of an Arrow table with the columns of ``DOCUMENT_SCHEMA``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

import pyarrow as pa
from datatrove.data import Document

CORE_METADATA = ("source", "domain", "url")
# Transient metadata: the tokens of the document's text under the run's tokenizer, as (text, tokens),
# where the run counted them (``curation.core.stage.TextMeasure``). They are written with the document
# (the ``tokens`` column) and read back with it, so that a phase reading the documents again does not
# encode the same text again.
COUNTED_KEY = "_counted"
# The domain of documents from a source configured without one, until the domain classifier gives them theirs.
UNTAGGED = "untagged"

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("domain", pa.string()),
        ("url", pa.string()),
        # Everything a stage added, as sorted JSON so that equal documents give equal bytes.
        ("metadata", pa.string()),
        # The text's tokens under the run's tokenizer where the run counted them (null before the
        # extracted text of an HTML record), read back by the phases that read the documents again.
        ("tokens", pa.int64()),
    ]
)

REJECTED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("reason", pa.string())).append(
    # The raw record bytes, kept only where no faithful text exists (undecodable or corrupt input).
    pa.field("raw", pa.binary())
)


def make_document_id(source: str, file_name: str, position: int) -> str:
    """A stable id from where the document came from: source, file and record position."""
    return f"{source}/{file_name}#{position}"


def stable_hash(value: str) -> int:
    """A 64-bit hash that, unlike ``hash()``, is the same in every process and run."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


def new_document(text: str, doc_id: str, source: str, domain: str, url: str | None, **extra) -> Document:
    return Document(text=text, id=doc_id, metadata={"source": source, "domain": domain, "url": url, **extra})


def _extra_metadata(doc: Document) -> str:
    extra = {k: v for k, v in doc.metadata.items() if k not in CORE_METADATA and not k.startswith("_")}
    return json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str)


def documents_to_table(docs: Iterable[Document]) -> pa.Table:
    docs = list(docs)
    return pa.Table.from_pydict(
        {
            "id": [d.id for d in docs],
            "text": [d.text for d in docs],
            "source": [d.metadata["source"] for d in docs],
            "domain": [d.metadata["domain"] for d in docs],
            "url": [d.metadata.get("url") for d in docs],
            "metadata": [_extra_metadata(d) for d in docs],
            "tokens": [counted_tokens(d) for d in docs],
        },
        schema=DOCUMENT_SCHEMA,
    )


def counted_tokens(doc: Document) -> int | None:
    """The tokens of the document's current text where the run counted them (``COUNTED_KEY``), else None."""
    counted = doc.metadata.get(COUNTED_KEY)
    return counted[1] if counted is not None and counted[0] is doc.text else None


def rejected_to_table(rows: Iterable[tuple[Document, str, bytes | None]]) -> pa.Table:
    rows = list(rows)
    table = documents_to_table(doc for doc, _, _ in rows)
    return table.append_column("reason", pa.array([r for _, r, _ in rows], pa.string())).append_column(
        "raw", pa.array([raw for _, _, raw in rows], pa.binary())
    )


def table_to_documents(table: pa.Table) -> Iterator[Document]:
    # files written before the tokens column have none: their documents are counted again
    for row in table.select([f.name for f in DOCUMENT_SCHEMA if f.name in table.column_names]).to_pylist():
        metadata = json.loads(row["metadata"]) if row["metadata"] else {}
        doc = new_document(row["text"], row["id"], row["source"], row["domain"], row["url"], **metadata)
        if row.get("tokens") is not None:
            doc.metadata[COUNTED_KEY] = (doc.text, row["tokens"])
        yield doc
