#!/usr/bin/env bash
# Record a loopback capture of real HTTP/1.1 traffic (nginx served, wrk driven) for the
# end-to-end benchmark in bench/e2e.py.
#
#   bench/make_capture.sh [--small] [--calls N] OUT.pcap [SECONDS] [CONNECTIONS]
#
#   SECONDS      upper bound on the load phase (default 30)
#   CONNECTIONS  keep-alive connections, one wrk thread each (default 2)
#   --calls N    stop after about N calls in total (default 150000); wrk threads stop on a
#                response boundary, so every request in the capture has its response
#   --small      CI smoke capture: --calls 2000, 1 connection
#   --per-connection N
#                nginx closes a connection after N calls (wrk opens the next one), for a
#                many-connection capture (default: keep-alive for the whole run)
#
# Needs nginx, tcpdump and wrk, and the right to capture on lo (root or CAP_NET_RAW).
# The capture must be complete: the script fails if tcpdump reports kernel drops.
set -euo pipefail

die() { echo "make_capture: $*" >&2; exit 1; }

calls=150000
small=0
per_connection=100000000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --small) small=1; calls=2000; shift ;;
        --calls) [[ $# -ge 2 ]] || die "--calls needs a number"; calls="$2"; shift 2 ;;
        --per-connection)
            [[ $# -ge 2 ]] || die "--per-connection needs a number"; per_connection="$2"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || die "usage: make_capture.sh [--small] [--calls N] OUT.pcap [SECONDS] [CONNECTIONS]"
out="$1"
seconds="${2:-30}"
conns="${3:-2}"
[[ $small == 1 && $# -lt 3 ]] && conns=1
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || die "SECONDS must be a positive integer"
[[ "$conns" =~ ^[0-9]+$ && "$conns" -gt 0 ]] || die "CONNECTIONS must be a positive integer"
[[ "$calls" =~ ^[0-9]+$ && "$calls" -gt 0 ]] || die "--calls must be a positive integer"
[[ "$per_connection" =~ ^[0-9]+$ && "$per_connection" -gt 0 ]] || \
    die "--per-connection must be a positive integer"

for tool in nginx tcpdump wrk; do
    command -v "$tool" >/dev/null 2>&1 || \
        PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || \
        die "$tool not found; install it (apt-get install nginx-light tcpdump wrk)"
done
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$(dirname -- "$out")"
out="$(cd "$(dirname -- "$out")" && pwd)/$(basename -- "$out")"

# A free high port on 127.0.0.1.
port=""
for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
done
[[ -n "$port" ]] || die "no free port found"

tmp="$(mktemp -d /tmp/wiretide-capture.XXXXXX)"
chmod 755 "$tmp"  # nginx workers run as nobody when started by root
nginx_pid="" tcpdump_pid="" wrk_pid=""
cleanup() {
    set +e
    if [[ -n "$wrk_pid" ]] && kill -0 "$wrk_pid" 2>/dev/null; then
        kill -INT "$wrk_pid"; wait "$wrk_pid"
    fi
    if [[ -n "$tcpdump_pid" ]] && kill -0 "$tcpdump_pid" 2>/dev/null; then
        kill -INT "$tcpdump_pid"; wait "$tcpdump_pid"
    fi
    if [[ -n "$nginx_pid" ]] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"; wait "$nginx_pid"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- content: ~200 B JSON, ~2 KB HTML, and a path that 404s -------------------------------
mkdir -p "$tmp/www/api" "$tmp/temp"
cat >"$tmp/www/api/user.json" <<'EOF'
{"id":4711,"user":"bob","email":"bob@example.com","roles":["reader","writer"],"team":{"id":12,"name":"payments"},"active":true,"created":"2024-03-01T12:00:00Z","quota":{"used":1234,"limit":10000}}
EOF
{
    echo '<!doctype html><html><head><meta charset="utf-8"><title>Wiretide bench</title></head><body>'
    echo '<h1>Orders</h1><table>'
    for i in $(seq 1 30); do
        printf '<tr><td>order-%04d</td><td>bob</td><td>%d.99</td><td>shipped</td></tr>\n' "$i" "$i"
    done
    echo '</table></body></html>'
} >"$tmp/www/index.html"
chmod -R a+rX "$tmp/www"

cat >"$tmp/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/octet-stream;
    types { application/json json; text/html html; }
    keepalive_timeout 65;
    keepalive_requests $per_connection;
    client_body_temp_path $tmp/temp/body;
    proxy_temp_path $tmp/temp/proxy;
    fastcgi_temp_path $tmp/temp/fastcgi;
    uwsgi_temp_path $tmp/temp/uwsgi;
    scgi_temp_path $tmp/temp/scgi;
    server {
        listen 127.0.0.1:$port;
        server_name bench.local;
        root $tmp/www;
        location / { try_files \$uri =404; }
    }
}
EOF

# Rotate among the three paths, with a query string and an Authorization header.
# A thread stops after its share of --calls responses (one connection per thread means
# nothing is left in flight); SECONDS is only an upper bound: wrk's main thread sleeps
# for all of -d, so the script interrupts it once every thread has left a marker file.
cat >"$tmp/bench.lua" <<'EOF'
local paths = { "/api/user.json", "/index.html", "/missing/page" }
local n = 0
local done = 0
local limit = 0
local marker = nil
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
wrk.headers["Authorization"] = "Bearer x"
wrk.headers["User-Agent"] = "wiretide-bench/1"
wrk.headers["Accept"] = "*/*"
function init(args)
  limit = tonumber(args[1]) or 0
  marker = args[2]
  if limit > 0 then
    response = function(status, headers, body)
      done = done + 1
      if done >= limit then
        wrk.thread:stop()
        -- wrk's main thread sleeps for the whole -d; tell the script this thread is done
        if marker then
          local f = io.open(marker .. "/" .. tostring(id), "w")
          if f then f:close() end
        end
      end
    end
  end
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n - 1) % #paths + 1] .. "?user=bob&page=2")
end
EOF

nginx -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" &
nginx_pid=$!
for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/index.html" 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || die "nginx did not start: $(tail -3 "$tmp/error.log")"
    sleep 0.05
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/user.json") || true
[[ "$code" == 200 ]] || die "nginx answers $code on /api/user.json: $(tail -3 "$tmp/error.log")"

# Record. -Z root: Debian's tcpdump otherwise drops to user tcpdump before opening OUT.
zroot=()
[[ $(id -u) == 0 ]] && zroot=(-Z root)
rm -f "$out"
tcpdump -i lo -s 0 -B 262144 -n "${zroot[@]}" -w "$out" "tcp port $port" 2>"$tmp/tcpdump.err" &
tcpdump_pid=$!
for _ in $(seq 1 100); do
    grep -q "listening on" "$tmp/tcpdump.err" 2>/dev/null && break
    kill -0 "$tcpdump_pid" 2>/dev/null || die "tcpdump failed: $(cat "$tmp/tcpdump.err")"
    sleep 0.05
done
sleep 0.2

threads=$conns
per_thread=$(( (calls + threads - 1) / threads ))
echo "make_capture: nginx on 127.0.0.1:$port, wrk -t$threads -c$conns -d${seconds}s," \
    "up to $((per_thread * threads)) calls -> $out" >&2
start=$(date +%s.%N)
mkdir -p "$tmp/done"
wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "$tmp/bench.lua" \
    "http://127.0.0.1:$port/" -- "$per_thread" "$tmp/done" >"$tmp/wrk.out" 2>&1 &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
    if [[ $(find "$tmp/done" -type f | wc -l) -ge $threads ]]; then
        kill -INT "$wrk_pid" 2>/dev/null || true
        break
    fi
    sleep 0.05
done
wait "$wrk_pid" || die "wrk failed: $(cat "$tmp/wrk.out")"
wrk_pid=""
end=$(date +%s.%N)
# Let the FIN/ACK exchange land, and outlast tcpdump's 1 s buffer timeout: with TPACKET_V3
# a partly filled block only reaches tcpdump when it times out, and SIGINT discards it
# without counting it as dropped.
sleep 1.5

kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true
tcpdump_pid=""
kill -QUIT "$nginx_pid"
wait "$nginx_pid" || true
nginx_pid=""

stats="$(cat "$tmp/tcpdump.err")"
captured=$(sed -n 's/^\([0-9]\+\) packets\{0,1\} captured.*/\1/p' <<<"$stats")
dropped=$(sed -n 's/^\([0-9]\+\) packets\{0,1\} dropped by kernel.*/\1/p' <<<"$stats")
[[ -n "$captured" && -n "$dropped" ]] || die "could not read tcpdump's statistics: $stats"
requests=$(sed -n 's/^ *\([0-9]\+\) requests in.*/\1/p' "$tmp/wrk.out")
errors=$(grep -E 'Socket errors|Non-2xx' "$tmp/wrk.out" | tr -s ' ' | paste -sd';' -) || true
sed 's/^/  wrk: /' "$tmp/wrk.out" | grep -E 'requests in|Requests/sec|Socket errors' >&2 || true

if [[ "$dropped" != 0 ]]; then
    die "tcpdump dropped $dropped packets in the kernel: the capture is incomplete;" \
        "retry with fewer CONNECTIONS or a lower --calls"
fi
# Independent completeness check: every call wrk completed must be in the file.
read -r reqs resps < <(python3 - "$out" "$port" <<'PY'
import struct, sys
path, port = sys.argv[1], int(sys.argv[2])
reqs = resps = 0
with open(path, "rb") as f:
    magic = f.read(24)[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    hdr = struct.Struct(endian + "IIII")
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        incl = hdr.unpack(h)[2]
        pkt = f.read(incl)
        if len(pkt) < 54 or pkt[12:14] != b"\x08\x00" or pkt[23] != 6:
            continue
        ip = 14 + (pkt[14] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", pkt, ip)
        data = pkt[ip + (pkt[ip + 12] >> 4) * 4 :]
        if dport == port and data.startswith(b"GET "):
            reqs += data.count(b" HTTP/1.1\r\n")
        elif sport == port and data.startswith(b"HTTP/1.1 "):
            resps += 1
print(reqs, resps)
PY
)
if [[ -n "$requests" ]] && { (( resps < requests )) || (( reqs - resps > conns )); }; then
    die "capture incomplete: wrk completed $requests calls, file has $reqs requests and" \
        "$resps responses"
fi
size=$(stat -c %s "$out")
printf 'make_capture: %s packets, %s requests / %s responses in file, %s calls (wrk), %.1f s load, %d bytes, 0 dropped -> %s\n' \
    "$captured" "$reqs" "$resps" "${requests:-?}" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')" "$size" "$out" >&2
[[ -n "$errors" ]] && echo "make_capture: wrk: $errors (404s are expected)" >&2
echo "$captured"
