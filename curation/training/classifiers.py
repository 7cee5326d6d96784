"""Train the quality and domain classifiers from the labelled pages we ship, and report held-out metrics.

    python -m curation.training.classifiers                      # both, into data/classifiers/
    python -m curation.training.classifiers domain --out-dir /tmp/models --data data/classifiers/pages.jsonl.gz

The data (``data/classifiers/pages.jsonl.gz``, rebuilt by ``scripts/build_classifier_data.py``
from Debian packages) holds real English pages with a quality label, a domain and a split. Each
model is trained on the ``train`` split with one thread and a fixed seed (deterministic), scored
on the ``heldout`` split (pages whose file names hash to a quarter of the space, never trained on),
quantized to a small ``.ftz`` and saved with a JSON card: the sha256 of the training data,
hyperparameters, label counts and held-out accuracy, precision and recall.

Training runs fastText's own command-line tool (Debian's ``fasttext`` 0.9.2, which ``make setup``
unpacks into ``.venv/opt/fasttext``; or ``$FASTTEXT_BIN``): with one thread and a seed it gives
the same model bytes every time. The Python wheel's ``train_supervised`` does not (on this
machine it fails with "Encountered NaN" on most calls and gives different models from one seed),
so it is only the fallback, with retries, and the card says which trainer ran.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from curation.filters.classifier import LABEL_PREFIX, FastTextModel, card_path, normalize

logger = logging.getLogger(__name__)

CLASSIFIER_DIR = Path(__file__).resolve().parents[2] / "data" / "classifiers"
DEFAULT_DATA = CLASSIFIER_DIR / "pages.jsonl.gz"


@dataclass(frozen=True)
class Task:
    name: str
    label_field: str
    positive: str  # the label precision and recall are reported for
    pages_only: bool  # domain: learn from the pages a domain is given to (high-quality pages), not boilerplate

    def examples(self, rows: list[dict]) -> list[dict]:
        if self.pages_only:
            rows = [r for r in rows if r["kind"] == "page" and r["quality"] == "high"]
        return rows


TASKS = {
    "quality": Task("quality", "quality", positive="high", pages_only=False),
    "domain": Task("domain", "domain", positive="finance", pages_only=True),
}


@dataclass(frozen=True)
class Hyperparameters:
    """fastText supervised settings: small (dim 16, 50k buckets) so the quantized model is tiny."""

    epoch: int = 25
    lr: float = 0.2
    dim: int = 16
    wordNgrams: int = 2
    minCount: int = 2
    bucket: int = 50_000
    loss: str = "softmax"
    thread: int = 1  # one thread + a fixed seed: the same data gives the same model
    seed: int = 1
    quantize_cutoff: int = 20_000  # keep the 20k most useful words/n-grams when quantizing


def read_rows(path: Path) -> tuple[list[dict], str]:
    """The labelled pages and the sha256 of their (decompressed) bytes."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return rows, hashlib.sha256(data).hexdigest()


def fasttext_cli() -> Path | None:
    """fastText's command-line tool: $FASTTEXT_BIN, the one make setup unpacked, or one on PATH."""
    candidates = [os.environ.get("FASTTEXT_BIN"), Path(sys.prefix) / "opt/fasttext/usr/bin/fasttext", shutil.which("fasttext")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def _train_cli(cli: Path, train_file: Path, model_path: Path, params: Hyperparameters) -> None:
    lib = cli.parents[1] / "lib" / "x86_64-linux-gnu"  # the unpacked libfasttext0 beside it
    env = {**os.environ, "LD_LIBRARY_PATH": f"{lib}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    out = model_path.with_suffix("")
    flags = [f"-{k}" if k != "quantize_cutoff" else "-cutoff" for k in asdict(params)]
    values = [str(v) for v in asdict(params).values()]
    common = ["-input", str(train_file), "-output", str(out), "-verbose", "0"]
    args = [a for pair in zip(flags, values) if pair[0] != "-cutoff" for a in pair]
    subprocess.run([str(cli), "supervised", *common, *args], check=True, env=env, capture_output=True)
    subprocess.run([str(cli), "quantize", *common, "-qnorm", "-cutoff", str(params.quantize_cutoff), "-thread", "1"],
                   check=True, env=env, capture_output=True)
    for leftover in (".bin", ".vec"):  # the unquantized model and word vectors: only the .ftz is kept
        out.with_suffix(leftover).unlink(missing_ok=True)


def _train_wheel(train_file: Path, model_path: Path, params: Hyperparameters, attempts: int = 5) -> None:
    import fasttext

    ft_params = {k: v for k, v in asdict(params).items() if k != "quantize_cutoff"}
    for attempt in range(attempts):
        try:
            model = fasttext.train_supervised(input=str(train_file), verbose=0, minn=0, maxn=0, **ft_params)
            model.quantize(input=str(train_file), qnorm=True, retrain=False, cutoff=params.quantize_cutoff, thread=1)
            model.save_model(str(model_path))
            return
        except RuntimeError as exc:
            logger.warning("fasttext wheel: %s (attempt %d of %d)", exc, attempt + 1, attempts)
    raise RuntimeError(f"the fasttext wheel failed to train {attempts} times; install Debian's fasttext (make setup)")


def metrics(task: Task, model: FastTextModel, rows: list[dict]) -> dict:
    """Accuracy, and precision/recall/F1 of the positive label, over ``rows``."""
    tp = fp = fn = correct = 0
    for r in rows:
        predicted, _ = model.predict(r["text"])
        truth = r[task.label_field]
        correct += predicted == truth
        tp += predicted == task.positive and truth == task.positive
        fp += predicted == task.positive and truth != task.positive
        fn += predicted != task.positive and truth == task.positive
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "examples": len(rows),
        "accuracy": round(correct / len(rows), 4) if rows else None,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / (precision + recall), 4) if precision + recall else 0.0,
    }


def _fit(task: Task, rows: list[dict], model_path: Path, params: Hyperparameters) -> str:
    """Train and quantize a model on ``rows`` into ``model_path``; return which trainer ran."""
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{LABEL_PREFIX}{r[task.label_field]} {normalize(r['text'])}\n" for r in rows))
        cli = fasttext_cli()
        if cli is not None:
            _train_cli(cli, train_file, model_path, params)
            return "fastText 0.9.2 command-line tool (Debian fasttext)"
        logger.warning("no fastText command-line tool; training with the wheel, which is not deterministic")
        _train_wheel(train_file, model_path, params)
        return "fasttext-numpy2-wheel 0.9.2 train_supervised (not deterministic)"


def leave_one_package_out(task_name: str, data: Path = DEFAULT_DATA, params: Hyperparameters = Hyperparameters(), min_examples: int = 10) -> dict:
    """The stricter test: per package, a model trained on every other package, scored on all of its pages.

    The hash split keeps pages apart but lets a manual's other pages teach the model its style;
    here the package is wholly unseen. Not written to the card (it trains one model per package).
    """
    task = TASKS[task_name]
    rows, _ = read_rows(data)
    examples = task.examples(rows)
    from tqdm import tqdm

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package in tqdm(sorted({r["package"] for r in examples}), desc=f"{task_name}: leave one package out", unit="model"):
            unseen = [r for r in examples if r["package"] == package]
            if len(unseen) < min_examples:
                continue
            model_path = Path(tmp) / f"{task.name}.ftz"
            _fit(task, [r for r in examples if r["package"] != package], model_path, params)
            card_path(model_path).write_text("{}")
            results[package] = metrics(task, FastTextModel(model_path), unseen)
    return results


@dataclass
class TrainResult:
    task: str
    model_path: str
    card: dict = field(repr=False)


def train(task_name: str, data: Path = DEFAULT_DATA, out_dir: Path = CLASSIFIER_DIR, params: Hyperparameters = Hyperparameters()) -> TrainResult:
    """Train one classifier, write ``<task>.ftz`` and ``<task>.json`` to ``out_dir``, return its card."""
    task = TASKS[task_name]
    rows, data_sha = read_rows(data)
    examples = task.examples(rows)
    train_rows = [r for r in examples if r["split"] == "train"]
    heldout = [r for r in examples if r["split"] == "heldout"]
    if not train_rows or not heldout:
        raise ValueError(f"{data}: task {task_name} needs both train and heldout examples")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{task.name}.ftz"
    start = time.perf_counter()
    trainer = _fit(task, train_rows, model_path, params)
    train_s = time.perf_counter() - start
    card = {
        "task": task.name,
        "labels": sorted({r[task.label_field] for r in train_rows}),
        "positive_label": task.positive,
        "training_data": data.name,
        "training_data_sha256": data_sha,
        "examples": {split: {label: sum(r[task.label_field] == label for r in part) for label in sorted({r[task.label_field] for r in examples})}
                     for split, part in (("train", train_rows), ("heldout", heldout))},
        "hyperparameters": asdict(params),
        "train_seconds": round(train_s, 2),
        "model_bytes": model_path.stat().st_size,
        "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "trainer": trainer,
    }
    card_path(model_path).write_text(json.dumps(card, indent=1) + "\n")  # FastTextModel needs the card
    loaded = FastTextModel(model_path)
    card["heldout"] = metrics(task, loaded, heldout)
    pages = [r for r in heldout if r["kind"] == "page"]
    if len(pages) != len(heldout):
        card["heldout_pages_only"] = metrics(task, loaded, pages)
    card["heldout_by_package"] = {
        pkg: metrics(task, loaded, [r for r in heldout if r["package"] == pkg])["accuracy"] for pkg in sorted({r["package"] for r in heldout})
    }
    card["train_accuracy"] = metrics(task, loaded, train_rows)["accuracy"]
    card_path(model_path).write_text(json.dumps(card, indent=1) + "\n")
    return TrainResult(task.name, str(model_path), card)


def render(result: TrainResult) -> str:
    c = result.card
    lines = [f"{c['task']}: {result.model_path} ({c['model_bytes']} bytes, trained in {c['train_seconds']} s)",
             f"  data {c['training_data']} sha256 {c['training_data_sha256'][:16]}…  examples {json.dumps(c['examples'])}"]
    for name in ("heldout", "heldout_pages_only"):
        if name in c:
            m = c[name]
            lines.append(f"  {name:<19} n={m['examples']:<5} accuracy {m['accuracy']:.4f}  precision({c['positive_label']}) {m['precision']:.4f}"
                         f"  recall {m['recall']:.4f}  f1 {m['f1']:.4f}")
    lines.append("  held-out accuracy by package: " + ", ".join(f"{p} {a:.3f}" for p, a in c["heldout_by_package"].items()))
    lines.append(f"  train accuracy {c['train_accuracy']:.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m curation.training.classifiers", description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="*", metavar="{quality,domain}", help="which classifiers (default: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=CLASSIFIER_DIR)
    parser.add_argument("--leave-one-package-out", action="store_true", help="also score each package with a model that never saw it")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for task in args.tasks or list(TASKS):
        print(render(train(task, args.data, args.out_dir)))  # the command's output is its results table
        if args.leave_one_package_out:
            for package, m in leave_one_package_out(task, args.data).items():
                print(f"  unseen package {package:<24} n={m['examples']:<4} accuracy {m['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
