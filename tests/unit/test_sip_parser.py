"""parse_message, StreamFramer and make_response against real-world and RFC 4475 messages."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b2bua.sip.badrequest import (
    answer_malformed,
    bad_extension,
    status_for,
    unsupported_required,
)
from b2bua.sip.errors import SipParseError, UnsupportedSchemeError
from b2bua.sip.headers import CSeq, NameAddr, parse_auth_params
from b2bua.sip.message import Request, Response, SipMessage, make_response
from b2bua.sip.parser import (
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    StreamFramer,
    find_header_end,
    parse_message,
)


def wire(text: str) -> bytes:
    """Test messages are written with bare LF for readability; SIP wants CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


SDP = wire(
    "v=0\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.1.1\n"
    "s=-\n"
    "c=IN IP4 127.0.1.1\n"
    "t=0 0\n"
    "m=audio 6000 RTP/AVP 0\n"
    "a=rtpmap:0 PCMU/8000\n"
)

SIPP_INVITE = wire(
    "INVITE sip:service@127.0.0.1:5060 SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-12345-1-0\n"
    "From: sipp <sip:sipp@127.0.1.1:5061>;tag=12345SIPpTag001\n"
    "To: service <sip:service@127.0.0.1:5060>\n"
    "Call-ID: 1-12345@127.0.1.1\n"
    "CSeq: 1 INVITE\n"
    "Contact: sip:sipp@127.0.1.1:5061\n"
    "Max-Forwards: 70\n"
    "Subject: Performance Test\n"
    "Content-Type: application/sdp\n"
    f"Content-Length: {len(SDP)}\n"
    "\n"
) + SDP

SIPP_200 = wire(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-12345-1-0;received=127.0.1.1;rport=5061\n"
    "Record-Route: <sip:10.0.0.1;lr;ftag=12345SIPpTag001>, <sip:10.0.0.2;lr>\n"
    "From: sipp <sip:sipp@127.0.1.1:5061>;tag=12345SIPpTag001\n"
    "To: service <sip:service@127.0.0.1:5060>;tag=98765SIPpTag011\n"
    "Call-ID: 1-12345@127.0.1.1\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:127.0.0.1:5060;transport=UDP>\n"
    "Content-Type: application/sdp\n"
    f"Content-Length: {len(SDP)}\n"
    "\n"
) + SDP

SIPP_ACK = wire(
    "ACK sip:127.0.0.1:5060;transport=UDP SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-12345-1-5\n"
    "Route: <sip:10.0.0.2;lr>\n"
    "Route: <sip:10.0.0.1;lr;ftag=12345SIPpTag001>\n"
    "From: sipp <sip:sipp@127.0.1.1:5061>;tag=12345SIPpTag001\n"
    "To: service <sip:service@127.0.0.1:5060>;tag=98765SIPpTag011\n"
    "Call-ID: 1-12345@127.0.1.1\n"
    "CSeq: 1 ACK\n"
    "Contact: sip:sipp@127.0.1.1:5061\n"
    "Max-Forwards: 70\n"
    "Subject: Performance Test\n"
    "Content-Length: 0\n"
    "\n"
)

SIPP_BYE = wire(
    "BYE sip:127.0.0.1:5060;transport=UDP SIP/2.0\n"
    "Via: SIP/2.0/UDP 127.0.1.1:5061;branch=z9hG4bK-12345-1-7\n"
    "From: sipp <sip:sipp@127.0.1.1:5061>;tag=12345SIPpTag001\n"
    "To: service <sip:service@127.0.0.1:5060>;tag=98765SIPpTag011\n"
    "Call-ID: 1-12345@127.0.1.1\n"
    "CSeq: 2 BYE\n"
    "Contact: sip:sipp@127.0.1.1:5061\n"
    "Max-Forwards: 70\n"
    "Subject: Performance Test\n"
    "Content-Length: 0\n"
    "\n"
)

PJSIP_REGISTER = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bKPj5f3b2a1c-7e8d-4f6a-9b0c\n"
    "Max-Forwards: 70\n"
    "From: <sip:1001@example.com>;tag=8c7b6a5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d\n"
    "To: <sip:1001@example.com>\n"
    "Call-ID: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d\n"
    "CSeq: 12345 REGISTER\n"
    "User-Agent: PJSUA v2.14 Linux-6.1/x86_64/glibc-2.36\n"
    "Contact: <sip:1001@192.168.1.20:5060;ob>\n"
    "Expires: 300\n"
    "Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, "
    "OPTIONS\n"
    "Content-Length: 0\n"
    "\n"
)

PJSIP_401 = wire(
    "SIP/2.0 401 Unauthorized\n"
    "Via: SIP/2.0/UDP 192.168.1.20:5060;rport=5060;received=203.0.113.7;"
    "branch=z9hG4bKPj5f3b2a1c-7e8d-4f6a-9b0c\n"
    "Call-ID: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d\n"
    "From: <sip:1001@example.com>;tag=8c7b6a5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d\n"
    "To: <sip:1001@example.com>;tag=z9hG4bKPj5f3b\n"
    "CSeq: 12345 REGISTER\n"
    'WWW-Authenticate: Digest realm="example.com", nonce="5f1c0a8d9e2b3c4d", '
    'opaque="a1b2c3", algorithm=MD5, qop="auth"\n'
    "Content-Length: 0\n"
    "\n"
)

PJSIP_REGISTER_AUTH = wire(
    "REGISTER sip:example.com SIP/2.0\n"
    "Via: SIP/2.0/TCP 192.168.1.20:49152;rport;branch=z9hG4bKPjaa11bb22;alias\n"
    "Max-Forwards: 70\n"
    "From: <sip:1001@example.com>;tag=8c7b6a5d-4e3f-2a1b-0c9d-8e7f6a5b4c3d\n"
    "To: <sip:1001@example.com>\n"
    "Call-ID: 0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d\n"
    "CSeq: 12346 REGISTER\n"
    "Contact: <sip:1001@192.168.1.20:49152;transport=TCP;ob>;reg-id=1;"
    '+sip.instance="<urn:uuid:00000000-0000-0000-0000-00004d2e1f0a>"\n'
    "Expires: 300\n"
    "Supported: outbound, path\n"
    'Authorization: Digest username="1001", realm="example.com", nonce="5f1c0a8d9e2b3c4d", '
    'uri="sip:example.com", response="8ac9c3f0c2b0f8a7c7d6e5f4a3b2c1d0", algorithm=MD5, '
    'cnonce="xyz", opaque="a1b2c3", qop=auth, nc=00000001\n'
    "Content-Length: 0\n"
    "\n"
)

REAL_MESSAGES = [SIPP_INVITE, SIPP_200, SIPP_ACK, SIPP_BYE, PJSIP_REGISTER, PJSIP_401,
                 PJSIP_REGISTER_AUTH]


# -- RFC 4475 torture messages ----------------------------------------------------------------

TORTURE_SDP = (
    "v=0\n"
    "o=mhandley 29739 7272939 IN IP4 192.0.2.3\n"
    "s=-\n"
    "c=IN IP4 192.0.2.4\n"
    "t=0 0\n"
    "m=audio 49217 RTP/AVP 0 12\n"
    "m=video 3227 RTP/AVP 31\n"
    "a=rtpmap:31 LPC\n"
)

WSINV = wire(r"""INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

""" + TORTURE_SDP)

INTMETH_METHOD = "!interesting-Method0123456789_*+`.%indeed'~"
INTMETH_URI = ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
               "(doesn't-it)@example.com")
INTMETH = wire(
    f"{INTMETH_METHOD} {INTMETH_URI} SIP/2.0\n"
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n"
    'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
    "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>\n"
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;"
    'fromParam\'\'~+*_!.-%="\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"'
    ";tag=_token~1'+`*%!-.\n"
    "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
    f"CSeq: 139122385 {INTMETH_METHOD}\n"
    "Max-Forwards: 255\n"
    "extensionHeader-!.%*+_`'~:\ufeff\u5927\u5c71\u96fb\n"
    "Content-Length: 0\n"
    "\n"
)

ESC01 = wire("""INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

""" + TORTURE_SDP)

ESCNULL = wire("""REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

""")

LWSDISP = wire("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

""")

SEMIURI = wire("""OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

""")

TRANSPORTS = wire("""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

""")

UNREASON_PHRASE = ("= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f"
                   "\u043d\u043e\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - "
                   "\u043f\u0440\u043e\u0441\u0442\u043e\u0435")
UNREASON_SDP = TORTURE_SDP.replace("192.0.2.3", "192.0.2.198").replace("192.0.2.4", "192.0.2.198")
UNREASON = wire(f"""SIP/2.0 200 {UNREASON_PHRASE}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

""" + UNREASON_SDP)

NOREASON = b"SIP/2.0 100 \r\n" + wire("""Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""")

DBLREQ = wire("""REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

""" + TORTURE_SDP)

UNKSCM = wire("""OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

""")

NOVELSC = wire("""OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

""")

QUOTBAL = wire("""INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 150

""" + TORTURE_SDP)

MISMATCH01 = wire("""OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

""")

MISMATCH02 = wire("""NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
""")

BADVERS = wire("""OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

""")

BIGCODE = wire("""SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""")

NCL = wire("""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

""" + TORTURE_SDP)

SCALARLG = wire("""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalarlg.98asdh@192.0.2.1
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>;expires=280297596632815
Content-Length: 0

""")

CLERR = wire("""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

""" + TORTURE_SDP)

INSUF = wire("""INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 150

""" + TORTURE_SDP)

MULTI01 = wire("""INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKvscdqwerqwe
Max-Forwards: 70
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 150
Call-ID: multi01.98asdh@192.0.2.3
Max-Forwards: 5

""" + TORTURE_SDP)

MCL01 = wire("""OPTIONS sip:user@example.com SIP/2.0
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
From: <sip:caller@example.com>;tag=3443222
To: <sip:user@example.com>
Max-Forwards: 70
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
Content-Length: 0
Content-Length: 2
l: 2

""")

_OPTIONS_TAIL = """To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: {name}.19293@h.example.com
CSeq: 1 {method}
Via: SIP/2.0/UDP 192.0.2.100;branch=z9hG4bK{name}
l: 0

"""

LTGTRURI = wire("INVITE <sip:user@example.com> SIP/2.0\n"
                + _OPTIONS_TAIL.format(name="ltgtruri", method="INVITE"))
LWSRURI = wire("INVITE sip:user@example.com; lr SIP/2.0\n"
               + _OPTIONS_TAIL.format(name="lwsruri", method="INVITE"))
LWSSTART = wire("INVITE  sip:user@example.com  SIP/2.0\n"
                + _OPTIONS_TAIL.format(name="lwsstart", method="INVITE"))
TRWS = wire("OPTIONS sip:remote-target@example.com SIP/2.0  \n"
            + _OPTIONS_TAIL.format(name="trws", method="OPTIONS"))
ESCRURI = wire("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
               + _OPTIONS_TAIL.format(name="escruri", method="INVITE"))

VALID_TORTURE = [WSINV, INTMETH, ESC01, ESCNULL, LWSDISP, SEMIURI, TRANSPORTS, UNREASON,
                 NOREASON, DBLREQ, UNKSCM, NOVELSC, QUOTBAL, ESCRURI]
ALL_SAMPLES = REAL_MESSAGES + VALID_TORTURE


# -- round trips of real messages -------------------------------------------------------------


@pytest.mark.parametrize("raw", REAL_MESSAGES)
def test_real_messages_round_trip_byte_exact(raw: bytes) -> None:
    assert parse_message(raw).to_bytes() == raw


def _same(a: SipMessage, b: SipMessage) -> None:
    assert a.start_line() == b.start_line()
    assert [h for h in a.headers if h[0] != "Content-Length"] == [
        h for h in b.headers if h[0] != "Content-Length"]
    assert a.body == b.body


@pytest.mark.parametrize("raw", ALL_SAMPLES)
def test_reserialised_messages_parse_back_identically(raw: bytes) -> None:
    msg = parse_message(raw)
    _same(msg, parse_message(msg.to_bytes()))


def test_sipp_invite_fields() -> None:
    msg = parse_message(SIPP_INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:service@127.0.0.1:5060"
    assert msg.ruri.host_port() == "127.0.0.1:5060"
    assert msg.call_id == "1-12345@127.0.1.1"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.from_.display == "sipp"
    assert msg.from_.tag == "12345SIPpTag001"
    assert msg.to.tag is None
    assert msg.top_via.branch == "z9hG4bK-12345-1-0"
    assert msg.top_via.port == 5061
    assert msg.max_forwards == 70
    assert msg.content_length == len(SDP)
    assert msg.body == SDP
    assert msg.get("Contact") == "sip:sipp@127.0.1.1:5061"


def test_sipp_200_fields() -> None:
    msg = parse_message(SIPP_200)
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert msg.reason == "OK"
    assert msg.to.tag == "98765SIPpTag011"
    assert msg.top_via.received == "127.0.1.1"
    assert msg.top_via.rport == "5061"
    assert msg.get_all("Record-Route") == ["<sip:10.0.0.1;lr;ftag=12345SIPpTag001>",
                                           "<sip:10.0.0.2;lr>"]
    assert msg.max_forwards is None


def test_pjsip_register_and_auth() -> None:
    reg = parse_message(PJSIP_REGISTER)
    assert isinstance(reg, Request)
    assert reg.top_via.rport == ""
    assert len(reg.get_all("Allow")) == 12
    assert reg.get("Allow") == "PRACK"
    challenge = parse_message(PJSIP_401)
    scheme, params = parse_auth_params(challenge.get("WWW-Authenticate") or "")
    assert scheme == "Digest"
    assert params["qop"] == "auth"
    assert params["nonce"] == "5f1c0a8d9e2b3c4d"
    auth = parse_message(PJSIP_REGISTER_AUTH)
    assert auth.get_all("Authorization") == [auth.get("Authorization")]
    assert parse_auth_params(auth.get("Authorization") or "")[1]["nc"] == "00000001"
    assert auth.get_all("Supported") == ["outbound", "path"]
    contact = auth.get("Contact") or ""
    assert '+sip.instance="<urn:uuid:00000000-0000-0000-0000-00004d2e1f0a>"' in contact


def test_ack_routes_are_separate_lines() -> None:
    msg = parse_message(SIPP_ACK)
    assert msg.get_all("Route") == ["<sip:10.0.0.2;lr>", "<sip:10.0.0.1;lr;ftag=12345SIPpTag001>"]
    assert msg.content_length == 0
    assert msg.body == b""


# -- tolerated syntax -------------------------------------------------------------------------

MINIMAL = (
    "OPTIONS sip:a@b SIP/2.0\n"
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1\n"
    "From: <sip:c@d>;tag=1\n"
    "To: <sip:a@b>\n"
    "Call-ID: x\n"
    "CSeq: 1 OPTIONS\n"
)


def test_compact_forms() -> None:
    raw = wire(
        "INVITE sip:a@b SIP/2.0\n"
        "v: SIP/2.0/UDP h;branch=z9hG4bK1\n"
        "f: <sip:c@d>;tag=1\n"
        "t: <sip:a@b>\n"
        "i: compact-1\n"
        "CSeq: 1 INVITE\n"
        "m: <sip:c@10.0.0.1>\n"
        "c: application/sdp\n"
        "k: timer\n"
        "x: 1800\n"
        "l: 4\n"
        "\n"
        "abcd"
    )
    msg = parse_message(raw)
    assert [n for n, _ in msg.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type", "Supported",
        "Session-Expires", "Content-Length"]
    assert msg.call_id == "compact-1"
    assert msg.get("m") == "<sip:c@10.0.0.1>"
    assert msg.get("session-expires") == "1800"
    assert msg.body == b"abcd"
    assert b"Call-ID: compact-1\r\n" in msg.to_bytes()


def test_multi_value_headers_split() -> None:
    raw = wire(
        MINIMAL
        + "Via: SIP/2.0/TCP h2;branch=z9hG4bK2, SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK3\n"
        + 'Contact: "Doe, John" <sip:j@h;a=1,2>;q=0.5, <sip:k@h2>;expires=60\n'
        + "Route: <sip:p1;lr>,<sip:p2;lr>\n"
        + "Route: <sip:p3;lr>\n"
        + "\n"
    )
    msg = parse_message(raw)
    assert [v.host for v in msg.vias] == ["h", "h2", "[2001:db8::9]"]
    assert msg.vias[2].port == 5070
    assert msg.get_all("Contact") == ['"Doe, John" <sip:j@h;a=1,2>;q=0.5',
                                      "<sip:k@h2>;expires=60"]
    assert msg.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert len([h for h in msg.headers if h[0] == "Route"]) == 2


def test_folded_headers_joined_with_one_space() -> None:
    raw = wire(
        MINIMAL
        + "Subject: first\n"
        + "   second\n"
        + "\tthird\n"
        + "X-Empty:\n"
        + " later\n"
        + "\n"
    )
    msg = parse_message(raw)
    assert msg.get("Subject") == "first second third"
    assert msg.get("X-Empty") == "later"


def test_odd_whitespace_around_colon() -> None:
    raw = wire(
        "OPTIONS sip:a@b SIP/2.0\n"
        "Via \t:   SIP/2.0/UDP h;branch=z9hG4bK1  \n"
        "From:<sip:c@d>;tag=1\n"
        "To\t:\t<sip:a@b>\n"
        "Call-ID   :x\n"
        "CSeq:1 OPTIONS\n"
        "\n"
    )
    msg = parse_message(raw)
    assert msg.get("Via") == "SIP/2.0/UDP h;branch=z9hG4bK1"
    assert msg.call_id == "x"
    assert msg.to.uri.user == "a"


def test_bare_lf_and_mixed_line_endings() -> None:
    lf = (MINIMAL + "Content-Length: 3\n\nabc").encode()
    msg = parse_message(lf)
    assert msg.body == b"abc"
    assert msg.call_id == "x"
    mixed = MINIMAL.replace("\n", "\r\n", 3).encode() + b"Content-Length: 3\r\n\nabc"
    msg = parse_message(mixed)
    assert msg.body == b"abc"
    assert msg.get("Content-Length") == "3"
    mixed2 = MINIMAL.encode() + b"l: 2\n\r\nxy"
    assert parse_message(mixed2).body == b"xy"


def test_unknown_headers_and_methods_kept() -> None:
    raw = wire(
        "NEWMETHOD sip:a@b SIP/2.0\n"
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1\n"
        "From: <sip:c@d>;tag=1\n"
        "To: <sip:a@b>\n"
        "Call-ID: x\n"
        "CSeq: 1 NEWMETHOD\n"
        "X-Custom-Thing: some, value; with=stuff\n"
        "P-Weird: \n"
        "\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    assert msg.method == "NEWMETHOD"
    assert msg.get("x-custom-thing") == "some, value; with=stuff"
    assert msg.get_all("X-Custom-Thing") == ["some, value; with=stuff"]
    assert msg.get("P-Weird") == ""


def test_leading_crlf_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + SIPP_BYE)
    assert isinstance(msg, Request)
    assert msg.method == "BYE"


def test_datagram_trailing_bytes_truncated_and_missing_length() -> None:
    msg = parse_message(SIPP_BYE + b"garbage after the message")
    assert msg.body == b""
    no_length = (MINIMAL + "\n").replace("\n", "\r\n").encode() + b"rest of datagram"
    assert parse_message(no_length).body == b"rest of datagram"


def test_non_utf8_header_bytes_survive_round_trip() -> None:
    raw = wire(MINIMAL).replace(b"Call-ID: x", b"Call-ID: x\xff\xfe") + b"X-Bin: \xc3\x28\r\n\r\n"
    msg = parse_message(raw)
    assert msg.to_bytes() == raw[: raw.index(b"\r\n\r\n")] + b"\r\nContent-Length: 0\r\n\r\n"


def test_accepts_bytearray_and_memoryview() -> None:
    msg = parse_message(bytearray(SIPP_INVITE))
    assert msg.body == SDP
    assert type(msg.body) is bytes
    assert parse_message(memoryview(SIPP_BYE)).call_id == "1-12345@127.0.1.1"


# -- RFC 4475 valid messages ------------------------------------------------------------------


def test_rfc4475_wsinv() -> None:
    msg = parse_message(WSINV)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.ruri.params == {"unknownparam": None}
    assert msg.to.uri.user == "vivekg"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert msg.content_length == 150
    assert msg.cseq == CSeq(9, "INVITE")
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.get("Subject") == ""
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.get("Route") == (
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>")
    contact = msg.get_all("Contact")
    assert len(contact) == 1
    na = NameAddr.parse(contact[0])
    assert na.display == 'Quoted string ""'
    assert na.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150


def test_rfc4475_intmeth() -> None:
    msg = parse_message(INTMETH)
    assert isinstance(msg, Request)
    assert msg.method == INTMETH_METHOD
    assert msg.ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.from_.params["fromparam''~+*_!.-%"] == (
        '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"')
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u5c71\u96fb"
    assert msg.max_forwards == 255
    assert msg.to_bytes() == INTMETH.replace(
        b"extensionHeader-!.%*+_`'~:", b"Extensionheader-!.%*+_`'~: ")


def test_rfc4475_esc01_escapes_untouched() -> None:
    msg = parse_message(ESC01)
    assert isinstance(msg, Request)
    assert msg.ruri.user == "sips%3Auser%40example.com"
    assert msg.ruri.host == "example.net"
    assert msg.to.uri.user == "%75se%72"
    assert msg.from_.uri.user == "I%20have%20spaces"
    contact = msg.get("Contact") or ""
    assert contact == "<sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>"
    assert msg.get("Content-Type") == "application/sdp"
    assert len(msg.body) == 150


def test_rfc4475_escnull() -> None:
    msg = parse_message(ESCNULL)
    assert msg.to.uri.user == "null-%00-null"
    assert msg.get_all("Contact") == ["<sip:%00@host5.example.com>",
                                      "<sip:%00%00@host5.example.com>"]


def test_rfc4475_lwsdisp() -> None:
    msg = parse_message(LWSDISP)
    assert msg.from_.display == "caller"
    assert msg.from_.tag == "323"


def test_rfc4475_semiuri_and_folded_accept() -> None:
    msg = parse_message(SEMIURI)
    assert isinstance(msg, Request)
    assert msg.ruri.user == "user;par=u%40example.net"
    assert msg.ruri.host == "example.com"
    assert msg.ruri.params == {}
    assert msg.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag"]


def test_rfc4475_transports() -> None:
    msg = parse_message(TRANSPORTS)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_rfc4475_unreason() -> None:
    msg = parse_message(UNREASON)
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert msg.reason == UNREASON_PHRASE
    assert len(msg.body) == 154
    assert msg.to_bytes() == UNREASON


def test_rfc4475_noreason() -> None:
    msg = parse_message(NOREASON)
    assert isinstance(msg, Response)
    assert msg.status == 100
    assert msg.reason == ""
    assert msg.to_bytes().startswith(b"SIP/2.0 100 \r\n")
    bare = parse_message(NOREASON.replace(b"SIP/2.0 100 \r\n", b"SIP/2.0 100\r\n"))
    assert isinstance(bare, Response)
    assert bare.reason == ""


def test_rfc4475_dblreq_second_request_ignored() -> None:
    msg = parse_message(DBLREQ)
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_rfc4475_unknown_schemes_parse_but_ruri_is_416() -> None:
    for raw in (UNKSCM, NOVELSC):
        msg = parse_message(raw)
        assert isinstance(msg, Request)
        with pytest.raises(UnsupportedSchemeError):
            _ = msg.ruri


def test_rfc4475_quotbal_lazy_error() -> None:
    msg = parse_message(QUOTBAL)
    with pytest.raises(SipParseError):
        _ = msg.to
    assert msg.from_.tag == "93334"


def test_rfc4475_escruri_headers_in_request_uri() -> None:
    msg = parse_message(ESCRURI)
    assert isinstance(msg, Request)
    assert msg.ruri.headers == "Route=%3Csip:example.com%3E"


# -- refused input ----------------------------------------------------------------------------


def _replace(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


def _drop_header(raw: bytes, name: bytes) -> bytes:
    lines = raw.split(b"\r\n")
    kept = [line for line in lines if not line.startswith(name + b":")]
    assert len(kept) == len(lines) - 1
    return b"\r\n".join(kept)


REFUSED = {
    "mismatch01": (MISMATCH01, "CSeq method"),
    "mismatch02": (MISMATCH02, "CSeq method"),
    "badvers": (BADVERS, "SIP version"),
    "bigcode": (BIGCODE, "status code"),
    "ncl": (NCL, "Content-Length"),
    "scalarlg": (SCALARLG, "CSeq"),
    "clerr": (CLERR, "Content-Length"),
    "insuf": (INSUF, "missing Call-ID, From, To"),
    "multi01": (MULTI01, "duplicate"),
    "mcl01": (MCL01, "duplicate Content-Length"),
    "ltgtruri": (LTGTRURI, "Request-URI"),
    "lwsruri": (LWSRURI, "request line"),
    "lwsstart": (LWSSTART, "request line"),
    "trws": (TRWS, "request line"),
    "empty": (b"", "empty"),
    "only-crlf": (b"\r\n\r\n\r\n", "empty"),
    "no-terminator": (SIPP_BYE[:-2], "end of header"),
    "bad-response-version": (_replace(SIPP_200, b"SIP/2.0 200", b"SIP/3.0 200"), "version"),
    "bad-request-version": (_replace(SIPP_BYE, b" SIP/2.0\r\n", b" SIP/2.1\r\n"), "version"),
    "http": (_replace(SIPP_BYE, b" SIP/2.0\r\n", b" HTTP/1.1\r\n"), "request line"),
    "two-digit-status": (_replace(SIPP_200, b"200 OK", b"99 OK"), "status code"),
    "status-700": (_replace(SIPP_200, b"200 OK", b"700 OK"), "status code"),
    "status-letters": (_replace(SIPP_200, b"200 OK", b"2x0 OK"), "status code"),
    "bad-method": (_replace(SIPP_BYE, b"BYE sip", b"B(E sip"), "method"),
    "no-colon": (_replace(SIPP_BYE, b"Subject: Performance Test", b"Subject Performance"),
                 "without colon"),
    "space-in-name": (_replace(SIPP_BYE, b"Subject:", b"Sub ject:"), "header name"),
    "empty-name": (_replace(SIPP_BYE, b"Subject:", b":"), "header name"),
    "continuation-first": (_replace(SIPP_BYE, b"\r\nVia:", b"\r\n Via:"), "continuation"),
    "missing-via": (_drop_header(SIPP_BYE, b"Via"), "missing Via"),
    "missing-from": (_drop_header(SIPP_BYE, b"From"), "missing From"),
    "missing-to": (_drop_header(SIPP_BYE, b"To"), "missing To"),
    "missing-call-id": (_drop_header(SIPP_BYE, b"Call-ID"), "missing Call-ID"),
    "missing-cseq": (_drop_header(SIPP_BYE, b"CSeq"), "missing CSeq"),
    "response-missing-via": (_drop_header(SIPP_200, b"Via"), "missing Via"),
    "cl-non-numeric": (_replace(SIPP_BYE, b"Content-Length: 0", b"Content-Length: zero"),
                       "Content-Length"),
    "cl-negative": (_replace(SIPP_BYE, b"Content-Length: 0", b"Content-Length: -1"),
                    "Content-Length"),
    "cl-unicode-digit": (_replace(SIPP_BYE, b"Content-Length: 0",
                                  "Content-Length: \u0661".encode()), "Content-Length"),
    "cl-too-large": (_replace(SIPP_BYE, b"Content-Length: 0", b"Content-Length: 1"),
                     "exceeds"),
    "cl-huge": (_replace(SIPP_BYE, b"Content-Length: 0", b"Content-Length: " + b"9" * 5000),
                "exceeds"),
    "bad-cseq": (_replace(SIPP_BYE, b"CSeq: 2 BYE", b"CSeq: two BYE"), "CSeq"),
    "empty-call-id": (_replace(SIPP_BYE, b"Call-ID: 1-12345@127.0.1.1", b"Call-ID: "),
                      "Call-ID"),
    "bare-cr": (_replace(SIPP_BYE, b"Subject: Performance Test",
                         b"Subject: Perf\rVia: SIP/2.0/UDP evil"), "bare CR"),
    "not-sip": (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "request line"),
}


@pytest.mark.parametrize("raw,reason", REFUSED.values(), ids=list(REFUSED))
def test_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        parse_message(raw)


# What a known source hears for each refused message (b2bua/sip/badrequest.py): None when
# nothing can be answered (a response, no Via/From/To/Call-ID/CSeq to copy, not SIP).
ANSWERS = {
    "mismatch01": 400, "mismatch02": 400, "badvers": 505, "bigcode": None, "ncl": 400,
    "scalarlg": 400, "clerr": 400, "insuf": None, "multi01": 400, "mcl01": 400,
    "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "empty": None,
    "only-crlf": None, "no-terminator": None, "bad-response-version": None,
    "bad-request-version": 505, "http": None, "two-digit-status": None, "status-700": None,
    "status-letters": None, "bad-method": None, "no-colon": 400, "space-in-name": 400,
    "empty-name": 400, "continuation-first": None, "missing-via": None, "missing-from": None,
    "missing-to": None, "missing-call-id": None, "missing-cseq": None,
    "response-missing-via": None, "cl-non-numeric": 400, "cl-negative": 400,
    "cl-unicode-digit": 400, "cl-too-large": 400, "cl-huge": 400, "bad-cseq": 400,
    "empty-call-id": None, "bare-cr": 400, "not-sip": None,
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_request_answered_with_the_fault(name: str) -> None:
    raw, _ = REFUSED[name]
    with pytest.raises(SipParseError) as refused:
        parse_message(raw)
    answer = answer_malformed(raw, refused.value)
    if ANSWERS[name] is None:
        assert answer is None
        return
    assert answer is not None
    request, response = answer
    assert response.status == ANSWERS[name]
    assert response.get_all("Via") == request.get_all("Via")  # as the sender wrote them
    assert (response.call_id, response.get("CSeq")) == (request.call_id, request.get("CSeq"))
    if name not in ("badvers", "scalarlg", "bad-cseq"):  # their own Via or CSeq is the fault
        reparsed = parse_message(response.to_bytes())
        assert isinstance(reparsed, Response) and reparsed.call_id == request.call_id
    if response.status == 400:
        assert response.reason.startswith("Bad Request (") and refused.value.args[0][:20] in \
            response.reason
    assert all(32 <= b < 127 for b in response.reason.encode())


def test_bare_cr_header_never_reaches_the_answer() -> None:
    raw, _ = REFUSED["bare-cr"]
    answer = answer_malformed(raw, SipParseError("bare CR in header section"))
    assert answer is not None
    assert b"evil" not in answer[1].to_bytes()


def test_unsupported_scheme_is_416_and_a_required_extension_420() -> None:
    assert status_for(UnsupportedSchemeError("unsupported URI scheme 'mailto'")) == 416
    request = parse_message(_replace(SIPP_BYE, b"Content-Length",
                                     b"Require: timer, 100rel, foo\r\nContent-Length"))
    assert isinstance(request, Request)
    assert unsupported_required(request) == ["100rel", "foo"]
    refusal = bad_extension(request, ["100rel", "foo"])
    assert refusal.status == 420 and refusal.get("Unsupported") == "100rel"
    assert refusal.get_all("Unsupported") == ["100rel", "foo"]


def test_oversize_refused() -> None:
    raw = SIPP_BYE.replace(b"Content-Length: 0", b"Content-Length: 70000") + b"x" * 70000
    with pytest.raises(SipParseError, match="too large"):
        parse_message(raw)
    with pytest.raises(SipParseError, match="too large"):
        parse_message(SIPP_INVITE, max_size=100)
    assert parse_message(SIPP_INVITE, max_size=len(SIPP_INVITE)).body == SDP


def test_huge_header_refused() -> None:
    big = b"X-Big: " + b"a" * (MAX_HEADER_VALUE + 1) + b"\r\n"
    with pytest.raises(SipParseError, match="too long"):
        parse_message(_replace(SIPP_BYE, b"Content-Length", big + b"Content-Length"))
    ok = b"X-Big: " + b"a" * MAX_HEADER_VALUE + b"\r\n"
    assert parse_message(_replace(SIPP_BYE, b"Content-Length", ok + b"Content-Length"))
    folded = b"X-Big: " + b"a" * 5000 + b"\r\n " + b"b" * 5000 + b"\r\n"
    with pytest.raises(SipParseError, match="too long"):
        parse_message(_replace(SIPP_BYE, b"Content-Length", folded + b"Content-Length"))


def test_too_many_headers_refused() -> None:
    base_count = len(parse_message(SIPP_BYE).headers)
    fits = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - base_count))
    assert len(parse_message(_replace(SIPP_BYE, b"Content-Length", fits + b"Content-Length"))
               .headers) == MAX_HEADERS
    extra = fits + b"X-One-More: v\r\n"
    with pytest.raises(SipParseError, match="too many headers"):
        parse_message(_replace(SIPP_BYE, b"Content-Length", extra + b"Content-Length"))


@pytest.mark.parametrize("seed", range(20))
def test_binary_noise_refused(seed: int) -> None:
    rng = random.Random(seed)
    noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    with pytest.raises(SipParseError):
        parse_message(noise)


# -- properties: nothing but SipParseError ----------------------------------------------------


def _touch(msg: Request | Response) -> None:
    """Exercise every lazy view; only SipParseError may escape them."""
    for attr in ("call_id", "cseq", "from_", "to", "vias", "top_via", "content_length",
                 "max_forwards", "ruri"):
        with contextlib.suppress(SipParseError):
            getattr(msg, attr, None)
    for name, _ in msg.headers:
        msg.get(name)
        msg.get_all(name)
    _same(msg, parse_message(msg.to_bytes(), max_size=1 << 20))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    _touch(msg)


_SIP_PIECES = [b"INVITE", b"SIP/2.0", b"sip:a@b", b" ", b"\t", b"\r\n", b"\n", b"\r", b":",
               b";", b",", b"<", b">", b'"', b"\\", b"@", b"=", b"Via", b"v", b"From", b"To",
               b"Call-ID", b"CSeq", b"1", b"Content-Length", b"l", b"0", b"5", b"\r\n\r\n",
               b"SIP/2.0/UDP h", b"tag", b"\xff", b"\x00", b"[::1]", b"-1", b"200 OK", b"INVITE"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_SIP_PIECES), max_size=80))
def test_sip_shaped_noise_only_raises_parse_error(pieces: list[bytes]) -> None:
    try:
        msg = parse_message(b"".join(pieces))
    except SipParseError:
        return
    _touch(msg)


_mutation = st.tuples(st.sampled_from(["insert", "delete", "replace"]),
                      st.floats(min_value=0, max_value=1, exclude_max=True),
                      st.binary(min_size=1, max_size=4))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_SAMPLES), st.lists(_mutation, min_size=1, max_size=6))
def test_mutated_messages_only_raise_parse_error(
    raw: bytes, mutations: list[tuple[str, float, bytes]],
) -> None:
    data = bytearray(raw)
    for op, where, chunk in mutations:
        pos = int(where * len(data)) if data else 0
        if op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos : pos + len(chunk)]
        else:
            data[pos : pos + len(chunk)] = chunk
    try:
        msg = parse_message(bytes(data))
    except SipParseError:
        return
    _touch(msg)


# -- find_header_end --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"A\r\nB\r\n\r\nbody", (4, 8)),
        (b"A\nB\n\nbody", (3, 5)),
        (b"A\r\nB\r\n\nbody", (4, 7)),
        (b"A\nB\n\r\nbody", (3, 6)),
        (b"A\r\nB\r\n", (-1, -1)),
        (b"A\nB\n\nX\r\n\r\n", (3, 5)),
    ],
)
def test_find_header_end(data: bytes, expected: tuple[int, int]) -> None:
    assert find_header_end(data) == expected


# -- StreamFramer -----------------------------------------------------------------------------

STREAM = [SIPP_INVITE, SIPP_200, SIPP_ACK, PJSIP_REGISTER_AUTH, WSINV]


def test_stream_split_at_every_byte_boundary() -> None:
    data = SIPP_INVITE + SIPP_BYE
    for cut in range(len(data) + 1):
        framer = StreamFramer()
        out = framer.feed(data[:cut]) + framer.feed(data[cut:])
        assert out == [SIPP_INVITE, SIPP_BYE], cut
        assert framer.buffered == 0


def test_stream_byte_at_a_time() -> None:
    data = b"".join(STREAM)
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == STREAM


def test_stream_many_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(b"".join(STREAM) + SIPP_BYE[:10]) == STREAM
    assert framer.buffered == 10
    assert framer.feed(SIPP_BYE[10:]) == [SIPP_BYE]
    for raw in STREAM:
        parse_message(raw)


def test_stream_keepalives_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.buffered == 0
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n" + SIPP_BYE + b"\r\n\r\n" + SIPP_ACK + b"\r\n") == [SIPP_BYE,
                                                                                   SIPP_ACK]
    assert framer.buffered == 0
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n" + SIPP_BYE[:5]) == []
    assert framer.feed(SIPP_BYE[5:]) == [SIPP_BYE]


def test_stream_missing_content_length_is_zero() -> None:
    no_length = _drop_header(SIPP_BYE, b"Content-Length")
    framer = StreamFramer()
    assert framer.feed(no_length + SIPP_ACK) == [no_length, SIPP_ACK]


def test_stream_compact_and_lf_content_length() -> None:
    body = b"hello"
    msg = wire(MINIMAL + "l:  5\n\n") + body
    lf = (MINIMAL + "Content-Length: 5\n\n").encode() + body
    framer = StreamFramer()
    assert framer.feed(msg + lf + msg) == [msg, lf, msg]


def test_stream_oversize_header_section() -> None:
    framer = StreamFramer(max_size=1000)
    assert framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 100) == []
    with pytest.raises(SipParseError, match="header section too large"):
        framer.feed(b"X: y\r\n" * 100)
    assert framer.buffered == 0


def test_stream_content_length_past_max_size() -> None:
    framer = StreamFramer(max_size=2000)
    with pytest.raises(SipParseError, match="too large"):
        framer.feed(SIPP_BYE.replace(b"Content-Length: 0", b"Content-Length: 5000"))
    assert framer.feed(SIPP_BYE) == [SIPP_BYE]


@pytest.mark.parametrize("value", [b"abc", b"-1", b"99999999999999"])
def test_stream_bad_content_length(value: bytes) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(SIPP_BYE.replace(b"Content-Length: 0", b"Content-Length: " + value))


def test_stream_conflicting_content_length() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError, match="conflicting"):
        framer.feed(SIPP_BYE.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3"))


@settings(max_examples=200)
@given(st.lists(st.sampled_from([*STREAM, b"\r\n\r\n"]), max_size=8),
       st.lists(st.integers(min_value=1, max_value=400), max_size=50))
def test_stream_any_chunking_yields_same_messages(
    parts: list[bytes], sizes: list[int],
) -> None:
    data = b"".join(parts)
    framer = StreamFramer()
    out: list[bytes] = []
    pos = 0
    for size in sizes:
        out += framer.feed(data[pos : pos + size])
        pos += size
    out += framer.feed(data[pos:])
    assert out == [p for p in parts if p != b"\r\n\r\n"]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_stream_garbage_only_raises_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_size=2000)
    for chunk in chunks:
        try:
            framer.feed(chunk)
        except SipParseError:
            return


# -- make_response ----------------------------------------------------------------------------


def test_make_response_copies_rfc3261_headers() -> None:
    request = parse_message(WSINV)
    assert isinstance(request, Request)
    response = make_response(request, 180, to_tag="totag1")
    assert response.status == 180
    assert response.reason == "Ringing"
    assert [n for n, _ in response.headers] == ["To", "From", "Call-ID", "CSeq", "Via", "Via"]
    assert response.get_all("Via") == request.get_all("Via")
    assert response.get("From") == request.get("From")
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert response.to.tag == "1918181833n"  # already tagged: left alone
    assert response.body == b""
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response)
    assert again.status == 180
    assert again.content_length == 0


def test_make_response_adds_to_tag() -> None:
    request = parse_message(SIPP_INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="abc")
    assert response.get("To") == "service <sip:service@127.0.0.1:5060>;tag=abc"
    assert response.to.tag == "abc"
    assert response.from_.tag == "12345SIPpTag001"
    assert response.top_via.branch == "z9hG4bK-12345-1-0"
    assert not response.has("Contact")
    assert not response.has("Max-Forwards")
    assert make_response(request, 200).to.tag is None


def test_make_response_bare_to_gets_header_param_tag() -> None:
    request = parse_message(LWSDISP)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="t9")
    assert response.get("To") == "sip:user@example.com;tag=t9"
    assert response.to.tag == "t9"
    assert response.to.uri.params == {}


def test_make_response_reasons_and_timestamp() -> None:
    raw = _replace(SIPP_INVITE, b"Subject:", b"Timestamp: 54\r\nSubject:")
    request = parse_message(raw)
    assert isinstance(request, Request)
    trying = make_response(request, 100)
    assert trying.reason == "Trying"
    assert trying.get("Timestamp") == "54"
    assert not make_response(request, 180).has("Timestamp")
    assert make_response(request, 486).reason == "Busy Here"
    assert make_response(request, 503, "Overloaded").reason == "Overloaded"
    assert make_response(request, 499).reason == "Client Error"
    assert make_response(request, 200).to_bytes().startswith(b"SIP/2.0 200 OK\r\nVia: ")
    with pytest.raises(ValueError):
        make_response(request, 99)
    with pytest.raises(ValueError):
        make_response(request, 700)


def test_make_response_is_independent_of_request() -> None:
    request = parse_message(SIPP_INVITE)
    assert isinstance(request, Request)
    response = make_response(request, 200, to_tag="x")
    response.remove_first("Via")
    assert request.has("Via")
    assert request.to.tag is None


def test_constants() -> None:
    assert MAX_MESSAGE_SIZE == 65535
    assert MAX_HEADERS == 256
    assert MAX_HEADER_VALUE == 8192
