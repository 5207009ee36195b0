"""How the API sums a cluster's counters (api/cluster_merge.py): numbers added at every
depth, keys only some nodes have kept, flags and text left as this node's."""

from __future__ import annotations

from api.cluster_merge import _add


def test_counters_are_summed_at_every_depth() -> None:
    total = {"attempts": 3, "sip": {"requests": 10, "by_code": {"200": 2}}, "up": True,
             "name": "n1", "dropped": {"unknown": 1}}
    _add(total, {"attempts": 4, "sip": {"requests": 5, "by_code": {"200": 1, "486": 2}},
                 "up": False, "name": "n2", "dropped": {"suspended": 2}, "new": 7})
    assert total == {"attempts": 7, "sip": {"requests": 15, "by_code": {"200": 3, "486": 2}},
                     "up": True, "name": "n1", "dropped": {"unknown": 1, "suspended": 2},
                     "new": 7}
