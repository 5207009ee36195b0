"""Which nodes are dead (b2bua/cluster/takeover.py), with a fake clock: a life lock free
for GRACE seconds in a row is a death, taken over once; a lock seen held again (a node
back, or a database restart that every live node survives) resets it."""

from __future__ import annotations

from b2bua.cluster.takeover import GRACE, DeadNodes


def test_a_lock_free_for_the_grace_period_is_a_death_taken_over_once() -> None:
    dead = DeadNodes("a")
    assert not dead.observe("b", True, 100.0)
    assert not dead.observe("b", True, 100.0 + GRACE - 0.1)
    assert dead.observe("b", True, 100.0 + GRACE)
    dead.taken_over("b")
    assert not dead.observe("b", True, 110.0)  # once
    assert not dead.observe("b", True, 200.0)


def test_a_lock_held_again_within_the_grace_is_no_death() -> None:
    """A database restart frees every lock; the node takes its own back."""
    dead = DeadNodes("a")
    dead.observe("b", True, 0.0)
    assert not dead.observe("b", False, 1.5)
    assert not dead.observe("b", True, 2.0)
    assert not dead.observe("b", True, 2.0 + GRACE - 0.1)  # counted from 2.0 again
    assert dead.observe("b", True, 2.0 + GRACE)


def test_a_node_back_and_dead_again_is_taken_over_again() -> None:
    dead = DeadNodes("a")
    dead.observe("b", True, 0.0)
    assert dead.observe("b", True, GRACE)
    dead.taken_over("b")
    assert not dead.observe("b", False, 10.0)  # restarted
    dead.observe("b", True, 20.0)
    assert dead.observe("b", True, 20.0 + GRACE)


def test_never_itself_and_forgotten_nodes_start_over() -> None:
    dead = DeadNodes("a")
    assert not dead.observe("a", True, 0.0)
    assert not dead.observe("a", True, 100.0)
    dead.observe("b", True, 0.0)
    assert dead.suspected == {"b": 0.0}
    dead.forget("b")
    assert dead.suspected == {}
    assert not dead.observe("b", True, 50.0)
