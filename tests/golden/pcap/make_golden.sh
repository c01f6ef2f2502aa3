#!/usr/bin/env bash
# Regenerate every golden capture in this folder from real traffic.
#
#   sudo tests/golden/pcap/make_golden.sh
#
# Traffic: curl GETs over IPv4 and IPv6 against python3 -m http.server, one more IPv6 GET
# from a client that sets hop-by-hop and destination options (extension headers), plus one
# UDP datagram per IP version to a closed port (so the ICMP "port unreachable" answers are
# captured too). Captures:
#   eth_lo.pcap         tcpdump -i lo (Ethernet, microseconds)
#   eth_lo_nano.pcap    tcpdump -i lo --time-stamp-precision nano
#   sll.pcap, sll2.pcap tcpdump -i any -y LINUX_SLL / LINUX_SLL2
#   lo.pcapng           tshark -i lo -F pcapng (if_tsresol 9)
#   multi_if.pcapng     dumpcap -i lo -i any -y LINUX_SLL2: two interfaces with their own
#                       link type, then rewritten so interface 0 has if_tsresol 2^-20 s
#                       and interface 1 none (microseconds)
#   vlan.pcap           tcpdump on a trunk between this host and a network namespace:
#                       802.1Q (VID 10) and stacked 802.1ad+802.1Q (100/10) frames, with
#                       ARP, NDP/MLD, IPv4 and IPv6 fragments (UDP bigger than the MTU)
#                       and (relay only) Ethernet padding of short frames.
#                       With kernel 802.1Q support this is a veth pair with VLAN
#                       subinterfaces; without it (some VMs) a TAP-device trunk relay
#                       (golden_tools.py trunk) pushes the tags.
# Derived from those by golden_tools.py (link headers / file framing rewritten, packet
# bytes kept): be.pcap, nano_be.pcap, modified.pcap, null.pcap, null_be.pcap, loop.pcap,
# null_swapped.pcap, raw.pcap, raw12.pcap, raw14.pcap, ipv4.pcap, ipv6.pcap, be.pcapng,
# spb.pcapng, opb.pcapng, eth_lo.pcap.gz; snap80.pcap is eth_lo.pcap cut to a snapshot
# length of 80 bytes by editcap -s 80.
#
# Needs root, tcpdump, tshark/dumpcap/editcap, curl, python3, iproute2.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tools="$here/golden_tools.py"
port=47080
uport=47081
ns=wiretide-golden
work=$(mktemp -d)
chmod 755 "$work"
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    ip link del wtg-a 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

die() { echo "make_golden: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (captures, namespaces)"
for t in tcpdump tshark dumpcap editcap curl python3 ip; do
    command -v "$t" >/dev/null || die "$t is missing"
done

mkdir "$work/www"
printf 'hello from a wiretide golden capture\n' >"$work/www/hello.txt"

serve() {  # [netns exec prefix...]: HTTP on [::]:port (dual stack)
    "$@" python3 -m http.server --bind :: --directory "$work/www" "$port" \
        >/dev/null 2>&1 &
    pids+=($!)
}

wait_http() {  # URL
    for _ in $(seq 50); do
        curl -s --noproxy '*' -o /dev/null -g "$1" && return 0
        sleep 0.1
    done
    die "server at $1 did not come up"
}

ext_client() {  # HOST6: a GET whose packets carry hop-by-hop and destination options
    python3 - "$1" "$port" <<'EOF'
import socket, sys
padn = bytes([0, 0, 1, 4, 0, 0, 0, 0])  # next header (set by the kernel), length, PadN(4)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, padn)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, padn)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
while s.recv(65536):
    pass
EOF
}

traffic() {  # HOST4 HOST6
    curl -s --noproxy '*' -o /dev/null "http://$1:$port/hello.txt"
    curl -s --noproxy '*' -o /dev/null -g "http://[$2]:$port/hello.txt"
    ext_client "$2"
    echo "a datagram over IPv4" >"/dev/udp/$1/$uport"
    echo "a datagram over IPv6" >"/dev/udp/$2/$uport"
    sleep 0.3
}

# capture OUT READY_TEXT CMD...: start CMD (which writes OUT), wait until it prints
# READY_TEXT on stderr, run "$traffic_cmd $traffic_args", stop it with SIGINT.
capture() {
    local out=$1 ready=$2
    shift 2
    local log="$work/capture.log"
    : >"$log"
    "$@" 2>"$log" &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "$ready" "$log" && break
        sleep 0.1
    done
    grep -q "$ready" "$log" || die "capture did not start: $(cat "$log")"
    sleep 0.5
    $traffic_cmd $traffic_args
    # libpcap hands packets over a ring block at a time (or after a 1 s timeout); stopping
    # sooner can lose the last ones.
    sleep 1.5
    kill -INT "$pid"
    wait "$pid" || true
    [[ -s "$out" ]] || die "no capture written to $out: $(cat "$log")"
    echo "  $(basename "$out"): $(tshark -r "$out" 2>/dev/null | wc -l) packets"
}

# "port" only matches IPv6 packets whose first next header is TCP/UDP: add those that
# start with a hop-by-hop options header.
filter="port $port or port $uport or icmp or icmp6 or (ip6 and ip6[6] == 0)"
tcpd=(tcpdump -Z root -s 0 -n --immediate-mode)

echo "loopback captures"
serve
wait_http "http://127.0.0.1:$port/"
traffic_cmd=traffic
traffic_args="127.0.0.1 ::1"
capture "$work/eth_lo.pcap" listening "${tcpd[@]}" -i lo -w "$work/eth_lo.pcap" "$filter"
capture "$work/eth_lo_nano.pcap" listening "${tcpd[@]}" -i lo --time-stamp-precision nano \
    -w "$work/eth_lo_nano.pcap" "$filter"
capture "$work/sll.pcap" listening "${tcpd[@]}" -i any -y LINUX_SLL -w "$work/sll.pcap" "$filter"
capture "$work/sll2.pcap" listening "${tcpd[@]}" -i any -y LINUX_SLL2 -w "$work/sll2.pcap" \
    "$filter"
capture "$work/lo.pcapng" "Capturing on" tshark -i lo -F pcapng -w "$work/lo.pcapng" -f "$filter"
capture "$work/multi_if_ns.pcapng" "Capturing on" dumpcap -i lo -f "host 127.0.0.1 and ($filter)" \
    -i any -y LINUX_SLL2 -f "host ::1 and ($filter)" -w "$work/multi_if_ns.pcapng"
python3 "$tools" pcapng-retime "$work/multi_if_ns.pcapng" "$work/multi_if_a.pcapng" 0 0x94
python3 "$tools" pcapng-retime "$work/multi_if_a.pcapng" "$work/multi_if.pcapng" 1 none

echo "VLAN trunk captures"
ip netns add "$ns"
ip -n "$ns" link set lo up
if ip link add wtg-a type veth peer name wtg-b 2>/dev/null \
    && ip link add link wtg-a name wtg-a.10 type vlan id 10 2>/dev/null; then
    # Real VLAN subinterfaces: IPv4 over 802.1Q VID 10, IPv6 over 802.1ad 100 + 802.1Q 10.
    ip link set wtg-b netns "$ns"
    ip link add link wtg-a name wtg-a.100 type vlan proto 802.1ad id 100
    ip link add link wtg-a.100 name wtg-a.100.10 type vlan id 10
    ip -n "$ns" link add link wtg-b name wtg-b.10 type vlan id 10
    ip -n "$ns" link add link wtg-b name wtg-b.100 type vlan proto 802.1ad id 100
    ip -n "$ns" link add link wtg-b.100 name wtg-b.100.10 type vlan id 10
    for d in wtg-a wtg-a.10 wtg-a.100 wtg-a.100.10; do ip link set "$d" up; done
    for d in wtg-b wtg-b.10 wtg-b.100 wtg-b.100.10; do ip -n "$ns" link set "$d" up; done
    ip addr add 10.201.0.1/24 dev wtg-a.10
    ip -n "$ns" addr add 10.201.0.2/24 dev wtg-b.10
    ip addr add fd00:201::1/64 dev wtg-a.100.10 nodad
    ip -n "$ns" addr add fd00:201::2/64 dev wtg-b.100.10 nodad
    wire=wtg-a
else
    ip link del wtg-a 2>/dev/null || true
    echo "  (no 802.1Q support in this kernel: using the TAP trunk relay)"
    python3 "$tools" trunk wtg-a wtg-b wtg-w >"$work/trunk.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do grep -q ready "$work/trunk.log" && break; sleep 0.1; done
    grep -q ready "$work/trunk.log" || die "trunk relay did not start: $(cat "$work/trunk.log")"
    ip link set wtg-b netns "$ns"
    sysctl -qw net.ipv6.conf.wtg-w.disable_ipv6=1
    ip link set wtg-w up
    ip link set wtg-a up
    ip -n "$ns" link set wtg-b up
    ip addr add 10.201.0.1/24 dev wtg-a
    ip -n "$ns" addr add 10.201.0.2/24 dev wtg-b
    ip addr add fd00:201::1/64 dev wtg-a nodad
    ip -n "$ns" addr add fd00:201::2/64 dev wtg-b nodad
    wire=wtg-w
fi
# No TCP timestamps on the server side: pure ACKs are then 54 bytes (58 tagged), below
# the Ethernet minimum, so the capture holds padded frames.
ip netns exec "$ns" sysctl -qw net.ipv4.tcp_timestamps=0
serve ip netns exec "$ns"
wait_http "http://10.201.0.2:$port/"
# Forget the neighbours learned while waiting for the server: ARP and NDP on the capture.
for n in "" "-n $ns"; do
    ip $n neigh flush to 10.201.0.0/24 nud all
    ip $n -6 neigh flush to fd00:201::/64 nud all
done
traffic_args="10.201.0.2 fd00:201::2"
big() {  # UDP datagrams bigger than the 1500-byte MTU: fragmented
    python3 -c "
import socket
for fam, host in ((socket.AF_INET, '10.201.0.2'), (socket.AF_INET6, 'fd00:201::2')):
    socket.socket(fam, socket.SOCK_DGRAM).sendto(b'f' * 2000, (host, $uport))
"
}
traffic_vlan() { traffic "$@"; big; sleep 0.3; }
traffic_cmd=traffic_vlan
capture "$work/vlan.pcap" listening "${tcpd[@]}" -i "$wire" -w "$work/vlan.pcap"
wants=(vlan ieee8021ad "ip.flags.mf == 1" ipv6.fraghdr ipv6.hopopts ipv6.dstopts tcp udp arp)
[[ $wire == wtg-w ]] && wants+=(eth.padding)  # veth does not pad short frames
for want in "${wants[@]}"; do
    n=$(tshark -r "$work/vlan.pcap" -Y "$want" 2>/dev/null | wc -l)
    [[ $n -gt 0 ]] || die "vlan.pcap has no '$want' frame; run again"
done

echo "derived files"
g() { python3 "$tools" "$@"; }
g pcap-be "$work/eth_lo.pcap" "$work/be.pcap"
g pcap-be "$work/eth_lo_nano.pcap" "$work/nano_be.pcap"
g pcap-modified "$work/eth_lo.pcap" "$work/modified.pcap"
g relink "$work/eth_lo.pcap" "$work/null.pcap" 0 --family le --af6 30        # macOS
g relink "$work/eth_lo.pcap" "$work/null_be.pcap" 0 --family be --af6 28 --be  # FreeBSD, BE host
g relink "$work/eth_lo.pcap" "$work/loop.pcap" 108 --family be --af6 24       # OpenBSD
g relink "$work/eth_lo.pcap" "$work/null_swapped.pcap" 0 --family be --af6 24  # BE family, LE file
g relink "$work/eth_lo.pcap" "$work/raw.pcap" 101
g relink "$work/eth_lo.pcap" "$work/raw12.pcap" 12
g relink "$work/eth_lo.pcap" "$work/raw14.pcap" 14
g relink "$work/eth_lo.pcap" "$work/ipv4.pcap" 228 --only 4
g relink "$work/eth_lo.pcap" "$work/ipv6.pcap" 229 --only 6
g pcapng-be "$work/lo.pcapng" "$work/be.pcapng"
g pcapng-epb "$work/lo.pcapng" "$work/spb.pcapng" spb
g pcapng-epb "$work/lo.pcapng" "$work/opb.pcapng" opb
gzip -9n -c "$work/eth_lo.pcap" >"$work/eth_lo.pcap.gz"
editcap -F pcap -s 80 "$work/eth_lo.pcap" "$work/snap80.pcap"  # as if captured with -s 80

rm -f "$here"/*.pcap "$here"/*.pcapng "$here"/*.gz
for f in eth_lo.pcap eth_lo_nano.pcap sll.pcap sll2.pcap lo.pcapng multi_if.pcapng vlan.pcap \
    be.pcap nano_be.pcap modified.pcap null.pcap null_be.pcap loop.pcap null_swapped.pcap raw.pcap \
    raw12.pcap raw14.pcap ipv4.pcap ipv6.pcap be.pcapng spb.pcapng opb.pcapng eth_lo.pcap.gz \
    snap80.pcap; do
    cp "$work/$f" "$here/$f"
done
chmod 644 "$here"/*.pcap "$here"/*.pcapng "$here"/*.gz
echo "wrote $(ls "$here" | grep -c -E "\.(pcap|pcapng|gz)$") files, $(cat "$here"/*.pcap* | wc -c) bytes in $here"
