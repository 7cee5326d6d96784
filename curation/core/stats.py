"""Per-stage, per-domain accounting: documents, bytes and tokens in, kept, rejected (by reason) and out.

``in`` and the ``kept``/``rejected`` split are measured on a document as it enters the stage, so
``in == kept + rejected`` holds exactly for documents, bytes and tokens. ``out`` is measured on the
kept documents as they leave the stage: it differs from ``kept`` only for stages that rewrite the
text (extraction turns HTML into text; the C4 filter drops lines; PII redaction).

A document is counted under the domain it entered the stage with. A stage that assigns a domain
(the domain classifier, for untagged sources) records where its kept documents went in
``reassigned`` (new domain -> counts, measured as they leave), so the next stage's ``in`` per
domain is this stage's ``out`` minus what left for another domain plus what came in from one.
``counters`` are named integers a stage reports beside the funnel (e.g. ``pii:email``).

``retention`` and ``domain_assignment`` read a run's figures off its merged stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenizer.retention import Retention


@dataclass
class Counts:
    docs: int = 0
    bytes: int = 0
    tokens: int = 0

    def add(self, n_bytes: int, n_tokens: int, docs: int = 1) -> None:
        self.docs += docs
        self.bytes += n_bytes
        self.tokens += n_tokens

    def merge(self, other: Counts) -> None:
        self.add(other.bytes, other.tokens, other.docs)

    def to_dict(self) -> dict[str, int]:
        return {"docs": self.docs, "bytes": self.bytes, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict) -> Counts:
        return cls(int(d["docs"]), int(d["bytes"]), int(d["tokens"]))


@dataclass
class DomainStats:
    in_: Counts = field(default_factory=Counts)
    kept: Counts = field(default_factory=Counts)
    rejected: Counts = field(default_factory=Counts)
    out: Counts = field(default_factory=Counts)
    reasons: dict[str, Counts] = field(default_factory=dict)
    reassigned: dict[str, Counts] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def merge(self, other: DomainStats) -> None:
        for name in ("in_", "kept", "rejected", "out"):
            getattr(self, name).merge(getattr(other, name))
        for reason, counts in other.reasons.items():
            self.reasons.setdefault(reason, Counts()).merge(counts)
        for domain, counts in other.reassigned.items():
            self.reassigned.setdefault(domain, Counts()).merge(counts)
        self.add_counters(other.counters)

    def add_counters(self, counters: dict[str, int]) -> None:
        for name, n in counters.items():
            self.counters[name] = self.counters.get(name, 0) + n

    def to_dict(self) -> dict:
        return {
            "in": self.in_.to_dict(),
            "kept": self.kept.to_dict(),
            "rejected": self.rejected.to_dict(),
            "out": self.out.to_dict(),
            "rejected_by_reason": {r: c.to_dict() for r, c in sorted(self.reasons.items())},
            **({"reassigned_to": {d: c.to_dict() for d, c in sorted(self.reassigned.items())}} if self.reassigned else {}),
            **({"counters": dict(sorted(self.counters.items()))} if self.counters else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DomainStats:
        return cls(
            in_=Counts.from_dict(d["in"]),
            kept=Counts.from_dict(d["kept"]),
            rejected=Counts.from_dict(d["rejected"]),
            out=Counts.from_dict(d["out"]),
            reasons={r: Counts.from_dict(c) for r, c in d["rejected_by_reason"].items()},
            reassigned={r: Counts.from_dict(c) for r, c in d.get("reassigned_to", {}).items()},
            counters={k: int(v) for k, v in d.get("counters", {}).items()},
        )


@dataclass
class StageStats:
    name: str
    wall_time_s: float = 0.0
    domains: dict[str, DomainStats] = field(default_factory=dict)

    def domain(self, name: str) -> DomainStats:
        return self.domains.setdefault(name, DomainStats())

    def record_kept(self, domain: str, size_in: tuple[int, int], size_out: tuple[int, int], copies: int = 1) -> None:
        """``out`` counts every copy that goes on (the mix repeats documents of a scarce domain)."""
        d = self.domain(domain)
        d.in_.add(*size_in)
        d.kept.add(*size_in)
        d.out.add(size_out[0] * copies, size_out[1] * copies, docs=copies)

    def record_reassigned(self, domain: str, new_domain: str, size_out: tuple[int, int]) -> None:
        self.domain(domain).reassigned.setdefault(new_domain, Counts()).add(*size_out)

    def record_rejected(self, domain: str, reason: str, size_in: tuple[int, int]) -> None:
        d = self.domain(domain)
        d.in_.add(*size_in)
        d.rejected.add(*size_in)
        d.reasons.setdefault(reason, Counts()).add(*size_in)

    def total(self) -> DomainStats:
        total = DomainStats()
        for d in self.domains.values():
            total.merge(d)
        return total

    def merge(self, other: StageStats) -> None:
        assert other.name == self.name, (self.name, other.name)
        self.wall_time_s += other.wall_time_s
        for name, d in other.domains.items():
            self.domain(name).merge(d)

    def invariant_violations(self) -> list[str]:
        """Names every (domain, measure) where in != kept + rejected; empty when the books balance."""
        problems = []
        for name, d in sorted(self.domains.items()):
            for measure in ("docs", "bytes", "tokens"):
                n_in = getattr(d.in_, measure)
                n_split = getattr(d.kept, measure) + getattr(d.rejected, measure)
                by_reason = sum(getattr(c, measure) for c in d.reasons.values())
                if n_in != n_split or by_reason != getattr(d.rejected, measure):
                    problems.append(f"{self.name}/{name}/{measure}: in={n_in} kept+rejected={n_split} reasons={by_reason}")
        return problems

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "wall_time_s": round(self.wall_time_s, 3),
            "total": self.total().to_dict(),
            "domains": {n: d.to_dict() for n, d in sorted(self.domains.items())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> StageStats:
        return cls(
            name=d["name"],
            wall_time_s=float(d["wall_time_s"]),
            domains={n: DomainStats.from_dict(x) for n, x in d["domains"].items()},
        )


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def domain_assignment(stage: StageStats) -> dict:
    """Per domain, what left a domain-assigning stage (the domain classifier) with a tag from its
    source and what it classified, and how often the classifier agreed with a source's tag."""
    out: dict[str, dict] = {}
    for name, d in sorted(stage.domains.items()):
        moved = Counts()
        for target, counts in sorted(d.reassigned.items()):
            out.setdefault(target, {"tagged": Counts(), "classified": Counts()})["classified"].merge(counts)
            moved.merge(counts)
        stayed = Counts(d.out.docs - moved.docs, d.out.bytes - moved.bytes, d.out.tokens - moved.tokens)
        if stayed.docs:
            out.setdefault(name, {"tagged": Counts(), "classified": Counts()})["tagged"].merge(stayed)
    counters = stage.total().counters
    return {
        "per_domain": {d: {k: c.to_dict() for k, c in v.items()} for d, v in sorted(out.items())},
        "tagged_agreement": ratio(counters.get("tagged_agrees", 0), counters.get("tagged_agrees", 0) + counters.get("tagged_disagrees", 0)),
    }


def retention(stages: list[StageStats], extract_stage: str, shard_tokens: int | None = None, raw_counted: bool = True) -> Retention:
    """What survives every stage, against what came in and against the extracted text: the output
    of ``extract_stage`` (without that stage, the first stage's input).

    ``tokens_vs_extracted`` is the headline figure: tokens kept over the tokens of the text that
    extraction produced (the raw extracted input), both counted with the run's tokenizer.
    ``shard_tokens``: the tokens written to the token shards (EOS included), if the run wrote any.
    ``raw_counted``: false when the HTML records' tokens were not counted (then no ``tokens_vs_raw``).
    """
    first, last = stages[0].total(), stages[-1].total()
    extract = next((s for s in stages if s.name == extract_stage), None)
    extracted = extract.total().out if extract else first.in_
    per_domain = {}
    # untagged documents enter under "untagged" and leave under the domain the classifier gave them
    for domain in sorted(set(stages[0].domains) | set(stages[-1].domains)):
        d_in = stages[0].domains[domain].in_ if domain in stages[0].domains else Counts()
        d_kept = stages[-1].domains[domain].out if domain in stages[-1].domains else Counts()
        if extract is None:
            d_extracted = d_in
        else:
            d_extracted = extract.domains[domain].out if domain in extract.domains else Counts()
        per_domain[domain] = {
            "docs_in": d_in.docs,
            "docs_kept": d_kept.docs,
            "tokens_extracted": d_extracted.tokens,
            "tokens_kept": d_kept.tokens,
            "docs": ratio(d_kept.docs, d_in.docs),
            "tokens_vs_extracted": ratio(d_kept.tokens, d_extracted.tokens),
        }
    return Retention(
        docs=ratio(last.out.docs, first.in_.docs),
        bytes_vs_raw=ratio(last.out.bytes, first.in_.bytes),
        tokens_vs_raw=ratio(last.out.tokens, first.in_.tokens) if raw_counted else None,
        tokens_vs_extracted=ratio(last.out.tokens, extracted.tokens),
        tokens_extracted=extracted.tokens,
        tokens_kept=last.out.tokens,
        per_domain=per_domain,
        # the headline: tokens in the shards (EOS included) over tokens of the extracted text
        tokens_in_shards=shard_tokens,
        shard_tokens_vs_extracted=ratio(shard_tokens, extracted.tokens) if shard_tokens is not None else None,
    )
