"""30 phones register through the edge and are all called (docs/cluster.md,
docs/registration.md): two nodes sharing one PostgreSQL behind the kamailio edge as
shipped (``deploy/kamailio/edge.cfg``). One sipp plays 30 phones (2001-2030, each its own
password, its contact at the sipp's address) and REGISTERs them to the edge, digest
included; the edge adds a Path, so every binding, kept in the shared database, names the
edge and the phone's address, and both nodes list all 30. The customer trunk then calls
the 30 numbers through the edge: the calls spread over both nodes, each goes to its phone
through the edge by the Path, and every phone answers its own call: 30 answered CDRs, one
per phone, and 30 INVITEs heard by the phones, each to its own number, from the edge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clusterlab import EDGE_IP, Cluster
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port, wait_until

SCENARIOS = Path(__file__).parents[1] / "interop" / "sipp"
PHONES_IP = "127.0.0.70"
PHONES = [str(2000 + n) for n in range(1, 31)]
REALM = "cluster.example"


def injection(path: Path, rows: list[str]) -> Path:
    """A sipp ``-inf`` file: one line per call, taken in order."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{row};\n" for row in rows))
    return path


def bindings(node: Softswitch) -> dict[str, dict[str, Any]]:
    return {r["username"]: r for r in node.api.get("/api/v1/registrations")["items"]}


def invites_heard(folder: Path) -> dict[str, tuple[str, str]]:
    """Each INVITE the phones' sipp received, by Call-ID: its Request-URI user and the
    host of its top Via (retransmissions counted once)."""
    text = "".join(p.read_text(errors="replace") for p in folder.rglob("*_messages.log"))
    heard: dict[str, tuple[str, str]] = {}
    for block in text.split("message received")[1:]:
        body = block.split("\n", 1)[-1].lstrip()
        found = re.match(r"INVITE sip:(\d+)@.*?^Via: SIP/2.0/UDP ([\d.]+):.*?^Call-ID:\s*(\S+)",
                         body, flags=re.M | re.S | re.I)
        if found:
            heard[found.group(3)] = (found.group(1), found.group(2))
    return heard


def test_30_phones_register_through_the_edge_and_are_all_called(pg_url: str, tmp_path: Path
                                                                ) -> None:
    lab = Cluster(tmp_path, pg_url)
    phones: Sipp | None = None
    customer: Sipp | None = None
    try:
        lab.start()
        edge, api = lab.edge, lab.api
        assert edge is not None
        for user in PHONES:
            api.post("/api/v1/phones", {"username": user, "password": f"pw-{user}"})
        # No vendor answers: a call to a phone number that went to the vendor would fail.
        lab.configure(free_port(VENDOR_IP))
        # One realm for the cluster (docs/cluster.md); by the time every node has it, the
        # phones created before are loaded too.
        api.put("/api/v1/parameters/SS_SIP_AUTHENTICATION_REALM", {"value": REALM})
        assert wait_until(lambda: all(n.api.get("/api/v1/engine")["params"][
            "SS_SIP_AUTHENTICATION_REALM"] == REALM for n in lab.nodes), timeout=5)

        # The 30 phones, one sipp at one address: each call of its main scenario registers
        # one phone (the -inf line: username, password) at the edge, then waits until the
        # phones answered 30 calls; the INVITEs, new Call-IDs to it, are its out-of-call
        # scenario's, which answers each and counts it once its BYE is answered.
        (tmp_path / "phones").mkdir()
        phones_port = free_port(PHONES_IP)
        phones = sipp(str(SCENARIOS / "phones_register_answer.xml"), tmp_path / "phones",
                      PHONES_IP, phones_port, edge.address, calls=len(PHONES), rate=10,
                      timeout_s=180,
                      extra=["-inf", str(injection(tmp_path / "phones.csv",
                                                   [f"{u};pw-{u}" for u in PHONES])),
                             "-oocsf", str(SCENARIOS / "phones_answer_ooc.xml"),
                             "-key", "phones", str(len(PHONES)), "-trace_msg"])

        # Registered through whichever node the edge chose, all 30 are on both nodes (the
        # shared bindings), each reached through the edge by its Path: the edge's
        # address, with the phone's own as received. The node heard the edge; the edge
        # vouches for the phone's address (customer).
        for node in lab.nodes:
            assert wait_until(lambda node=node: len(bindings(node)) == len(PHONES),
                              timeout=30), (bindings(node).keys(), phones.output())
        phone_uri = f"sip:{PHONES_IP}:{phones_port}"
        for node in lab.nodes:
            regs = bindings(node)
            assert sorted(regs) == PHONES
            for user, reg in regs.items():
                assert reg["contact"] == f"sip:{user}@{PHONES_IP}:{phones_port};transport=UDP"
                assert reg["kind"] == "phone" and reg["nat"] is False, reg
                assert reg["source"] == edge.address, reg
                assert reg["customer"] == f"udp:{PHONES_IP}:{phones_port}", reg
                (path,) = reg["path"]
                assert path.startswith(f"<sip:{edge.address};lr"), reg
                assert f"received={phone_uri}" in path, reg

        # The customer trunk calls each of the 30 numbers once, through the edge.
        (tmp_path / "customer").mkdir()
        customer = sipp(str(SCENARIOS / "uac_routed_call_inf.xml"), tmp_path / "customer",
                        CUSTOMER_IP, free_port(CUSTOMER_IP), edge.address,
                        calls=len(PHONES), rate=10, hold_ms=500, timeout_s=90,
                        extra=["-inf", str(injection(tmp_path / "callees.csv", PHONES))])
        assert customer.wait(120) == 0, customer.output() + phones.output()
        # The phones' sipp ends only once its 30 phones registered and answered 30 calls.
        assert phones.wait(120) == 0, phones.output()

        # Every phone got its own call, answered: one CDR per phone, from the customer,
        # handled by both nodes (the edge hashes the Call-IDs over them).
        cdrs = wait_until(lambda: len(items := lab.cdrs()) == len(PHONES) and items,
                          timeout=15)
        assert cdrs, lab.cdrs()
        assert sorted(c["callee_phone"] for c in cdrs) == PHONES
        assert {c["final_code"] for c in cdrs} == {200}
        assert all(c["routing_gateway"] is None for c in cdrs), cdrs
        assert {c["source"].split(":")[0] for c in cdrs} == {CUSTOMER_IP}
        assert {c["node"] for c in cdrs} == {"n1", "n2"}, [c["node"] for c in cdrs]
        # At the phones: 30 INVITEs, one to each number, each from the edge.
        heard = invites_heard(tmp_path / "phones")
        assert sorted(user for user, _ in heard.values()) == PHONES, heard
        assert {via for _, via in heard.values()} == {EDGE_IP}
    finally:
        for run in (customer, phones):
            if run is not None:
                run.stop()
        lab.stop()
