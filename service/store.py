"""The job store: one table of jobs in SQLite (embedded default) or PostgreSQL (``DATABASE_URL``).

The store is what survives a restart of the API process: each job's kind, its request, where its
output lives, the Ray submission id to ask about it, and its last known state and error.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, String, Text, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

TERMINAL = ("succeeded", "failed", "cancelled")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # curation | training | ablation
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued | running | succeeded | failed | cancelled
    request: Mapped[str] = mapped_column(Text)  # the accepted request, JSON
    output_dir: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    submission_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    request: dict[str, Any]
    output_dir: str
    parent_id: str | None
    submission_id: str | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def of(cls, row: JobRow) -> Job:
        return cls(row.id, row.kind, row.state, json.loads(row.request), row.output_dir, row.parent_id, row.submission_id,
                   row.error, row.created_at, row.started_at, row.finished_at)


def _private_file(path: str) -> None:
    """The job store holds every request (configs, paths): readable by the service's user alone."""
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


class JobStore:
    def __init__(self, url: str):
        sqlite = url.startswith("sqlite")
        if sqlite and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            _private_file(url[len("sqlite:///"):])
        self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {})
        if sqlite:
            # WAL lets the status poller write while requests read, without "database is locked"
            event.listen(self.engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def new_id(kind: str) -> str:
        return f"{kind[:3]}-{uuid.uuid4().hex[:12]}"

    def create(self, kind: str, request: dict, output_dir: str, parent_id: str | None = None, job_id: str | None = None) -> Job:
        row = JobRow(
            id=job_id or self.new_id(kind), kind=kind, state="queued", request=json.dumps(request, sort_keys=True),
            output_dir=output_dir, parent_id=parent_id, created_at=time.time(),
        )
        with self._session.begin() as s:
            s.add(row)
        return Job.of(row)

    def get(self, job_id: str) -> Job | None:
        with self._session() as s:
            row = s.get(JobRow, job_id)
            return Job.of(row) if row else None

    def list(self, kind: str | None = None, state: str | None = None, limit: int = 100) -> list[Job]:
        query = select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
        if kind:
            query = query.where(JobRow.kind == kind)
        if state:
            query = query.where(JobRow.state == state)
        with self._session() as s:
            return [Job.of(r) for r in s.scalars(query)]

    def unfinished(self) -> list[Job]:
        with self._session() as s:
            return [Job.of(r) for r in s.scalars(select(JobRow).where(JobRow.state.not_in(TERMINAL)))]

    def update(self, job_id: str, **fields: Any) -> Job:
        with self._session.begin() as s:
            row = s.get(JobRow, job_id)
            for key, value in fields.items():
                setattr(row, key, value)
        return Job.of(row)

    def count_by_state(self) -> dict[tuple[str, str], int]:
        from sqlalchemy import func

        with self._session() as s:
            return {(k, st): n for k, st, n in s.execute(select(JobRow.kind, JobRow.state, func.count()).group_by(JobRow.kind, JobRow.state))}
