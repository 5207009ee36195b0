"""An object census of the engine process: what is alive, by type, and the largest
containers with what holds them. Compared at two points of a long run (``bench/soak.py
--census-at``), it names what grows per call.

It walks every object the garbage collector tracks a few times (the census, their
referents for the untracked containers, ``gc.get_referrers`` scans for the owners of the
large ones), so it blocks the event loop for about a second per million objects: a
diagnostic for bench runs and support sessions, not for a monitoring loop.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter, deque
from typing import Any

CONTAINERS = (dict, list, set, deque, frozenset, tuple)


def _class_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _type_name(obj: object) -> str:
    return _class_name(type(obj))


def _attribute(ref: object, container: object) -> str | None:
    """``type.attribute`` when ``container`` is an attribute of the object ``ref``."""
    if isinstance(ref, (*CONTAINERS, type)):
        return None
    for key, value in getattr(ref, "__dict__", {}).items():
        if value is container:
            return f"{_type_name(ref)}.{key}"
    slots = getattr(type(ref), "__slots__", ())
    for key in (slots,) if isinstance(slots, str) else slots:
        if getattr(ref, key, None) is container:
            return f"{_type_name(ref)}.{key}"
    return None


def _holds(ref: object, target: object) -> bool:
    if any(r is target for r in gc.get_referents(ref)):
        return True
    if isinstance(ref, (*CONTAINERS, type)):
        return False
    # An instance whose attributes dict was materialised while checking another one.
    return any(v is target for v in getattr(ref, "__dict__", {}).values())


def _owners(big: list[Any]) -> list[str]:
    """For each container in ``big``, what holds it: "type.attribute" for an object's
    attribute (also through the object's ``__dict__``), "dict[key]", or a type name."""
    held: list[list[object]] = [[] for _ in big]
    for ref in gc.get_referrers(*big):
        if ref is big:
            continue
        for i, c in enumerate(big):
            if ref is not c and _holds(ref, c):
                held[i].append(ref)
    # A plain dict holder may be an object's ``__dict__``: find those objects in one scan.
    dicts = [r for refs in held for r in refs if type(r) is dict]
    instance_of: dict[int, object] = {}
    if dicts:
        wanted = {id(d) for d in dicts}
        for ref in gc.get_referrers(*dicts):
            d = getattr(ref, "__dict__", None) if not isinstance(ref, (*CONTAINERS, type)) \
                else None
            if d is not None and id(d) in wanted:
                instance_of[id(d)] = ref
    out = []
    for c, refs in zip(big, held, strict=True):
        name = next((a for r in refs if (a := _attribute(r, c)) is not None), None)
        if name is None:
            for r in refs:
                if type(r) is dict:
                    key = next((k for k, v in r.items() if v is c), "?")
                    owner = instance_of.get(id(r))
                    name = (f"{_type_name(owner)}.{key}" if owner is not None
                            else f"dict[{key!r}]")
                    break
        if name is None:
            name = _type_name(refs[0]) if refs else "?"
        out.append(name)
    return out


def census(top: int = 60, large: int = 1000, owners: int = 20) -> dict[str, Any]:
    """``types``: the ``top`` most numerous tracked types; ``containers``: the
    ``owners`` largest containers with at least ``large`` items, each with its owner."""
    # The collector does not show frozen objects (``gc.freeze``: what existed at
    # start-up, b2bua/collector.py), and they own the engine's long-lived tables: thaw
    # them for the census and freeze again (the same objects, plus what is live now,
    # which reference counting still frees).
    frozen = gc.get_freeze_count()
    if frozen:
        gc.unfreeze()
    try:
        return _census(top, large, owners, frozen)
    finally:
        if frozen:
            gc.freeze()


def _census(top: int, large: int, owners: int, frozen: int) -> dict[str, Any]:
    objects = gc.get_objects()
    by_type = Counter(map(type, objects))
    kinds = set(CONTAINERS)
    candidates = [o for o in objects if type(o) in kinds and len(o) >= large]
    # Containers of atomic values only (a dict of str to int) are not tracked by the
    # collector: they are found among the referents of the tracked objects.
    untracked = {id(o): o for o in gc.get_referents(*objects)
                 if type(o) in kinds and len(o) >= large and not gc.is_tracked(o)}
    del objects
    big = sorted([*candidates, *untracked.values()], key=len, reverse=True)[:owners]
    del candidates, untracked
    names = _owners(big) if big else []
    containers = [{"type": _type_name(c), "len": len(c), "owner": n}
                  for c, n in zip(big, names, strict=True)]
    types: Counter[str] = Counter()
    for cls, count in by_type.items():
        types[_class_name(cls)] += count
    return {"tracked": sum(by_type.values()), "frozen_at_start": frozen,
            "allocated_blocks": sys.getallocatedblocks(),
            "types": dict(types.most_common(top)), "containers": containers}


def growth(before: dict[str, Any], after: dict[str, Any], top: int = 20
           ) -> list[tuple[str, int, int]]:
    """The types that grew most between two censuses: (type, before, after)."""
    names = set(before["types"]) | set(after["types"])
    rows = [(n, int(before["types"].get(n, 0)), int(after["types"].get(n, 0)))
            for n in names]
    rows.sort(key=lambda r: r[2] - r[1], reverse=True)
    return [r for r in rows[:top] if r[2] > r[1]]
