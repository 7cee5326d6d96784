import ast
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "sample_corpus"
REAL_CRAWL = CORPUS / "real_crawl" / "iana.warc.gz"

# Tests must never reach a model hub; everything they need ships in the repo or a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# `make test` runs two pytest processes on the machine's cores. A torch process sized for all the
# cores beside another busy worker spends its time in OpenMP barriers waiting for a descheduled
# thread: the tiny-model test took 35 s alone with two threads and 147 s under `-n 2`. So each
# pytest process, and every process it starts (trainers, Ray heads and the jobs they run), gets
# its share of the cores (set in ``pytest_configure``).
TORCH_THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def pytest_configure(config):
    # not in xdist's controller: it runs no test, and its workers would inherit its whole-machine share
    controller = config.getoption("numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ
    if not controller:
        os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))


def run_in_triton_interpreter(code: str) -> None:
    """Runs ``code`` in a fresh interpreter with Triton's CPU interpreter on (it must be set before
    Triton is imported) and fails with its stderr unless the code's last line of output is "ok"."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def bundled_pages() -> list[dict]:
    """The bundled corpus's pages as its JSON Lines hold them (``url``, ``html``, …): finance, then general."""
    pages = []
    for domain in ("finance", "general"):
        with gzip.open(CORPUS / "jsonl" / f"{domain}.jsonl.gz", "rt") as f:
            pages += [json.loads(line) for line in f]
    return pages


@pytest.fixture(scope="session")
def corpus_manifest() -> dict:
    return json.loads((CORPUS / "MANIFEST.json").read_text())


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the in-process pipeline tests (starting one costs seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def bundled_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m pipelines.web_corpus`` with no arguments, as a user runs it: (run dir, the process)."""
    cwd = tmp_path_factory.mktemp("bundled")
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.web_corpus", "--no-progress"],
        cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return cwd / "runs" / "sample", result


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory, ray_local):
    """A small curation run over real shards, through to token shards (shared by several modules)."""
    from pipelines.web_corpus import run_web_corpus
    from tests.test_pipeline import small_config

    tmp = tmp_path_factory.mktemp("mixed")
    cfg = small_config(tmp, **{"shards.shard_tokens": 20000})
    stats = run_web_corpus(cfg, progress=False)
    return cfg, stats, json.loads((cfg.run_dir / "tokens" / "manifest.json").read_text())


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> Path:
    """Small learnable token shards with their manifest.json (``scripts.s3_server.synthetic_tokens``)."""
    from scripts.s3_server import synthetic_tokens

    return synthetic_tokens(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="session")
def straight_losses(synthetic_shards, tmp_path_factory) -> list[tuple[int, float]]:
    """The reference of every Ray Train kill test: ten steps on two Ray Train workers
    (``tests.ray_train_runs``), never interrupted, checkpointed only at the end: (step, loss) each."""
    from tests.ray_train_runs import env, losses, ray_cmd

    tmp = tmp_path_factory.mktemp("straight")
    result = subprocess.run(ray_cmd(synthetic_shards, tmp / "run", "checkpoint.every=0"), env=env(tmp), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return losses((tmp / "run" / "metrics.jsonl").read_text())


# Session fixtures whose run is costly: under pytest-xdist (``make test``: ``-n 2 --dist loadfile``)
# every file that uses one, directly or through a fixture of its own, goes to the same worker with
# the files it shares runs with, so each run happens once; a file's tests stay on one worker, in
# order (test_service's tests build on the jobs of the tests before them).
SHARED_RUNS = ("bundled_run", "mixed_run", "straight_losses")


def shared_run_groups(tests_dir: Path = ROOT / "tests") -> dict[str, str]:
    """Test file (as in node ids) -> the group of files it shares a costly run with, read from
    the parameters of the file's functions (the controller schedules before any collection)."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for path in sorted(tests_dir.glob("test_*.py")):
        name = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                for arg in node.args.args:
                    if arg.arg in SHARED_RUNS:
                        parent[root(name)] = root(arg.arg)
    return {name: root(name) for name in parent if name.endswith(".py")}


def _is_slow(node: ast.AST) -> bool:
    return any(ast.unparse(d) == "pytest.mark.slow" for d in getattr(node, "decorator_list", []))


def slow_tests_per_file(tests_dir: Path = ROOT / "tests") -> dict[str, int]:
    """Test file (as in node ids) -> how many of its tests are marked slow (the end-to-end runs)."""
    return {path.relative_to(ROOT).as_posix(): sum(map(_is_slow, ast.walk(ast.parse(path.read_text()))))
            for path in sorted(tests_dir.glob("test_*.py"))}


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's: pytest without xdist must not refuse it
def pytest_xdist_make_scheduler(config, log):
    # xdist's own grouping (``--dist loadgroup``) renames node ids in a way pytest 9 ignores, so a
    # file's tests would be spread over workers; this groups files instead
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    groups = shared_run_groups()
    weight: dict[str, int] = {}
    for path, slow in slow_tests_per_file().items():
        weight[groups.get(path, path)] = weight.get(groups.get(path, path), 0) + slow

    class SharedRunScheduling(LoadFileScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return groups.get(path, path)

        def _assign_work_unit(self, node) -> None:
            # the groups with the most end-to-end tests first, the quick files last to fill the gaps:
            # in file order, the run's longest test (the flaky store's, ~2.5 min) started near the end
            if not self.ordered:
                self.ordered = True
                order = sorted(self.workqueue, key=lambda scope: -weight.get(scope, 0))
                self.workqueue = type(self.workqueue)((scope, self.workqueue[scope]) for scope in order)
            super()._assign_work_unit(node)

    return SharedRunScheduling(config, log)
