"""Build the scale corpus: HTML manuals from pinned Debian documentation packages, as WARC shards.

    python scripts/build_scale_corpus.py --size 0.1 [--cache-dir DIR] [--force]

The bundled corpus is 5.8 MB; throughput at scale needs more. Debian ships large HTML manuals:
LibreOffice's help in 34 languages (the same manual translated, and en-US / en-GB nearly
identical: near-duplicates), Rust's and Java's API references (heavy navigation boilerplate),
Python, Django and PostgreSQL manuals, and a finance side (GnuCash's guide and help in five
languages, ledger, hledger's and OFX's API docs, Eqonomize, and LibreOffice Calc's
financial-function pages in every language).

Every package is pinned (``apt-get download pkg=version``), so a build gives the same pages on
any machine; records are ordered by a hash of their URL and a size is the shortest prefix of that
order holding at least ``size`` GB of HTML and ``size`` x 100k records, so the sizes nest and each
one mixes every source and language. WARC records carry fixed dates and ids derived from their
content, and warcio's gzip members have no timestamps, so shards are byte-identical across builds;
``manifest.json`` holds each shard's sha256, and a shard that is missing or differs is rebuilt.

Output (outside the repository, never committed): ``<cache>/<size>/{finance,general}-NNNNN.warc.gz``,
``manifest.json`` and ``curation.yaml`` (a run config with both sources tagged by domain).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DEFAULT_CACHE = Path(os.environ.get("CURATION_SCALE_CORPUS", Path.home() / ".cache" / "curation-scale-corpus"))
SIZES = ("0.1", "0.3", "1")
SHARD_HTML_BYTES = 16_000_000  # per shard: 0.1 GB gives several shards per core, 1 GB ~80 of them
WARC_DATE = "2024-06-01T00:00:00Z"
LO_VERSION = "4:7.4.7-1+deb12u14"
LO_LANGS = (
    "ca cs da de dz el en-gb en-us es et eu fi fr gl hi hu id it ja km ko nl om pl pt pt-br ru sk sl sv tr vi zh-cn zh-tw"
).split()
# LibreOffice Calc's financial-function pages (by file name, the same in every language)
LO_FINANCE_PAGES = {"04060103.html", "04060118.html", "04060119.html", "func_opt_barrier.html",
                    "func_opt_prob_hit.html", "func_opt_prob_inmoney.html", "func_opt_touch.html"}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    root: str  # folder inside the package whose pages are published
    url: str  # URL the root is published at
    domain: str  # finance | general | lo (LibreOffice: finance pages by name, the rest general)


PACKAGES = [
    *(Package(f"libreoffice-help-{lang}", LO_VERSION, "usr/share/libreoffice/help", "https://help.libreoffice.org/7.4", "lo") for lang in LO_LANGS),
    Package("python3.11-doc", "3.11.2-6+deb12u9", "usr/share/doc/python3.11/html", "https://docs.python.org/3.11", "general"),
    Package("postgresql-doc-15", "15.20-0+deb12u1", "usr/share/doc/postgresql-doc-15/html", "https://www.postgresql.org/docs/15", "general"),
    Package("rust-doc", "1.63.0+dfsg1-2", "usr/share/doc/rust-doc/html", "https://doc.rust-lang.org/1.63.0", "general"),
    Package("openjdk-17-doc", "17.0.21.1+2-1~deb12u1", "usr/share/doc/openjdk-17-jre-headless/api", "https://docs.oracle.com/en/java/javase/17/docs/api", "general"),
    Package("python-django-doc", "3:3.2.25-0+deb12u7", "usr/share/doc/python-django-doc/html", "https://docs.djangoproject.com/en/3.2", "general"),
    Package("gnucash-docs", "4.13-1", "usr/share/doc/gnucash-docs", "https://www.gnucash.org/docs/v4", "finance"),
    Package("ledger", "3.3.0-3", "usr/share/doc/ledger", "https://ledger-cli.org/doc", "finance"),
    Package("libghc-hledger-lib-doc", "1.25-1", "usr/share/doc/libghc-hledger-lib-doc/html", "https://hackage.haskell.org/package/hledger-lib-1.25/docs", "finance"),
    Package("libghc-ofx-doc", "0.4.4.0-2", "usr/share/doc/libghc-ofx-doc/html", "https://hackage.haskell.org/package/ofx-0.4.4.0/docs", "finance"),
    Package("eqonomize-doc", "1.5.4-1", "usr/share/doc/eqonomize/html", "https://eqonomize.github.io/doc", "finance"),
]
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")
_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_LO_LANG = re.compile(r"help\.libreoffice\.org/[^/]+/([A-Za-z-]+)/")
_GNUCASH_LANG = re.compile(r"gnucash-(?:guide|help)-([a-z]{2})")


@dataclass(frozen=True)
class Page:
    key: str  # sha256 of the URL: the corpus order
    url: str
    path: str
    size: int  # bytes of HTML (uncompressed)
    domain: str


def download(debs: Path) -> dict[str, Path]:
    """The pinned .deb of every package, downloaded once into ``debs``."""
    debs.mkdir(parents=True, exist_ok=True)
    found = {p.name: next(iter(sorted(debs.glob(f"{p.name}_*.deb"))), None) for p in PACKAGES}
    missing = [f"{p.name}={p.version}" for p in PACKAGES if found[p.name] is None]
    if missing:
        print(f"apt-get download {len(missing)} packages into {debs}", file=sys.stderr)
        if not _apt_download(missing, debs):
            # a fresh machine's package lists may predate the pins: refresh them once
            subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
            for pin in missing:
                if not _apt_download([pin], debs):
                    # the archive dropped this pin (superseded security update): take the current
                    # version; manifest.json records the versions used, and its shas will differ
                    name = pin.split("=", 1)[0]
                    print(f"warning: {pin} is no longer in the archive; using the current {name}", file=sys.stderr)
                    if not _apt_download([name], debs):
                        raise SystemExit(f"apt-get download {name} failed: is a Debian archive reachable?")
        found = {p.name: next(iter(sorted(debs.glob(f"{p.name}_*.deb")))) for p in PACKAGES}
    return found


def _apt_download(pins: list[str], debs: Path) -> bool:
    result = subprocess.run(["apt-get", "download", *pins], cwd=debs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return result.returncode == 0


def unpack(debs: dict[str, Path], tree: Path) -> None:
    for pkg in tqdm(PACKAGES, desc="dpkg -x", unit="pkg"):
        target = tree / pkg.name
        marker = target / ".unpacked"
        if not marker.exists():
            target.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(debs[pkg.name]), str(target)], check=True)
            marker.write_text(pkg.version)


def html_size(path: Path) -> int:
    if path.name.endswith(".gz"):
        with gzip.open(path) as f:
            return len(f.read())
    return path.stat().st_size


def list_pages(tree: Path) -> list[Page]:
    """Every HTML page of every package, in corpus order (by URL hash)."""
    pages = []
    for pkg in PACKAGES:
        root = tree / pkg.name / pkg.root
        for path in sorted(p for p in root.rglob("*") if p.name.endswith(HTML_SUFFIXES) and p.is_file()):
            rel = path.relative_to(root).as_posix().removesuffix(".gz")
            url = f"{pkg.url}/{rel}"
            domain = pkg.domain if pkg.domain != "lo" else ("finance" if path.name in LO_FINANCE_PAGES else "general")
            pages.append(Page(hashlib.sha256(url.encode()).hexdigest(), url, str(path), html_size(path), domain))
    pages.sort(key=lambda p: p.key)
    return pages


def select(pages: list[Page], size: str) -> list[Page]:
    """The shortest prefix with >= size GB of HTML and >= size x 100k records (so sizes nest)."""
    want_bytes, want_records = float(size) * 1e9, float(size) * 1e5
    total = 0
    for i, page in enumerate(pages):
        total += page.size
        if total >= want_bytes and i + 1 >= want_records:
            return pages[: i + 1]
    raise SystemExit(f"only {total / 1e9:.2f} GB in {len(pages)} pages: not enough for size {size}")


def read_html(path: str) -> bytes:
    if path.endswith(".gz"):
        with gzip.open(path) as f:
            return f.read()
    return Path(path).read_bytes()


def write_shard(out: Path, pages: list[Page]) -> dict:
    """One gzip-per-record WARC of response records; returns its manifest entry."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for page in pages:
        body = read_html(page.path)
        match = _CHARSET.search(body[:4096])
        charset = match.group(1).decode("ascii").lower() if match else "utf-8"
        http = StatusAndHeaders("200 OK", [("Content-Type", f"text/html; charset={charset}"), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
        digest = hashlib.sha256(page.url.encode() + b"\0" + body).digest()
        headers = {
            "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(bytes=digest[:16])}>",
            "WARC-Date": WARC_DATE,
            # datatrove's WarcReader skips records whose identified payload type is not HTML-like
            "WARC-Identified-Payload-Type": "text/html",
        }
        writer.write_record(writer.create_warc_record(page.url, "response", payload=io.BytesIO(body), http_headers=http, warc_headers_dict=headers))
    data = buffer.getvalue()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return {"file": out.name, "sha256": hashlib.sha256(data).hexdigest(), "records": len(pages),
            "html_bytes": sum(p.size for p in pages), "warc_bytes": len(data)}


def plan_shards(pages: list[Page]) -> dict[str, list[list[Page]]]:
    """Pages split by domain (a source has one domain), each domain cut into ~SHARD_HTML_BYTES shards."""
    shards: dict[str, list[list[Page]]] = {}
    for domain in ("finance", "general"):
        current, size = [], 0
        for page in (p for p in pages if p.domain == domain):
            current.append(page)
            size += page.size
            if size >= SHARD_HTML_BYTES:
                shards.setdefault(domain, []).append(current)
                current, size = [], 0
        if current:
            shards.setdefault(domain, []).append(current)
    return shards


def language(url: str) -> str:
    if m := _LO_LANG.search(url):
        return m.group(1).lower()
    if m := _GNUCASH_LANG.search(url):
        return m.group(1)
    return "en"


def write_config(out: Path, size: str) -> Path:
    config = {
        "run_name": f"scale-{size}",
        "runs_dir": str(out / "runs"),
        "sources": [
            {"name": f"scale-{domain}", "format": "warc", "domain": domain, "paths": [str(out / f"{domain}-*.warc.gz")]}
            for domain in ("finance", "general")
        ],
    }
    path = out / "curation.yaml"
    path.write_text("# the scale corpus; python -m pipelines.web_corpus --config " + str(path) + "\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def is_complete(out: Path) -> bool:
    manifest = out / "manifest.json"
    if not manifest.exists():
        return False
    entries = json.loads(manifest.read_text())["shards"]
    return all((out / e["file"]).exists() and sha256_file(out / e["file"]) == e["sha256"] for e in entries)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build(size: str, cache: Path, force: bool = False, workers: int | None = None) -> Path:
    """Build (or verify) one size; returns the path of its ``curation.yaml``."""
    out = cache / size
    if not force and is_complete(out):
        print(f"{out}: complete (every shard's sha256 matches manifest.json)", file=sys.stderr)
        return write_config(out, size)
    debs = download(cache / "debs")
    unpack(debs, cache / "tree")
    pages = select(list_pages(cache / "tree"), size)
    plan = [(domain, i, shard) for domain, shards in plan_shards(pages).items() for i, shard in enumerate(shards)]
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.warc.gz"):
        stale.unlink()
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        futures = [(domain, pool.submit(write_shard, out / f"{domain}-{i:05d}.warc.gz", shard)) for domain, i, shard in plan]
        entries = [dict(f.result(), domain=domain) for domain, f in tqdm(futures, desc=f"WARC shards ({size} GB)", unit="shard")]
    langs: dict[str, int] = {}
    for page in pages:
        langs[language(page.url)] = langs.get(language(page.url), 0) + 1
    manifest = {
        "size": size,
        "records": len(pages),
        "html_bytes": sum(p.size for p in pages),
        "records_by_domain": {d: sum(p.domain == d for p in pages) for d in ("finance", "general")},
        "languages": dict(sorted(langs.items())),
        # the versions actually unpacked (a .deb is named name_version_arch, the epoch's ':' as %3a)
        "packages": {name: deb.name.split("_")[1].replace("%3a", ":") for name, deb in sorted(debs.items())},
        "selection": "pages ordered by sha256(url); the shortest prefix with >= size GB of HTML and >= size x 100k records",
        "shards": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return write_config(out, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, action="append", help="GB of HTML (repeatable; default 0.1)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE} ($CURATION_SCALE_CORPUS)")
    parser.add_argument("--force", action="store_true", help="rebuild even if every shard matches the manifest")
    args = parser.parse_args(argv)
    for size in args.size or ["0.1"]:
        config = build(size, args.cache_dir, args.force)
        manifest = json.loads((config.parent / "manifest.json").read_text())
        print(f"{size} GB: {manifest['records']} records, {manifest['html_bytes'] / 1e9:.3f} GB HTML, "
              f"{len(manifest['shards'])} shards, {len(manifest['languages'])} languages, by domain {manifest['records_by_domain']}")
        print(f"  python -m pipelines.web_corpus --config {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
