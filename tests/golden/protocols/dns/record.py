"""Record the DNS golden capture: dnsmasq answers local records on 127.0.0.1:21153, dig and
dnspython query it over UDP and TCP, tcpdump captures port 21153.

    sudo /tmp/v/bin/python tests/golden/protocols/dns/record.py

Writes basic.pcap and basic.client.json (what each client asked and what it was told:
transport, name, type, rcode and answers as the client printed them), then
`python -m tests.golden.protocols.dissect tests/golden/protocols/dns/basic.pcap --write`
makes the expected calls, to be reviewed against the client file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import serving, tcpdump, write_client_facts  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21153
SERVER = "127.0.0.1"

DNSMASQ = [
    "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
    "--user=root", f"--port={PORT}", f"--listen-address={SERVER}", "--bind-interfaces",
    "--local=/wiretide.test/",  # names under wiretide.test that are not defined: NXDOMAIN
    "--address=/web.wiretide.test/10.0.0.7",
    "--host-record=api.wiretide.test,10.0.0.8,fd00::8",
    "--txt-record=txt.wiretide.test,v=spf1 -all,hello world",
    "--mx-host=wiretide.test,mail.wiretide.test,10",
    "--srv-host=_http._tcp.wiretide.test,web.wiretide.test,8080,0,5",
    "--cname=alias.wiretide.test,api.wiretide.test",
]  # fmt: skip

# (name, type) asked by dig over UDP, one process each.
DIG_UDP = [
    ("web.wiretide.test", "A"),
    ("api.wiretide.test", "AAAA"),
    ("alias.wiretide.test", "A"),
    ("wiretide.test", "MX"),
    ("txt.wiretide.test", "TXT"),
    ("_http._tcp.wiretide.test", "SRV"),
    ("8.0.0.10.in-addr.arpa", "PTR"),
    ("missing.wiretide.test", "A"),  # NXDOMAIN
    ("nothing.example", "A"),  # no upstream: REFUSED
    ("api.wiretide.test", "TYPE65534"),  # a type nobody knows
]
# Asked by one dig over one TCP connection (+keepopen).
DIG_TCP = [("web.wiretide.test", "A"), ("txt.wiretide.test", "TXT"), ("api.wiretide.test", "A")]
# Asked by dnspython: (transport, name, type).
PYTHON = [
    ("udp", "api.wiretide.test", "A"),
    ("tcp", "_http._tcp.wiretide.test", "SRV"),
    ("tcp", "missing.wiretide.test", "MX"),
]

_STATUS = re.compile(r"status: ([A-Z0-9]+), id: (\d+)")


def _dig_answers(text: str, transport: str) -> list[dict]:
    """One entry per query in dig's +noall +comments +answer output."""
    out: list[dict] = []
    for line in text.splitlines():
        m = _STATUS.search(line)
        if m:
            out.append({"client": "dig", "transport": transport, "rcode": m.group(1),
                        "id": int(m.group(2)), "answers": []})  # fmt: skip
        elif line and not line.startswith(";") and out:
            name, ttl, _cls, rtype, data = line.split(None, 4)
            out[-1]["answers"].append([name, rtype, int(ttl), data])
    return out


def run_dig(queries: list[tuple[str, str]], tcp: bool) -> list[dict]:
    cmd = ["dig", f"@{SERVER}", "-p", str(PORT), "+noall", "+comments", "+answer", "+tries=1"]
    if tcp:
        cmd += ["+tcp", "+keepopen"]
    for name, rtype in queries:
        cmd += [name, rtype]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    facts = _dig_answers(text, "tcp" if tcp else "udp")
    assert len(facts) == len(queries), text
    for fact, (name, rtype) in zip(facts, queries, strict=True):
        fact.update(name=name, type=rtype)
    return facts


def run_dnspython(transport: str, name: str, rtype: str) -> dict:
    query = dns.message.make_query(name, rtype)
    ask = dns.query.tcp if transport == "tcp" else dns.query.udp
    resp = ask(query, SERVER, port=PORT, timeout=5)
    answers = [
        [rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rd.to_text()]
        for rrset in resp.answer
        for rd in rrset
    ]
    rcode = dns.rcode.to_text(resp.rcode())
    return {"client": "dnspython", "transport": transport, "name": name, "type": rtype,
            "id": query.id, "rcode": rcode, "answers": answers}  # fmt: skip


def main() -> None:
    for tool in ("dnsmasq", "dig", "tcpdump"):
        if shutil.which(tool) is None:
            sys.exit(f"record.py: {tool} is not installed (apt-get install dnsmasq-base dnsutils)")
    pcap = HERE / "basic.pcap"
    with serving(DNSMASQ, stderr=subprocess.DEVNULL):
        with tcpdump(pcap, f"port {PORT}", settle=0.5):  # settle: dnsmasq binds its sockets
            facts = run_dig(DIG_UDP, tcp=False)
            facts += run_dig(DIG_TCP, tcp=True)
            facts += [run_dnspython(*q) for q in PYTHON]
    write_client_facts(HERE / "basic.client.json", facts, pcap)


if __name__ == "__main__":
    main()
