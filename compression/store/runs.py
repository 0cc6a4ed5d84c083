"""Runs and jobs in a real database: a SQLite file by default, PostgreSQL when given a URL.

Promises (tested in tests/test_store.py):
- Persistence: every call commits before it returns, so a crash loses nothing already returned.
- Concurrency: several threads and processes may read and write at once. SQLite runs in WAL mode
  with a busy timeout; a job is claimed with a conditional UPDATE, so two workers never take the same.
- Portability: the same SQLAlchemy Core statements run on SQLite and PostgreSQL.
"""
from __future__ import annotations

import functools
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

import sqlalchemy as sa

from ..errors import LabError
from ..paths import default_db_url

RUN_STATUSES = ("queued", "running", "done", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
JOB_FINISHED = ("done", "failed", "cancelled", "interrupted")

metadata = sa.MetaData()
runs_table = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),       # train | prune | distill | quantize | search_trial ...
    sa.Column("parent_id", sa.Integer, nullable=True, index=True),
    sa.Column("job_id", sa.Integer, nullable=True, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("model", sa.Text, nullable=False),             # JSON spec
    sa.Column("method", sa.String(64), nullable=True),       # technique method, for filters and colours
    sa.Column("label", sa.String(200), nullable=True),       # short human name, e.g. "global_l1 90%"
    sa.Column("config", sa.Text, nullable=False),            # JSON
    sa.Column("record", sa.Text, nullable=True),             # JSON measurement record
    sa.Column("extra", sa.Text, nullable=True),              # JSON technique-specific report
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("weights_path", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
jobs_table = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("params", sa.Text, nullable=False),            # JSON arguments of the job
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("eta_s", sa.Float, nullable=True),
    sa.Column("events", sa.Text, nullable=True),             # JSON list: live curves (per-epoch info)
    sa.Column("result", sa.Text, nullable=True),             # JSON summary when done
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("worker", sa.String(200), nullable=True),      # host:pid of the worker that claimed it
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
)
machines_table = sa.Table(  # each machine's details once; latency entries and speed-ups carry its short id
    "machines", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("details", sa.Text, nullable=False),           # JSON: CPU, cores, SIMD, torch, threads, GPU, OS
    sa.Column("first_seen", sa.Float, nullable=False),
)
speedups_table = sa.Table(  # the only source of a speed-up: two runs timed together, interleaved
    "speedups", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_a", sa.Integer, nullable=False, index=True),   # the reference (a parent, a baseline)
    sa.Column("run_b", sa.Integer, nullable=False, index=True),   # the candidate: speedup = time(A) / time(B)
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("speedup", sa.Float, nullable=False),
    sa.Column("ci_lo", sa.Float, nullable=False),
    sa.Column("ci_hi", sa.Float, nullable=False),
    sa.Column("rounds", sa.Integer, nullable=False),
    sa.Column("load", sa.Float, nullable=False),
    sa.Column("noisy", sa.Boolean, nullable=False),
    sa.Column("machine", sa.String(32), nullable=False),
    sa.Column("relation", sa.String(32), nullable=False),          # parent | ancestor | different model
    sa.Column("detail", sa.Text, nullable=True),                    # JSON: latencies, reasons, threads, split
    sa.Column("created_at", sa.Float, nullable=False),
)
answers_table = sa.Table(  # each run's test-set answers (compact predictions), apart from the run row:
    # ~30 KB per run on digits, which every listing would otherwise decode (46 ms for 24 runs, 2 s for 1,000)
    "answers", metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),              # JSON: the compact predictions of the run
)
_JSON_RUN = ("model", "config", "record", "extra")
ANSWERS_KEY = "predictions"  # where callers put and find a run's answers: extra["predictions"]

_JSON_JOB = ("params", "events", "result")


def _sqlite_pragmas(dbapi_conn, _record):
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")    # readers never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each commit in WAL mode
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs work as written: SQLAlchemy would pick psycopg 3 for them, so name the
    driver that is installed. `postgres://` (Heroku's spelling) is accepted too."""
    if "://" not in url:
        raise LabError(f"Bad database URL '{url}': expected sqlite:///PATH or postgresql://USER@HOST/DB")
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        import importlib.util
        driver = next((d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d)), None)
        if driver is None:
            raise LabError("No PostgreSQL driver is installed: pip install psycopg2-binary")
        return f"postgresql+{driver}://{rest}"
    if scheme.split("+")[0] not in ("sqlite", "postgresql"):
        raise LabError(f"Unsupported database URL '{url}': use sqlite:///PATH or postgresql://USER@HOST/DB")
    return url


def _redacted(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@functools.lru_cache(maxsize=16)
def _engine(url: str, pid: int) -> sa.Engine:  # pid in the key: never share a pool across fork
    try:
        return _connect(url)
    except sa.exc.SQLAlchemyError as err:  # unreachable host, wrong password, bad path: one line for the user
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0][:200]
        raise LabError(f"Cannot open the database {_redacted(url)}: {reason}") from None


def _connect(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  poolclass=sa.pool.NullPool)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    for attempt in range(5):  # several processes may create the schema at once
        try:
            metadata.create_all(engine)
            break
        # SQLite says "locked"; PostgreSQL, when two processes create one table, "duplicate key value violates
        # unique constraint pg_type_typname_nsp_index" (IntegrityError) or "already exists" (ProgrammingError)
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    return engine


def _decode(row, json_fields) -> dict:
    out = dict(row._mapping)
    for key in json_fields:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out


def _encode(values: dict, json_fields) -> dict:
    return {k: (json.dumps(v, default=float) if k in json_fields and v is not None else v)
            for k, v in values.items()}


def _split_answers(fields: dict) -> dict | None:
    """Take the answers out of a run's `extra` (in place) and mark it `has_answers`; they go to their own table."""
    extra = fields.get("extra")
    if not extra or extra.get(ANSWERS_KEY) is None:
        return None
    fields["extra"] = {**{k: v for k, v in extra.items() if k != ANSWERS_KEY}, "has_answers": True}
    return extra[ANSWERS_KEY]


def _put_answers(conn, run_id: int, answers: dict | None) -> None:
    if answers is not None:  # replace: delete + insert is an upsert on SQLite and PostgreSQL alike
        conn.execute(answers_table.delete().where(answers_table.c.run_id == run_id))
        conn.execute(answers_table.insert().values(run_id=run_id, data=json.dumps(answers, default=float)))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str) -> bool:
    """Whether the process named `host:pid` still runs. Only this host's processes can be checked; for
    another machine's, True (its heartbeat must tell)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process that its parent has not reaped yet is a zombie: dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunStore:
    """Runs and jobs. Cheap to create; safe to share across threads and to create in each process."""

    def __init__(self, url: str | None = None):
        self.url = normalize_url(url or os.environ.get("COMPRESSION_LAB_DB") or default_db_url())

    @property
    def shown_url(self) -> str:
        """The URL for messages: a password in it is never printed."""
        return _redacted(self.url)

    @property
    def engine(self) -> sa.Engine:
        return _engine(self.url, os.getpid())

    # ---- runs -------------------------------------------------------------------------
    RUN_FIELDS = ("parent_id", "status", "record", "extra", "method", "label", "job_id", "weights_path", "error")

    def add_run(self, kind: str, dataset: str, model: dict, config: dict, **fields) -> int:
        """Store a run; `fields` are any of RUN_FIELDS (status defaults to done)."""
        unknown = sorted(set(fields) - set(self.RUN_FIELDS))
        if unknown:
            raise LabError(f"Unknown run field(s) {', '.join(unknown)}")
        status = fields.setdefault("status", "done")
        if status not in RUN_STATUSES:
            raise LabError(f"Unknown run status '{status}'. Known: {', '.join(RUN_STATUSES)}")
        now = time.time()
        answers = _split_answers(fields)
        values = _encode(dict(kind=kind, dataset=dataset, model=model, config=config, created_at=now,
                              updated_at=now, **fields), _JSON_RUN)
        with self.engine.begin() as conn:
            run_id = conn.execute(runs_table.insert().values(**values)).inserted_primary_key[0]
            _put_answers(conn, run_id, answers)
            return run_id

    def update_run(self, run_id: int, **values) -> None:
        answers = _split_answers(values)
        values = _encode({**values, "updated_at": time.time()}, _JSON_RUN)
        with self.engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(**values))
            _put_answers(conn, run_id, answers)

    def get_run(self, run_id: int) -> dict:
        """One run, with its answers in extra["predictions"] (listings leave them out)."""
        with self.engine.connect() as conn:
            row = conn.execute(runs_table.select().where(runs_table.c.id == int(run_id))).first()
            if row is None:
                raise LabError(f"no run {run_id}")
            run = _decode(row, _JSON_RUN)
            if (run.get("extra") or {}).get("has_answers"):
                data = conn.execute(sa.select(answers_table.c.data).where(answers_table.c.run_id == run["id"])).scalar()
                if data is not None:
                    run["extra"][ANSWERS_KEY] = json.loads(data)
        return run

    def list_runs(self, kind: str | None = None, dataset: str | None = None, status: str | None = None,
                  job_id: int | None = None, limit: int | None = None) -> list[dict]:
        query = runs_table.select().order_by(runs_table.c.id)
        for column, value in (("kind", kind), ("dataset", dataset), ("status", status), ("job_id", job_id)):
            if value is not None:
                query = query.where(runs_table.c[column] == value)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_decode(row, _JSON_RUN) for row in conn.execute(query)]

    def count_runs(self, job_id: int | None = None) -> int:
        """How many runs (of one job): one COUNT, for pages that poll it every few seconds."""
        query = sa.select(sa.func.count()).select_from(runs_table)
        if job_id is not None:
            query = query.where(runs_table.c.job_id == job_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def delete_runs(self, run_ids: list[int]) -> int:
        """Delete runs; their children keep existing and point at no parent."""
        ids = [int(i) for i in run_ids]
        with self.engine.begin() as conn:
            conn.execute(runs_table.update().where(runs_table.c.parent_id.in_(ids)).values(parent_id=None))
            conn.execute(speedups_table.delete().where(sa.or_(speedups_table.c.run_a.in_(ids),
                                                              speedups_table.c.run_b.in_(ids))))
            conn.execute(answers_table.delete().where(answers_table.c.run_id.in_(ids)))
            return conn.execute(runs_table.delete().where(runs_table.c.id.in_(ids))).rowcount

    def lineage(self, run_id: int) -> list[dict]:
        """The run and its ancestors, root first (e.g. baseline -> pruned -> quantized)."""
        chain, seen = [], set()
        current = self.get_run(run_id)
        while current is not None and current["id"] not in seen:
            seen.add(current["id"])
            chain.append(current)
            parent = current.get("parent_id")
            try:
                current = self.get_run(parent) if parent is not None else None
            except LabError:
                current = None
        return chain[::-1]

    # ---- machines and speed-ups ----------------------------------------------------------
    def add_machine(self, fingerprint: dict) -> str:
        """Store a machine's details once (idempotent); returns its id."""
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(machines_table.c.id).where(machines_table.c.id == fingerprint["id"])).first()
            if known is None:
                try:
                    conn.execute(machines_table.insert().values(id=fingerprint["id"], first_seen=time.time(),
                                                                details=json.dumps(fingerprint["details"])))
                except sa.exc.IntegrityError:
                    pass  # another process stored it first
        return fingerprint["id"]

    def get_machine(self, machine_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(machines_table.select().where(machines_table.c.id == machine_id)).first()
        return None if row is None else {"id": row.id, "details": json.loads(row.details), "first_seen": row.first_seen}

    def add_speedup(self, run_a: int, run_b: int, timing: dict, relation: str) -> int:
        """Store one paired timing (core.timing.paired_speedup's result) of run B against run A."""
        detail = {k: timing.get(k) for k in ("latency_a_ms", "latency_b_ms", "iqr_a_ms", "iqr_b_ms", "threads",
                                              "noisy_reasons", "load_before", "fallback_reason", "split", "loaded",
                                              "imprecise", "rel_ci", "target_rel_ci", "budget_s", "processes",
                                              "per_process", "phase")}
        values = dict(run_a=int(run_a), run_b=int(run_b), device=timing["device"], batch_size=timing["batch_size"],
                      mode=timing["mode"], speedup=timing["speedup"], ci_lo=timing["ci95"][0],
                      ci_hi=timing["ci95"][1], rounds=timing["rounds"], load=timing["load"],
                      noisy=bool(timing["noisy"]), machine=timing["machine"], relation=relation,
                      detail=json.dumps(detail, default=float), created_at=timing.get("time") or time.time())
        with self.engine.begin() as conn:
            return conn.execute(speedups_table.insert().values(**values)).inserted_primary_key[0]

    def list_speedups(self, run_b: int | None = None, run_a: int | None = None) -> list[dict]:
        query = speedups_table.select().order_by(speedups_table.c.id)
        if run_b is not None:
            query = query.where(speedups_table.c.run_b == int(run_b))
        if run_a is not None:
            query = query.where(speedups_table.c.run_a == int(run_a))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["detail"] = json.loads(row["detail"] or "{}")
            row["ci95"] = [row.pop("ci_lo"), row.pop("ci_hi")]
        return rows

    # ---- jobs -------------------------------------------------------------------------
    def submit_job(self, kind: str, params: dict) -> int:
        values = _encode(dict(kind=kind, params=params, status="queued", progress=0.0, events=[],
                              cancel_requested=False, created_at=time.time()), _JSON_JOB)
        with self.engine.begin() as conn:
            return conn.execute(jobs_table.insert().values(**values)).inserted_primary_key[0]

    def claim_next_job(self, worker: str | None = None, kinds: list[str] | None = None,
                       accepts: Callable[[dict], bool] | None = None) -> dict | None:
        """Take the oldest queued job this worker may run: one of `kinds` (None: any) that `accepts(job)` allows
        (a worker without a GPU passes over a job that asks for CUDA; a later one of its kinds is still taken).
        The conditional UPDATE makes the claim atomic across processes; a job another worker took first is skipped."""
        while True:
            job_id = self._first_eligible(kinds, accepts)
            if job_id is None:
                return None
            now = time.time()
            with self.engine.begin() as conn:
                claimed = conn.execute(
                    jobs_table.update().where(jobs_table.c.id == job_id, jobs_table.c.status == "queued")
                    .values(status="running", worker=worker or worker_name(), started_at=now,
                            heartbeat_at=now)).rowcount
            if claimed == 1:
                return self.get_job(job_id)

    def _first_eligible(self, kinds: list[str] | None, accepts: Callable[[dict], bool] | None) -> int | None:
        """The id of the oldest queued job of `kinds` that `accepts` allows, read without claiming it."""
        query = (sa.select(jobs_table.c.id, jobs_table.c.kind, jobs_table.c.params)
                 .where(jobs_table.c.status == "queued").order_by(jobs_table.c.id))
        if kinds is not None:
            query = query.where(jobs_table.c.kind.in_(list(kinds)))
        if accepts is None:
            query = query.limit(1)  # the oldest will do: no need to read the params of the whole queue
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if accepts is None or accepts(_decode(row, _JSON_JOB)):
                    return row.id
        return None

    def update_job(self, job_id: int, **values) -> None:
        values = _encode(values, _JSON_JOB)
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(**values))

    def append_job_event(self, job_id: int, event: dict) -> None:
        job = self.get_job(job_id)
        self.update_job(job_id, events=(job.get("events") or []) + [event], heartbeat_at=time.time())

    def finish_job(self, job_id: int, status: str, *, result=None, error=None) -> None:
        if status not in JOB_FINISHED:
            raise LabError(f"Not a final job status: {status}")
        values = dict(status=status, result=result, error=error, finished_at=time.time(), eta_s=0.0)
        if status == "done":
            values["progress"] = 1.0  # other endings keep the progress they reached
        self.update_job(job_id, **values)

    def request_cancel(self, job_id: int) -> None:
        """Queued jobs are cancelled at once; running ones stop at their next progress check."""
        self.get_job(job_id)  # an unknown id is an error, not a silent no-op
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id, jobs_table.c.status == "queued")
                         .values(status="cancelled", cancel_requested=True, finished_at=time.time()))
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(cancel_requested=True))

    def get_job(self, job_id: int) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(jobs_table.select().where(jobs_table.c.id == int(job_id))).first()
        if row is None:
            raise LabError(f"no job {job_id}")
        return _decode(row, _JSON_JOB)

    def list_jobs(self, statuses: tuple[str, ...] | None = None, limit: int = 50) -> list[dict]:
        query = jobs_table.select().order_by(jobs_table.c.id.desc()).limit(limit)
        if statuses:
            query = query.where(jobs_table.c.status.in_(statuses))
        with self.engine.connect() as conn:
            return [_decode(row, _JSON_JOB) for row in conn.execute(query)]

    def mark_interrupted(self, stale_after_s: float, alive: callable = None) -> list[int]:
        """Running jobs whose worker stopped beating (killed, or the server restarted) -> interrupted."""
        cutoff = time.time() - stale_after_s
        marked = []
        for job in self.list_jobs(("running",), limit=1000):
            dead = (job["heartbeat_at"] or 0) < cutoff or (alive is not None and not alive(job))
            if dead:
                with self.engine.begin() as conn:
                    n = conn.execute(jobs_table.update().where(jobs_table.c.id == job["id"],
                                                               jobs_table.c.status == "running")
                                     .values(status="interrupted", finished_at=time.time(),
                                             error="The worker stopped (killed, or the server restarted). "
                                                   "Finished results are kept.")).rowcount
                if n:
                    marked.append(job["id"])
        return marked
