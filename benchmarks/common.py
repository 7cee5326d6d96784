"""What every benchmark prints first: the machine it ran on, and the real text it ran over."""

from __future__ import annotations

import gzip
import json
import os
import platform
from functools import cache
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sample_corpus"


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

