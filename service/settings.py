"""The service's settings, read from the environment (one place, typed, with defaults that run here).

    CURATION_API_TOKEN      bearer token for every mutating call (default: generated once and kept
                            in <state_dir>/api_token, mode 0600, so a restart keeps it)
    DATABASE_URL            SQLAlchemy URL of the job store (default: SQLite in the state dir;
                            postgresql+psycopg://... for PostgreSQL)
    CURATION_STATE_DIR      the service's own files (default: ./service_state)
    CURATION_DATA_ROOTS     folders, separated by ':', that job inputs and outputs must lie in
                            (default: the bundled data/ and ./runs)
    CURATION_RUNS_DIR       where curation runs and training outputs go (default: ./runs; must lie
                            in a data root)
    CURATION_STORAGE        an object store URL (s3://bucket/prefix) for every run, training output and
                            job config instead of CURATION_RUNS_DIR: the cluster's shared storage.
                            Credentials and endpoint come from the environment (AWS_ACCESS_KEY_ID,
                            AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL), never from this URL
    CURATION_STORE_ROOTS    object store URLs, separated by ',', that job inputs (s3://...) may be read
                            from (default: CURATION_STORAGE, if set); any other URL is refused (403)
    RAY_JOBS_ADDRESS        Ray Jobs API (the dashboard), e.g. http://ray-head:8265; default: a local
                            Ray head the service starts once and records in the state dir
    CURATION_PYTHON         the Python that runs job entrypoints on the cluster (default: this one)
    CURATION_MAX_REQUEST_BYTES  request body limit (default 1 MiB)
    CURATION_BODY_TIMEOUT_S     a request body that stalls longer is refused with 408 (default 10)
    CURATION_MAX_RUNNING_JOBS   jobs on Ray at once, the rest queued (default: one per two cluster CPUs)
    CURATION_ALLOWED_HOSTS  Host headers answered, comma-separated (default: 127.0.0.1,localhost,::1);
                            anything else gets 400, so a web page cannot reach the API by DNS rebinding
    CURATION_READ_TOKEN     a second bearer token that may read document text, rejected samples,
                            metrics and error details, but not submit or cancel (optional)
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenizer.storage import is_remote
from tokenizer.store_path import StorePath

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ServiceSettings(BaseModel):
    # a bad setting is reported without its value: it may be a token, or a URL with credentials in it
    model_config = ConfigDict(hide_input_in_errors=True)

    api_token: str = Field(min_length=16)
    database_url: str
    state_dir: Path
    data_roots: list[Path] = Field(min_length=1)
    runs_dir: Path
    ray_jobs_address: str | None = None
    python: str = sys.executable
    max_request_bytes: int = Field(1 << 20, gt=0)
    local_ray_cpus: int | None = Field(None, gt=0)
    body_timeout_s: float = Field(10.0, gt=0, le=600, description="a request body that stalls longer is refused (408)")
    max_running_jobs: int | None = Field(None, gt=0, description="jobs on Ray at once; default: one per two cluster CPUs")
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"], min_length=1)
    read_token: str | None = Field(None, min_length=16, description="a token for reads only; the API token reads too")
    storage: str | None = Field(None, description="object store URL for runs and outputs, in place of runs_dir")
    store_roots: list[str] = Field(default_factory=list, description="object store URLs job inputs may be read from")

    @field_validator("storage", "store_roots")
    @classmethod
    def _store_urls(cls, value):
        """A URL of an object store, normalized; never with credentials in it (they come from the environment)."""
        if value is None:
            return None
        for url in [value] if isinstance(value, str) else value or []:
            if not is_remote(url) or "@" in url.partition("://")[2].partition("/")[0]:
                # the URL is not echoed: it may hold the very credentials it must not
                raise ValueError("give an object store URL such as s3://bucket/prefix, without credentials in it")
        return StorePath(value).url if isinstance(value, str) else [StorePath(u).url for u in value]

    @property
    def runs_root(self) -> Path | StorePath:
        """Where runs, training outputs and job configs go: the store if one is set, else runs_dir."""
        return StorePath(self.storage) if self.storage else self.runs_dir

    @property
    def roots(self) -> list[Path | str]:
        """Every root a job's paths are confined to: the local data roots and the store roots."""
        return [*self.data_roots, *self.store_roots, *([self.storage] if self.storage and self.storage not in self.store_roots else [])]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ServiceSettings:
        env = dict(os.environ if env is None else env)
        state_dir = Path(env.get("CURATION_STATE_DIR", "service_state")).resolve()
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the token and the job store live here
        runs_dir = Path(env.get("CURATION_RUNS_DIR", "runs")).resolve()
        roots = env.get("CURATION_DATA_ROOTS")
        data_roots = [Path(p).resolve() for p in roots.split(":") if p] if roots else [PROJECT_ROOT / "data", runs_dir]
        return cls(
            api_token=env.get("CURATION_API_TOKEN") or _stored_token(state_dir),
            database_url=env.get("DATABASE_URL") or f"sqlite:///{state_dir / 'jobs.db'}",
            state_dir=state_dir,
            data_roots=data_roots,
            runs_dir=runs_dir,
            ray_jobs_address=env.get("RAY_JOBS_ADDRESS") or None,
            python=env.get("CURATION_PYTHON", sys.executable),
            max_request_bytes=int(env.get("CURATION_MAX_REQUEST_BYTES", 1 << 20)),
            local_ray_cpus=int(env["CURATION_LOCAL_RAY_CPUS"]) if env.get("CURATION_LOCAL_RAY_CPUS") else None,
            body_timeout_s=float(env.get("CURATION_BODY_TIMEOUT_S", 10.0)),
            max_running_jobs=int(env["CURATION_MAX_RUNNING_JOBS"]) if env.get("CURATION_MAX_RUNNING_JOBS") else None,
            allowed_hosts=[h for h in env.get("CURATION_ALLOWED_HOSTS", "127.0.0.1,localhost,::1").split(",") if h],
            read_token=env.get("CURATION_READ_TOKEN") or None,
            storage=env.get("CURATION_STORAGE") or None,
            store_roots=[u for u in env.get("CURATION_STORE_ROOTS", "").split(",") if u],
        )


def _stored_token(state_dir: Path) -> str:
    """A token generated on first start: a service is never left open by forgetting to set one."""
    path = state_dir / "api_token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
