"""The accounting every stage gets: in == kept + rejected, reasons, and nothing lost.

These use datatrove's real C4 filter (which rewrites text) on real licence text shipped with
Debian; a tiny stage that raises stands in for a stage with a bug.
"""

from pathlib import Path

from datatrove.data import Document

from curation.core.document import new_document
from curation.core.stage import Stage, TextMeasure, run_stage
from curation.core.stats import StageStats
from curation.filters.quality import quality_stage

LICENCE = Path("/usr/share/common-licenses/GPL-3").read_text()


def _docs():
    paragraphs = [p for p in LICENCE.split("\n\n") if p.strip()]
    long_doc = "\n".join(line.strip() for line in LICENCE.splitlines()[:200])
    return [
        new_document(long_doc, "gpl#0", "licences", "general", None),
        new_document(paragraphs[0], "gpl#1", "licences", "finance", None),
        new_document(long_doc + "\nA brace {like this one} makes C4 drop the page.", "gpl#2", "licences", "general", None),
    ]


class Explodes(Stage):
    name = "explodes"

    def apply(self, doc: Document):
        if doc.id.endswith("#1"):
            doc.text = "half rewritten"
            raise RuntimeError("bug")
        return True


def test_invariant_holds_and_rejected_keep_their_input_text():
    stats, rejected = StageStats("c4_quality"), []
    measure = TextMeasure(lambda text: len(text.split()))
    kept = list(run_stage(quality_stage("c4_quality"), _docs(), stats, measure, lambda d, r, raw: rejected.append((d, r))))
    assert stats.invariant_violations() == []
    total = stats.total()
    assert total.in_.docs == 3 and total.kept.docs == len(kept) and total.rejected.docs == len(rejected)
    reasons = {d.id: r for d, r in rejected}
    assert reasons["gpl#2"] == "curly_bracket"
    assert reasons["gpl#1"] == "too_few_sentences"
    # bytes and tokens of the kept docs as they leave can differ from what came in (lines dropped)
    assert total.out.tokens <= total.kept.tokens
    assert stats.domains["finance"].reasons["too_few_sentences"].docs == 1


def test_exception_in_a_stage_rejects_that_document_only_with_its_input_text():
    stats, rejected = StageStats("explodes"), []
    kept = list(run_stage(Explodes(), _docs(), stats, TextMeasure(), lambda d, r, raw: rejected.append((d.text, r))))
    assert [d.id for d in kept] == ["gpl#0", "gpl#2"]
    assert rejected == [(_docs()[1].text, "error:RuntimeError")]
    assert stats.invariant_violations() == []


def test_stats_round_trip_and_merge():
    stats = StageStats("x")
    stats.record_kept("general", (10, 3), (8, 2))
    stats.record_rejected("finance", "short", (5, 1))
    again = StageStats.from_dict(stats.to_dict())
    again.merge(stats)
    assert again.total().in_.docs == 4 and again.total().rejected.tokens == 2
    assert again.invariant_violations() == []


def test_html_records_left_uncounted_change_only_the_tokens_before_extraction(tmp_path):
    """``read.count_html_tokens=false`` on real records (two bundled WARC shards of HTML, a JSONL file
    of the GPL's paragraphs): the HTML's tokens are 0 as it arrived and as decoded, everything from the
    extracted text on is counted as before, text records are counted either way, and the invariant holds."""
    import json

    from curation.extraction.decode import DecodeStage
    from curation.extraction.extract import TextExtraction
    from curation.readers.base import InputFile
    from curation.readers import read_file
    from tests.conftest import CORPUS

    files = [InputFile(str(CORPUS / "warc" / f"{d}-00000.warc.gz"), d, d, "warc") for d in ("finance", "general")]
    texts_file = tmp_path / "texts.jsonl"
    texts_file.write_text("".join(json.dumps({"text": p}) + "\n" for p in LICENCE.split("\n\n") if p.strip()))
    files.append(InputFile(str(texts_file), "texts", "general", "jsonl", content_type="text"))

    def run(count_markup: bool):
        measure = TextMeasure(lambda text: len(text.split()), count_markup=count_markup)
        stages = [DecodeStage(), TextExtraction(engine="resiliparse")]
        stats = {s.name: StageStats(s.name) for s in stages}
        docs = (doc for f in files for doc in read_file(f))
        for stage in stages:
            docs = run_stage(stage, docs, stats[stage.name], measure, lambda d, r, raw: None)
        kept = [(d.id, d.text, measure(d)) for d in docs]
        stages[1].close()
        return kept, stats

    counted, counted_stats = run(True)
    uncounted, uncounted_stats = run(False)
    assert counted == uncounted and len(counted) > 100  # the same documents, texts and sizes once extracted
    for stats in (counted_stats, uncounted_stats):
        assert [v for s in stats.values() for v in s.invariant_violations()] == []
    read, extract = (uncounted_stats[n] for n in ("read", "extract"))
    assert read.domains["finance"].in_.tokens == read.domains["finance"].out.tokens == extract.domains["finance"].in_.tokens == 0  # HTML only
    assert read.domains["finance"].in_.bytes == counted_stats["read"].domains["finance"].in_.bytes > 0
    # the general domain holds the HTML shard and the text records: only the text is counted, the same as before
    texts = sum(m[1] for i, _, m in counted if i.startswith("texts"))
    assert 0 < texts == read.domains["general"].out.tokens < counted_stats["read"].domains["general"].out.tokens
    assert extract.total().out == counted_stats["extract"].total().out and extract.total().out.tokens > 0


def test_documents_read_back_are_not_counted_again_unless_their_text_changed(tmp_path):
    """A phase that reads the documents another one wrote (dedup reads ``filtered/``) takes their token
    counts from the file: the same sizes, without encoding the same text a second time."""
    import pyarrow.parquet as pq

    from curation.writers.shards import document_writer, read_documents

    paragraphs = [p for p in LICENCE.split("\n\n") if p.strip()][:40]
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text.split())

    measure = TextMeasure(count)
    docs = [new_document(p, f"gpl#{i}", "licences", "general", None) for i, p in enumerate(paragraphs)]
    sizes = [measure(d) for d in docs]
    assert len(counted) == len(paragraphs)
    writer = document_writer(tmp_path / "docs.parquet")
    for d in docs:
        writer.add(d)
    writer.commit()
    assert pq.read_table(tmp_path / "docs.parquet").column("tokens").to_pylist() == [s[1] for s in sizes]

    counted.clear()
    again = list(read_documents(tmp_path / "docs.parquet"))
    assert [TextMeasure(count)(d) for d in again] == sizes and counted == []
    again[0].text = again[0].text.upper()  # a stage rewrote it: counted anew
    assert TextMeasure(count)(again[0]) == (sizes[0][0], sizes[0][1]) and counted == [again[0].text]
    # a file written before the tokens column: its documents are counted as they are read
    pq.write_table(pq.read_table(tmp_path / "docs.parquet").drop(["tokens"]), tmp_path / "old.parquet")
    counted.clear()
    assert [TextMeasure(count)(d) for d in read_documents(tmp_path / "old.parquet")] == sizes and len(counted) == len(paragraphs)
