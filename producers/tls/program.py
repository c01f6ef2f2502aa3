"""The BPF side of TLS capture (C for BCC), with the layout user space decodes.

Where plaintext comes from:
* OpenSSL/BoringSSL: uprobe on entry of SSL_write/SSL_read(_ex) stashes the arguments per
  thread; the uretprobe reads the buffer (for writes as well: the caller's buffer is
  unchanged until the call returns) with the length the call reports.
* Go crypto/tls: uprobe on entry of (*Conn).Write/Read stashes the arguments per goroutine
  (the g pointer in R14, Go's register ABI), and uprobes on every RET of the function read
  the result — uretprobes would corrupt Go's movable stacks.

Which socket: syscall tracepoints note the fd each thread last did I/O on; the entry of
the first socket I/O syscall inside an SSL call pins the call to its connection there and
then (4-tuple, sequence base, the fd's close count; a write counts as pending until its
return), so a close by another thread before the return, and a new connection on the same
fd, leave the chunk on its own connection. The fd is cached per SSL object, for reads
served from OpenSSL's buffer without a syscall; Go's fd is read from the tls.Conn's net.Conn. The
sock:sock_{send,recv}_length tracepoints tie that fd to its `struct sock`, whose 4-tuple
comes from sock:inet_sock_set_state (connections made after start) and
tcp:tcp_rcv_space_adjust (older ones, on their next read). User space falls back to
/proc/<pid>/net/tcp for the rest.

Sequence numbers: a per-(process, fd, direction) byte counter, reset when the fd closes,
so both ends of a local connection number the same bytes alike and chunks lost in the
ring buffer show up as gaps. Go calls take their 4-tuple and sequence base at the entry
(keyed by process and goroutine), because by their RET another goroutine may have closed
the fd and a new connection may have been given the same number.
"""

from __future__ import annotations

import ctypes

MAX_CHUNK = 16384  # bytes of plaintext per event; longer calls are split
MAX_PIECES = 16  # per call; bytes beyond MAX_CHUNK * MAX_PIECES are counted as lost

# call kinds (also the event kind for data)
SSL_WRITE, SSL_READ, SSL_WRITE_EX, SSL_READ_EX, GO_WRITE, GO_READ = 1, 2, 3, 4, 5, 6
SSL_HANDSHAKE = 7
EV_DATA, EV_CLOSE, EV_EXIT = 0, 1, 2
EGRESS, INGRESS = 0, 1

# counters in the `stats` array
STAT_NAMES = ("ring_full", "no_fd", "truncated_bytes", "calls", "guessed_fd")


class Tuple(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_uint16),
        ("sport", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("saddr", ctypes.c_uint8 * 16),
        ("daddr", ctypes.c_uint8 * 16),
    ]


class EventHeader(ctypes.Structure):
    _fields_ = [
        ("ts", ctypes.c_uint64),
        ("seq", ctypes.c_uint64),  # stream offset of data[0]; for close: egress count
        # for close: ingress count; for a Go read: the egress bytes its connection had
        # reserved when it returned (writes up to there come first)
        ("seq2", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("len", ctypes.c_uint32),
        ("ev", ctypes.c_uint8),
        ("dir", ctypes.c_uint8),
        ("call", ctypes.c_uint8),
        ("has_tuple", ctypes.c_uint8),
        ("late", ctypes.c_uint32),  # data: the fd closed before the call returned
        ("tuple", Tuple),
    ]


HEADER_SIZE = ctypes.sizeof(EventHeader)

SOURCE = r"""
#include <uapi/linux/ptrace.h>
#include <linux/socket.h>
#include <uapi/linux/in.h>

#define MAX_CHUNK __MAX_CHUNK__
#define MAX_PIECES __MAX_PIECES__

struct tuple_t { u16 family; u16 sport; u16 dport; u16 pad; u8 saddr[16]; u8 daddr[16]; };
struct call_t {
    u64 buf; u64 lenp; u64 obj; u64 len; s32 fd; u32 kind; u64 io;
    // pinned (Go: at the entry; OpenSSL: at the call's first socket I/O)
    u64 base; u64 gen; u32 has_tuple; u32 pinned; s32 pin_fd; u32 pad; u64 closes;
    struct tuple_t tuple;
};
struct gkey_t { u64 tgid; u64 g; };  // a goroutine: g pointers repeat across processes
// gen: which opening of the fd it counts; pending: OpenSSL writes under way on it
struct counter_t { u64 bytes; u64 gen; u64 pending; };
struct sockio_t { s32 fd; u32 pad; u64 io; };  // a thread's last socket fd, I/O count
struct fdkey_t { u32 tgid; s32 fd; };
struct fdio_t { s32 fd; u32 pad; u64 closes; };  // a syscall's fd, its close count then
struct objkey_t { u64 tgid; u64 obj; };
struct ctrkey_t { u32 tgid; s32 fd; u32 dir; u32 pad; };
struct event_t {
    u64 ts; u64 seq; u64 seq2; u32 pid; u32 tid; s32 fd; u32 len;
    u8 ev; u8 dir; u8 call; u8 has_tuple; u32 late;
    struct tuple_t tuple;
    u8 data[MAX_CHUNK];
};

BPF_RINGBUF_OUTPUT(events, __RING_PAGES__);
BPF_HASH(traced, u32, u8, 65536);
BPF_HASH(ignored, u32, u8, 64);                // the capturing process itself
BPF_ARRAY(config, u32, 1);                     // [0]: 1 = every process
BPF_ARRAY(stats, u64, 5);
BPF_PERCPU_ARRAY(scratch, struct event_t, 1);
BPF_ARRAY(generation, u64, 1);                 // last counter_t.gen handed out
BPF_TABLE("lru_hash", u64, struct call_t, active, 65536);   // tid -> OpenSSL call
BPF_TABLE("lru_hash", struct gkey_t, struct call_t, go_active, 65536);
BPF_TABLE("lru_hash", u64, struct fdio_t, tid_fd, 65536);    // tid -> fd of last I/O
BPF_TABLE("lru_hash", u64, struct sockio_t, tid_sock, 65536); // tid -> last socket I/O
BPF_TABLE("lru_hash", struct fdkey_t, u64, fd_sk, 65536);    // (tgid, fd) -> struct sock *
BPF_TABLE("lru_hash", u64, struct tuple_t, sk_tuple, 65536); // struct sock * -> 4-tuple
BPF_TABLE("lru_hash", struct objkey_t, s32, obj_fd, 65536);  // (tgid, SSL *) -> fd
BPF_TABLE("lru_hash", struct objkey_t, s32, obj_guess, 65536); // memory-BIO guesses
BPF_TABLE("lru_hash", struct ctrkey_t, struct counter_t, counters, 65536);
BPF_TABLE("lru_hash", struct fdkey_t, u64, fd_closes, 65536); // (tgid, fd) -> close(2)s

static __always_inline void count(int i, u64 n) {
    u64 *c = stats.lookup(&i);
    if (c) __sync_fetch_and_add(c, n);
}

static __always_inline int wanted(u32 tgid) {
    if (ignored.lookup(&tgid)) return 0;
    int zero = 0;
    u32 *all = config.lookup(&zero);
    if (all && *all) return 1;
    return traced.lookup(&tgid) != 0;
}

static __always_inline int lookup_tuple(u32 tgid, s32 fd, struct tuple_t *out) {
    struct fdkey_t k = {.tgid = tgid, .fd = fd};
    u64 *sk = fd_sk.lookup(&k);
    if (!sk) return 0;
    struct tuple_t *t = sk_tuple.lookup(sk);
    if (!t) return 0;
    __builtin_memcpy(out, t, sizeof(*out));
    return 1;
}

// The byte counter of (process, fd, direction), made on first use with a new generation
// so that a call can tell whether the fd it started on was closed (and reused) meanwhile.
static __always_inline struct counter_t *counter_of(u32 tgid, s32 fd, u32 dir) {
    struct ctrkey_t ck = {.tgid = tgid, .fd = fd, .dir = dir};
    struct counter_t *ctr = counters.lookup(&ck);
    if (ctr) return ctr;
    int zero = 0;
    u64 *last = generation.lookup(&zero);
    if (!last) return 0;
    struct counter_t fresh = {.gen = __sync_fetch_and_add(last, 1) + 1};
    counters.insert(&ck, &fresh);
    return counters.lookup(&ck);
}

// One data event per MAX_CHUNK piece of [buf, buf + n), numbered from `base`, on the
// socket whose 4-tuple is `t` (when has_tuple); `late`: the fd closed before the call's end;
// `mark`: the egress bytes that must be reported before this read (0: none).
static __always_inline void output(u32 kind, u32 dir, s32 fd, u64 buf, u64 n, u64 base,
                                   struct tuple_t *t, u32 has_tuple, u32 late, u64 mark) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    int zero = 0;
    struct event_t *e = scratch.lookup(&zero);
    if (!e) return;
    e->ts = bpf_ktime_get_ns();
    e->seq2 = mark;
    e->pid = tgid;
    e->tid = (u32)id;
    e->fd = fd;
    e->ev = 0;
    e->dir = dir;
    e->call = kind;
    e->late = late;
    e->has_tuple = has_tuple;
    if (has_tuple) __builtin_memcpy(&e->tuple, t, sizeof(e->tuple));
    if (n > (u64)MAX_CHUNK * MAX_PIECES) count(2, n - (u64)MAX_CHUNK * MAX_PIECES);
    for (int i = 0; i < MAX_PIECES; i++) {
        u64 off = (u64)i * MAX_CHUNK;
        if (off >= n) break;
        u32 piece = n - off > MAX_CHUNK ? MAX_CHUNK : (u32)(n - off);
        e->seq = base + off;
        e->len = piece;
        if (piece > MAX_CHUNK) break;  // for the verifier
        bpf_probe_read_user(e->data, piece, (void *)(buf + off));
        u64 size = sizeof(*e) - MAX_CHUNK + piece;
        if (size > sizeof(*e)) break;
        if (events.ringbuf_output(e, size, 0) < 0) count(0, 1);
    }
}

// OpenSSL, a call with no socket I/O of its own (served from OpenSSL's buffer, memory
// BIO): its fd and 4-tuple are taken at the return.
static __always_inline void emit(void *ctx, u32 kind, u32 dir, s32 fd, u64 buf, u64 n) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    count(3, 1);
    if (fd < 0) { count(1, 1); return; }
    struct counter_t *ctr = counter_of(tgid, fd, dir);
    if (!ctr) return;
    u64 base = __sync_fetch_and_add(&ctr->bytes, n);
    struct tuple_t t = {};
    u32 has_tuple = lookup_tuple(tgid, fd, &t);
    output(kind, dir, fd, buf, n, base, &t, has_tuple, 0, 0);
}

// ---- OpenSSL / BoringSSL -------------------------------------------------------------
// Which socket an SSL object talks over, learned per call:
// 1. socket I/O on this thread during the call (socket BIO): certain, cached in obj_fd;
// 2. obj_fd from an earlier call;
// 3. memory BIO (asyncio, Node.js: socket I/O happens outside the SSL calls): a read or
//    handshake step runs right after the thread read the peer's bytes from the socket, so
//    the thread's last socket fd before the call is a guess, kept in obj_guess (each such
//    read renews it); a write uses the guess, or makes one only when there is none (the
//    first request of a client, right after its handshake read the server's last flight).
static __always_inline int ssl_enter(struct pt_regs *ctx, u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    if (!wanted(id >> 32)) return 0;
    struct call_t c = {};
    c.obj = PT_REGS_PARM1(ctx);
    c.buf = PT_REGS_PARM2(ctx);
    c.len = PT_REGS_PARM3(ctx);
    if (kind == __SSL_WRITE__ || kind == __SSL_READ__) c.len = (u32)c.len;  // an int
    c.lenp = PT_REGS_PARM4(ctx);
    c.fd = -1;
    struct sockio_t *last = tid_sock.lookup(&id);
    if (last) {
        c.fd = last->fd;
        c.io = last->io;
    }
    c.kind = kind;
    active.update(&id, &c);
    return 0;
}

static __always_inline s32 ssl_socket(u64 id, struct call_t *c, int is_read) {
    struct objkey_t ok = {.tgid = id >> 32, .obj = c->obj};
    struct sockio_t *now = tid_sock.lookup(&id);
    if (now && now->io != c->io) {
        s32 fd = now->fd;
        obj_fd.update(&ok, &fd);
        return fd;
    }
    s32 *known = obj_fd.lookup(&ok);
    if (known) return *known;
    if (c->fd < 0) {
        s32 *guessed = obj_guess.lookup(&ok);
        return guessed ? *guessed : -1;
    }
    s32 guess = c->fd;
    if (!is_read) {
        s32 *guessed = obj_guess.lookup(&ok);
        if (guessed) return *guessed;
    }
    obj_guess.update(&ok, &guess);
    count(4, 1);
    return guess;
}

static __always_inline u32 ssl_dir(u32 kind) {
    return (kind == __SSL_WRITE__ || kind == __SSL_WRITE_EX__) ? 0 : 1;
}

static __always_inline u64 closes_of(u32 tgid, s32 fd) {
    struct fdkey_t k = {.tgid = tgid, .fd = fd};
    u64 *n = fd_closes.lookup(&k);
    return n ? *n : 0;
}

// The first socket I/O syscall of thread `id` inside an SSL call pins the call to that connection
// while the fd is surely still its: a close by another thread before the call returns
// (and a new connection given the same fd) must not move the chunk. A write is counted
// as pending on its counter, so a close meanwhile counts it (the FINs wait for it).
static __always_inline void pin_ssl_call(u64 id, s32 fd) {
    struct call_t *c = active.lookup(&id);
    if (!c || c->pinned || c->kind == __SSL_HANDSHAKE__) return;
    u32 tgid = id >> 32, dir = ssl_dir(c->kind);
    struct ctrkey_t ck = {.tgid = tgid, .fd = fd, .dir = dir};
    // a read makes no counter: a call that gets nothing must not make a close event
    struct counter_t *ctr = dir == 0 ? counter_of(tgid, fd, dir) : counters.lookup(&ck);
    if (dir == 0 && !ctr) return;
    c->pinned = 1;
    c->pin_fd = fd;
    c->closes = closes_of(tgid, fd);
    c->base = ctr ? ctr->bytes : 0;
    if (dir == 0 && ctr) __sync_fetch_and_add(&ctr->pending, c->len);
    c->has_tuple = lookup_tuple(tgid, fd, &c->tuple);
}

// A pinned call whose fd was closed before it returned: its bytes go to the connection
// it was pinned to, numbered from the pinned base (no other call of that SSL object could
// run meanwhile); a write of the same opening gives back its pending count.
static __always_inline int ssl_reopened(u32 tgid, struct call_t *c) {
    if (!c->pinned) return 0;
    if (closes_of(tgid, c->pin_fd) != c->closes) return 1;
    struct ctrkey_t ck = {.tgid = tgid, .fd = c->pin_fd, .dir = 0};
    struct counter_t *ctr = ssl_dir(c->kind) == 0 ? counters.lookup(&ck) : 0;
    if (ctr) __sync_fetch_and_add(&ctr->pending, -c->len);
    return 0;
}

static __always_inline int ssl_exit(struct pt_regs *ctx, u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    struct call_t *cp = active.lookup(&id);
    if (!cp) return 0;
    struct call_t c = *cp;
    active.delete(&id);
    if (c.kind != kind) return 0;
    u32 dir = ssl_dir(kind);
    int reopened = ssl_reopened(id >> 32, &c);
    s32 fd = ssl_socket(id, &c, dir == 1 || kind == __SSL_HANDSHAKE__);
    if (kind == __SSL_HANDSHAKE__) return 0;
    long ret = PT_REGS_RC(ctx);
    u64 n = 0;
    if (kind == __SSL_WRITE_EX__ || kind == __SSL_READ_EX__) {
        if ((int)ret != 1) return 0;
        if (bpf_probe_read_user(&n, sizeof(n), (void *)c.lenp) < 0) return 0;
    } else {
        if ((int)ret <= 0) return 0;
        n = (u64)(int)ret;
    }
    if (n == 0) return 0;
    if (!reopened) {
        emit(ctx, kind, dir, c.pinned ? c.pin_fd : fd, c.buf, n);
        return 0;
    }
    count(3, 1);
    if (!c.has_tuple) { count(1, 1); return 0; }
    output(kind, dir, c.pin_fd, c.buf, n, c.base, &c.tuple, 1, 1, 0);
    return 0;
}

int ssl_handshake_enter(struct pt_regs *ctx) { return ssl_enter(ctx, __SSL_HANDSHAKE__); }
int ssl_handshake_exit(struct pt_regs *ctx) { return ssl_exit(ctx, __SSL_HANDSHAKE__); }
int ssl_write_enter(struct pt_regs *ctx) { return ssl_enter(ctx, __SSL_WRITE__); }
int ssl_write_exit(struct pt_regs *ctx) { return ssl_exit(ctx, __SSL_WRITE__); }
int ssl_read_enter(struct pt_regs *ctx) { return ssl_enter(ctx, __SSL_READ__); }
int ssl_read_exit(struct pt_regs *ctx) { return ssl_exit(ctx, __SSL_READ__); }
int ssl_write_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, __SSL_WRITE_EX__); }
int ssl_write_ex_exit(struct pt_regs *ctx) { return ssl_exit(ctx, __SSL_WRITE_EX__); }
int ssl_read_ex_enter(struct pt_regs *ctx) { return ssl_enter(ctx, __SSL_READ_EX__); }
int ssl_read_ex_exit(struct pt_regs *ctx) { return ssl_exit(ctx, __SSL_READ_EX__); }

// ---- Go crypto/tls (register ABI: receiver in RAX, slice in RBX/RCX, g in R14) -------
static __always_inline s32 go_conn_fd(u64 conn) {
    // tls.Conn{conn net.Conn (itab, data)} -> *net.TCPConn{conn{fd *netFD}}
    // -> netFD{pfd poll.FD{fdmu fdMutex (16 bytes), Sysfd int}}
    u64 data = 0, netfd = 0;
    s64 sysfd = -1;
    if (bpf_probe_read_user(&data, 8, (void *)(conn + 8)) < 0 || !data) return -1;
    if (bpf_probe_read_user(&netfd, 8, (void *)data) < 0 || !netfd) return -1;
    if (bpf_probe_read_user(&sysfd, 8, (void *)(netfd + 16)) < 0) return -1;
    if (sysfd < 0 || sysfd > 0x7fffffff) return -1;
    return (s32)sysfd;
}

// The connection is pinned at the entry, while the tls.Conn holds its fd open: by the RET
// another goroutine may have closed it and a new connection may have the same fd number.
// So the 4-tuple and the sequence base are taken here; a Write reserves its length (so a
// close meanwhile counts it), a Read adds what it got at the RET if the fd is still the
// same opening. tls.Conn serialises calls per direction, so bases never overlap.
static __always_inline int go_enter(struct pt_regs *ctx, u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!wanted(tgid)) return 0;
    struct gkey_t gk = {.tgid = tgid, .g = ctx->r14};
    struct call_t c = {};
    c.obj = ctx->ax;
    c.buf = ctx->bx;
    c.len = ctx->cx;
    c.fd = go_conn_fd(c.obj);
    c.kind = kind;
    if (c.fd >= 0) {
        u32 dir = kind == __GO_WRITE__ ? 0 : 1;
        struct counter_t *ctr = counter_of(tgid, c.fd, dir);
        if (ctr) {
            c.gen = ctr->gen;
            c.base = dir == 0 ? __sync_fetch_and_add(&ctr->bytes, c.len) : ctr->bytes;
        }
        c.has_tuple = lookup_tuple(tgid, c.fd, &c.tuple);
    }
    go_active.update(&gk, &c);
    return 0;
}

static __always_inline int go_exit(struct pt_regs *ctx, u32 kind) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct gkey_t gk = {.tgid = tgid, .g = ctx->r14};
    struct call_t *cp = go_active.lookup(&gk);
    if (!cp) return 0;
    struct call_t c = *cp;
    go_active.delete(&gk);
    if (c.kind != kind) return 0;
    s64 n = (s64)ctx->ax;
    if (n <= 0 || (u64)n > c.len) return 0;  // a failed Write leaves its reservation a gap
    count(3, 1);
    if (c.fd < 0) { count(1, 1); return 0; }
    u32 dir = kind == __GO_WRITE__ ? 0 : 1;
    struct ctrkey_t ck = {.tgid = tgid, .fd = c.fd, .dir = dir};
    struct counter_t *ctr = counters.lookup(&ck);
    int same_opening = ctr && ctr->gen == c.gen;
    if (dir == 1 && same_opening) __sync_fetch_and_add(&ctr->bytes, (u64)n);
    if (!c.has_tuple) {
        // no socket seen on the fd at the entry: ask now, unless the fd was reopened
        if (!same_opening) { count(1, 1); return 0; }
        c.has_tuple = lookup_tuple(tgid, c.fd, &c.tuple);
    }
    // net/http reads and writes a connection from two goroutines: the response's Read can
    // return before the request's Write reaches its RET, so a read names the egress bytes
    // reserved by then, and user space holds it until those arrive (the request first)
    u64 mark = 0;
    if (dir == 1 && same_opening) {
        struct ctrkey_t ek = {.tgid = tgid, .fd = c.fd, .dir = 0};
        struct counter_t *egress = counters.lookup(&ek);
        if (egress) mark = egress->bytes;
    }
    output(kind, dir, c.fd, c.buf, (u64)n, c.base, &c.tuple, c.has_tuple, !same_opening, mark);
    return 0;
}

int go_write_enter(struct pt_regs *ctx) { return go_enter(ctx, __GO_WRITE__); }
int go_write_exit(struct pt_regs *ctx) { return go_exit(ctx, __GO_WRITE__); }
int go_read_enter(struct pt_regs *ctx) { return go_enter(ctx, __GO_READ__); }
int go_read_exit(struct pt_regs *ctx) { return go_exit(ctx, __GO_READ__); }

// ---- which fd, which socket ----------------------------------------------------------
static __always_inline void note_socket_io(u64 id, s32 fd) {
    struct sockio_t *last = tid_sock.lookup(&id);
    if (last) {
        last->fd = fd;
        last->io += 1;
        return;
    }
    struct sockio_t first = {.fd = fd, .io = 1};
    tid_sock.update(&id, &first);
}

static __always_inline void note_fd(s64 fd) {
    u64 id = bpf_get_current_pid_tgid();
    if (!wanted(id >> 32)) return;
    s32 f = (s32)fd;
    // at the entry the fd is surely the call's (a blocked send can end after a close); a
    // fd not known as a socket yet waits for sock_*_length (OpenSSL reads /dev/urandom)
#ifdef HAVE_SOCK_LENGTH
    struct fdkey_t k = {.tgid = id >> 32, .fd = f};
    if (fd_sk.lookup(&k)) pin_ssl_call(id, f);
#else
    pin_ssl_call(id, f);
#endif
    struct fdio_t io = {.fd = f, .closes = closes_of(id >> 32, f)};
    tid_fd.update(&id, &io);
#ifndef HAVE_SOCK_LENGTH
    note_socket_io(id, f);
#endif
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) { note_fd(args->fd); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) { note_fd(args->fd); return 0; }

TRACEPOINT_PROBE(syscalls, sys_enter_close) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    struct fdkey_t fk = {.tgid = tgid, .fd = (s32)args->fd};
    u64 one = 1;
    u64 *closes = fd_closes.lookup(&fk);
    if (closes) __sync_fetch_and_add(closes, 1);
    else if (wanted(tgid)) fd_closes.update(&fk, &one);
    struct ctrkey_t out = {.tgid = tgid, .fd = (s32)args->fd, .dir = 0};
    struct ctrkey_t in = {.tgid = tgid, .fd = (s32)args->fd, .dir = 1};
    u64 out_count = 0, in_count = 0;
    int found = 0;
    struct counter_t *o = counters.lookup(&out);
    if (o) { out_count = o->bytes + o->pending; found = 1; }
    struct counter_t *i = counters.lookup(&in);
    if (i) { in_count = i->bytes; found = 1; }
    if (!found) return 0;
    int zero = 0;
    struct event_t *e = scratch.lookup(&zero);
    if (!e) return 0;
    e->ts = bpf_ktime_get_ns();
    e->seq = out_count;
    e->seq2 = in_count;
    e->pid = tgid;
    e->tid = (u32)id;
    e->fd = (s32)args->fd;
    e->len = 0;
    e->ev = 1;
    e->dir = 0;
    e->call = 0;
    e->late = 0;
    e->has_tuple = lookup_tuple(tgid, e->fd, &e->tuple);
    if (events.ringbuf_output(e, sizeof(*e) - MAX_CHUNK, 0) < 0) count(0, 1);
    counters.delete(&out);
    counters.delete(&in);
    fd_sk.delete(&fk);
    return 0;
}

// A process that exits closes its sockets without close(2) calls.
TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if ((u32)id != tgid || !wanted(tgid)) return 0;
    int zero = 0;
    struct event_t *e = scratch.lookup(&zero);
    if (!e) return 0;
    __builtin_memset(e, 0, sizeof(*e) - MAX_CHUNK);
    e->ts = bpf_ktime_get_ns();
    e->pid = tgid;
    e->tid = tgid;
    e->fd = -1;
    e->ev = 2;
    if (events.ringbuf_output(e, sizeof(*e) - MAX_CHUNK, 0) < 0) count(0, 1);
    return 0;
}

#ifdef HAVE_SOCK_LENGTH
static __always_inline void note_sock(u64 sk, u16 family) {
    if (family != AF_INET && family != AF_INET6) return;
    u64 id = bpf_get_current_pid_tgid();
    struct fdio_t *io = tid_fd.lookup(&id);
    if (!io) return;
    // closed meanwhile (another thread): the number may name a new connection's socket
    if (closes_of(id >> 32, io->fd) != io->closes) return;
    struct fdkey_t k = {.tgid = id >> 32, .fd = io->fd};
    fd_sk.update(&k, &sk);
    pin_ssl_call(id, io->fd);  // the fd's first socket I/O
    note_socket_io(id, io->fd);
}
TRACEPOINT_PROBE(sock, sock_send_length) { note_sock((u64)args->sk, args->family); return 0; }
TRACEPOINT_PROBE(sock, sock_recv_length) { note_sock((u64)args->sk, args->family); return 0; }
#endif

#define FILL_TUPLE(t, a) do {                                            \
    t.family = a->family; t.sport = a->sport; t.dport = a->dport;       \
    if (a->family == AF_INET) {                                          \
        t.saddr[10] = 0xff; t.saddr[11] = 0xff;                          \
        t.daddr[10] = 0xff; t.daddr[11] = 0xff;                          \
        __builtin_memcpy(&t.saddr[12], a->saddr, 4);                     \
        __builtin_memcpy(&t.daddr[12], a->daddr, 4);                     \
    } else {                                                             \
        __builtin_memcpy(t.saddr, a->saddr_v6, 16);                      \
        __builtin_memcpy(t.daddr, a->daddr_v6, 16);                      \
    }                                                                    \
} while (0)

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP) return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == 1) {  // TCP_ESTABLISHED
        struct tuple_t t = {};
        FILL_TUPLE(t, args);
        sk_tuple.update(&sk, &t);
    }
    return 0;
}

#ifdef HAVE_RCV_SPACE
TRACEPOINT_PROBE(tcp, tcp_rcv_space_adjust) {
    u64 sk = (u64)args->skaddr;
    if (sk_tuple.lookup(&sk)) return 0;
    struct tuple_t t = {};
    FILL_TUPLE(t, args);
    sk_tuple.update(&sk, &t);
    return 0;
}
#endif
"""


def source(ring_pages: int = 2048) -> str:
    """The program text with its constants filled in (ring_pages: a power of two)."""
    text = SOURCE
    for name, value in {
        "__MAX_CHUNK__": MAX_CHUNK,
        "__MAX_PIECES__": MAX_PIECES,
        "__RING_PAGES__": ring_pages,
        "__SSL_WRITE_EX__": SSL_WRITE_EX,
        "__SSL_READ_EX__": SSL_READ_EX,
        "__SSL_WRITE__": SSL_WRITE,
        "__SSL_READ__": SSL_READ,
        "__GO_WRITE__": GO_WRITE,
        "__SSL_HANDSHAKE__": SSL_HANDSHAKE,
        "__GO_READ__": GO_READ,
    }.items():
        text = text.replace(name, str(value))
    return text
