"""An operator hangs a call up through the API: both legs get a BYE (real sipp peers
answer them), the CDR says ``operator``, the audit log names who, and a call that is
not up is a 404."""

from __future__ import annotations

from pathlib import Path

from sippctl import CUSTOMER_IP, VENDOR_IP, sipp
from support import Softswitch, free_port, wait_until
from test_basic_calls import cdrs, configure


def test_an_operator_hangs_up_an_answered_call(tmp_path: Path,
                                                softswitch: Softswitch) -> None:
    port = free_port(VENDOR_IP)
    configure(softswitch, port)
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, port, timeout_s=20)
    customer = sipp("uac_wait_bye.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                    f"127.0.0.1:{softswitch.sip_port}", timeout_s=20)
    try:
        calls = wait_until(lambda: [c for c in softswitch.api.get("/api/v1/calls")["items"]
                                    if c["answer_at"]], timeout=10)
        assert calls, softswitch.log()[-2000:]
        (call,) = calls
        status, body, _ = softswitch.api.call("DELETE", f"/api/v1/calls/{call['id']}")
        assert status == 200 and body == {"id": call["id"], "hung_up": True}
        # Both peers got their BYE and answered it: their scenarios end well.
        assert customer.wait() == 0, customer.output()
        assert vendor.wait() == 0, vendor.output()
    finally:
        customer.stop()
        vendor.stop()
    (cdr,) = cdrs(softswitch, 1)
    assert (cdr["final_code"], cdr["termination_reason"]) == (200, "operator")
    assert softswitch.api.get("/api/v1/calls")["items"] == []
    status, body, _ = softswitch.api.call("DELETE", f"/api/v1/calls/{call['id']}")
    assert status == 404
    (entry,) = [e for e in softswitch.api.get("/api/v1/audit")["items"]
                if e["action"] == "hangup"]
    assert entry["resource"] == f"calls/{call['id']}"
