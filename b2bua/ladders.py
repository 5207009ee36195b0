"""Call ladders: the SIP messages of recent calls, both legs, kept for the API to draw
(``GET /api/v1/calls/ID/sip``, ``GET /api/v1/cdrs/ID/sip``; docs/sip.md, "Call ladders").

The SIP stack reports each message it sends or receives with its Call-ID. A call's
Call-IDs (the caller's, then each attempt's, as the call watches them) lead to its
ladder, so both legs land in one ladder. While a call is up every message is kept (the
first ``HEAD`` and the last ``TAIL``: a long call's re-INVITEs drop out of the middle).
When it ends, its ladder is kept or forgotten as ``SS_SIP_LADDERS`` says: ``Failed``
(the default) keeps the calls that were never answered, ``All`` every call, ``Off``
none and captures nothing. A kept ladder goes after ``SS_SIP_LADDERS_AGE`` seconds; all
ladders together, live ones included, stay within ``SS_SIP_LADDERS_SIZE``, the oldest
kept ladder evicted first; when only live calls' messages are left, a new message is
dropped and counted. A message is kept as the bytes that went on the wire (a reference,
not a copy): a call whose ladder is not kept costs a lookup and an append per message.

Sans-IO: every method that depends on time takes ``now``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from b2bua.sip.peek import call_id_of, first_line
from b2bua.sip.peer import Peer

FAILED, ALL, OFF = "Failed", "All", "Off"
POLICIES = (FAILED, ALL, OFF)
CALLER = "caller"
SOFTSWITCH = "softswitch"
HEAD = 150  # a call's first messages kept...
TAIL = 50  # ... and its last: 200 at most per call
MAX_MESSAGE = 65535  # bytes of one message kept (the SIP size limit)
OVERHEAD = 120  # bytes counted per message beside its text: the entry itself
# A call's Call-IDs still collect this long after its end (the BYE's 200, the caller's
# ACK of a final answer, retransmissions): 64*T1, a transaction's longest life.
LINGER = 32.0
# Text of one ladder's messages in one answer: within the control socket's reply (16 MiB)
# even for bytes that are not UTF-8 (each replaced by a 3-byte character).
RENDER_TEXT = 4 << 20
GONE = 4096  # calls (at least; twice as many at most) remembered after their ladder
# went, to say why it is not there

# Why a call has no ladder (anymore).
ANSWERED = "answered"
NOT_KEPT = "off"
EXPIRED = "expired"
EVICTED = "evicted"
UNKNOWN = "unknown"
_NOWHERE: tuple[None, str] = (None, "")

# A message: when, sent (True) or received, the leg, the other end, the bytes.
Entry = tuple[float, bool, str, Peer, bytes]
# A new call's INVITE when it was not seen arriving: its bytes, source and time.
Invite = Callable[[], tuple[bytes, Peer, float]]
# What a call says at its end: about itself, and each attempt by leg id.
LastWord = Callable[[], tuple[dict[str, Any], dict[str, dict[str, Any]]]]


@dataclass
class LadderStats:
    opened: int = 0  # ladders begun (calls started while not Off)
    kept: int = 0  # kept at the call's end
    not_kept: int = 0  # forgotten at the end (answered under Failed; Off)
    evicted_age: int = 0  # kept ones gone after SS_SIP_LADDERS_AGE
    evicted_size: int = 0  # kept ones gone early to stay within SS_SIP_LADDERS_SIZE
    messages: int = 0  # messages captured
    messages_dropped: int = 0  # not captured: the size limit filled by live calls
    messages_omitted: int = 0  # left out of the middle of a call over its 200


class Ladder:
    """One call's messages and who took part."""

    __slots__ = ("call", "call_ids", "ended_at", "gone", "head", "no", "omitted",
                 "participants", "room", "size", "tail", "uuid")

    def __init__(self, no: int, uuid: str, call: dict[str, Any],
                 caller: dict[str, Any]) -> None:
        self.no = no
        self.uuid = uuid
        self.call = call
        self.participants: list[dict[str, Any]] = [caller]
        self.head: list[Entry] = []
        self.room = HEAD  # places left in ``head``
        self.tail: deque[Entry] = deque()
        self.omitted = 0
        self.size = 0
        self.call_ids: list[str] = []
        self.ended_at: float | None = None
        self.gone: str | None = None  # why it was dropped

    def entries(self) -> list[Entry]:
        return self.head + list(self.tail)


class LadderStore:
    def __init__(self, local: str = "", name: str = SOFTSWITCH, policy: str = FAILED,
                 max_bytes: int = 64 << 20, max_age: float = 3600.0) -> None:
        self.local = local  # the softswitch's SIP address, as messages show it
        self.name = name  # the node's name on a cluster node
        self.policy = policy
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.bytes = 0
        self.stats = LadderStats()
        self._legs: dict[str, tuple[Ladder, str]] = {}  # Call-ID: its ladder, its leg
        self._live: dict[int, Ladder] = {}  # by call number
        self._kept: OrderedDict[int, Ladder] = OrderedDict()  # in the order they ended
        self._uuids: dict[str, Ladder] = {}
        self._lingering: deque[tuple[float, Ladder]] = deque()
        self._gone: dict[str, str] = {}  # in the order the ladders went
        # The last message whose Call-ID led nowhere: a new call's INVITE, which the
        # call's ladder takes as its first message when it opens (``open``).
        self._unclaimed: tuple[str, float, Peer, bytes] | None = None

    def configure(self, policy: str, max_bytes: int, max_age: float, now: float) -> None:
        self.policy = policy if policy in POLICIES else FAILED
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.sweep(now)
        self._make_room(0)

    # -- capture (on the path of every message: kept to a few operations) ---------------

    def capture(self, call_id: str | None, sent: bool, data: bytes, peer: Peer,
                now: float) -> None:
        """A message sent (``sent``) to or received from ``peer``. ``call_id`` None: read
        from the bytes (an ACK of a 2xx, sent outside any transaction), only while some
        call is watched."""
        if call_id is None:
            if not self._legs:
                return
            call_id = call_id_of(data)
            if call_id is None:
                return
        found = self._legs.get(call_id)
        if found is None:
            if not sent:  # perhaps a new call's INVITE: ``open`` takes it
                self._unclaimed = (call_id, now, peer, data)
            return
        ladder = found[0]
        cost = len(data) + OVERHEAD
        if ladder.room and cost <= MAX_MESSAGE + OVERHEAD and \
                self.bytes + cost <= self.max_bytes:
            ladder.head.append((now, sent, found[1], peer, data))
            ladder.room -= 1
            ladder.size += cost
            self.bytes += cost
            self.stats.messages += 1
            return
        self._add(ladder, (now, sent, found[1], peer, data))

    def _add(self, ladder: Ladder, entry: Entry) -> None:
        """``capture`` beyond its common case: a long message, a full head, no room."""
        data = entry[4]
        if len(data) > MAX_MESSAGE:
            data = data[:MAX_MESSAGE]
            entry = (entry[0], entry[1], entry[2], entry[3], data)
        cost = len(data) + OVERHEAD
        if self.bytes + cost > self.max_bytes and (
                not self._make_room(cost) or ladder.gone is not None):
            ladder.omitted += 1
            self.stats.messages_dropped += 1
            return
        if ladder.room:
            ladder.head.append(entry)
            ladder.room -= 1
        else:
            tail = ladder.tail
            if len(tail) >= TAIL:
                freed = len(tail.popleft()[4]) + OVERHEAD
                ladder.size -= freed
                self.bytes -= freed
                ladder.omitted += 1
                self.stats.messages_omitted += 1
            tail.append(entry)
        ladder.size += cost
        self.bytes += cost
        self.stats.messages += 1

    # -- a call's life ---------------------------------------------------------------------

    def open(self, no: int, uuid: str, call_id: str, call: dict[str, Any],
             caller: dict[str, Any], invite: Invite | None = None) -> Ladder | None:
        """A new call's ladder (None when Off), its INVITE first. ``call``: what the
        ladder says of the call; ``caller``: the caller as a participant."""
        if self.policy == OFF:
            return None
        ladder = Ladder(no, uuid, call, {**caller, "id": CALLER})
        ladder.participants.append({"id": SOFTSWITCH, "role": "softswitch",
                                    "name": self.name, "address": self.local})
        self._live[no] = ladder
        self._uuids[uuid] = ladder
        self._legs[call_id] = (ladder, CALLER)
        ladder.call_ids.append(call_id)
        self.stats.opened += 1
        unclaimed = self._unclaimed
        if unclaimed is not None and unclaimed[0] == call_id:
            self._unclaimed = None
            self._add(ladder, (unclaimed[1], False, CALLER, unclaimed[2], unclaimed[3]))
        elif invite is not None:
            # Admitted after a wait (a cluster's capacity check): other messages came
            # meanwhile. The INVITE as the stack holds it, marked Via and all.
            data, source, at = invite()
            self._add(ladder, (at, False, CALLER, source, data))
        return ladder

    def watch(self, ladder: Ladder, call_id: str, leg: dict[str, Any]) -> None:
        """An attempt's Call-ID: its messages belong to the call, on leg ``leg["id"]``,
        drawn as a participant of its own."""
        ladder.participants.append(leg)
        self._legs[call_id] = (ladder, leg["id"])
        ladder.call_ids.append(call_id)

    def close(self, ladder: Ladder, answered: bool, last_word: LastWord, now: float
              ) -> None:
        """The call ended: its ladder is kept, or forgotten, as the policy says now.
        ``last_word``, asked only for a ladder kept: the call's end (answer, end, codes)
        and each attempt's outcome by leg id."""
        policy = self.policy
        if policy == ALL or (policy == FAILED and not answered):
            del self._live[ladder.no]
            ladder.ended_at = now
            call, legs = last_word()
            ladder.call.update(call)
            for participant in ladder.participants:
                participant.update(legs.get(participant["id"], ()))
            self._kept[ladder.no] = ladder
            self._lingering.append((now + LINGER, ladder))
            self.stats.kept += 1
        else:
            self._drop(ladder, ANSWERED if policy == FAILED else NOT_KEPT)
            self.stats.not_kept += 1
        if self._kept or self._lingering:
            self.sweep(now)

    # -- bounds ----------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Stop collecting for calls ended ``LINGER`` ago; drop ladders past their age."""
        lingering = self._lingering
        while lingering and lingering[0][0] <= now:
            self._unwatch(lingering.popleft()[1])
        cutoff = now - self.max_age
        kept = self._kept
        while kept:
            oldest = next(iter(kept.values()))
            assert oldest.ended_at is not None
            if oldest.ended_at > cutoff:
                break
            self._drop(oldest, EXPIRED)
            self.stats.evicted_age += 1

    def _make_room(self, cost: int) -> bool:
        """Evict kept ladders, oldest first, until ``cost`` more bytes fit."""
        kept = self._kept
        while self.bytes + cost > self.max_bytes and kept:
            self._drop(next(iter(kept.values())), EVICTED)
            self.stats.evicted_size += 1
        return self.bytes + cost <= self.max_bytes

    def _unwatch(self, ladder: Ladder) -> None:
        legs = self._legs
        for call_id in ladder.call_ids:
            if legs.get(call_id, _NOWHERE)[0] is ladder:
                del legs[call_id]
        ladder.call_ids = []

    def _drop(self, ladder: Ladder, why: str) -> None:
        self._unwatch(ladder)
        if ladder.ended_at is None:
            del self._live[ladder.no]
        else:
            del self._kept[ladder.no]
        if self._uuids.get(ladder.uuid) is ladder:
            del self._uuids[ladder.uuid]
        self.bytes -= ladder.size
        ladder.size = 0
        ladder.head = []
        if ladder.tail:
            ladder.tail.clear()
        ladder.gone = why
        gone = self._gone
        gone[ladder.uuid] = why
        gone[f"#{ladder.no}"] = why
        if len(gone) > 4 * GONE:  # the newest GONE calls' two keys stay, in one go
            self._gone = dict(list(gone.items())[-2 * GONE:])

    # -- reading ---------------------------------------------------------------------------

    def find(self, now: float, no: int | None = None, uuid: str | None = None
             ) -> Ladder | str:
        """A call's ladder, by its number or its CDR's ``cdr_uuid``; else why there is
        none: ``answered``, ``off``, ``expired``, ``evicted`` or ``unknown``."""
        self.sweep(now)
        if uuid is not None:
            ladder = self._uuids.get(uuid)
            key = uuid
        else:
            assert no is not None
            ladder = self._live.get(no) or self._kept.get(no)
            key = f"#{no}"
        if ladder is not None:
            return ladder
        return self._gone.get(key, UNKNOWN)

    def render(self, ladder: Ladder, live: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ladder as the API answers it (docs/api.md); ``live``: the call's current
        state, for a call still up."""
        call = {**ladder.call, **(live or {}),
                "state": "ended" if ladder.ended_at is not None else "up",
                "node": self.name if self.name != SOFTSWITCH else None}
        messages = []
        budget = RENDER_TEXT
        for entry in ladder.entries():
            message = self._message(entry, budget > 0)
            budget -= len(message["text"])
            messages.append(message)
        return {
            "call": call,
            "participants": [dict(p) for p in ladder.participants],
            "messages": messages,
            "omitted": ladder.omitted,
        }

    def _message(self, entry: Entry, whole: bool) -> dict[str, Any]:
        """One message; ``whole`` False: its text cut to the first line."""
        at, sent, leg, peer, data = entry
        host = f"[{peer.host}]" if ":" in peer.host else peer.host
        line = first_line(data)
        return {
            "at": at,
            "direction": "out" if sent else "in",
            "leg": leg,
            "from": SOFTSWITCH if sent else leg,
            "to": leg if sent else SOFTSWITCH,
            "local": self.local,
            "remote": f"{host}:{peer.port}",
            "transport": peer.transport,
            "first_line": line,
            "size": len(data),
            "text": data.decode("utf-8", "replace") if whole else line,
        }

    def snapshot(self) -> dict[str, Any]:
        return {**asdict(self.stats), "bytes": self.bytes, "stored": len(self._kept),
                "live": len(self._live)}
