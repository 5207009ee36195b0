"""Work one node of a cluster does (b2bua/cluster/life.py, docs/cluster.md), on both
storage backends: of two nodes sweeping, one wins each job's lock and starts the job
once; when it stops (or dies: its locks go with its session) the other takes the jobs
at its next sweep. A dead node's notes are taken over by one node only."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2bua.cluster.life import NodeWatch
from b2bua.storage import cluster, migrate, open_database


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = str(tmp_path / "s.db") if request.param == "sqlite" else \
        str(request.getfixturevalue("pg_url"))
    with open_database(url) as database:
        migrate.migrate(database)
    return url


def watch(target: str, node: str, started: list[tuple[str, str]]) -> NodeWatch:
    with open_database(target) as database:
        cluster.register_node(database, node, "", "", 0.0)
        life = database.try_hold(cluster.life_lock(node))
    assert life is not None
    return NodeWatch(target, node, life, jobs={
        job: (lambda job=job: started.append((node, job))) for job in ("keepalive",
                                                                       "upstream")})


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
