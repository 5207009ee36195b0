"""The object census names the large containers and who holds them, and what grew."""

from __future__ import annotations

from b2bua.census import census, growth


class Pending:
    pass


class Holder:
    def __init__(self) -> None:
        self.pending = [Pending() for _ in range(3000)]


class Slotted:
    __slots__ = ("index",)

    def __init__(self) -> None:
        self.index = {n: str(n) for n in range(2500)}  # untracked: atomic items only


def test_census_finds_large_containers_and_their_owners() -> None:
    holder, slotted = Holder(), Slotted()
    result = census(large=2000)
    owners = {(c["type"], c["len"]): c["owner"] for c in result["containers"]}
    assert owners[("list", 3000)].endswith("test_census.Holder.pending")
    assert owners[("dict", 2500)].endswith("test_census.Slotted.index")
    pending = [n for n in result["types"] if n.endswith("test_census.Pending")]
    assert pending and result["types"][pending[0]] >= 3000
    assert result["tracked"] >= sum(result["types"].values()) - 1
    del holder, slotted


def test_growth_ranks_the_types_that_grew() -> None:
    before = {"types": {"a.Call": 10, "dict": 500, "gone": 7}}
    after = {"types": {"a.Call": 900, "dict": 520, "new.Type": 30}}
    assert growth(before, after) == [("a.Call", 10, 900), ("new.Type", 0, 30),
                                     ("dict", 500, 520)]


def test_census_sees_frozen_owners_and_freezes_them_again() -> None:
    import gc

    holder = Holder()  # frozen with everything else: invisible to gc.get_objects()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        result = census(large=2000)
        owners = {(c["type"], c["len"]): c["owner"] for c in result["containers"]}
        assert owners[("list", 3000)].endswith("test_census.Holder.pending")
        assert result["frozen_at_start"] == frozen
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
    del holder
