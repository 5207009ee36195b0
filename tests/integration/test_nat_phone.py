"""A phone behind a real NAT (network namespaces + iptables MASQUERADE): it registers,
is detected as behind NAT, is called through the NAT mapping, and receives the NAT
keep-alive payload at the period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns import NAT_OUTSIDE, PHONE_ADDR, SWITCH_ADDR, NatLab
from pjpeer import PEER
from sippctl import CUSTOMER_IP, sipp
from support import Softswitch, free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def test_phone_behind_nat_registers_is_called_and_kept_alive(tmp_path: Path) -> None:
    with NatLab.create() as lab:
        switch = Softswitch(tmp_path, sip_host=SWITCH_ADDR,
                            extra_args=["--public-address", SWITCH_ADDR]).start()
        try:
            _run(tmp_path, lab, switch)
        finally:
            assert switch.stop() == 0


def _run(tmp_path: Path, lab: NatLab, switch: Softswitch) -> None:
    api = switch.api
    api.post("/api/v1/phones", {"username": "2001", "password": "pw-2001"})
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    api.put("/api/v1/parameters/SS_SIP_NAT_KEEP_ALIVE_PERIOD", {"value": 10})
    api.put("/api/v1/parameters/SS_SIP_NAT_KEEP_ALIVE_MESSAGE", {"value": "HELLO"})
    time.sleep(0.5)
    pcap = tmp_path / "phone.pcap"
    phone_port = 5062
    tshark = subprocess.Popen(
        lab.exec(lab.phone_ns, "tshark", "-i", "any", "-f", f"udp and src host {SWITCH_ADDR}",
                 "-w", str(pcap), "-q"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = open(tmp_path / "phone.out", "wb")  # noqa: SIM115 - closed below
    err = open(tmp_path / "phone.err", "wb")  # noqa: SIM115 - closed below
    phone = subprocess.Popen(
        lab.exec(lab.phone_ns, sys.executable, str(PEER), "register",
                 "--local", f"{PHONE_ADDR}:{phone_port}",
                 "--registrar", f"sip:{SWITCH_ADDR}:{switch.sip_port}",
                 "--username", "2001", "--password", "pw-2001", "--expires", "300",
                 "--answer", "--calls", "2", "--hold", "40", "--timeout", "45",
                 "--no-nat-rewrite"),
        stdout=out, stderr=err)
    try:
        regs = wait_until(lambda: api.get("/api/v1/registrations")["items"], timeout=15)
        assert regs, (tmp_path / "phone.err").read_text()[-2000:]
        (reg,) = regs
        assert reg["nat"] is True
        host, port = reg["source"].split(":")
        assert host == NAT_OUTSIDE and int(port) > 0  # the NAT's address, not the phone's
        assert PHONE_ADDR in reg["contact"]
        assert 250 <= reg["expires_at"] - time.time() <= 300  # SS_ENDPOINT_NAT_EXPIRE
        started = time.time()
        caller = sipp("uac_call.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                      f"{SWITCH_ADDR}:{switch.sip_port}", service="2001", hold_ms=1000)
        assert caller.wait() == 0, caller.output() + switch.log()[-3000:]
        (cdr,) = wait_until(lambda: api.get("/api/v1/cdrs")["items"], timeout=5)
        assert (cdr["callee_phone"], cdr["final_code"]) == ("2001", 200)
        # The keep-alive period is 10 s: wait for at least one full cycle after the call.
        wait_until(lambda: api.get("/api/v1/keepalive")["sent"] >= 2, timeout=25)
        stats = api.get("/api/v1/keepalive")
        assert stats["sent"] >= 2 and stats["phones_last_cycle"] == 1, stats
        assert time.time() - started < 40
    finally:
        phone.send_signal(signal.SIGTERM)
        try:
            phone.wait(15)
        except subprocess.TimeoutExpired:
            phone.kill()
            phone.wait()
        time.sleep(0.5)
        tshark.send_signal(signal.SIGINT)
        tshark.wait(15)
        out.close()
        err.close()
    events = (tmp_path / "phone.out").read_text()
    assert '"CONFIRMED"' in events, events
    payloads = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"udp.port=={phone_port},data",
         "-Y", f"udp.dstport=={phone_port}", "-T", "fields", "-e", "data.data"],
        capture_output=True, text=True, timeout=60, check=True).stdout.split()
    hello = [p for p in payloads if p == b"HELLO".hex()]
    assert len(hello) >= 2, payloads
