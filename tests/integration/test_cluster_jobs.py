"""Work one node of a cluster does (b2bua/cluster/life.py, docs/cluster.md), on both
storage backends: of two nodes sweeping, one wins each job's lock and starts the job
once; when it stops (or dies: its locks go with its session) the other takes the jobs
at its next sweep. A dead node's notes are taken over by one node only. After a
PostgreSQL restart (every session ended, every lock freed) a job runs on one node again
within a sweep: taken back by the node that ran it, or stopped there when another node
was quicker."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from b2bua.cluster.life import Job, NodeWatch
from b2bua.storage import cluster, migrate, open_database


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = str(tmp_path / "s.db") if request.param == "sqlite" else \
        str(request.getfixturevalue("pg_url"))
    with open_database(url) as database:
        migrate.migrate(database)
    return url


def watch(target: str, node: str, started: list[tuple[str, str]],
          stopped: list[tuple[str, str]] | None = None) -> NodeWatch:
    with open_database(target) as database:
        cluster.register_node(database, node, "", "", 0.0)
        life = database.try_hold(cluster.life_lock(node))
    assert life is not None
    ended = stopped if stopped is not None else []
    return NodeWatch(target, node, life, jobs={
        job: Job(lambda job=job: started.append((node, job)),
                 lambda job=job: ended.append((node, job)))
        for job in ("keepalive", "upstream")})


def end_other_sessions(url: str) -> None:
    """What a restart of the server does to the nodes' locks: their sessions end."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.mark.parametrize("quicker", ["runner", "other"])
def test_after_a_database_restart_a_job_runs_on_one_node(pg_url: str, quicker: str) -> None:
    with open_database(pg_url) as database:
        migrate.migrate(database)
    started: list[tuple[str, str]] = []
    stopped: list[tuple[str, str]] = []
    runner, other = watch(pg_url, "a", started, stopped), watch(pg_url, "b", started, stopped)
    try:
        with open_database(pg_url) as database:
            runner.sweep(database, 1.0)
            other.sweep(database, 1.0)
        assert runner.stats.jobs == ["keepalive", "upstream"]
        end_other_sessions(pg_url)
        with open_database(pg_url) as database:  # the first sweeps after the restart
            order = (runner, other) if quicker == "runner" else (other, runner)
            for node in order:
                node.sweep(database, 2.0)
        if quicker == "runner":  # taken back: nothing stopped, nothing started twice
            assert stopped == [] and started == [("a", "keepalive"), ("a", "upstream")]
            assert runner.stats.jobs == ["keepalive", "upstream"] and other.stats.jobs == []
        else:  # the other node won the locks: the runner stops its jobs
            assert started[2:] == [("b", "keepalive"), ("b", "upstream")]
            assert stopped == [("a", "keepalive"), ("a", "upstream")]
            assert runner.stats.jobs == [] and other.stats.jobs == ["keepalive", "upstream"]
            assert runner.stats.jobs_handed_over == 2
    finally:
        runner.close()
        other.close()


def test_each_job_runs_on_one_node_and_moves_when_it_stops(target: str) -> None:
    started: list[tuple[str, str]] = []
    first, second = watch(target, "a", started), watch(target, "b", started)
    with open_database(target) as database:
        first.sweep(database, 1.0)
        second.sweep(database, 1.0)
        first.sweep(database, 2.0)
        second.sweep(database, 2.0)
        assert started == [("a", "keepalive"), ("a", "upstream")]
        assert first.stats.jobs == ["keepalive", "upstream"] and second.stats.jobs == []
        first.close()  # its locks go with it
        second.sweep(database, 3.0)
        assert started[2:] == [("b", "keepalive"), ("b", "upstream")]
        second.close()
