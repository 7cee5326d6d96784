"""Training data from token shards: memory-mapped documents packed into fixed-length sequences.

Each domain's documents (EOS already appended by the curation run) are concatenated into one
stream; a sequence is the next ``seq_len + 1`` tokens of a stream. A deterministic deficit
round-robin picks, for every global sequence, the domain furthest behind the share it was due
(summed over every draw at the ratio of its step), so static ratios and ratio schedules both hold
to within one sequence. The position is kept in tokens
consumed per domain and in sequences drawn overall, never in per-rank iterator state: the same
global stream continues whatever the number of processes, and rank r of w takes the global
sequences r, r + w, r + 2w, ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


class DomainStream:
    """The documents of one domain, end to end, read through the shards' memory maps."""

    def __init__(self, pieces: list[tuple[np.ndarray, int, int]]):
        self.pieces = pieces  # (flat token array, start, end) per document
        lengths = np.array([end - start for _, start, end in pieces], dtype=np.int64)
        self.bounds = np.concatenate([[0], np.cumsum(lengths)])
        self.length = int(self.bounds[-1])

    def take(self, position: int, n: int) -> np.ndarray:
        """``n`` tokens from ``position`` (wrapping around: a new epoch of the domain)."""
        out = np.empty(n, dtype=np.int64)
        filled = 0
        position %= self.length
        while filled < n:
            doc = int(np.searchsorted(self.bounds, position, side="right")) - 1
            flat, start, end = self.pieces[doc]
            offset = start + position - int(self.bounds[doc])
            count = min(n - filled, end - offset)
            out[filled : filled + count] = flat[offset : offset + count]
            filled += count
            position = (position + count) % self.length
        return out


def load_streams(manifest_path: Path, val_fraction: float) -> tuple[dict[str, DomainStream], dict[str, DomainStream], dict]:
    """(train streams, validation streams) per domain; the last ``val_fraction`` of each domain's
    documents, in manifest order, is held out."""
    from tokenizer.manifest import Manifest
    from tokenizer.shards import TokenShard  # pyarrow only where shards are read (the GPU benchmark imports the trainer without it)

    manifest = Manifest.load(manifest_path)
    docs: dict[str, list] = {}
    for entry in manifest.shards:
        shard = TokenShard(Path(manifest_path).parent / entry.file)
        for i in range(len(shard)):
            docs.setdefault(shard.domains[i].as_py(), []).append((shard.tokens, int(shard.offsets[i]), int(shard.offsets[i + 1])))
    train, val = {}, {}
    for domain, pieces in sorted(docs.items()):
        n_val = int(len(pieces) * val_fraction) if len(pieces) > 1 else 0
        train[domain] = DomainStream(pieces[: len(pieces) - n_val] if n_val else pieces)
        if n_val:
            val[domain] = DomainStream(pieces[len(pieces) - n_val :])
    return train, val, manifest.to_dict()


@dataclass
class MixtureState:
    sequences: int = 0
    positions: dict[str, int] = field(default_factory=dict)  # tokens consumed per domain
    counts: dict[str, int] = field(default_factory=dict)  # sequences drawn per domain
    expected: dict[str, float] = field(default_factory=dict)  # sequences each domain was due, summed over draws


class MixtureSampler:
    """Global sequences from per-domain streams at (possibly scheduled) target ratios."""

    def __init__(self, streams: dict[str, DomainStream], seq_len: int, ratios: dict[str, float] | None = None,
                 schedule: list[tuple[int, dict[str, float]]] | None = None):
        self.streams = streams
        self.seq_len = seq_len
        natural = {d: s.length for d, s in streams.items()}
        base = ratios or {d: n / sum(natural.values()) for d, n in natural.items()}
        unknown = set(base) - set(streams)
        if unknown:
            raise ValueError(f"data.ratios names domains the shards do not hold: {sorted(unknown)}")
        self.schedule = sorted(schedule or [(0, base)])
        self.state = MixtureState(positions={d: 0 for d in streams}, counts={d: 0 for d in streams}, expected={d: 0.0 for d in streams})

    def ratios_at(self, step: int) -> dict[str, float]:
        """Linear interpolation between scheduled (step, ratios) points."""
        points = self.schedule
        if step <= points[0][0]:
            return points[0][1]
        for (s0, r0), (s1, r1) in zip(points, points[1:]):
            if step < s1:
                a = (step - s0) / (s1 - s0)
                return {d: (1 - a) * r0.get(d, 0) + a * r1.get(d, 0) for d in set(r0) | set(r1)}
        return points[-1][1]

    def next_sequence(self, step: int) -> np.ndarray:
        ratios = self.ratios_at(step)
        total = sum(ratios.values())
        for d in self.streams:  # each draw owes every domain its share at this step
            self.state.expected[d] += ratios.get(d, 0) / total
        domain = max(sorted(self.streams), key=lambda d: self.state.expected[d] - self.state.counts[d])
        seq = self.streams[domain].take(self.state.positions[domain], self.seq_len + 1)
        self.state.positions[domain] += self.seq_len
        self.state.counts[domain] += 1
        self.state.sequences += 1
        return seq

    def batch(self, step: int, global_batch: int, rank: int, world: int) -> torch.Tensor:
        """This rank's share of the step's ``global_batch`` sequences, (global_batch / world, seq_len + 1)."""
        rows = [self.next_sequence(step) for _ in range(global_batch)]
        return torch.from_numpy(np.stack(rows[rank::world]))

    def state_dict(self) -> dict:
        s = self.state
        return {"sequences": s.sequences, "positions": dict(s.positions), "counts": dict(s.counts), "expected": dict(s.expected)}

    def load_state_dict(self, state: dict) -> None:
        self.state = MixtureState(state["sequences"], dict(state["positions"]), dict(state["counts"]), dict(state["expected"]))


class _StepStream(torch.utils.data.IterableDataset):
    """``make(step)`` for every step in [first, last), in order, tagged with its step; the first
    is made (the sampler advances past it) but not yielded: the training process makes that one."""

    def __init__(self, make, first: int, last: int):
        self.make, self.first, self.last = make, first, last

    def __iter__(self):
        self.make(self.first)
        for step in range(self.first + 1, self.last):
            yield (step, *self.make(step))


class StepBatches:
    """Each step's batch, built ahead in a worker process while the current step trains.

    ``make(step)`` returns (batch, the sampler's state after it); one worker (a torch DataLoader
    worker, forked so that it inherits the sampler and the shards' memory maps) calls it for the
    steps in order, so the sampler advances in step order; the state travels with its batch, and a
    checkpoint records what training consumed, not what was prefetched. ``get`` reports how long
    the step waited: the data loader's exposed share of step time. A process, not a thread: a
    builder thread shares the interpreter lock with the training loop, whose Python it slows and
    which slows it (``python -m benchmarks.data_loader``). The batches should be contiguous (every
    objective's are): strided views were gathered on the CPU by the training process before their copy, 12-19 ms a step of the 124m preset on an H200
    (benchmarks/DEVICE_NOTES.md, runs 23-27). The first step's batch is built in the training
    process (the worker, forked here, is still starting then: on two busy cores the first step
    waited over 5% of itself for it); the worker serves the steps after it. ``ahead=False`` builds
    each batch when it is asked for.
    """

    def __init__(self, make, first: int, last: int, ahead: bool = True, pin_memory: bool = False, depth: int = 2):
        self.make, self.first, self.next_step = make, first, first
        self._batches = None
        if ahead and first + 1 < last:
            loader = torch.utils.data.DataLoader(_StepStream(make, first, last), batch_size=None, num_workers=1, prefetch_factor=depth,
                                                 pin_memory=pin_memory, multiprocessing_context="fork")
            self._batches = iter(loader)

    def get(self, step: int):
        """(batch, data state after it, seconds waited) of ``step``, the step after the previous call's."""
        if step != self.next_step:
            raise ValueError(f"batches are built in step order: asked for step {step}, the next is {self.next_step}")
        start = time.perf_counter()
        if self._batches is not None and step > self.first:
            built, batch, state = next(self._batches)
            assert built == step, (built, step)
        else:
            batch, state = self.make(step)
        self.next_step += 1
        return batch, state, time.perf_counter() - start

    def close(self) -> None:
        """Stops the worker (also when training ends before the last step it was given)."""
        if self._batches is not None:
            self._batches._shutdown_workers()
            self._batches = None
