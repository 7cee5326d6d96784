"""Held-out bits per byte per domain on the reference evaluation text.

    python -m trainer.eval --run runs/train [--eval-text data/eval/finance.jsonl ...] [--stride N] [--out bpb.json]

    bits per byte = (sum over the text of every token's negative log-likelihood, in nats)
                    / (ln 2 x the number of UTF-8 bytes of the text)

Per byte, not per token: a model with a coarser tokenizer predicts fewer, harder tokens, and only
the total cost of the text in bits, over the text's own size, compares models across tokenizers
(and curation variants, each of which trains its own).

How the text is fed. Each evaluation file is one domain (``finance.jsonl`` -> ``finance``), each
of its lines a document with a ``text``. A document is encoded alone with the curation run's
sentencepiece model and preceded by EOS: in training every document follows the EOS that closes
the one before it, so EOS is the context a document's first token has there too. The first token
is therefore predicted from EOS alone, and counted; the EOS is context only, and no EOS is scored
after the document (it stands for no byte of the text). A document longer than the model's
context is read in windows of ``seq_len`` inputs starting every ``stride`` tokens: with the default
stride of ``seq_len`` they do not overlap and a window's first tokens see only the context inside
it; a smaller stride gives every token at least ``seq_len - stride`` tokens of context at the cost
of re-reading them. Either way every token of the text is scored exactly once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tokenizer.store_path import StorePath, as_path
from tokenizer.storage import store_options

logger = logging.getLogger(__name__)

EVAL_TEXT = Path(__file__).resolve().parents[1] / "data" / "eval"
IGNORE = -100


def default_eval_text() -> list[str]:
    """The reference text shipped with the product (data/eval/, see its README)."""
    return [str(EVAL_TEXT / f"{domain}.jsonl") for domain in ("finance", "general")]


@dataclass
class EvalDomain:
    """One domain's evaluation text: each document's token ids (EOS first) and the text's UTF-8 size."""

    documents: list[np.ndarray] = field(default_factory=list)
    n_bytes: int = 0

    @property
    def tokens(self) -> int:
        return sum(len(d) - 1 for d in self.documents)


def domain_name(path: str | Path) -> str:
    return Path(path).name.split(".")[0]


def encode_eval_text(paths: list[str], tokenizer) -> dict[str, EvalDomain]:
    """Each JSON-lines file as one domain, encoded with ``tokenizer`` (``encode(text)``, ``eos_id``)."""
    domains: dict[str, EvalDomain] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"log.eval_text: {path} not found")
        domain = domains.setdefault(domain_name(path), EvalDomain())
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            text = json.loads(line)["text"]
            if text:
                domain.documents.append(np.array([tokenizer.eos_id, *tokenizer.encode(text)], dtype=np.int64))
                domain.n_bytes += len(text.encode("utf-8"))
    return domains


def manifest_tokenizer(manifest: str | Path | StorePath):
    """The sentencepiece model a curation run encoded its shards with, checked against the manifest's hash.
    A manifest on a store is read there: the model it names lies beside it (a node-local copy of the
    manifest holds only the shards)."""
    from tokenizer.model import Tokenizer

    path = as_path(manifest)
    path = path / "manifest.json" if path.is_dir() else path
    info = json.loads(path.read_text())["tokenizer"]
    tokenizer = Tokenizer(path.parent / info.get("model", "../tokenizer/spm.model"))
    if info.get("sha256") and tokenizer.sha256 != info["sha256"]:
        raise ValueError(f"{tokenizer.path} is not the tokenizer {path} was encoded with (sha256 differs)")
    return tokenizer


def load_eval_text(paths: list[str], manifest: str | Path) -> dict[str, EvalDomain]:
    return encode_eval_text(paths, manifest_tokenizer(manifest))


def windows(doc: np.ndarray, seq_len: int, stride: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) of the windows over one document (EOS first); a target that an earlier
    window already scored is ``IGNORE`` here, so each token is scored once."""
    if not 1 <= stride <= seq_len:
        raise ValueError(f"stride must lie in [1, seq_len={seq_len}], got {stride}")
    start, scored_to = 0, 1  # doc[1:scored_to] has been scored
    while scored_to < len(doc):
        end = min(start + seq_len, len(doc) - 1)
        targets = doc[start + 1 : end + 1].copy()
        targets[: scored_to - (start + 1)] = IGNORE
        yield doc[start:end], targets
        scored_to, start = end + 1, start + stride


@torch.no_grad()
def nll_sum(model, rows: list[tuple[np.ndarray, np.ndarray]], seq_len: int, batch_size: int, device, rank: int = 0, world: int = 1) -> tuple[float, int]:
    """(summed negative log-likelihood in nats, tokens scored) over the windows, in batches of
    ``batch_size`` per process; every process runs the same number of batches (FSDP gathers)."""
    per_step = batch_size * world
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for first in range(0, len(rows), per_step):
        inputs = torch.zeros(batch_size, seq_len, dtype=torch.long)
        targets = torch.full((batch_size, seq_len), IGNORE, dtype=torch.long)
        for i, (x, y) in enumerate(rows[first + rank : first + per_step : world]):
            inputs[i, : len(x)] = torch.from_numpy(x)
            targets[i, : len(y)] = torch.from_numpy(y)
        loss, _, n = model(inputs.to(device), None, targets.to(device))  # z-loss 0: the summed cross-entropy
        total += torch.stack([loss.detach().double(), n.double()])
    if world > 1:
        dist.all_reduce(total)
    return total[0].item(), int(total[1].item())


def domain_bpb(model, domains: dict[str, EvalDomain], seq_len: int, batch_size: int, device, rank: int = 0, world: int = 1,
               stride: int | None = None) -> dict[str, dict]:
    """Per domain: bits per byte, the summed NLL in nats, and the tokens, bytes and documents it covers."""
    was_training = model.training
    model.eval()
    out = {}
    try:
        for name, domain in sorted(domains.items()):
            rows = [w for doc in domain.documents for w in windows(doc, seq_len, stride or seq_len)]
            nll, scored = nll_sum(model, rows, seq_len, batch_size, device, rank, world)
            assert scored == domain.tokens, f"{name}: scored {scored} tokens of {domain.tokens}"
            out[name] = {"bpb": nll / (math.log(2) * domain.n_bytes), "nll_nats": nll, "tokens": scored, "bytes": domain.n_bytes,
                         "documents": len(domain.documents)}
    finally:
        model.train(was_training)
    return out


def eval_bpb(model, domains: dict[str, EvalDomain], seq_len: int, batch_size: int, device, rank: int = 0, world: int = 1) -> dict[str, float]:
    """``{"val_bpb/<domain>": bits per byte}`` for a training run's metrics; empty for a bidirectional
    model (a masked-LM encoder assigns no probability to a text left to right)."""
    if not domains or (getattr(model, "cfg", None) is not None and model.cfg.bidirectional):
        return {}
    return {f"val_bpb/{name}": r["bpb"] for name, r in domain_bpb(model, domains, seq_len, batch_size, device, rank, world).items()}


def load_run_model(run_dir: str | Path, device: torch.device):
    """(model of the latest complete checkpoint of a training run, in eval mode; its step; the run's config)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader  # not re-exported by the package

    from trainer.model import ModelConfig, Transformer

    run = as_path(run_dir)  # a run on a store is read there
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"--run: {run / 'config.json'} not found; give the folder of a training run")
    done = sorted((run / "checkpoints").glob("step-*/extra.json"))
    if not done:
        raise FileNotFoundError(f"--run: no complete checkpoint under {run / 'checkpoints'}")
    config = json.loads((run / "config.json").read_text())
    model = Transformer(ModelConfig(**config["model"])).to(device)
    state = {"model": model.state_dict()}
    checkpoint = str(done[-1].parent)
    reader = FsspecReader(checkpoint, **store_options(checkpoint)) if isinstance(run, StorePath) else None
    dcp.load(state, checkpoint_id=checkpoint, storage_reader=reader, no_dist=not dist.is_initialized())
    model.load_state_dict(state["model"])
    model.eval()
    return model, json.loads(done[-1].read_text())["step"], config


def evaluate_run(run_dir: str | Path, eval_text: list[str] | None = None, manifest: str | None = None, stride: int | None = None,
                 batch_size: int | None = None, device: str | None = None) -> dict:
    """Bits per byte of a training run's latest checkpoint on the evaluation text, with its curation run's tokenizer."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, step, config = load_run_model(run_dir, dev)
    if model.cfg.bidirectional:
        raise ValueError(f"{run_dir}: a bidirectional model assigns no left-to-right probability; bits per byte needs a causal one")
    manifest = manifest or config["data"]["manifest"]
    paths = eval_text or config.get("log", {}).get("eval_text") or default_eval_text()
    tokenizer = manifest_tokenizer(manifest)
    seq_len = model.cfg.seq_len
    results = domain_bpb(model, encode_eval_text(paths, tokenizer), seq_len, batch_size or config["optim"]["micro_batch"], dev, stride=stride)
    return {"run": str(run_dir), "step": step, "manifest": str(manifest), "tokenizer_sha256": tokenizer.sha256, "eval_text": paths,
            "seq_len": seq_len, "stride": stride or seq_len, "bpb": {d: r["bpb"] for d, r in results.items()}, "domains": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.eval", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a training run's folder (config.json, checkpoints/)")
    parser.add_argument("--eval-text", nargs="+", help="JSON-lines files, one per domain (default: the run's log.eval_text)")
    parser.add_argument("--data", help="the curation run's tokens/ or manifest.json (default: the run's data.manifest)")
    parser.add_argument("--stride", type=int, help="tokens between window starts (default: seq_len, no overlap)")
    parser.add_argument("--batch", type=int, help="windows per forward pass (default: the run's optim.micro_batch)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--out", help="where to write the JSON (default: <run>/eval_bpb.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate_run(args.run, args.eval_text, args.data, args.stride, args.batch, args.device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = as_path(args.out) if args.out else as_path(args.run) / "eval_bpb.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"step": result["step"], "bpb": result["bpb"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
