"""Every reader over an object store (moto's S3 server on loopback) yields the documents it yields over
the same files on local disk: WARC (warcio and FastWARC), JSON Lines (gzip), Parquet and a folder
of HTML pages; source globs on the store list what local globs list; a URL outside the data roots
is refused as the run opens it."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.core.stage import RAW_KEY, READ_ERROR_KEY
from curation.readers import InputFile, read_file
from curation.readers.base import OutsideDataRoots
from curation.readers.sources import list_shards
from pipelines.config_loading import load_config
from tests.conftest import CORPUS, REAL_CRAWL
from scripts.s3_server import moto_in_environment


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(local folder, its copy at s3://readers/files) with one input of every format."""
    local = tmp_path_factory.mktemp("inputs")
    shutil.copy(REAL_CRAWL, local / "iana.warc.gz")
    shutil.copy(CORPUS / "jsonl" / "finance.jsonl.gz", local / "finance.jsonl.gz")
    pq.write_table(pa.table({"text": ["<p>one</p>", "two", None], "url": ["https://a.example/1", None, "https://a.example/3"]}), local / "rows.parquet")
    (local / "pages" / "sub").mkdir(parents=True)
    (local / "pages" / "a.html").write_text("<html><body><p>page a</p></body></html>")
    (local / "pages" / "sub" / "b.htm").write_text("<html><body><p>page b</p></body></html>")
    with moto_in_environment() as fs:
        fs.mkdir("readers")
        fs.put(str(local) + "/", "readers/files/", recursive=True)
        yield local, "s3://readers/files"


def _seen(docs) -> list[tuple]:
    return [(d.id, d.metadata[RAW_KEY], d.metadata.get(READ_ERROR_KEY), d.metadata.get("declared_charset")) for d in docs]


@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [("iana.warc.gz", "warc", {}), ("iana.warc.gz", "warc", {"warc_reader": "fastwarc"}), ("finance.jsonl.gz", "jsonl", {}),
     ("rows.parquet", "parquet", {}), ("pages", "html", {})],
)
def test_a_reader_over_the_store_yields_what_it_yields_over_local_files(store, name, fmt, options):
    local, url = store
    on_disk = list(read_file(InputFile(str(local / name), "src", "general", fmt, options=options)))
    on_store = list(read_file(InputFile(f"{url}/{name}", "src", "general", fmt, options=options)))
    assert len(on_disk) > 1 and _seen(on_store) == _seen(on_disk)
    if fmt == "html":  # a page's URL is its object's URL, as a local page's is its file URI
        assert [d.metadata["url"] for d in on_store] == [f"{url}/pages/a.html", f"{url}/pages/sub/b.htm"]
    else:
        assert [d.metadata["url"] for d in on_store] == [d.metadata["url"] for d in on_disk]


def test_source_globs_on_the_store_list_like_local_globs_and_stay_in_the_roots(store, tmp_path):
    local, url = store
    sources = [{"name": "w", "format": "warc", "domain": "general", "paths": [f"{url}/*.warc.gz"]},
               {"name": "j", "format": "jsonl", "domain": "finance", "paths": [f"{url}/*.jsonl.gz", f"{url}/nothing-*.jsonl"]},
               {"name": "h", "format": "html", "domain": "general", "paths": [f"{url}/pag*"]}]
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"runs_dir": str(tmp_path / "runs"), "sources": sources, "data_roots": [url]}))
    cfg = load_config(config, [])
    shards = list_shards(cfg.sources, cfg.read, cfg.data_roots)
    assert [(s.name, s.file.path) for s in shards] == [
        ("w-00000", f"{url}/iana.warc.gz"), ("j-00000", f"{url}/finance.jsonl.gz"), ("h-00000", f"{url}/pages")]
    outside = InputFile(f"{url}/../elsewhere/x.jsonl", "j", "finance", "jsonl", roots=(url,))
    with pytest.raises(OutsideDataRoots):
        list(read_file(outside))
