"""What every benchmark prints first: the machine it ran on, and the real text it ran over."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
from functools import cache
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sample_corpus"
# the 0.1 GB scale corpus (scripts/build_scale_corpus.py), where the per-page benchmarks take their pages
SCALE_CORPUS = Path(os.environ.get("CURATION_SCALE_CORPUS", Path.home() / ".cache" / "curation-scale-corpus")) / "0.1"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def versions(*packages: str) -> str:
    return ", ".join(f"{p} {version(p)}" for p in packages)


@cache
def corpus_texts(min_words: int = 0) -> list[str]:
    """Main text of every page of the bundled corpus (JSONL form), extracted with trafilatura."""
    import trafilatura

    texts = []
    for domain in ("finance", "general"):
        with gzip.open(CORPUS / "jsonl" / f"{domain}.jsonl.gz", "rt") as f:
            for line in f:
                text = trafilatura.extract(json.loads(line)["html"], favor_precision=True, deduplicate=False) or ""
                if len(text.split()) >= min_words:
                    texts.append(text)
    return texts


def report(text: str, out: str | Path) -> None:
    """A benchmark's table: printed, and kept in ``out`` (benchmarks/results/)."""
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text + "\n")



def page_sample_parser(description: str, out: str | None = None) -> argparse.ArgumentParser:
    """The options of a benchmark over the first ``--pages`` pages of the scale corpus, sides
    alternating for ``--rounds``, its table kept in ``--out`` (when it has one)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pages", type=int, default=4000)
    parser.add_argument("--corpus", type=Path, default=SCALE_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    if out is not None:
        parser.add_argument("--out", type=Path, default=Path(out))
    return parser
