/*
 * zvonok.media._fastpath — the compiled forwarding loop.
 *
 * Owns the per-copy work of the SFU's hot path, on raw bytes and without Python objects per
 * packet: per-subscriber rewriting of SSRC, payload type, sequence number, timestamp and
 * one-byte header-extension ids (RFC 3550 §5.1, RFC 8285 §4.2), SRTP protection through
 * libsrtp (RFC 3711, RFC 7714; the libsrtp linked into pylibsrtp, whose srtp_protect and
 * srtp_unprotect addresses the Python side hands over), sending a whole fan-out with one
 * sendmmsg(2) (inside Demux.drain: the copies of up to 8 received datagrams), and the receive
 * side up to the producer: RFC 7983 demultiplexing by first byte, the address lookup (a peer
 * table in C), SRTP unprotect and the SSRC lookup.
 *
 * Each type mirrors a pure-Python reference (the tests run both and compare what comes out):
 *
 *   SendTarget     one transport's outbound RTP: socket fd, SRTP context, selected address
 *                  (transport/target.py).
 *   Forwarder      one consumer's rewriting state (forwarding/forwarder.py).
 *   Fanout         one producer's list of forwarders; forward() rewrites, protects and batches
 *                  every copy, then flushes the batch with sendmmsg (forwarding/forwarder.py);
 *                  inside Demux.drain the drain flushes, once per 8 received datagrams.
 *   Demux          the worker socket's datagram_received for SRTP/SRTCP from bound addresses,
 *                  RFC 7983 (transport/udp.py; STUN and DTLS stay in Python); its peer table
 *                  remembers each bound peer's Receiver by socket address until by_addr
 *                  changes.
 *   Receiver       one transport's inbound SRTP: unprotect, count, deliver; SRTCP is passed to
 *                  the transport's Python path (transport/receiver.py).
 *   RtpDispatcher  one session's decrypted RTP by SSRC to its producers
 *                  (forwarding/dispatch.py).
 *   ReceiveStatsBase  sequence/jitter tracking of one inbound stream, RFC 3550 A.1/A.8
 *                  (forwarding/stats.py subclasses it).
 *   ProducerCore   a producer's per-packet work: stats, NACK bookkeeping, keyframe spotting
 *                  while one is wanted, history, fan-out (forwarding/producer.py).
 *   twcc_parse     the FCI of a transport-cc feedback packet (packets/rtcp.py parse_twcc_fci).
 *   FeedbackCore   the per-packet part of reading a subscriber's transport-cc feedback
 *                  (forwarding/twcc.py FeedbackAdapter + bwe.py's per-packet steps).
 *   Trendline      the delay-based detector on the send groups FeedbackCore closes: the
 *                  trendline's least squares, overuse detector, adaptive threshold
 *                  (forwarding/bwe.py _Trendline).
 *   audio_levels   the RFC 6464 levels of the new packets in an audio producer's ring, as the
 *                  active-speaker detector adds them up each tick (rooms/speakers.py
 *                  read_levels).
 *
 * RTCP: a SendTarget also protects (srtp_protect_rtcp) and sends the RTCP the Python side builds
 * (send_rtcp), on the same socket and address as RTP (transport/target.py).
 *
 * Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01): a
 * SendTarget given the subscriber's transport-cc id (set_twcc) writes its own 16-bit counter into
 * that header extension element of every packet it sends (after the forwarder's rewrite, before
 * SRTP) and keeps (seq -> send time, size) in a ring for the feedback (twcc_lookup); a Receiver
 * given the publisher's id records (seq, arrival time) of every decrypted packet carrying it in a
 * bounded ring the transport drains about every 100 ms (twcc_drain) to build feedback
 * (forwarding/twcc.py). Times are CLOCK_MONOTONIC microseconds, as Python's time.monotonic_ns.
 *
 * Multi-homed hosts (transport/pktinfo.py): on a socket bound to 0.0.0.0 or :: the Demux reads
 * each datagram's destination (IP_PKTINFO / IPV6_PKTINFO ancillary data) and hands it to the
 * Python path with STUN, and a SendTarget given a source sends from it (sendmsg / sendmmsg with
 * the same control message), so answers leave from the address the peer sent to.
 *
 * Single-threaded by design (the worker's event loop), so the batch buffers are static.
 * When the socket would block, the remaining copies go to the target's Python fallback
 * (the event loop's transport.sendto, which queues them) so nothing is lost silently.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Every double here is computed as its Python reference computes it, operation by operation
 * and in the same order, so the results are bit-identical (the tests compare them with ==): no
 * fused multiply-add. GCC contracts a * b + c into one FMA wherever the target has one (aarch64,
 * x86-64 with -mfma or -march=native) and ignores ``#pragma STDC FP_CONTRACT``, which clang
 * honours; never build this file with -ffast-math. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Largest plaintext RTP packet we protect: pylibsrtp's 1500-byte buffer minus its trailer
 * room, the same bound as the Python path (srtp.py). */
#define MAX_PLAIN 1356
#define BUF_SIZE 1500
#define BATCH 64
#define SYNC_TRAIL 0x1000
#define EXT_ONE_BYTE 0xBEDE

typedef int (*protect_fn)(void *ctx, void *hdr, int *len);

/* Transport-wide CC rings: sent packets per SendTarget, arrivals per Receiver (powers of 2). */
#define TWCC_SENT 4096
#define TWCC_ARRIVALS 1024

typedef struct {
    long long send_us;
    uint32_t seq; /* 16-bit seq | 0x10000 when the slot is used */
    uint32_t size;
} TwccSent;

typedef struct {
    long long at_us;
    uint16_t seq;
} TwccArrival;

static inline long long
monotonic_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

/* The offset of header extension element ``id``'s value in the RTP packet p[0:len] (RFC 8285
 * one-byte or two-byte form) and its length in *vlen, or -1 when absent or malformed. */
static Py_ssize_t
find_extension(const uint8_t *p, Py_ssize_t len, int id, int *vlen)
{
    if (len < 12 || !(p[0] & 0x10))
        return -1;
    Py_ssize_t pos = 12 + (p[0] & 0x0F) * 4;
    if (pos + 4 > len)
        return -1;
    unsigned profile = (unsigned)(p[pos] << 8 | p[pos + 1]);
    Py_ssize_t i = pos + 4, end = i + (Py_ssize_t)(p[pos + 2] << 8 | p[pos + 3]) * 4;
    if (end > len)
        return -1;
    if (profile == EXT_ONE_BYTE) {
        while (i < end) {
            uint8_t b = p[i];
            if (b == 0) {
                i++;
                continue;
            }
            int eid = b >> 4, n = (b & 0x0F) + 1;
            if (eid == 15 || i + 1 + n > end)
                return -1;
            if (eid == id) {
                *vlen = n;
                return i + 1;
            }
            i += 1 + n;
        }
    } else if ((profile & 0xFFF0) == 0x1000) {
        while (i < end) {
            int eid = p[i];
            if (eid == 0) {
                i++;
                continue;
            }
            if (i + 2 > end || i + 2 + p[i + 1] > end)
                return -1;
            if (eid == id) {
                *vlen = p[i + 1];
                return i + 2;
            }
            i += 2 + p[i + 1];
        }
    }
    return -1;
}

/* Room for one IP_PKTINFO or IPV6_PKTINFO control message, aligned for struct cmsghdr. */
typedef union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
} PktinfoControl;

/* One direction of a libsrtp session as the Python side hands it over: the srtp_t, the libsrtp
 * function to call on it (srtp_protect or srtp_unprotect: same signature), and the owner that
 * keeps the context alive. Shared by SendTarget and Receiver. */
typedef struct {
    void *ctx;
    protect_fn fn;
    PyObject *keep;
} SrtpBinding;

/* set_srtp(ctx, fn, keep) of either type; ``what`` names the function in the error. */
static PyObject *
srtp_bind(SrtpBinding *b, PyObject *args, const char *what)
{
    unsigned long long ctx, fn;
    PyObject *keep;
    if (!PyArg_ParseTuple(args, "KKO", &ctx, &fn, &keep))
        return NULL;
    if (ctx == 0 || fn == 0) {
        PyErr_Format(PyExc_ValueError, "SRTP context and %s function must be set", what);
        return NULL;
    }
    Py_INCREF(keep);
    Py_XSETREF(b->keep, keep);
    b->ctx = (void *)(uintptr_t)ctx;
    b->fn = (protect_fn)(uintptr_t)fn;
    Py_RETURN_NONE;
}

static void
srtp_unbind(SrtpBinding *b)
{
    b->ctx = NULL;
    b->fn = NULL;
    Py_CLEAR(b->keep);
}

/* ------------------------------------------------------------------------------------------ */
/* SendTarget                                                                                 */

typedef struct {
    PyObject_HEAD
    int fd;
    PyObject *fallback; /* callable(bytes, addr): used when the socket would block */
    PyObject *addr;     /* the Python address tuple, or None */
    struct sockaddr_storage sa;
    socklen_t salen;
    PyObject *source;       /* the local address to send from (str), or None: the kernel's */
    PktinfoControl control; /* its IP_PKTINFO / IPV6_PKTINFO control message */
    socklen_t controllen;   /* 0: no source */
    SrtpBinding srtp;       /* srtp_protect on the outbound context */
    protect_fn rtcp_fn;     /* srtp_protect_rtcp on the same context (NULL: not given) */
    int enabled;
    unsigned long long tx_packets, tx_bytes, srtp_errors, send_errors;
    int twcc_id;          /* the subscriber's transport-cc extension id, 0: no stamping */
    uint16_t twcc_seq;    /* the next transport-wide sequence number */
    TwccSent *twcc_sent;  /* TWCC_SENT slots, allocated by set_twcc */
    unsigned long long twcc_stamped;
} SendTarget;

/* Write the next transport-wide seq into the packet's transport-cc element and remember when
 * it left (the Python reference: target.TwccStamper.stamp); 0x10000 | that seq, 0: none. */
static uint32_t
twcc_stamp(SendTarget *t, uint8_t *buf, Py_ssize_t len)
{
    int vlen;
    Py_ssize_t at = find_extension(buf, len, t->twcc_id, &vlen);
    if (at < 0 || vlen < 2)
        return 0;
    uint16_t seq = t->twcc_seq++;
    buf[at] = (uint8_t)(seq >> 8);
    buf[at + 1] = (uint8_t)seq;
    TwccSent *slot = &t->twcc_sent[seq & (TWCC_SENT - 1)];
    slot->send_us = monotonic_us();
    slot->seq = 0x10000u | seq;
    slot->size = (uint32_t)len;
    t->twcc_stamped++;
    return slot->seq;
}

#define TARGET_STAMP(t, buf, len)                                                            \
    do {                                                                                     \
        if ((t)->twcc_id)                                                                    \
            twcc_stamp((t), (buf), (len));                                                   \
    } while (0)

static PyTypeObject SendTargetType;

static int
target_ready(SendTarget *t)
{
    return t->enabled && t->srtp.ctx != NULL && t->salen != 0;
}

static int
SendTarget_init(SendTarget *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "fallback", NULL};
    int fd;
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO", kwlist, &fd, &fallback))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    self->fd = fd;
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    if (self->addr == NULL) {
        Py_INCREF(Py_None);
        self->addr = Py_None;
    }
    if (self->source == NULL) {
        Py_INCREF(Py_None);
        self->source = Py_None;
    }
    return 0;
}

static int
SendTarget_traverse(SendTarget *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->addr);
    Py_VISIT(self->source);
    Py_VISIT(self->srtp.keep);
    return 0;
}

static int
SendTarget_clear(SendTarget *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->addr);
    Py_CLEAR(self->source);
    srtp_unbind(&self->srtp);
    return 0;
}

static void
SendTarget_dealloc(SendTarget *self)
{
    PyObject_GC_UnTrack(self);
    SendTarget_clear(self);
    PyMem_Free(self->twcc_sent);
    self->twcc_sent = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* set_srtp(ctx, protect, keep, protect_rtcp=0): srtp_protect (and srtp_protect_rtcp, for
 * send_rtcp) on the outbound context. */
static PyObject *
SendTarget_set_srtp(SendTarget *self, PyObject *args)
{
    unsigned long long rtcp = 0;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n == 4) {
        rtcp = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args, 3));
        if (rtcp == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        args = PyTuple_GetSlice(args, 0, 3);
        if (args == NULL)
            return NULL;
    } else {
        Py_INCREF(args);
    }
    PyObject *res = srtp_bind(&self->srtp, args, "protect");
    Py_DECREF(args);
    if (res != NULL)
        self->rtcp_fn = (protect_fn)(uintptr_t)rtcp;
    return res;
}

/* set_twcc(ext_id): stamp the transport-cc element with this id (1-255), 0: stop. */
static PyObject *
SendTarget_set_twcc(SendTarget *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    if (id < 0 || id > 255) {
        PyErr_SetString(PyExc_ValueError, "transport-cc extension id must be 0..255");
        return NULL;
    }
    if (id && self->twcc_sent == NULL) {
        self->twcc_sent = PyMem_Calloc(TWCC_SENT, sizeof(TwccSent));
        if (self->twcc_sent == NULL)
            return PyErr_NoMemory();
    }
    self->twcc_id = (int)id;
    Py_RETURN_NONE;
}

/* twcc_lookup(seq) -> (send µs, size) of the packet stamped ``seq``, or None when it is not
 * (or no longer) in the ring. */
static PyObject *
SendTarget_twcc_lookup(SendTarget *self, PyObject *arg)
{
    long seq = PyLong_AsLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (self->twcc_sent != NULL && seq >= 0 && seq <= 0xFFFF) {
        TwccSent *slot = &self->twcc_sent[seq & (TWCC_SENT - 1)];
        if (slot->seq == (0x10000u | (uint32_t)seq))
            return Py_BuildValue("(LI)", slot->send_us, slot->size);
    }
    Py_RETURN_NONE;
}

static PyObject *
SendTarget_clear_srtp(SendTarget *self, PyObject *Py_UNUSED(ignored))
{
    srtp_unbind(&self->srtp);
    self->rtcp_fn = NULL;
    Py_RETURN_NONE;
}

/* Parse ("ip", port) or ("ip6", port, flowinfo, scope_id) into a sockaddr. */
static int
parse_address(PyObject *addr, struct sockaddr_storage *sa, socklen_t *salen)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope = 0;
    if (!PyTuple_Check(addr) ||
        !PyArg_ParseTuple(addr, "si|II", &host, &port, &flowinfo, &scope)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "address must be (host, port[, flowinfo, scope_id])");
        return -1;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*v4);
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_flowinfo = htonl(flowinfo);
        v6->sin6_scope_id = scope;
        *salen = sizeof(*v6);
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
    return -1;
}

/* The control message that sends from ``source`` (a numeric IP address) to a peer of ``family``:
 * IP_PKTINFO (ipi_spec_dst) for an IPv4 peer, IPV6_PKTINFO for an IPv6 one (an IPv4 source
 * IPv4-mapped: a dual-stack socket's form), interface 0 (the route picks it), as
 * transport/pktinfo.py's source_ancillary. Its length, or -1 with ValueError. */
static int
build_source(const char *source, int family, PktinfoControl *ctl)
{
    struct in_addr v4;
    struct in6_addr v6;
    int is_v4 = inet_pton(AF_INET, source, &v4) == 1;
    if (!is_v4 && inet_pton(AF_INET6, source, &v6) != 1) {
        PyErr_Format(PyExc_ValueError, "source is not a numeric IP address: %s", source);
        return -1;
    }
    memset(ctl, 0, sizeof(*ctl));
    struct msghdr h = {.msg_control = ctl->buf, .msg_controllen = sizeof(ctl->buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    if (family == AF_INET6) {
        struct in6_pktinfo info = {0};
        if (is_v4) {
            info.ipi6_addr.s6_addr[10] = 0xff;
            info.ipi6_addr.s6_addr[11] = 0xff;
            memcpy(&info.ipi6_addr.s6_addr[12], &v4, 4);
        } else {
            info.ipi6_addr = v6;
        }
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(info));
        memcpy(CMSG_DATA(c), &info, sizeof(info));
        return (int)CMSG_SPACE(sizeof(info));
    }
    if (!is_v4) {
        if (!IN6_IS_ADDR_V4MAPPED(&v6)) {
            PyErr_Format(PyExc_ValueError, "source %s is IPv6 but the peer is IPv4", source);
            return -1;
        }
        memcpy(&v4, &v6.s6_addr[12], 4);
    }
    struct in_pktinfo info = {0};
    info.ipi_spec_dst = v4;
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(info));
    memcpy(CMSG_DATA(c), &info, sizeof(info));
    return (int)CMSG_SPACE(sizeof(info));
}

/* set_address(addr or None, source=None) */
static PyObject *
SendTarget_set_address(SendTarget *self, PyObject *args)
{
    PyObject *addr, *source = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:set_address", &addr, &source))
        return NULL;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    PktinfoControl control;
    int controllen = 0;
    if (addr != Py_None && parse_address(addr, &sa, &salen) < 0)
        return NULL;
    if (source != Py_None) {
        if (!PyUnicode_Check(source)) {
            PyErr_SetString(PyExc_TypeError, "source must be a str or None");
            return NULL;
        }
        const char *text = PyUnicode_AsUTF8(source);
        if (text == NULL)
            return NULL;
        if (addr != Py_None) {
            controllen = build_source(text, sa.ss_family, &control);
            if (controllen < 0)
                return NULL;
        }
    }
    if (addr != Py_None)
        self->sa = sa;
    self->salen = salen;
    if (controllen > 0)
        self->control = control;
    self->controllen = (socklen_t)controllen;
    Py_INCREF(addr);
    Py_XSETREF(self->addr, addr);
    Py_INCREF(source);
    Py_XSETREF(self->source, source);
    Py_RETURN_NONE;
}

/* Hand one protected datagram to the Python fallback (the event loop queues it). */
static void
target_fallback(SendTarget *t, const uint8_t *data, int len)
{
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, len);
    PyObject *res = NULL;
    if (bytes != NULL)
        res = PyObject_CallFunctionObjArgs(t->fallback, bytes, t->addr, NULL);
    Py_XDECREF(bytes);
    if (res == NULL) {
        PyErr_Clear();
        t->send_errors++;
        return;
    }
    Py_DECREF(res);
    t->tx_packets++;
    t->tx_bytes += (unsigned long long)len;
}

/* Protect buf[0:len] in place; the protected length, or -1 (counted as an SRTP error). */
static int
target_protect(SendTarget *t, uint8_t *buf, int len)
{
    int out = len;
    if (len > MAX_PLAIN || t->srtp.fn(t->srtp.ctx, buf, &out) != 0) {
        t->srtp_errors++;
        return -1;
    }
    return out;
}

/* The send batch: protected copies waiting for one sendmmsg(2) on one socket. Fanout.forward
 * fills it and flushes it when it is done, except inside Demux.drain (tx_defer), which flushes
 * after every RX_FLUSH (8) received datagrams and at the end of each received batch, so the
 * copies of several received packets leave in one system call.
 * Each entry keeps what it needs until it leaves: its own copy of the destination address and
 * source control message (a Python callback may re-address the target meanwhile), a reference
 * to its SendTarget (the counters; a callback may drop the last other one) and its
 * transport-cc sequence number (the send time is taken again when it really leaves). Every
 * other send on a SendTarget (send, send_rtcp, Forwarder.forward) and every Python callback
 * that may send on the socket (the Demux's STUN/DTLS path, SRTCP, a Python fan-out item)
 * flushes first, so datagrams to one destination keep their order. */
static uint8_t batch_buf[BATCH][BUF_SIZE];
static struct mmsghdr batch_msg[BATCH];
static struct iovec batch_iov[BATCH];
static SendTarget *batch_owner[BATCH]; /* strong references */
static struct sockaddr_storage batch_sa[BATCH];
static PktinfoControl batch_control[BATCH];
static uint32_t batch_twcc[BATCH]; /* 0x10000 | the stamped seq, 0: not stamped */
static int batch_len = 0;
static int batch_fd = -1;
static int tx_defer = 0; /* inside Demux.drain: Fanout.forward leaves the batch to the drain */
static unsigned long long tx_flushes = 0; /* sendmmsg batches flushed (tests, benchmarks) */

static void
batch_flush(void)
{
    int i = 0, n = batch_len;
    if (n == 0)
        return;
    SendTarget *owners[BATCH];
    memcpy(owners, batch_owner, sizeof(SendTarget *) * (size_t)n);
    batch_len = 0; /* before any callback (the fallback) could add to it */
    tx_flushes++;
    long long now = -1;
    for (int k = 0; k < n; k++) {
        if (batch_twcc[k] && owners[k]->twcc_sent != NULL) {
            TwccSent *slot = &owners[k]->twcc_sent[batch_twcc[k] & (TWCC_SENT - 1)];
            if (slot->seq == batch_twcc[k])
                slot->send_us = now < 0 ? (now = monotonic_us()) : now;
        }
    }
    while (i < n) {
        int r = sendmmsg(batch_fd, batch_msg + i, (unsigned int)(n - i), MSG_DONTWAIT);
        if (r > 0) {
            for (int k = i; k < i + r; k++) {
                owners[k]->tx_packets++;
                owners[k]->tx_bytes += batch_iov[k].iov_len;
            }
            i += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            PyObject *et, *ev, *tb; /* a caller's pending exception survives the callbacks */
            PyErr_Fetch(&et, &ev, &tb);
            for (; i < n; i++)
                target_fallback(owners[i], batch_iov[i].iov_base, (int)batch_iov[i].iov_len);
            PyErr_Restore(et, ev, tb);
            break;
        }
        owners[i]->send_errors++; /* this destination failed: skip it, go on */
        i++;
    }
    for (int k = 0; k < n; k++)
        Py_DECREF(owners[k]);
}

static int
send_one(SendTarget *t, const uint8_t *data, int len)
{
    batch_flush(); /* what waits in the batch leaves first: one order per destination */
    for (;;) {
        ssize_t r;
        if (t->controllen) {
            struct iovec iov = {.iov_base = (void *)data, .iov_len = (size_t)len};
            struct msghdr h = {.msg_name = &t->sa, .msg_namelen = t->salen, .msg_iov = &iov,
                               .msg_iovlen = 1, .msg_control = t->control.buf,
                               .msg_controllen = t->controllen};
            r = sendmsg(t->fd, &h, MSG_DONTWAIT);
        } else {
            r = sendto(t->fd, data, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&t->sa,
                       t->salen);
        }
        if (r >= 0) {
            t->tx_packets++;
            t->tx_bytes += (unsigned long long)len;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
            target_fallback(t, data, len);
            return 0;
        }
        t->send_errors++;
        return -1;
    }
}

static uint8_t single_buf[BUF_SIZE];

static PyObject *
SendTarget_send(SendTarget *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    batch_flush(); /* what waits in the batch leaves (and is stamped) first */
    if (!target_ready(self)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (view.len > MAX_PLAIN) {
        PyBuffer_Release(&view);
        self->srtp_errors++;
        Py_RETURN_NONE;
    }
    memcpy(single_buf, view.buf, (size_t)view.len);
    int len = (int)view.len;
    PyBuffer_Release(&view);
    TARGET_STAMP(self, single_buf, len);
    len = target_protect(self, single_buf, len);
    if (len >= 0)
        send_one(self, single_buf, len);
    Py_RETURN_NONE;
}

/* Largest plaintext RTCP packet send_rtcp protects: pylibsrtp's 1500-byte buffer minus its
 * SRTCP trailer room (4 + 16 + 128), the bound of SrtpSession.protect_rtcp. */
#define MAX_PLAIN_RTCP (BUF_SIZE - 148)

/* send_rtcp(packet): SRTCP-protect one (compound) RTCP packet and send it on the same socket,
 * address and source as RTP (the Python reference: target.SendTarget.send_rtcp, what the
 * transport's send_rtcp did in Python: pylibsrtp's protect_rtcp, then the socket's sendto). */
static PyObject *
SendTarget_send_rtcp(SendTarget *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    batch_flush();
    if (!target_ready(self)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (view.len > MAX_PLAIN_RTCP || self->rtcp_fn == NULL) {
        PyBuffer_Release(&view);
        self->srtp_errors++;
        Py_RETURN_NONE;
    }
    memcpy(single_buf, view.buf, (size_t)view.len);
    int len = (int)view.len;
    PyBuffer_Release(&view);
    if (self->rtcp_fn(self->srtp.ctx, single_buf, &len) != 0) {
        self->srtp_errors++;
        Py_RETURN_NONE;
    }
    send_one(self, single_buf, len);
    Py_RETURN_NONE;
}

static PyObject *
SendTarget_get_ready(SendTarget *self, void *closure)
{
    return PyBool_FromLong(target_ready(self));
}

static PyObject *
SendTarget_get_enabled(SendTarget *self, void *closure)
{
    return PyBool_FromLong(self->enabled);
}

static int
SendTarget_set_enabled(SendTarget *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete enabled");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0)
        return -1;
    self->enabled = v;
    return 0;
}

static PyMethodDef SendTarget_methods[] = {
    {"set_srtp", (PyCFunction)SendTarget_set_srtp, METH_VARARGS,
     "set_srtp(ctx, protect, keep, protect_rtcp=0): the libsrtp context, srtp_protect and "
     "srtp_protect_rtcp addresses; keep holds the owner alive."},
    {"clear_srtp", (PyCFunction)SendTarget_clear_srtp, METH_NOARGS, "Forget the SRTP context."},
    {"set_address", (PyCFunction)SendTarget_set_address, METH_VARARGS,
     "set_address(addr or None, source=None): where packets go, and the local address they "
     "leave from (None: the kernel chooses)."},
    {"send", (PyCFunction)SendTarget_send, METH_O,
     "send(packet): protect and send one RTP packet; nothing unless ready."},
    {"send_rtcp", (PyCFunction)SendTarget_send_rtcp, METH_O,
     "send_rtcp(packet): SRTCP-protect and send one RTCP packet; nothing unless ready."},
    {"set_twcc", (PyCFunction)SendTarget_set_twcc, METH_O,
     "set_twcc(ext_id): stamp transport-wide sequence numbers into this extension id "
     "(0: stop)."},
    {"twcc_lookup", (PyCFunction)SendTarget_twcc_lookup, METH_O,
     "twcc_lookup(seq) -> (send_us, size) or None."},
    {NULL}};

static PyMemberDef SendTarget_members[] = {
    {"fd", T_INT, offsetof(SendTarget, fd), READONLY, NULL},
    {"address", T_OBJECT, offsetof(SendTarget, addr), READONLY, NULL},
    {"source", T_OBJECT, offsetof(SendTarget, source), READONLY, NULL},
    {"tx_packets", T_ULONGLONG, offsetof(SendTarget, tx_packets), 0, NULL},
    {"tx_bytes", T_ULONGLONG, offsetof(SendTarget, tx_bytes), 0, NULL},
    {"srtp_errors", T_ULONGLONG, offsetof(SendTarget, srtp_errors), 0, NULL},
    {"send_errors", T_ULONGLONG, offsetof(SendTarget, send_errors), 0, NULL},
    {"twcc_id", T_INT, offsetof(SendTarget, twcc_id), READONLY, NULL},
    {"twcc_seq", T_USHORT, offsetof(SendTarget, twcc_seq), 0, NULL},
    {"twcc_stamped", T_ULONGLONG, offsetof(SendTarget, twcc_stamped), 0, NULL},
    {NULL}};

static PyGetSetDef SendTarget_getset[] = {
    {"ready", (getter)SendTarget_get_ready, NULL, "enabled, keyed and addressed", NULL},
    {"enabled", (getter)SendTarget_get_enabled, (setter)SendTarget_set_enabled,
     "True while the transport is connected", NULL},
    {NULL}};

static PyTypeObject SendTargetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.SendTarget",
    .tp_basicsize = sizeof(SendTarget),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One transport's outbound RTP: socket, SRTP context, selected address.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SendTarget_init,
    .tp_dealloc = (destructor)SendTarget_dealloc,
    .tp_traverse = (traverseproc)SendTarget_traverse,
    .tp_clear = (inquiry)SendTarget_clear,
    .tp_methods = SendTarget_methods,
    .tp_members = SendTarget_members,
    .tp_getset = SendTarget_getset,
};

/* ------------------------------------------------------------------------------------------ */
/* Rewriting                                                                                  */

static PyObject *slow_rewrite = NULL; /* zvonok.media.packets.rtp.rewrite_rtp */

enum { RW_OK = 0, RW_BAD = -1, RW_SLOW = -2 };

static inline uint16_t
rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t
rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Remap one-byte extension ids of out[start:end] in place, sliding kept elements over removed
 * ones (exactly rtp._compact_one_byte). Returns the end of the kept elements (end when nothing
 * moved), RW_SLOW when an id needs the two-byte form, RW_BAD for an overrun. */
static Py_ssize_t
compact_one_byte(uint8_t *out, Py_ssize_t i, Py_ssize_t end, const uint8_t *table)
{
    Py_ssize_t w = i;
    int moved = 0;
    while (i < end) {
        uint8_t b = out[i];
        if (b == 0) {
            i++;
            continue;
        }
        int eid = b >> 4;
        if (eid == 15)
            break;
        Py_ssize_t n = (b & 0x0F) + 2;
        if (i + n > end)
            return RW_BAD;
        uint8_t nid = table[eid];
        if (nid) {
            if (nid > 14)
                return RW_SLOW;
            if (w != i) {
                memmove(out + w + 1, out + i + 1, (size_t)(n - 1));
                moved = 1;
            }
            out[w] = (uint8_t)(nid << 4 | (b & 0x0F));
            w += n;
        } else {
            moved = 1;
        }
        i += n;
    }
    return moved ? w : end;
}

/* Copy packet into out with the extension ids remapped (exactly rtp.rewrite_rtp, minus the
 * header tail). Returns the new length, RW_BAD or RW_SLOW. */
static Py_ssize_t
rewrite_into(const uint8_t *in, Py_ssize_t len, uint8_t *out, const uint8_t *table)
{
    if (len < 12)
        return RW_BAD;
    if (len > BUF_SIZE)
        return RW_SLOW; /* cannot be protected anyway; let the reference path decide */
    memcpy(out, in, (size_t)len);
    if (!(in[0] & 0x10))
        return len;
    Py_ssize_t pos = 12 + (in[0] & 0x0F) * 4;
    if (pos + 4 > len)
        return RW_BAD;
    uint16_t profile = rd16(out + pos);
    Py_ssize_t start = pos + 4;
    Py_ssize_t end = start + (Py_ssize_t)rd16(out + pos + 2) * 4;
    if (end > len)
        return RW_BAD;
    if (profile != EXT_ONE_BYTE) {
        if ((profile & 0xFFF0) == 0x1000)
            return RW_SLOW; /* two-byte form: rare, rebuilt by the Python reference */
        return len;         /* a profile we do not understand passes untouched */
    }
    Py_ssize_t kept_end = compact_one_byte(out, start, end, table);
    if (kept_end < 0)
        return kept_end;
    if (kept_end == end)
        return len;
    if (kept_end == start) { /* nothing survived: no block, X cleared */
        memmove(out + pos, out + end, (size_t)(len - end));
        out[0] &= 0xEF;
        return len - (end - pos);
    }
    Py_ssize_t words = (kept_end - start + 3) >> 2;
    Py_ssize_t new_end = start + 4 * words;
    memset(out + kept_end, 0, (size_t)(new_end - kept_end));
    if (new_end < end) {
        memmove(out + new_end, out + end, (size_t)(len - end));
        len -= end - new_end;
        out[pos + 2] = (uint8_t)(words >> 8);
        out[pos + 3] = (uint8_t)(words & 0xFF);
    }
    return len;
}

static inline void
pack_tail(uint8_t *out, uint8_t first_pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
    out[1] = first_pt;
    out[2] = (uint8_t)(seq >> 8);
    out[3] = (uint8_t)seq;
    out[4] = (uint8_t)(ts >> 24);
    out[5] = (uint8_t)(ts >> 16);
    out[6] = (uint8_t)(ts >> 8);
    out[7] = (uint8_t)ts;
    out[8] = (uint8_t)(ssrc >> 24);
    out[9] = (uint8_t)(ssrc >> 16);
    out[10] = (uint8_t)(ssrc >> 8);
    out[11] = (uint8_t)ssrc;
}

/* ------------------------------------------------------------------------------------------ */
/* Forwarder                                                                                  */

typedef struct {
    PyObject_HEAD
    SendTarget *target;
    PyObject *ext_obj; /* the 256-byte ext id table (bytes), for the slow path */
    uint32_t ssrc;
    int16_t pts[128];
    uint8_t ext[256];
    char video, blocked, held;
    int seq_offset, sync_in_seq, last_out_seq; /* 16-bit values */
    unsigned long long ts_offset;              /* 32-bit value */
    unsigned long long packets_sent, octets_sent, dropped;
    /* VP8 index continuity (forwarder.py Forwarder._continue_vp8): which input payload types
     * are VP8, the offsets added (15/8/5 bits), the newest values sent (-1: none), and whether
     * the next VP8 packet sent sets the offsets (after a restart). */
    uint8_t vp8[128];
    char vp8_resync;
    int pid_offset, tl0_offset, keyidx_offset;
    int last_pid, last_tl0, last_keyidx;
} Forwarder;

static PyTypeObject ForwarderType;

static int
Forwarder_init(Forwarder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"target", "ssrc", "payload_types", "ext_table", "video",
                             "ts_offset", "last_out_seq", "vp8_payload_types", NULL};
    PyObject *target, *pts, *ext, *vp8 = NULL;
    unsigned long long ssrc, ts_offset;
    int video, last_out_seq;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!KO!SpKi|O", kwlist, &SendTargetType,
                                     &target, &ssrc, &PyDict_Type, &pts, &ext, &video,
                                     &ts_offset, &last_out_seq, &vp8))
        return -1;
    memset(self->vp8, 0, sizeof self->vp8);
    if (vp8 != NULL) {
        PyObject *seq = PySequence_Fast(vp8, "vp8_payload_types must be a sequence of ints");
        if (seq == NULL)
            return -1;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            long k = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (k == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
            if (k < 0 || k > 127) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "payload types must be 0..127");
                return -1;
            }
            self->vp8[k] = 1;
        }
        Py_DECREF(seq);
    }
    if (PyBytes_GET_SIZE(ext) != 256) {
        PyErr_SetString(PyExc_ValueError, "ext_table must be 256 bytes");
        return -1;
    }
    for (int i = 0; i < 128; i++)
        self->pts[i] = -1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(pts, &pos, &key, &value)) {
        long k = PyLong_AsLong(key), v = PyLong_AsLong(value);
        if ((k == -1 || v == -1) && PyErr_Occurred())
            return -1;
        if (k < 0 || k > 127 || v < 0 || v > 127) {
            PyErr_SetString(PyExc_ValueError, "payload types must be 0..127");
            return -1;
        }
        self->pts[k] = (int16_t)v;
    }
    memcpy(self->ext, PyBytes_AS_STRING(ext), 256);
    Py_INCREF(target);
    Py_XSETREF(self->target, (SendTarget *)target);
    Py_INCREF(ext);
    Py_XSETREF(self->ext_obj, ext);
    self->ssrc = (uint32_t)ssrc;
    self->video = (char)video;
    self->blocked = 1;
    self->held = 0;
    self->ts_offset = ts_offset & 0xFFFFFFFFu;
    self->last_out_seq = last_out_seq & 0xFFFF;
    self->seq_offset = 0;
    self->sync_in_seq = 0;
    self->vp8_resync = 0;
    self->pid_offset = self->tl0_offset = self->keyidx_offset = 0;
    self->last_pid = self->last_tl0 = self->last_keyidx = -1;
    return 0;
}

static int
Forwarder_traverse(Forwarder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->target);
    Py_VISIT(self->ext_obj);
    return 0;
}

static int
Forwarder_clear(Forwarder *self)
{
    Py_CLEAR(self->target);
    Py_CLEAR(self->ext_obj);
    return 0;
}

static void
Forwarder_dealloc(Forwarder *self)
{
    PyObject_GC_UnTrack(self);
    Forwarder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Drop a packet without leaving a hole in our numbering when it is the next in order. */
static void
forwarder_skip(Forwarder *f, int in_seq)
{
    f->dropped++;
    if (((in_seq + f->seq_offset - f->last_out_seq) & 0xFFFF) == 1) {
        f->seq_offset = (f->seq_offset - 1) & 0xFFFF;
        f->sync_in_seq = (in_seq + 1) & 0xFFFF;
    }
}

/* The Python reference rewrite for the rare cases (two-byte extensions). */
static Py_ssize_t
rewrite_slow(Forwarder *f, PyObject *packet, int pt, int seq, uint32_t ts, uint8_t *out)
{
    if (slow_rewrite == NULL)
        return RW_BAD;
    PyObject *res = PyObject_CallFunction(slow_rewrite, "OIiiIO", packet, f->ssrc, pt, seq, ts,
                                          f->ext_obj);
    if (res == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            PyErr_WriteUnraisable(slow_rewrite);
        PyErr_Clear();
        return RW_BAD;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(res, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_DECREF(res);
        return RW_BAD;
    }
    Py_ssize_t len = view.len;
    if (len > BUF_SIZE)
        len = BUF_SIZE + 1; /* too long to protect: the caller counts it */
    else
        memcpy(out, view.buf, (size_t)len);
    PyBuffer_Release(&view);
    Py_DECREF(res);
    return len;
}

/* The VP8 payload descriptor (RFC 7741 §4.2) of the rewritten copy out[0:n]: offset its
 * PictureID / TL0PICIDX / KEYIDX (the offsets set first after a restart) and note the newest
 * values sent. Exactly Forwarder._continue_vp8 (rtp_payload_bounds, vp8_picture_fields and
 * offset_vp8_indices in Python): a truncated descriptor or inconsistent padding is left alone. */
static void
forwarder_vp8(Forwarder *f, uint8_t *p, Py_ssize_t n)
{
    Py_ssize_t pos = 12 + (p[0] & 0x0F) * 4;
    if (p[0] & 0x10) {
        if (pos + 4 > n)
            return;
        pos += 4 + (Py_ssize_t)rd16(p + pos + 2) * 4;
    }
    if (pos > n)
        return;
    Py_ssize_t end = n;
    if (p[0] & 0x20) {
        int pad = end > pos ? p[end - 1] : 0;
        if (pad == 0 || pos + pad > end)
            return;
        end -= pad;
    }
    if (pos >= end)
        return;
    if (!(p[pos] & 0x80))
        goto fields; /* no X byte: no indices (a restart still ends here) */
    if (pos + 1 >= end)
        return;
    Py_ssize_t pid_at = -1, tl0_at = -1, key_at = -1;
    uint8_t x = p[pos + 1];
    pos += 2;
    if (x & 0x80) {
        if (pos >= end || ((p[pos] & 0x80) && pos + 1 >= end))
            return;
        pid_at = pos;
        pos += (p[pos] & 0x80) ? 2 : 1;
    }
    if (x & 0x40) {
        if (pos >= end)
            return;
        tl0_at = pos++;
    }
    if (x & 0x30) {
        if (pos >= end)
            return;
        if (x & 0x10)
            key_at = pos;
    }
    if (f->vp8_resync) {
        f->vp8_resync = 0;
        f->pid_offset = f->tl0_offset = f->keyidx_offset = 0;
        if (pid_at >= 0 && f->last_pid >= 0) {
            int pid = p[pid_at] & 0x7F;
            if (p[pid_at] & 0x80)
                pid = pid << 8 | p[pid_at + 1];
            f->pid_offset = (f->last_pid + 1 - pid) & 0x7FFF;
        }
        if (tl0_at >= 0 && f->last_tl0 >= 0)
            f->tl0_offset = (f->last_tl0 + 1 - p[tl0_at]) & 0xFF;
        if (key_at >= 0 && f->last_keyidx >= 0)
            f->keyidx_offset = (f->last_keyidx + 1 - p[key_at]) & 0x1F;
    }
    if (pid_at >= 0) {
        int off = f->pid_offset & 0x7FFF, last = f->last_pid;
        if (p[pid_at] & 0x80) {
            int pid = (p[pid_at] & 0x7F) << 8 | p[pid_at + 1];
            if (off) {
                pid = (pid + off) & 0x7FFF;
                p[pid_at] = (uint8_t)(0x80 | pid >> 8);
                p[pid_at + 1] = (uint8_t)pid;
            }
            if (last < 0 || ((pid - last) & 0x7FFF) < 0x4000)
                f->last_pid = pid;
        } else {
            int pid = p[pid_at];
            if (off) {
                pid = (pid + off) & 0x7F;
                p[pid_at] = (uint8_t)pid;
            }
            if (last < 0)
                f->last_pid = pid;
            else if (((pid - last) & 0x7F) < 0x40)
                f->last_pid = (last + ((pid - last) & 0x7F)) & 0x7FFF;
        }
    }
    if (tl0_at >= 0) {
        int off = f->tl0_offset & 0xFF, tl0 = p[tl0_at];
        if (off) {
            tl0 = (tl0 + off) & 0xFF;
            p[tl0_at] = (uint8_t)tl0;
        }
        if (f->last_tl0 < 0 || ((tl0 - f->last_tl0) & 0xFF) < 0x80)
            f->last_tl0 = tl0;
    }
    if (key_at >= 0) {
        int off = f->keyidx_offset & 0x1F, key = p[key_at] & 0x1F;
        if (off) {
            key = (key + off) & 0x1F;
            p[key_at] = (uint8_t)((p[key_at] & 0xE0) | key);
        }
        if (f->last_keyidx < 0 || ((key - f->last_keyidx) & 0x1F) < 0x10)
            f->last_keyidx = key;
    }
    return;
fields:
    if (f->vp8_resync) { /* a descriptor without indices: the offsets start from 0 */
        f->vp8_resync = 0;
        f->pid_offset = f->tl0_offset = f->keyidx_offset = 0;
    }
}

/* Rewrite one copy into out. Returns its length, or -1 when nothing is to be sent (dropped,
 * or the target is not ready: counted exactly like the Python reference). */
static Py_ssize_t
forwarder_rewrite(Forwarder *f, PyObject *packet, const uint8_t *in, Py_ssize_t len,
                  int keyframe, uint8_t *out)
{
    int in_seq = in[2] << 8 | in[3];
    if (f->blocked) {
        if (f->held)
            return -1;
        /* video starts at a keyframe the subscriber gets: one its transport cannot send yet
         * (DTLS/SRTP not done) would start it on frames no decoder can use (Forwarder.forward) */
        if (f->video && (!keyframe || !target_ready(f->target))) {
            f->dropped++;
            return -1;
        }
        f->seq_offset = (f->last_out_seq + 1 - in_seq) & 0xFFFF;
        f->sync_in_seq = in_seq;
        f->blocked = 0;
        f->vp8_resync = 1;
    }
    int since_sync = (in_seq - f->sync_in_seq) & 0xFFFF;
    if (since_sync >= 0x8000) {
        f->dropped++;
        return -1;
    }
    if (since_sync > SYNC_TRAIL)
        f->sync_in_seq = (in_seq - SYNC_TRAIL) & 0xFFFF;
    int pt = f->pts[in[1] & 0x7F];
    if (pt < 0) {
        forwarder_skip(f, in_seq);
        return -1;
    }
    uint32_t ts = (uint32_t)((rd32(in + 4) + f->ts_offset) & 0xFFFFFFFFu);
    int seq = (in_seq + f->seq_offset) & 0xFFFF;
    Py_ssize_t n = rewrite_into(in, len, out, f->ext);
    if (n == RW_SLOW)
        n = rewrite_slow(f, packet, pt, seq, ts, out);
    else if (n >= 0)
        pack_tail(out, (uint8_t)((in[1] & 0x80) | pt), (uint16_t)seq, ts, f->ssrc);
    if (n < 0) {
        forwarder_skip(f, in_seq);
        return -1;
    }
    if (((seq - f->last_out_seq) & 0xFFFF) < 0x8000)
        f->last_out_seq = seq;
    f->packets_sent++;
    if (f->vp8[in[1] & 0x7F] && n <= BUF_SIZE)
        forwarder_vp8(f, out, n);
    Py_ssize_t header = 12 + (out[0] & 0x0F) * 4;
    if ((out[0] & 0x10) && header + 4 <= n)
        header += 4 + (Py_ssize_t)rd16(out + header + 2) * 4;
    f->octets_sent += (unsigned long long)(n - header);
    if (!target_ready(f->target))
        return -1;
    if (n > MAX_PLAIN) {
        f->target->srtp_errors++;
        return -1;
    }
    return n;
}

static PyObject *
Forwarder_forward(Forwarder *self, PyObject *args)
{
    PyObject *packet;
    int keyframe = 0;
    if (!PyArg_ParseTuple(args, "S|p", &packet, &keyframe))
        return NULL;
    batch_flush(); /* what waits in the batch leaves (and is stamped) first */
    Py_ssize_t n = forwarder_rewrite(self, packet, (const uint8_t *)PyBytes_AS_STRING(packet),
                                     PyBytes_GET_SIZE(packet), keyframe, single_buf);
    if (n >= 0) {
        TARGET_STAMP(self->target, single_buf, n);
        int len = target_protect(self->target, single_buf, (int)n);
        if (len >= 0)
            send_one(self->target, single_buf, len);
    }
    Py_RETURN_NONE;
}

static PyMemberDef Forwarder_members[] = {
    {"target", T_OBJECT, offsetof(Forwarder, target), READONLY, NULL},
    {"ssrc", T_UINT, offsetof(Forwarder, ssrc), READONLY, NULL},
    {"video", T_BOOL, offsetof(Forwarder, video), READONLY, NULL},
    {"blocked", T_BOOL, offsetof(Forwarder, blocked), 0, NULL},
    {"held", T_BOOL, offsetof(Forwarder, held), 0, NULL},
    {"seq_offset", T_INT, offsetof(Forwarder, seq_offset), 0, NULL},
    {"sync_in_seq", T_INT, offsetof(Forwarder, sync_in_seq), 0, NULL},
    {"last_out_seq", T_INT, offsetof(Forwarder, last_out_seq), 0, NULL},
    {"ts_offset", T_ULONGLONG, offsetof(Forwarder, ts_offset), READONLY, NULL},
    {"packets_sent", T_ULONGLONG, offsetof(Forwarder, packets_sent), 0, NULL},
    {"octets_sent", T_ULONGLONG, offsetof(Forwarder, octets_sent), 0, NULL},
    {"dropped", T_ULONGLONG, offsetof(Forwarder, dropped), 0, NULL},
    {"pid_offset", T_INT, offsetof(Forwarder, pid_offset), 0, NULL},
    {"tl0_offset", T_INT, offsetof(Forwarder, tl0_offset), 0, NULL},
    {"keyidx_offset", T_INT, offsetof(Forwarder, keyidx_offset), 0, NULL},
    {"last_pid", T_INT, offsetof(Forwarder, last_pid), 0, NULL},
    {"last_tl0", T_INT, offsetof(Forwarder, last_tl0), 0, NULL},
    {"last_keyidx", T_INT, offsetof(Forwarder, last_keyidx), 0, NULL},
    {"vp8_resync", T_BOOL, offsetof(Forwarder, vp8_resync), 0, NULL},
    {NULL}};

static PyMethodDef Forwarder_methods[] = {
    {"forward", (PyCFunction)Forwarder_forward, METH_VARARGS,
     "forward(packet, keyframe=False): rewrite, protect and send one copy."},
    {NULL}};

static PyTypeObject ForwarderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.Forwarder",
    .tp_basicsize = sizeof(Forwarder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One consumer's rewriting state: offsets, payload type and extension maps.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Forwarder_init,
    .tp_dealloc = (destructor)Forwarder_dealloc,
    .tp_traverse = (traverseproc)Forwarder_traverse,
    .tp_clear = (inquiry)Forwarder_clear,
    .tp_members = Forwarder_members,
    .tp_methods = Forwarder_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* Fanout                                                                                     */

typedef struct {
    PyObject_HEAD
    PyObject *items; /* tuple of Forwarder (or any object with .forward(packet, keyframe)) */
} Fanout;

static int
Fanout_init(Fanout *self, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ""))
        return -1;
    Py_XSETREF(self->items, PyTuple_New(0));
    return self->items == NULL ? -1 : 0;
}

static int
Fanout_traverse(Fanout *self, visitproc visit, void *arg)
{
    Py_VISIT(self->items);
    return 0;
}

static int
Fanout_clear(Fanout *self)
{
    Py_CLEAR(self->items);
    return 0;
}

static void
Fanout_dealloc(Fanout *self)
{
    PyObject_GC_UnTrack(self);
    Fanout_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Fanout_set(Fanout *self, PyObject *items)
{
    PyObject *t = PySequence_Tuple(items);
    if (t == NULL)
        return NULL;
    Py_XSETREF(self->items, t);
    Py_RETURN_NONE;
}

static PyObject *
Fanout_forward(PyObject *fanout, PyObject *const *args, Py_ssize_t nargs)
{
    Fanout *self = (Fanout *)fanout;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "forward(packet: bytes, keyframe: bool)");
        return NULL;
    }
    PyObject *packet = args[0];
    int keyframe = PyObject_IsTrue(args[1]);
    if (keyframe < 0)
        return NULL;
    const uint8_t *in = (const uint8_t *)PyBytes_AS_STRING(packet);
    Py_ssize_t len = PyBytes_GET_SIZE(packet);
    PyObject *items = self->items;
    Py_INCREF(items); /* a Python item may replace self->items while we iterate */
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    PyObject *error = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        if (Py_TYPE(item) != &ForwarderType) {
            batch_flush(); /* it may send to a destination copies are waiting for */
            PyObject *res = PyObject_CallMethod(item, "forward", "OO", packet,
                                                keyframe ? Py_True : Py_False);
            if (res == NULL) {
                error = item;
                break;
            }
            Py_DECREF(res);
            continue;
        }
        Forwarder *f = (Forwarder *)item;
        SendTarget *t = f->target;
        if (batch_len == BATCH || (batch_len > 0 && t->fd != batch_fd))
            batch_flush();
        uint8_t *out = batch_buf[batch_len];
        Py_ssize_t n = forwarder_rewrite(f, packet, in, len, keyframe, out);
        if (n < 0)
            continue;
        uint32_t twcc = t->twcc_id ? twcc_stamp(t, out, n) : 0;
        int plen = target_protect(t, out, (int)n);
        if (plen < 0)
            continue;
        int k = batch_len;
        batch_fd = t->fd;
        batch_iov[k].iov_base = out;
        batch_iov[k].iov_len = (size_t)plen;
        memcpy(&batch_sa[k], &t->sa, t->salen);
        struct msghdr *h = &batch_msg[k].msg_hdr;
        h->msg_name = &batch_sa[k];
        h->msg_namelen = t->salen;
        h->msg_iov = &batch_iov[k];
        h->msg_iovlen = 1;
        if (t->controllen) {
            memcpy(batch_control[k].buf, t->control.buf, t->controllen);
            h->msg_control = batch_control[k].buf;
        } else {
            h->msg_control = NULL;
        }
        h->msg_controllen = t->controllen;
        h->msg_flags = 0;
        Py_INCREF(t);
        batch_owner[k] = t;
        batch_twcc[k] = twcc;
        batch_len = k + 1;
    }
    if (!tx_defer)
        batch_flush();
    Py_DECREF(items);
    if (error != NULL)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Fanout_get_items(Fanout *self, void *closure)
{
    Py_INCREF(self->items);
    return self->items;
}

static PyMethodDef Fanout_methods[] = {
    {"set", (PyCFunction)Fanout_set, METH_O, "set(forwarders): replace the fan-out list."},
    {"forward", (PyCFunction)(void (*)(void))Fanout_forward, METH_FASTCALL,
     "forward(packet, keyframe): one copy per forwarder, sent with one sendmmsg."},
    {NULL}};

static PyGetSetDef Fanout_getset[] = {
    {"items", (getter)Fanout_get_items, NULL, "the forwarders, in order", NULL}, {NULL}};

static PyTypeObject FanoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.Fanout",
    .tp_basicsize = sizeof(Fanout),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One producer's forwarders; forward() sends the whole fan-out with sendmmsg.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Fanout_init,
    .tp_dealloc = (destructor)Fanout_dealloc,
    .tp_traverse = (traverseproc)Fanout_traverse,
    .tp_clear = (inquiry)Fanout_clear,
    .tp_methods = Fanout_methods,
    .tp_getset = Fanout_getset,
};


/* ------------------------------------------------------------------------------------------ */
/* Inbound: RtpDispatcher (one session's RTP by SSRC), Receiver (one transport's SRTP in),     */
/* Demux (the worker socket's datagram_received).                                              */

/* The SSRC keys a dispatcher made last, by a hash of the SSRC: the int for the dict lookup is
 * made once per SSRC seen, not once per packet. Only keys are kept: the dict is asked every time,
 * so a handler added, removed or replaced counts from the next packet. */
#define SSRC_KEYS 16

typedef struct {
    PyObject_HEAD
    PyObject *handlers; /* dict: media/RTX SSRC (int) -> callable(packet) */
    PyObject *unknown;  /* callable(ssrc, packet) for an SSRC no producer claims */
    unsigned long long packets_in, bytes_in, dropped, unknown_ssrc;
    PyObject *keys[SSRC_KEYS]; /* int objects, or NULL */
    uint32_t key_ssrc[SSRC_KEYS];
} RtpDispatcher;

static PyTypeObject RtpDispatcherType;

static int
RtpDispatcher_init(RtpDispatcher *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"handlers", "unknown", NULL};
    PyObject *handlers, *unknown;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O", kwlist, &PyDict_Type, &handlers,
                                     &unknown))
        return -1;
    Py_INCREF(handlers);
    Py_XSETREF(self->handlers, handlers);
    Py_INCREF(unknown);
    Py_XSETREF(self->unknown, unknown);
    return 0;
}

static int
RtpDispatcher_traverse(RtpDispatcher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->handlers);
    Py_VISIT(self->unknown);
    return 0;
}

static int
RtpDispatcher_clear(RtpDispatcher *self)
{
    Py_CLEAR(self->handlers);
    Py_CLEAR(self->unknown);
    for (int i = 0; i < SSRC_KEYS; i++)
        Py_CLEAR(self->keys[i]);
    return 0;
}

static void
RtpDispatcher_dealloc(RtpDispatcher *self)
{
    PyObject_GC_UnTrack(self);
    RtpDispatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hand one decrypted RTP packet (bytes) to the producer owning its SSRC. 0, or -1 with an
 * exception set (raised by a handler). */
static int
dispatch_rtp(RtpDispatcher *d, PyObject *packet)
{
    Py_ssize_t n = PyBytes_GET_SIZE(packet);
    d->packets_in++;
    d->bytes_in += (unsigned long long)n;
    if (n < 12) {
        d->dropped++;
        return 0;
    }
    if (d->handlers == NULL)
        return 0;
    uint32_t ssrc = rd32((const uint8_t *)PyBytes_AS_STRING(packet) + 8);
    unsigned slot = (ssrc ^ (ssrc >> 16)) & (SSRC_KEYS - 1);
    PyObject *key = d->keys[slot];
    if (key == NULL || d->key_ssrc[slot] != ssrc) {
        key = PyLong_FromUnsignedLong(ssrc);
        if (key == NULL)
            return -1;
        Py_XSETREF(d->keys[slot], key);
        d->key_ssrc[slot] = ssrc;
    }
    Py_INCREF(key); /* a handler may dispatch again and replace the slot's key */
    PyObject *handler = PyDict_GetItemWithError(d->handlers, key); /* borrowed */
    PyObject *res;
    if (handler != NULL) {
        Py_INCREF(handler);
        res = PyObject_CallOneArg(handler, packet);
        Py_DECREF(handler);
    } else if (PyErr_Occurred()) {
        res = NULL;
    } else {
        d->unknown_ssrc++;
        res = PyObject_CallFunctionObjArgs(d->unknown, key, packet, NULL);
    }
    Py_DECREF(key);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

static PyObject *
RtpDispatcher_dispatch(RtpDispatcher *self, PyObject *packet)
{
    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    if (dispatch_rtp(self, packet) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMemberDef RtpDispatcher_members[] = {
    {"handlers", T_OBJECT, offsetof(RtpDispatcher, handlers), READONLY, NULL},
    {"packets_in", T_ULONGLONG, offsetof(RtpDispatcher, packets_in), 0, NULL},
    {"bytes_in", T_ULONGLONG, offsetof(RtpDispatcher, bytes_in), 0, NULL},
    {"dropped", T_ULONGLONG, offsetof(RtpDispatcher, dropped), 0, NULL},
    {"unknown_ssrc", T_ULONGLONG, offsetof(RtpDispatcher, unknown_ssrc), 0, NULL},
    {NULL}};

static PyMethodDef RtpDispatcher_methods[] = {
    {"dispatch", (PyCFunction)RtpDispatcher_dispatch, METH_O,
     "dispatch(packet): to the handler of its SSRC, or to unknown(ssrc, packet)."},
    {NULL}};

static PyTypeObject RtpDispatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.RtpDispatcher",
    .tp_basicsize = sizeof(RtpDispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One session's decrypted RTP, routed by SSRC to its producers.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RtpDispatcher_init,
    .tp_dealloc = (destructor)RtpDispatcher_dealloc,
    .tp_traverse = (traverseproc)RtpDispatcher_traverse,
    .tp_clear = (inquiry)RtpDispatcher_clear,
    .tp_members = RtpDispatcher_members,
    .tp_methods = RtpDispatcher_methods,
};

typedef struct {
    PyObject_HEAD
    SrtpBinding srtp; /* srtp_unprotect on the inbound context */
    PyObject *rtcp;           /* callable(datagram): the transport's SRTCP path */
    PyObject *deliver;        /* callable(packet) for decrypted RTP */
    RtpDispatcher *dispatcher; /* deliver's RtpDispatcher when it is one (called directly) */
    unsigned long long rx_packets, rx_bytes, srtp_errors, rx_dropped;
    int twcc_id;               /* the publisher's transport-cc extension id, 0: not recorded */
    char twcc_idle;            /* the last drain found nothing: wake on the next arrival */
    PyObject *twcc_wake;       /* callable() or None */
    TwccArrival *twcc_ring;    /* TWCC_ARRIVALS slots, allocated by set_twcc */
    int twcc_head, twcc_count; /* oldest slot, slots used */
    uint32_t twcc_ssrc;        /* the SSRC of the last packet recorded */
    unsigned long long twcc_recorded, twcc_overflow;
} Receiver;

/* Remember (transport-wide seq, arrival) of a decrypted packet carrying the element; wake the
 * transport when it sleeps (the Python reference: receiver.Receiver._record). 0 or -1. */
static int
twcc_record(Receiver *r, const uint8_t *buf, Py_ssize_t len)
{
    int vlen;
    Py_ssize_t at = find_extension(buf, len, r->twcc_id, &vlen);
    if (at < 0 || vlen < 2)
        return 0;
    int slot;
    if (r->twcc_count == TWCC_ARRIVALS) { /* nobody drained: the oldest goes */
        slot = r->twcc_head;
        r->twcc_head = (r->twcc_head + 1) & (TWCC_ARRIVALS - 1);
        r->twcc_overflow++;
    } else {
        slot = (r->twcc_head + r->twcc_count) & (TWCC_ARRIVALS - 1);
        r->twcc_count++;
    }
    r->twcc_ring[slot].at_us = monotonic_us();
    r->twcc_ring[slot].seq = rd16(buf + at);
    r->twcc_ssrc = rd32(buf + 8);
    r->twcc_recorded++;
    if (r->twcc_idle && r->twcc_wake != Py_None && r->twcc_wake != NULL) {
        r->twcc_idle = 0;
        PyObject *res = PyObject_CallNoArgs(r->twcc_wake);
        if (res == NULL)
            return -1;
        Py_DECREF(res);
    }
    return 0;
}

static PyTypeObject ReceiverType;

static int
Receiver_init(Receiver *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rtcp", "deliver", NULL};
    PyObject *rtcp, *deliver;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", kwlist, &rtcp, &deliver))
        return -1;
    if (!PyCallable_Check(rtcp) || !PyCallable_Check(deliver)) {
        PyErr_SetString(PyExc_TypeError, "rtcp and deliver must be callable");
        return -1;
    }
    Py_INCREF(rtcp);
    Py_XSETREF(self->rtcp, rtcp);
    Py_INCREF(deliver);
    Py_XSETREF(self->deliver, deliver);
    Py_CLEAR(self->dispatcher);
    if (PyCFunction_Check(deliver)) {
        PyObject *owner = PyCFunction_GET_SELF(deliver);
        if (owner != NULL && Py_TYPE(owner) == &RtpDispatcherType) {
            Py_INCREF(owner);
            self->dispatcher = (RtpDispatcher *)owner;
        }
    }
    return 0;
}

static int
Receiver_traverse(Receiver *self, visitproc visit, void *arg)
{
    Py_VISIT(self->twcc_wake);
    Py_VISIT(self->srtp.keep);
    Py_VISIT(self->rtcp);
    Py_VISIT(self->deliver);
    Py_VISIT(self->dispatcher);
    return 0;
}

static int
Receiver_clear(Receiver *self)
{
    Py_CLEAR(self->twcc_wake);
    srtp_unbind(&self->srtp);
    Py_CLEAR(self->rtcp);
    Py_CLEAR(self->deliver);
    Py_CLEAR(self->dispatcher);
    return 0;
}

static void
Receiver_dealloc(Receiver *self)
{
    PyObject_GC_UnTrack(self);
    Receiver_clear(self);
    PyMem_Free(self->twcc_ring);
    self->twcc_ring = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Receiver_set_srtp(Receiver *self, PyObject *args)
{
    return srtp_bind(&self->srtp, args, "unprotect");
}

static PyObject *
Receiver_clear_srtp(Receiver *self, PyObject *Py_UNUSED(ignored))
{
    srtp_unbind(&self->srtp);
    Py_RETURN_NONE;
}

/* set_twcc(ext_id, wake): record arrivals of packets carrying this extension id (1-255; 0: stop);
 * ``wake()`` is called on the first arrival after a drain that found nothing. */
static PyObject *
Receiver_set_twcc(Receiver *self, PyObject *args)
{
    int id;
    PyObject *wake = Py_None;
    if (!PyArg_ParseTuple(args, "i|O:set_twcc", &id, &wake))
        return NULL;
    if (id < 0 || id > 255) {
        PyErr_SetString(PyExc_ValueError, "transport-cc extension id must be 0..255");
        return NULL;
    }
    if (wake != Py_None && !PyCallable_Check(wake)) {
        PyErr_SetString(PyExc_TypeError, "wake must be callable or None");
        return NULL;
    }
    if (id && self->twcc_ring == NULL) {
        self->twcc_ring = PyMem_Calloc(TWCC_ARRIVALS, sizeof(TwccArrival));
        if (self->twcc_ring == NULL)
            return PyErr_NoMemory();
        self->twcc_idle = 1;
    }
    Py_INCREF(wake);
    Py_XSETREF(self->twcc_wake, wake);
    self->twcc_id = id;
    Py_RETURN_NONE;
}

/* twcc_drain() -> [(seq, arrival µs), ...] in arrival order, emptying the ring; an empty drain
 * puts the receiver to sleep (the next arrival calls wake). */
static PyObject *
Receiver_twcc_drain(Receiver *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(self->twcc_count);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < self->twcc_count; i++) {
        TwccArrival *a = &self->twcc_ring[(self->twcc_head + i) & (TWCC_ARRIVALS - 1)];
        PyObject *item = Py_BuildValue("(iL)", (int)a->seq, a->at_us);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    if (self->twcc_count == 0)
        self->twcc_idle = 1;
    self->twcc_head = self->twcc_count = 0;
    return out;
}

static uint8_t rx_buf[BUF_SIZE];

/* One SRTP/SRTCP datagram from this transport's peer (exactly transport.handle_media).
 * ``buf`` holds the datagram's ``n`` bytes and may be decrypted in place (a private copy);
 * ``data`` is the same datagram as bytes, or NULL (made here when SRTCP needs it). */
static int
receiver_take(Receiver *r, uint8_t *buf, Py_ssize_t n, PyObject *data)
{
    if (r->srtp.ctx == NULL) { /* before DTLS is done: nothing to decrypt */
        r->rx_dropped++;
        return 0;
    }
    if (n < 12) {
        r->srtp_errors++;
        return 0;
    }
    if (buf[1] > 191 && buf[1] < 224) { /* RFC 5761 §4: RTCP */
        PyObject *res;
        batch_flush(); /* the Python path may answer (feedback) */
        if (data != NULL) {
            res = PyObject_CallOneArg(r->rtcp, data);
        } else {
            PyObject *copy = PyBytes_FromStringAndSize((const char *)buf, n);
            if (copy == NULL)
                return -1;
            res = PyObject_CallOneArg(r->rtcp, copy);
            Py_DECREF(copy);
        }
        if (res == NULL)
            return -1;
        Py_DECREF(res);
        return 0;
    }
    int len = (int)n;
    if (n > BUF_SIZE) {
        r->srtp_errors++;
        return 0;
    }
    if (r->srtp.fn(r->srtp.ctx, buf, &len) != 0) {
        r->srtp_errors++;
        return 0;
    }
    r->rx_packets++;
    r->rx_bytes += (unsigned long long)n;
    if (r->twcc_id && twcc_record(r, buf, len) < 0)
        return -1;
    PyObject *packet = PyBytes_FromStringAndSize((const char *)buf, len);
    if (packet == NULL)
        return -1;
    int status = 0;
    if (r->dispatcher != NULL) {
        status = dispatch_rtp(r->dispatcher, packet);
    } else {
        PyObject *res = PyObject_CallOneArg(r->deliver, packet);
        if (res == NULL)
            status = -1;
        else
            Py_DECREF(res);
    }
    Py_DECREF(packet);
    return status;
}

/* The same for a datagram that is only held as bytes: decrypted in a copy (rx_buf). */
static int
receiver_receive(Receiver *r, PyObject *data)
{
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (r->srtp.ctx == NULL || n < 12 || n > BUF_SIZE)
        return receiver_take(r, (uint8_t *)PyBytes_AS_STRING(data), n, data); /* no write */
    memcpy(rx_buf, PyBytes_AS_STRING(data), (size_t)n);
    return receiver_take(r, rx_buf, n, data);
}

static PyObject *
Receiver_receive(Receiver *self, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "datagram must be bytes");
        return NULL;
    }
    if (receiver_receive(self, data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Receiver_get_ready(Receiver *self, void *closure)
{
    return PyBool_FromLong(self->srtp.ctx != NULL);
}

static PyMemberDef Receiver_members[] = {
    {"rx_packets", T_ULONGLONG, offsetof(Receiver, rx_packets), 0, NULL},
    {"rx_bytes", T_ULONGLONG, offsetof(Receiver, rx_bytes), 0, NULL},
    {"srtp_errors", T_ULONGLONG, offsetof(Receiver, srtp_errors), 0, NULL},
    {"rx_dropped", T_ULONGLONG, offsetof(Receiver, rx_dropped), 0, NULL},
    {"twcc_id", T_INT, offsetof(Receiver, twcc_id), READONLY, NULL},
    {"twcc_ssrc", T_UINT, offsetof(Receiver, twcc_ssrc), READONLY, NULL},
    {"twcc_recorded", T_ULONGLONG, offsetof(Receiver, twcc_recorded), 0, NULL},
    {"twcc_overflow", T_ULONGLONG, offsetof(Receiver, twcc_overflow), 0, NULL},
    {NULL}};

static PyMethodDef Receiver_methods[] = {
    {"set_srtp", (PyCFunction)Receiver_set_srtp, METH_VARARGS,
     "set_srtp(ctx, unprotect, keep): the inbound libsrtp context and srtp_unprotect."},
    {"clear_srtp", (PyCFunction)Receiver_clear_srtp, METH_NOARGS, "Forget the SRTP context."},
    {"receive", (PyCFunction)Receiver_receive, METH_O,
     "receive(datagram): decrypt SRTP and deliver, or pass SRTCP to rtcp()."},
    {"set_twcc", (PyCFunction)Receiver_set_twcc, METH_VARARGS,
     "set_twcc(ext_id, wake=None): record transport-cc arrivals of this extension id (0: stop)."},
    {"twcc_drain", (PyCFunction)Receiver_twcc_drain, METH_NOARGS,
     "twcc_drain() -> [(seq, arrival_us), ...] recorded since the last drain."},
    {NULL}};

static PyGetSetDef Receiver_getset[] = {
    {"ready", (getter)Receiver_get_ready, NULL, "keyed (DTLS done)", NULL}, {NULL}};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One transport's inbound SRTP: decrypt and deliver RTP, pass SRTCP on.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_traverse = (traverseproc)Receiver_traverse,
    .tp_clear = (inquiry)Receiver_clear,
    .tp_members = Receiver_members,
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
};

/* Batched receive: recvmmsg(2) fills up to RX_BATCH slots a call; a wake-up reads at most
 * ``max_batches`` calls (fairness: the event loop's other callbacks run in between, and the
 * socket, still readable, wakes the loop again). A call that returns fewer than RX_BATCH
 * datagrams found the queue empty, so draining stops there: one packet per wake-up costs one
 * system call, as recvmsg would. A slot holds the largest UDP payload, as the event loop's
 * receive buffer does (pages are only touched as far as datagrams reach). */
#define RX_BATCH 32
/* Inside a drain the copies of RX_FLUSH received datagrams at most wait for one sendmmsg: the
 * first copy of a burst waits for the next RX_FLUSH - 1 datagrams' work (~0.1 ms), not for a
 * whole batch's (~0.5 ms at 32, which put the SFU-added p99 up). */
#define RX_FLUSH 8
#define RX_SLOT 65536
#define ADDR_CACHE 64

static uint8_t rx_slots[RX_BATCH][RX_SLOT];
static struct mmsghdr rx_msg[RX_BATCH];
static struct iovec rx_iov[RX_BATCH];
static struct sockaddr_storage rx_addr[RX_BATCH];
static union {
    struct cmsghdr align;
    char buf[64]; /* one IP_PKTINFO or IPV6_PKTINFO message, with slack */
} rx_control[RX_BATCH];
static int rx_busy = 0; /* the slots are in use (a handler may not drain again) */

typedef struct {
    struct sockaddr_storage sa; /* ss_family 0: empty */
    PyObject *addr;             /* the Python address tuple */
} AddrCacheEntry;

/* The peer table: a bound peer's socket address -> its endpoint's compiled Receiver, so that
 * drain() hands SRTP/SRTCP from a known peer over without building the address tuple, hashing
 * it, looking it up in ``by_addr`` and reading ``media_in``. ``by_addr`` stays the authority:
 * an entry is only made from what a lookup in it just found, and the socket protocol calls
 * changed() whenever it mutates ``by_addr`` (bind, evict, unregister), which empties the table,
 * so an entry can never outlive its binding. Open addressing with linear probing over
 * PEER_SLOTS slots, filled to at most PEER_MAX peers (beyond: today's lookup, still correct). */
#define PEER_SLOTS 1024
#define PEER_MAX 512

typedef struct {
    uint32_t addr[4];   /* IPv4: addr[0]; IPv6: the 16 bytes */
    uint32_t flowinfo;  /* IPv6 only (part of the address tuple the event loop makes) */
    uint32_t scope;     /* IPv6 only */
    uint16_t family;    /* 0: not an IP address */
    uint16_t port;
} PeerKey;

typedef struct {
    PeerKey key;
    Receiver *receiver; /* strong reference; NULL: empty slot */
} PeerEntry;

typedef struct {
    PyObject_HEAD
    PyObject *by_addr;  /* dict: peer address -> endpoint (the socket protocol's own table) */
    PyObject *fallback; /* the Python datagram_received: STUN, DTLS, unknown addresses */
    PyObject *attr;     /* interned "media_in" */
    int fd;             /* the socket drain() reads, -1 once it is closed */
    char pktinfo;       /* the socket reports destinations: STUN's goes to the fallback */
    unsigned long long rx_calls, rx_datagrams, rx_wakeups;
    unsigned long long peer_hits, generation;
    int peer_count;     /* entries in peers */
    PeerEntry *peers;   /* PEER_SLOTS entries (allocated by __init__) */
    AddrCacheEntry cache[ADDR_CACHE]; /* recent peers: their address tuples, made once */
} Demux;

/* The compact key of a received source address; 0 if it is not IPv4/IPv6. */
static int
peer_key(const struct sockaddr_storage *sa, socklen_t salen, PeerKey *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->ss_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        k->addr[0] = in4->sin_addr.s_addr;
        k->port = in4->sin_port;
        k->family = AF_INET;
        return 1;
    }
    if (sa->ss_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(k->addr, &in6->sin6_addr, 16);
        k->flowinfo = in6->sin6_flowinfo;
        k->scope = in6->sin6_scope_id;
        k->port = in6->sin6_port;
        k->family = AF_INET6;
        return 1;
    }
    return 0;
}

static inline size_t
peer_slot(const PeerKey *k)
{
    uint32_t h = (k->addr[0] ^ k->addr[1] ^ k->addr[2] ^ k->addr[3] ^ k->flowinfo ^ k->scope);
    h = (h * 2654435761u) ^ ((uint32_t)k->port * 40503u);
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return (size_t)h & (PEER_SLOTS - 1);
}

static inline int
peer_same(const PeerKey *a, const PeerKey *b)
{
    return a->port == b->port && a->addr[0] == b->addr[0] && a->family == b->family &&
           (a->family == AF_INET ||
            (a->addr[1] == b->addr[1] && a->addr[2] == b->addr[2] && a->addr[3] == b->addr[3] &&
             a->flowinfo == b->flowinfo && a->scope == b->scope));
}

/* The receiver bound to ``k`` (borrowed), or NULL. */
static Receiver *
peer_find(Demux *self, const PeerKey *k)
{
    if (self->peers == NULL || self->peer_count == 0)
        return NULL;
    for (size_t i = peer_slot(k);; i = (i + 1) & (PEER_SLOTS - 1)) {
        PeerEntry *e = &self->peers[i];
        if (e->receiver == NULL)
            return NULL;
        if (peer_same(&e->key, k))
            return e->receiver;
    }
}

/* Remember ``k`` -> ``r`` (only what by_addr answered just now, see demux_media). */
static void
peer_add(Demux *self, const PeerKey *k, Receiver *r)
{
    if (self->peers == NULL || self->peer_count >= PEER_MAX)
        return;
    for (size_t i = peer_slot(k);; i = (i + 1) & (PEER_SLOTS - 1)) {
        PeerEntry *e = &self->peers[i];
        if (e->receiver == NULL) {
            e->key = *k;
            Py_INCREF(r);
            e->receiver = r;
            self->peer_count++;
            return;
        }
        if (peer_same(&e->key, k))
            return; /* cannot happen (a lookup missed it), but never two entries for one key */
    }
}

/* Forget every entry (by_addr changed, or the Demux is cleared). */
static void
peer_clear(Demux *self)
{
    self->generation++;
    if (self->peers == NULL || self->peer_count == 0)
        return;
    self->peer_count = 0;
    for (size_t i = 0; i < PEER_SLOTS; i++) {
        Receiver *r = self->peers[i].receiver;
        if (r != NULL) {
            self->peers[i].receiver = NULL; /* before the release: it may run any code */
            Py_DECREF(r);
        }
    }
}

static int
Demux_init(Demux *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"by_addr", "fallback", "fd", NULL};
    PyObject *by_addr, *fallback;
    int fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O|i", kwlist, &PyDict_Type, &by_addr,
                                     &fallback, &fd))
        return -1;
    Py_INCREF(by_addr);
    Py_XSETREF(self->by_addr, by_addr);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    self->fd = fd;
    if (self->peers == NULL) {
        self->peers = PyMem_Calloc(PEER_SLOTS, sizeof(PeerEntry));
        if (self->peers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    peer_clear(self); /* a new table (init called again) */
    Py_XSETREF(self->attr, PyUnicode_InternFromString("media_in"));
    return self->attr == NULL ? -1 : 0;
}

static int
Demux_traverse(Demux *self, visitproc visit, void *arg)
{
    Py_VISIT(self->by_addr);
    Py_VISIT(self->fallback);
    for (int i = 0; i < ADDR_CACHE; i++)
        Py_VISIT(self->cache[i].addr);
    if (self->peers != NULL && self->peer_count > 0)
        for (size_t i = 0; i < PEER_SLOTS; i++)
            Py_VISIT(self->peers[i].receiver);
    return 0;
}

static int
Demux_clear(Demux *self)
{
    Py_CLEAR(self->by_addr);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->attr);
    for (int i = 0; i < ADDR_CACHE; i++) {
        self->cache[i].sa.ss_family = 0;
        Py_CLEAR(self->cache[i].addr);
    }
    peer_clear(self);
    return 0;
}

static void
Demux_dealloc(Demux *self)
{
    PyObject_GC_UnTrack(self);
    Demux_clear(self);
    PyMem_Free(self->peers);
    self->peers = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* SRTP/SRTCP from a bound address to its endpoint's receiver. 1 if it was delivered (or
 * failed: -1 with an exception set), 0 if the Python path must decide. ``buf`` is a private
 * writable copy of ``data``'s bytes, or NULL; ``data`` may be NULL when ``buf`` is given. */
static int
demux_media(Demux *self, uint8_t *buf, Py_ssize_t n, PyObject *data, PyObject *addr,
            const PeerKey *key)
{
    unsigned long long generation = self->generation;
    PyObject *endpoint = PyDict_GetItemWithError(self->by_addr, addr); /* borrowed */
    if (endpoint == NULL) {
        if (PyErr_Occurred())
            PyErr_Clear(); /* an unhashable address: the Python path decides */
        return 0;
    }
    PyObject *receiver = PyObject_GetAttr(endpoint, self->attr);
    if (receiver == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear(); /* an endpoint without a receiver: the Python path */
        return 0;
    }
    int status;
    if (Py_TYPE(receiver) == &ReceiverType) {
        /* Remembered before delivering (which may change by_addr), and only if nothing
         * changed it since the lookup (reading media_in could run code) */
        if (key != NULL && generation == self->generation)
            peer_add(self, key, (Receiver *)receiver);
        status = buf != NULL ? receiver_take((Receiver *)receiver, buf, n, data)
                             : receiver_receive((Receiver *)receiver, data);
    } else {
        PyObject *owned = NULL;
        batch_flush(); /* a Python receiver may send */
        if (data == NULL)
            data = owned = PyBytes_FromStringAndSize((const char *)buf, n);
        PyObject *res = data == NULL ? NULL : PyObject_CallMethod(receiver, "receive", "O", data);
        status = res == NULL ? -1 : 0;
        Py_XDECREF(res);
        Py_XDECREF(owned);
    }
    Py_DECREF(receiver);
    return status < 0 ? -1 : 1;
}

/* RFC 7983: SRTP/SRTCP (first byte 128-191) from a bound address straight to its transport's
 * receiver; everything else to the Python path. */
static PyObject *
Demux_datagram_received(Demux *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "datagram_received(data, addr)");
        return NULL;
    }
    PyObject *data = args[0], *addr = args[1];
    if (PyBytes_Check(data) && PyBytes_GET_SIZE(data) > 0) {
        uint8_t first = (uint8_t)PyBytes_AS_STRING(data)[0];
        if (first > 127 && first < 192) {
            int done = demux_media(self, NULL, PyBytes_GET_SIZE(data), data, addr, NULL);
            if (done < 0)
                return NULL;
            if (done)
                Py_RETURN_NONE;
        }
    }
    return PyObject_Vectorcall(self->fallback, args, (size_t)nargs, NULL);
}

/* The address tuple the event loop would hand datagram_received: (host, port) for IPv4,
 * (host, port, flowinfo, scope_id) for IPv6. New reference, NULL with an exception. */
static PyObject *
demux_address(Demux *self, const struct sockaddr_storage *sa, socklen_t salen)
{
    uint32_t h;
    size_t keylen;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        h = in4->sin_addr.s_addr * 2654435761u ^ in4->sin_port;
        keylen = sizeof(struct sockaddr_in);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uint32_t w[4];
        memcpy(w, &in6->sin6_addr, 16);
        h = (w[0] ^ w[1] ^ w[2] ^ w[3]) * 2654435761u ^ in6->sin6_port;
        keylen = sizeof(struct sockaddr_in6);
    } else {
        Py_RETURN_NONE; /* not an IP socket: what the event loop gives is not ours to guess */
    }
    AddrCacheEntry *e = &self->cache[(h ^ (h >> 16)) % ADDR_CACHE];
    if (e->addr != NULL && e->sa.ss_family == sa->ss_family) {
        int same;
        if (sa->ss_family == AF_INET) {
            const struct sockaddr_in *x = (const void *)&e->sa, *y = (const void *)sa;
            same = x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        } else {
            const struct sockaddr_in6 *x = (const void *)&e->sa, *y = (const void *)sa;
            same = x->sin6_port == y->sin6_port && x->sin6_flowinfo == y->sin6_flowinfo &&
                   x->sin6_scope_id == y->sin6_scope_id &&
                   memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
        }
        if (same) {
            Py_INCREF(e->addr);
            return e->addr;
        }
    }
    char host[INET6_ADDRSTRLEN];
    PyObject *addr;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        addr = Py_BuildValue("(si)", host, (int)ntohs(in4->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        addr = Py_BuildValue("(siIk)", host, (int)ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned long)in6->sin6_scope_id);
    }
    if (addr == NULL)
        return NULL;
    memcpy(&e->sa, sa, keylen < (size_t)salen ? keylen : (size_t)salen);
    e->sa.ss_family = sa->ss_family;
    Py_INCREF(addr);
    Py_XSETREF(e->addr, addr);
    return addr;
}

/* The destination of a received datagram from its IP_PKTINFO / IPV6_PKTINFO message, as
 * transport/pktinfo.py's local_address: str, or None. New reference, NULL with an exception. */
static PyObject *
rx_local(struct msghdr *h)
{
    char host[INET6_ADDRSTRLEN];
    if (h->msg_controllen == 0 || (h->msg_flags & MSG_CTRUNC))
        Py_RETURN_NONE;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof(info));
            if (inet_ntop(AF_INET, &info.ipi_spec_dst, host, sizeof(host)) == NULL)
                break;
            return PyUnicode_FromString(host);
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof(info));
            if (IN6_IS_ADDR_MULTICAST(&info.ipi6_addr) ||
                inet_ntop(AF_INET6, &info.ipi6_addr, host, sizeof(host)) == NULL)
                break;
            return PyUnicode_FromString(host);
        }
    }
    Py_RETURN_NONE;
}

/* One received datagram (slot ``i``) through the same demultiplexing as datagram_received.
 * 0, or -1 with an exception set (raised by a handler). */
static int
demux_slot(Demux *self, int i)
{
    Py_ssize_t n = (Py_ssize_t)rx_msg[i].msg_len;
    uint8_t *buf = rx_slots[i];
    int media = n > 0 && buf[0] > 127 && buf[0] < 192;
    PeerKey key;
    int keyed = 0;
    if (media && (keyed = peer_key(&rx_addr[i], rx_msg[i].msg_hdr.msg_namelen, &key))) {
        Receiver *r = peer_find(self, &key);
        if (r != NULL) { /* a bound peer: no address tuple, no dict, no getattr */
            self->peer_hits++;
            Py_INCREF(r); /* delivering may change by_addr, which drops the entry's reference */
            int status = receiver_take(r, buf, n, NULL);
            Py_DECREF(r);
            return status < 0 ? -1 : 0;
        }
    }
    PyObject *addr = demux_address(self, &rx_addr[i], rx_msg[i].msg_hdr.msg_namelen);
    if (addr == NULL)
        return -1;
    if (media) {
        int done = demux_media(self, buf, n, NULL, addr, keyed ? &key : NULL);
        if (done != 0) {
            Py_DECREF(addr);
            return done < 0 ? -1 : 0;
        }
    }
    /* STUN, DTLS, unknown: the Python datagram_received (the media branch above decrypts in
     * place only when it delivers, so the bytes are still the datagram's). */
    PyObject *args[3];
    size_t nargs = 2;
    args[0] = PyBytes_FromStringAndSize((const char *)buf, n);
    args[1] = addr;
    args[2] = NULL;
    if (args[0] != NULL && self->pktinfo && n > 0 && buf[0] < 4) {
        /* STUN on a wildcard socket: the answer leaves from where the check arrived */
        args[2] = rx_local(&rx_msg[i].msg_hdr);
        nargs = 3;
    }
    if (args[0] == NULL || (nargs == 3 && args[2] == NULL)) {
        Py_XDECREF(args[0]);
        Py_DECREF(addr);
        return -1;
    }
    batch_flush(); /* STUN answers, DTLS: the Python path sends on the same socket */
    PyObject *res = PyObject_Vectorcall(self->fallback, args, nargs, NULL);
    Py_DECREF(args[0]);
    Py_XDECREF(args[2]);
    Py_DECREF(addr);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* drain(max_batches): read the socket with recvmmsg(MSG_DONTWAIT) until it would block, a
 * call returns less than a full batch, or max_batches calls were made, and demultiplex every
 * datagram in arrival order. Returns how many datagrams were read. A handler's exception is
 * raised after the rest of its batch has been delivered (nothing read is dropped). */
static PyObject *
Demux_drain(Demux *self, PyObject *arg)
{
    long max_batches = PyLong_AsLong(arg);
    if (max_batches == -1 && PyErr_Occurred())
        return NULL;
    if (max_batches < 1) {
        PyErr_SetString(PyExc_ValueError, "max_batches must be at least 1");
        return NULL;
    }
    if (rx_busy) {
        PyErr_SetString(PyExc_RuntimeError, "drain() called from a datagram handler");
        return NULL;
    }
    self->rx_wakeups++;
    long total = 0;
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    rx_busy = 1;
    int defer = tx_defer;
    tx_defer = 1; /* the copies of this batch's packets leave together (batch_flush below) */
    Py_INCREF(self); /* a handler may drop the last other reference */
    for (long batch = 0; batch < max_batches && self->fd >= 0 && exc_type == NULL; batch++) {
        for (int i = 0; i < RX_BATCH; i++) {
            rx_iov[i].iov_base = rx_slots[i];
            rx_iov[i].iov_len = RX_SLOT;
            memset(&rx_msg[i].msg_hdr, 0, sizeof(struct msghdr));
            rx_msg[i].msg_hdr.msg_iov = &rx_iov[i];
            rx_msg[i].msg_hdr.msg_iovlen = 1;
            rx_msg[i].msg_hdr.msg_name = &rx_addr[i];
            rx_msg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
            if (self->pktinfo) {
                rx_msg[i].msg_hdr.msg_control = rx_control[i].buf;
                rx_msg[i].msg_hdr.msg_controllen = sizeof(rx_control[i].buf);
            }
        }
        int got = recvmmsg(self->fd, rx_msg, RX_BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT) {
                batch_flush();
                tx_defer = defer;
                rx_busy = 0;
                Py_DECREF(self);
                return PyErr_SetFromErrno(PyExc_OSError); /* not a socket of ours: a bug */
            }
            break; /* EAGAIN, or an error report (ICMP): read again on the next wake-up */
        }
        self->rx_calls++;
        self->rx_datagrams += (unsigned long long)got;
        total += got;
        for (int i = 0; i < got; i++) {
            if (demux_slot(self, i) < 0) {
                if (exc_type == NULL)
                    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
                else
                    PyErr_WriteUnraisable(self->fallback); /* a second failure: logged */
            }
            if (i % RX_FLUSH == RX_FLUSH - 1)
                batch_flush(); /* the copies of RX_FLUSH datagrams: one sendmmsg per socket */
        }
        batch_flush();
        if (got < RX_BATCH)
            break; /* the queue was empty when the kernel stopped */
    }
    batch_flush();
    tx_defer = defer;
    rx_busy = 0;
    Py_DECREF(self);
    if (exc_type != NULL) {
        PyErr_Restore(exc_type, exc_value, exc_tb);
        return NULL;
    }
    return PyLong_FromLong(total);
}

static PyObject *
Demux_changed(Demux *self, PyObject *Py_UNUSED(ignored))
{
    peer_clear(self);
    Py_RETURN_NONE;
}

static PyObject *
Demux_get_peers(Demux *self, void *closure)
{
    return PyLong_FromLong(self->peer_count);
}

static PyGetSetDef Demux_getset[] = {
    {"peers", (getter)Demux_get_peers, NULL, "bound peers the table holds", NULL}, {NULL}};

static PyMethodDef Demux_methods[] = {
    {"changed", (PyCFunction)Demux_changed, METH_NOARGS,
     "changed(): by_addr was changed; forget every peer the table remembers."},
    {"datagram_received", (PyCFunction)(void (*)(void))Demux_datagram_received, METH_FASTCALL,
     "datagram_received(data, addr): the socket protocol's callback."},
    {"drain", (PyCFunction)Demux_drain, METH_O,
     "drain(max_batches): read fd with recvmmsg until it would block and demultiplex every "
     "datagram; returns how many were read."},
    {NULL}};

static PyMemberDef Demux_members[] = {
    {"fd", T_INT, offsetof(Demux, fd), 0, "the socket drain() reads (-1: none)"},
    {"pktinfo", T_BOOL, offsetof(Demux, pktinfo), 0,
     "the socket reports each datagram's destination: drain() hands STUN's to the fallback"},
    {"rx_wakeups", T_ULONGLONG, offsetof(Demux, rx_wakeups), READONLY, NULL},
    {"rx_calls", T_ULONGLONG, offsetof(Demux, rx_calls), READONLY, NULL},
    {"rx_datagrams", T_ULONGLONG, offsetof(Demux, rx_datagrams), READONLY, NULL},
    {"peer_hits", T_ULONGLONG, offsetof(Demux, peer_hits), READONLY, NULL},
    {NULL}};

static PyTypeObject DemuxType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.Demux",
    .tp_basicsize = sizeof(Demux),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The worker socket's media demultiplexer (RFC 7983), in front of the Python one; "
              "drain() reads the socket in batches (recvmmsg).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Demux_init,
    .tp_dealloc = (destructor)Demux_dealloc,
    .tp_traverse = (traverseproc)Demux_traverse,
    .tp_clear = (inquiry)Demux_clear,
    .tp_members = Demux_members,
    .tp_methods = Demux_methods,
    .tp_getset = Demux_getset,
};


/* ------------------------------------------------------------------------------------------ */
/* Ingest: ReceiveStats (RFC 3550 A.1/A.8 per SSRC) and ProducerCore (a producer's hot path).  */

#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define SEQ_MOD 65536

typedef struct {
    PyObject_HEAD
    int clock_rate;
    char started;
    int base_seq, max_seq, bad_seq;
    long long cycles, received, expected_prior, received_prior, last_transit, last_ts;
    double jitter;
} ReceiveStatsBase;

static PyTypeObject ReceiveStatsBaseType;

static int
ReceiveStatsBase_init(ReceiveStatsBase *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"clock_rate", NULL};
    int clock_rate;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", kwlist, &clock_rate))
        return -1;
    self->clock_rate = clock_rate;
    self->started = 0;
    self->base_seq = self->max_seq = 0;
    self->cycles = 0;
    self->bad_seq = SEQ_MOD + 1;
    self->received = self->expected_prior = self->received_prior = 0;
    self->jitter = 0.0;
    self->last_transit = 0;
    self->last_ts = -1;
    return 0;
}

static void
stats_init_seq(ReceiveStatsBase *s, int seq)
{
    s->started = 1;
    s->base_seq = s->max_seq = seq;
    s->bad_seq = SEQ_MOD + 1;
    s->cycles = 0;
    s->received = s->expected_prior = s->received_prior = 0;
}

static void
stats_jitter(ReceiveStatsBase *s, long long ts, double arrival)
{
    long long transit = (long long)(arrival * (double)s->clock_rate) - ts;
    if (s->last_ts >= 0) {
        long long d = ((transit - s->last_transit + (1LL << 31)) & 0xFFFFFFFFLL) - (1LL << 31);
        s->jitter += ((double)(d < 0 ? -d : d) - s->jitter) / 16.0;
    }
    s->last_transit = transit;
    s->last_ts = ts;
}

/* Count one packet; how many seqs it skipped ahead (exactly stats.ReceiveStats.update). */
static int
stats_update(ReceiveStatsBase *s, int seq, long long ts, double arrival)
{
    if (!s->started) {
        stats_init_seq(s, seq);
        s->received = 1;
        stats_jitter(s, ts, arrival);
        return 0;
    }
    int udelta = (seq - s->max_seq) & 0xFFFF;
    if (0 < udelta && udelta < MAX_DROPOUT) {
        if (seq < s->max_seq)
            s->cycles += SEQ_MOD;
        s->max_seq = seq;
        s->received++;
        if (ts != s->last_ts)
            stats_jitter(s, ts, arrival);
        return udelta - 1;
    }
    if (udelta <= SEQ_MOD - MAX_MISORDER) {
        if (seq == s->bad_seq) {
            stats_init_seq(s, seq);
            s->received = 1;
        } else {
            s->bad_seq = (seq + 1) & 0xFFFF;
        }
        return 0;
    }
    s->received++;
    return 0;
}

static PyObject *
ReceiveStatsBase_update(ReceiveStatsBase *self, PyObject *args)
{
    int seq;
    long long ts;
    double arrival;
    if (!PyArg_ParseTuple(args, "iLd", &seq, &ts, &arrival))
        return NULL;
    return PyLong_FromLong(stats_update(self, seq & 0xFFFF, ts, arrival));
}

static PyMemberDef ReceiveStatsBase_members[] = {
    {"clock_rate", T_INT, offsetof(ReceiveStatsBase, clock_rate), READONLY, NULL},
    {"started", T_BOOL, offsetof(ReceiveStatsBase, started), 0, NULL},
    {"base_seq", T_INT, offsetof(ReceiveStatsBase, base_seq), 0, NULL},
    {"max_seq", T_INT, offsetof(ReceiveStatsBase, max_seq), 0, NULL},
    {"bad_seq", T_INT, offsetof(ReceiveStatsBase, bad_seq), 0, NULL},
    {"cycles", T_LONGLONG, offsetof(ReceiveStatsBase, cycles), 0, NULL},
    {"received", T_LONGLONG, offsetof(ReceiveStatsBase, received), 0, NULL},
    {"expected_prior", T_LONGLONG, offsetof(ReceiveStatsBase, expected_prior), 0, NULL},
    {"received_prior", T_LONGLONG, offsetof(ReceiveStatsBase, received_prior), 0, NULL},
    {"last_transit", T_LONGLONG, offsetof(ReceiveStatsBase, last_transit), 0, NULL},
    {"last_ts", T_LONGLONG, offsetof(ReceiveStatsBase, last_ts), 0, NULL},
    {"jitter", T_DOUBLE, offsetof(ReceiveStatsBase, jitter), 0, NULL},
    {NULL}};

static PyMethodDef ReceiveStatsBase_methods[] = {
    {"update", (PyCFunction)ReceiveStatsBase_update, METH_VARARGS,
     "update(seq, ts, arrival) -> seqs skipped ahead (RFC 3550 A.1, A.8)."},
    {NULL}};

static PyTypeObject ReceiveStatsBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.ReceiveStatsBase",
    .tp_basicsize = sizeof(ReceiveStatsBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Sequence and jitter state of one inbound RTP stream (subclassed in stats.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ReceiveStatsBase_init,
    .tp_members = ReceiveStatsBase_members,
    .tp_methods = ReceiveStatsBase_methods,
};

typedef struct {
    PyObject_HEAD
    PyObject *stats;        /* a ReceiveStatsBase (subclass) or any object with update() */
    PyObject *missing;      /* dict: seqs awaiting retransmission (shared with MissingPackets) */
    PyObject *history;      /* list of packets indexed by seq & mask, or None */
    PyObject *fanout;       /* Fanout or any object with forward(packet, keyframe) */
    PyObject *on_gap;       /* callable(seq, gap, now) */
    PyObject *spot_keyframe; /* callable(packet) -> bool, called only while want_keyframe */
    PyObject *clock;        /* callable() -> float, or None for CLOCK_MONOTONIC */
    Py_ssize_t mask;
    char closed, want_keyframe;
    unsigned long long packets_received, bytes_received, dropped;
} ProducerCore;

static PyTypeObject ProducerCoreType;

static int
ProducerCore_init(ProducerCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"stats", "missing", "history", "fanout", "on_gap",
                             "spot_keyframe", "clock", NULL};
    PyObject *stats, *missing, *history, *fanout, *on_gap, *spot, *clock;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!OOOOO", kwlist, &stats, &PyDict_Type,
                                     &missing, &history, &fanout, &on_gap, &spot, &clock))
        return -1;
    if (history != Py_None) {
        Py_ssize_t n = PyList_Check(history) ? PyList_GET_SIZE(history) : 0;
        if (n <= 0 || (n & (n - 1))) {
            PyErr_SetString(PyExc_ValueError, "history must be a list whose size is a power of 2");
            return -1;
        }
        self->mask = n - 1;
    }
    PyObject **slots[] = {&self->stats, &self->missing, &self->history, &self->fanout,
                          &self->on_gap, &self->spot_keyframe, &self->clock};
    PyObject *values[] = {stats, missing, history, fanout, on_gap, spot, clock};
    for (int i = 0; i < 7; i++) {
        Py_INCREF(values[i]);
        Py_XSETREF(*slots[i], values[i]);
    }
    return 0;
}

static int
ProducerCore_traverse(ProducerCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->stats);
    Py_VISIT(self->missing);
    Py_VISIT(self->history);
    Py_VISIT(self->fanout);
    Py_VISIT(self->on_gap);
    Py_VISIT(self->spot_keyframe);
    Py_VISIT(self->clock);
    return 0;
}

static int
ProducerCore_clear(ProducerCore *self)
{
    Py_CLEAR(self->stats);
    Py_CLEAR(self->missing);
    Py_CLEAR(self->history);
    Py_CLEAR(self->fanout);
    Py_CLEAR(self->on_gap);
    Py_CLEAR(self->spot_keyframe);
    Py_CLEAR(self->clock);
    return 0;
}

static void
ProducerCore_dealloc(ProducerCore *self)
{
    PyObject_GC_UnTrack(self);
    ProducerCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
core_now(ProducerCore *c, double *now)
{
    if (c->clock == Py_None) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        *now = (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
        return 0;
    }
    PyObject *res = PyObject_CallNoArgs(c->clock);
    if (res == NULL)
        return -1;
    *now = PyFloat_AsDouble(res);
    Py_DECREF(res);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* One packet from the publisher (exactly Producer.receive_rtp): count, track sequence and
 * jitter, note gaps (NACK) and arrivals of missing packets, spot keyframes when one was asked
 * for, store in the history, fan out. */
static PyObject *
ProducerCore_receive(ProducerCore *self, PyObject *packet)
{
    if (!PyBytes_Check(packet)) {
        PyErr_SetString(PyExc_TypeError, "packet must be bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(packet);
    if (self->closed || n < 12) {
        self->dropped++;
        Py_RETURN_NONE;
    }
    const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(packet);
    self->packets_received++;
    self->bytes_received += (unsigned long long)n;
    int seq = p[2] << 8 | p[3];
    long long ts = (long long)rd32(p + 4);
    double now;
    if (core_now(self, &now) < 0)
        return NULL;
    long gap;
    if (PyObject_TypeCheck(self->stats, &ReceiveStatsBaseType)) {
        gap = stats_update((ReceiveStatsBase *)self->stats, seq, ts, now);
    } else {
        PyObject *res = PyObject_CallMethod(self->stats, "update", "iLd", seq, ts, now);
        if (res == NULL)
            return NULL;
        gap = PyLong_AsLong(res);
        Py_DECREF(res);
        if (gap == -1 && PyErr_Occurred())
            return NULL;
    }
    if (gap) {
        PyObject *res = PyObject_CallFunction(self->on_gap, "ild", seq, gap, now);
        if (res == NULL)
            return NULL;
        Py_DECREF(res);
    } else if (PyDict_GET_SIZE(self->missing) > 0) {
        PyObject *key = PyLong_FromLong(seq);
        if (key == NULL)
            return NULL;
        if (PyDict_DelItem(self->missing, key) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                Py_DECREF(key);
                return NULL;
            }
            PyErr_Clear();
        }
        Py_DECREF(key);
    }
    int keyframe = 0;
    if (self->want_keyframe) {
        PyObject *res = PyObject_CallOneArg(self->spot_keyframe, packet);
        if (res == NULL)
            return NULL;
        keyframe = PyObject_IsTrue(res);
        Py_DECREF(res);
        if (keyframe < 0)
            return NULL;
    }
    if (self->history != Py_None) {
        Py_INCREF(packet);
        PyList_SetItem(self->history, seq & self->mask, packet); /* steals, drops the old */
    }
    PyObject *flag = keyframe ? Py_True : Py_False;
    if (Py_TYPE(self->fanout) == &FanoutType) {
        PyObject *args[2] = {packet, flag};
        return Fanout_forward(self->fanout, args, 2);
    }
    return PyObject_CallMethod(self->fanout, "forward", "OO", packet, flag);
}

static PyMemberDef ProducerCore_members[] = {
    {"stats", T_OBJECT, offsetof(ProducerCore, stats), READONLY, NULL},
    {"closed", T_BOOL, offsetof(ProducerCore, closed), 0, NULL},
    {"want_keyframe", T_BOOL, offsetof(ProducerCore, want_keyframe), 0, NULL},
    {"packets_received", T_ULONGLONG, offsetof(ProducerCore, packets_received), 0, NULL},
    {"bytes_received", T_ULONGLONG, offsetof(ProducerCore, bytes_received), 0, NULL},
    {"dropped", T_ULONGLONG, offsetof(ProducerCore, dropped), 0, NULL},
    {NULL}};

static PyMethodDef ProducerCore_methods[] = {
    {"receive", (PyCFunction)ProducerCore_receive, METH_O,
     "receive(packet): the producer's hot path (see Producer.receive_rtp)."},
    {NULL}};

static PyTypeObject ProducerCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.ProducerCore",
    .tp_basicsize = sizeof(ProducerCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A published track's per-packet work: stats, NACK bookkeeping, history, fan-out.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ProducerCore_init,
    .tp_dealloc = (destructor)ProducerCore_dealloc,
    .tp_traverse = (traverseproc)ProducerCore_traverse,
    .tp_clear = (inquiry)ProducerCore_clear,
    .tp_members = ProducerCore_members,
    .tp_methods = ProducerCore_methods,
};


/* ------------------------------------------------------------------------------------------ */
/* Transport-wide CC feedback                                                                 */

/* twcc_parse(fci) -> (base_seq, reference_time, fb_count, deltas): the FCI of a transport-cc
 * feedback packet (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1: base sequence
 * number, packet status count, 24-bit signed reference time, feedback packet count, run-length
 * and 1-/2-bit status-vector chunks, then 8-bit unsigned or 16-bit signed receive deltas).
 * ``deltas`` has one entry per reported packet: None when not received, else its delta in
 * 250 µs units. Exactly the pure-Python packets.rtcp.parse_twcc_fci, which it replaces when
 * built; malformed input raises ValueError as that does. */
static PyObject *
twcc_parse(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = view.buf;
    Py_ssize_t n = view.len, pos = 8;
    uint8_t *symbols = NULL;
    PyObject *deltas = NULL, *out = NULL;
    if (n < 8) {
        PyErr_Format(PyExc_ValueError, "RTCP transport-cc FCI is too short (%zd bytes)", n);
        goto done;
    }
    unsigned base = rd16(p), count = rd16(p + 2);
    long ref = (long)((uint32_t)p[4] << 16 | (uint32_t)p[5] << 8 | p[6]);
    if (ref & 0x800000)
        ref -= 0x1000000;
    unsigned fb_count = p[7];
    if (count == 0) {
        PyErr_SetString(PyExc_ValueError, "RTCP transport-cc reports no packets (status count 0)");
        goto done;
    }
    symbols = PyMem_Malloc(count + 14); /* a chunk may carry up to 14 symbols past count */
    if (symbols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    unsigned have = 0;
    while (have < count) {
        if (pos + 2 > n) {
            PyErr_Format(PyExc_ValueError,
                         "RTCP transport-cc chunks are truncated: %u of %u packet statuses", have,
                         count);
            goto done;
        }
        unsigned chunk = rd16(p + pos);
        pos += 2;
        if (!(chunk & 0x8000)) {
            unsigned sym = chunk >> 13 & 3, run = chunk & 0x1FFF;
            if (sym == 3) {
                PyErr_SetString(PyExc_ValueError,
                                "RTCP transport-cc run-length chunk has the reserved symbol");
                goto done;
            }
            if (run == 0) {
                PyErr_SetString(PyExc_ValueError,
                                "RTCP transport-cc run-length chunk has run length 0");
                goto done;
            }
            if (run > count - have)
                run = count - have;
            memset(symbols + have, (int)sym, run);
            have += run;
        } else if (!(chunk & 0x4000)) {
            for (int k = 0; k < 14; k++)
                symbols[have++] = (uint8_t)(chunk >> (13 - k) & 1);
        } else {
            for (unsigned k = 0; k < 7; k++) {
                uint8_t sym = (uint8_t)(chunk >> (12 - 2 * k) & 3);
                if (sym == 3 && k < count - have) {
                    PyErr_SetString(PyExc_ValueError,
                                    "RTCP transport-cc status vector has the reserved symbol");
                    goto done;
                }
            }
            for (int k = 0; k < 7; k++)
                symbols[have++] = (uint8_t)(chunk >> (12 - 2 * k) & 3);
        }
    }
    deltas = PyList_New(count);
    if (deltas == NULL)
        goto done;
    for (unsigned i = 0; i < count; i++) {
        PyObject *item;
        if (symbols[i] == 0) {
            Py_INCREF(Py_None);
            item = Py_None;
        } else {
            Py_ssize_t size = symbols[i] == 1 ? 1 : 2;
            if (pos + size > n) {
                PyErr_Format(PyExc_ValueError,
                             "RTCP transport-cc receive deltas overrun the packet (%u of %u "
                             "read, %zd bytes left)",
                             i, count, n - pos);
                goto done;
            }
            item = PyLong_FromLong(size == 1 ? (long)p[pos] : (long)(int16_t)rd16(p + pos));
            if (item == NULL)
                goto done;
            pos += size;
        }
        PyList_SET_ITEM(deltas, i, item);
    }
    if (n - pos > 3) {
        PyErr_Format(PyExc_ValueError, "RTCP transport-cc has %zd bytes after its deltas", n - pos);
        goto done;
    }
    out = Py_BuildValue("(IlIO)", base, ref, fb_count, deltas);
done:
    Py_XDECREF(deltas);
    PyMem_Free(symbols);
    PyBuffer_Release(&view);
    return out;
}
/* ------------------------------------------------------------------------------------------ */
/* Transport-wide CC feedback read on the send side: FeedbackCore                             */

/* FeedbackCore(burst_us, window_us): the per-packet part of reading one subscriber's
 * transport-cc feedback, exactly forwarding/twcc.py FeedbackAdapter.results followed by the
 * per-packet steps of forwarding/bwe.py DownlinkEstimator.on_feedback (the received / lost
 * split, the newest send time for the feedback delay, _acknowledge and _group_packet); every
 * decision (trendline, threshold, rate control, loss, probing) stays in Python, which is given
 * one summary per feedback.
 *
 * Owns the adapter's state (the reference time unwrapped from its 24 bits, the FB_SEEN-slot
 * duplicate filter of seq << 1 | received, allocated at the first feedback as the reference's
 * list is, the feedbacks / unknown counts) and the estimator's per-packet state (the
 * acknowledged-rate window of (arrival µs, bytes) in feedback order, at most window_max of them
 * (the oldest reported dropped first), its byte sum, the newest
 * arrival, the acknowledged rate; the current and previous send-time groups of (first send,
 * last send, last arrival)). The send history is read straight from a compiled SendTarget's
 * ring; any other object is asked through its twcc_lookup(seq) method.
 *
 * feed(base_seq, reference_time, deltas, history, want_results) -> None when the feedback
 * reported no packet that is new and known, else (received, lost, newest_send_us or None,
 * acked_bps or None, groups, results): groups the (variation_ms, arrival_ms, send_delta_ms) of
 * each send group the feedback closed, in order (one _detect each), results the packets as
 * (seq, send_us, size, arrival_us or None) in feedback order when want_results (a probe is
 * being measured), else None. Everything is checked before any state changes: malformed input
 * (not a list, a delta that is not an int, a time beyond +-FB_TIME_MAX µs, a history record
 * that is not (int, int) with 0 <= size < 2**32) raises and leaves the core as it was. The
 * reference would accept times beyond FB_TIME_MAX (2**61 µs, 73,000 years; the one
 * difference): a subscriber would need some 10**7 feedbacks each moving the unwrapped reference
 * time by 2**22 * 64 ms to get there. Below it every difference fits 63 bits and every
 * int -> double conversion rounds as Python's. */
#define FB_SEEN 4096
#define FB_REFERENCE_US 64000
#define FB_DELTA_US 250
#define FB_TIME_MAX (1LL << 61)
#define FB_NEVER (-(1LL << 62)) /* the reference's _acked_newest before any arrival */
#define FB_STACK 128
#define FB_WINDOW_MAX 4096      /* bwe.ACKED_WINDOW_MAX */
#define FB_WINDOW_LIMIT 1048576 /* the most window_max may be */

typedef struct {
    long long at, size;
} FbAcked;

typedef struct {
    long long at, send, size;
    int seq;
    char received, known;
} FbPacket;

typedef struct {
    PyObject_HEAD
    long long burst_us, window_us;
    Py_ssize_t window_max; /* most entries the acknowledged-rate window keeps */
    char has_ref, has_group, has_prev;
    long long ref, ref_offset;
    int32_t *seen;
    unsigned long long feedbacks, unknown;
    FbAcked *acked; /* ring: acked_cap slots from acked_head, acked_len used */
    Py_ssize_t acked_head, acked_len, acked_cap;
    long long acked_bytes, acked_newest;
    PyObject *acked_bps; /* int or None */
    long long group[3], prev[3];
} FeedbackCore;

static PyTypeObject FeedbackCoreType;

static int
FeedbackCore_init(FeedbackCore *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"burst_us", "window_us", "window_max", NULL};
    long long burst, window;
    Py_ssize_t window_max = FB_WINDOW_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LL|n", kwlist, &burst, &window, &window_max))
        return -1;
    if (burst < 0 || window <= 0 || burst > FB_TIME_MAX || window > FB_TIME_MAX ||
        window_max < 2 || window_max > FB_WINDOW_LIMIT) {
        PyErr_SetString(PyExc_ValueError, "FeedbackCore needs 0 <= burst_us, 0 < window_us and "
                                          "2 <= window_max <= 1,048,576");
        return -1;
    }
    self->burst_us = burst;
    self->window_us = window;
    self->window_max = window_max;
    self->has_ref = self->has_group = self->has_prev = 0;
    self->ref = self->ref_offset = 0;
    PyMem_Free(self->seen);
    self->seen = NULL;
    self->feedbacks = self->unknown = 0;
    self->acked_head = self->acked_len = 0;
    self->acked_bytes = 0;
    self->acked_newest = FB_NEVER;
    Py_INCREF(Py_None);
    Py_XSETREF(self->acked_bps, Py_None);
    return 0;
}

static void
FeedbackCore_dealloc(FeedbackCore *self)
{
    PyMem_Free(self->seen);
    PyMem_Free(self->acked);
    Py_XDECREF(self->acked_bps);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* One history record: 1 known, 0 unknown, -1 error. */
static int
fb_lookup(PyObject *history, int seq, long long *send, long long *size)
{
    if (Py_IS_TYPE(history, &SendTargetType)) {
        SendTarget *t = (SendTarget *)history;
        if (t->twcc_sent == NULL)
            return 0;
        TwccSent *slot = &t->twcc_sent[seq & (TWCC_SENT - 1)];
        if (slot->seq != (0x10000u | (uint32_t)seq))
            return 0;
        *send = slot->send_us;
        *size = slot->size;
        return 1;
    }
    PyObject *s = PyLong_FromLong(seq);
    if (s == NULL)
        return -1;
    PyObject *rec = PyObject_CallMethod(history, "twcc_lookup", "O", s);
    Py_DECREF(s);
    if (rec == NULL)
        return -1;
    if (rec == Py_None) {
        Py_DECREF(rec);
        return 0;
    }
    int ok = PyTuple_Check(rec) && PyTuple_GET_SIZE(rec) == 2 &&
             PyLong_Check(PyTuple_GET_ITEM(rec, 0)) && PyLong_Check(PyTuple_GET_ITEM(rec, 1));
    if (ok) {
        int o1, o2;
        *send = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(rec, 0), &o1);
        *size = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(rec, 1), &o2);
        ok = !o1 && !o2 && *send >= -FB_TIME_MAX && *send <= FB_TIME_MAX && *size >= 0 &&
             *size <= 0xFFFFFFFFLL;
    }
    Py_DECREF(rec);
    if (!ok) {
        PyErr_Format(PyExc_ValueError,
                     "twcc_lookup(%d) must return None or (send_us, size) with |send_us| <= "
                     "2**61 and 0 <= size < 2**32",
                     seq);
        return -1;
    }
    return 1;
}

static int
fb_cmp_arrival(const void *a, const void *b)
{
    const FbPacket *x = *(FbPacket *const *)a, *y = *(FbPacket *const *)b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x < y ? -1 : (x > y); /* stable: feedback order among equal arrivals */
}

/* int(num / den) as Python computes it for ints (correctly rounded true division). */
static PyObject *
fb_int_div(long long counted, long long span)
{
    if (counted < (1LL << 53) / 8000000 && span < (1LL << 53))
        return PyLong_FromDouble((double)(counted * 8000000) / (double)span);
    PyObject *c = PyLong_FromLongLong(counted), *k = PyLong_FromLong(8000000);
    PyObject *s = PyLong_FromLongLong(span), *num = NULL, *q = NULL, *out = NULL;
    if (c && k && s && (num = PyNumber_Multiply(c, k)) && (q = PyNumber_TrueDivide(num, s)))
        out = PyNumber_Long(q);
    Py_XDECREF(c);
    Py_XDECREF(k);
    Py_XDECREF(s);
    Py_XDECREF(num);
    Py_XDECREF(q);
    return out;
}

/* The acknowledged-rate window: room for ``more`` entries (before any state changes). */
static int
fb_reserve(FeedbackCore *self, Py_ssize_t more)
{
    if (self->acked_len + more <= self->acked_cap)
        return 0;
    Py_ssize_t cap = self->acked_cap ? self->acked_cap : 64;
    while (cap < self->acked_len + more)
        cap *= 2;
    FbAcked *ring = PyMem_Malloc((size_t)cap * sizeof(FbAcked));
    if (ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->acked_len; i++)
        ring[i] = self->acked[(self->acked_head + i) % self->acked_cap];
    PyMem_Free(self->acked);
    self->acked = ring;
    self->acked_cap = cap;
    self->acked_head = 0;
    return 0;
}

static PyObject *
FeedbackCore_feed(FeedbackCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "feed(base_seq, reference_time, deltas, history, want_results) takes 5 "
                     "arguments (%zd given)",
                     nargs);
        return NULL;
    }
    long long base = PyLong_AsLongLong(args[0]);
    if (base == -1 && PyErr_Occurred())
        return NULL;
    long long ref = PyLong_AsLongLong(args[1]);
    if (ref == -1 && PyErr_Occurred())
        return NULL;
    if (ref < -FB_TIME_MAX / FB_REFERENCE_US || ref > FB_TIME_MAX / FB_REFERENCE_US) {
        PyErr_Format(PyExc_OverflowError, "transport-cc reference time %lld is out of range",
                     ref);
        return NULL;
    }
    if (!PyList_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "deltas must be a list, not %.100s",
                     Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    PyObject *deltas = args[2], *history = args[3];
    int want = PyObject_IsTrue(args[4]);
    if (want < 0)
        return NULL;

    /* 1. check and compute, changing nothing */
    long long offset = self->ref_offset;
    if (self->has_ref) {
        long long d = ref - self->ref; /* both within +-2**56 */
        long long step = ((d + 0x800000) & 0xFFFFFF) - 0x800000;
        offset += step - d;
        if (offset < -FB_TIME_MAX / FB_REFERENCE_US || offset > FB_TIME_MAX / FB_REFERENCE_US) {
            PyErr_SetString(PyExc_OverflowError,
                            "transport-cc reference time unwrapped out of range");
            return NULL;
        }
    }
    Py_ssize_t n = PyList_GET_SIZE(deltas);
    FbPacket stack[FB_STACK], *pk = stack;
    FbPacket *sortbuf_stack[FB_STACK], **order = sortbuf_stack;
    PyObject *out = NULL, *groups = NULL, *results = NULL, *bps = NULL;
    if (n > FB_STACK) {
        pk = PyMem_Malloc((size_t)n * sizeof(FbPacket));
        order = PyMem_Malloc((size_t)n * sizeof(FbPacket *));
        if (pk == NULL || order == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    long long at = ref * FB_REFERENCE_US, shift = offset * FB_REFERENCE_US; /* < 2**62 each */
    int seq0 = (int)(base & 0xFFFF);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(deltas, i);
        FbPacket *p = &pk[i];
        p->seq = (int)((seq0 + i) & 0xFFFF);
        p->received = d != Py_None;
        if (p->received) {
            if (!PyLong_Check(d)) {
                PyErr_Format(PyExc_TypeError, "transport-cc delta %zd is %.100s, not an int",
                             i, Py_TYPE(d)->tp_name);
                goto done;
            }
            int over;
            long long delta = PyLong_AsLongLongAndOverflow(d, &over);
            long long moved;
            if (over || delta < -FB_TIME_MAX / FB_DELTA_US || delta > FB_TIME_MAX / FB_DELTA_US ||
                __builtin_add_overflow(at, delta * FB_DELTA_US, &at) ||
                __builtin_add_overflow(at, shift, &moved) || moved < -FB_TIME_MAX ||
                moved > FB_TIME_MAX) {
                PyErr_Format(PyExc_OverflowError,
                             "transport-cc arrival of packet %zd is out of range", i);
                goto done;
            }
            p->at = moved;
        }
        int known = fb_lookup(history, p->seq, &p->send, &p->size);
        if (known < 0)
            goto done;
        p->known = (char)known;
    }
    if (self->seen == NULL) {
        self->seen = PyMem_Malloc(FB_SEEN * sizeof(int32_t));
        if (self->seen == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (int i = 0; i < FB_SEEN; i++)
            self->seen[i] = -1;
    }
    if (fb_reserve(self, n) < 0)
        goto done;
    groups = PyList_New(0);
    if (groups == NULL)
        goto done;

    /* 2. the adapter: unwrap, filter, look up (FeedbackAdapter.results) */
    self->feedbacks++;
    self->has_ref = 1;
    self->ref = ref;
    self->ref_offset = offset;
    Py_ssize_t kept = 0, received = 0;
    long long newest_send = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        FbPacket *p = &pk[i];
        int32_t *slot = &self->seen[p->seq & (FB_SEEN - 1)];
        if (*slot >> 1 == p->seq && ((*slot & 1) || !p->received))
            continue; /* reported before (received), or lost again */
        if (!p->known) {
            self->unknown++;
            continue;
        }
        *slot = p->seq << 1 | p->received;
        pk[kept++] = *p; /* kept <= i: in place, feedback order */
    }
    if (kept == 0) {
        out = Py_NewRef(Py_None);
        goto done;
    }

    /* 3. the estimator's per-packet steps (DownlinkEstimator.on_feedback) */
    for (Py_ssize_t i = 0; i < kept; i++) {
        FbPacket *p = &pk[i];
        if (!p->received)
            continue;
        if (!received || p->send > newest_send)
            newest_send = p->send;
        order[received++] = p;
        /* _acknowledge: the window in feedback order */
        Py_ssize_t tail = (self->acked_head + self->acked_len) % self->acked_cap;
        self->acked[tail].at = p->at;
        self->acked[tail].size = p->size;
        self->acked_len++;
        self->acked_bytes += p->size;
        if (p->at > self->acked_newest)
            self->acked_newest = p->at;
    }
    long long newest = self->acked_newest;
    while (self->acked_len && self->acked[self->acked_head].at < newest - self->window_us) {
        self->acked_bytes -= self->acked[self->acked_head].size;
        self->acked_head = (self->acked_head + 1) % self->acked_cap;
        self->acked_len--;
    }
    while (self->acked_len > self->window_max) { /* the oldest reported go first */
        self->acked_bytes -= self->acked[self->acked_head].size;
        self->acked_head = (self->acked_head + 1) % self->acked_cap;
        self->acked_len--;
    }
    if (self->acked_len >= 2) {
        FbAcked *first = &self->acked[self->acked_head];
        FbAcked *last = &self->acked[(self->acked_head + self->acked_len - 1) % self->acked_cap];
        long long span = newest - (first->at < last->at ? first->at : last->at);
        long long counted = self->acked_bytes - first->size;
        if (span < self->window_us / 2) {
            span = self->window_us / 2;
            counted = self->acked_bytes;
        }
        bps = fb_int_div(counted, span);
        if (bps == NULL)
            goto done;
        Py_SETREF(self->acked_bps, bps);
        bps = NULL;
    }
    /* _group_packet, in arrival order */
    qsort(order, (size_t)received, sizeof(FbPacket *), fb_cmp_arrival);
    long long *g = self->group, *prev = self->prev;
    for (Py_ssize_t i = 0; i < received; i++) {
        FbPacket *p = order[i];
        if (!self->has_group) {
            g[0] = g[1] = p->send;
            g[2] = p->at;
            self->has_group = 1;
            continue;
        }
        if (p->send < g[0])
            continue; /* reordered from an earlier group: its group is already closed */
        if (p->send - g[0] <= self->burst_us) {
            if (p->send > g[1])
                g[1] = p->send;
            if (p->at > g[2])
                g[2] = p->at;
            continue;
        }
        if (self->has_prev) {
            double send_delta = (double)(g[1] - prev[1]) / 1000.0;
            double arrival_delta = (double)(g[2] - prev[2]) / 1000.0;
            PyObject *item = Py_BuildValue("(ddd)", arrival_delta - send_delta,
                                           (double)g[2] / 1000.0, send_delta);
            if (item == NULL || PyList_Append(groups, item) < 0) {
                Py_XDECREF(item);
                goto done;
            }
            Py_DECREF(item);
        }
        memcpy(prev, g, sizeof(self->prev));
        self->has_prev = 1;
        g[0] = g[1] = p->send;
        g[2] = p->at;
    }
    if (want) {
        results = PyList_New(kept);
        if (results == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < kept; i++) {
            FbPacket *p = &pk[i];
            PyObject *item = p->received
                                 ? Py_BuildValue("(iLLL)", p->seq, p->send, p->size, p->at)
                                 : Py_BuildValue("(iLLO)", p->seq, p->send, p->size, Py_None);
            if (item == NULL)
                goto done;
            PyList_SET_ITEM(results, i, item);
        }
    } else {
        results = Py_NewRef(Py_None);
    }
    if (received)
        out = Py_BuildValue("(nnLOOO)", received, kept - received, newest_send, self->acked_bps,
                            groups, results);
    else
        out = Py_BuildValue("(nnOOOO)", received, kept - received, Py_None, self->acked_bps,
                            groups, results);
done:
    Py_XDECREF(groups);
    Py_XDECREF(results);
    if (pk != stack)
        PyMem_Free(pk);
    if (order != sortbuf_stack)
        PyMem_Free(order);
    return out;
}

static PyObject *
FeedbackCore_get_acked_bps(FeedbackCore *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->acked_bps);
}

static PyObject *
FeedbackCore_get_filter_allocated(FeedbackCore *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->seen != NULL);
}

static PyGetSetDef FeedbackCore_getset[] = {
    {"acked_bps", (getter)FeedbackCore_get_acked_bps, NULL,
     "The acknowledged rate (bits/s) after the last feedback, None before two packets.", NULL},
    {"filter_allocated", (getter)FeedbackCore_get_filter_allocated, NULL,
     "Whether the duplicate filter was allocated (at the first feedback).", NULL},
    {NULL}};

static PyMemberDef FeedbackCore_members[] = {
    {"feedbacks", T_ULONGLONG, offsetof(FeedbackCore, feedbacks), READONLY, NULL},
    {"unknown", T_ULONGLONG, offsetof(FeedbackCore, unknown), READONLY, NULL},
    {"window_len", T_PYSSIZET, offsetof(FeedbackCore, acked_len), READONLY, NULL},
    {NULL}};

static PyMethodDef FeedbackCore_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))FeedbackCore_feed, METH_FASTCALL,
     "feed(base_seq, reference_time, deltas, history, want_results) -> None or (received, "
     "lost, newest_send_us, acked_bps, groups, results)."},
    {NULL}};

static PyTypeObject FeedbackCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.FeedbackCore",
    .tp_basicsize = sizeof(FeedbackCore),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The per-packet part of reading a subscriber's transport-cc feedback.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FeedbackCore_init,
    .tp_dealloc = (destructor)FeedbackCore_dealloc,
    .tp_members = FeedbackCore_members,
    .tp_getset = FeedbackCore_getset,
    .tp_methods = FeedbackCore_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* The delay-based detector of a subscriber's downlink estimate: Trendline                    */

/* Trendline(window=, smoothing=, gain=, max_deltas=, threshold=, k_up=, k_down=,
 *           threshold_min=, threshold_max=, max_jump=, max_dt_ms=, overuse_time_ms=,
 *           overuse_count=): forwarding/bwe.py _Trendline exactly (draft-ietf-rmcat-gcc-02 §5.4
 * with the trendline filter in place of §5.3's Kalman filter, as today's GoogCC does), given
 * bwe.py's constants by name so the policy stays there (bwe._new_trendline).
 *
 * Owns the trendline (the accumulated delay variation, its exponential smoothing, the first
 * arrival, the groups seen, and the last ``window`` points (arrival - first arrival, smoothed)
 * in a fixed ring of at most TL_WINDOW_MAX: nothing is allocated after construction) and the
 * detector on it (the trend, the adaptive threshold, the usage signal as an index into
 * bwe._USAGES: 0 normal, 1 overuse, 2 underuse, the overuse time and count, the previous trend,
 * the time of the last threshold update).
 *
 * update(variation_ms, arrival_ms) -> the slope of the least-squares line through the window,
 * or None until the window is full (or when its x values are all equal). detect(groups) runs
 * what bwe.py's _Trendline.detect runs for each (variation_ms, arrival_ms, send_delta_ms) of
 * the list (FeedbackCore.feed's groups): update, then the overuse detector and the threshold's
 * adaptation. Both take floats only (the reference, given ints, would do part of its arithmetic
 * in exact integers); detect checks the whole list before any state changes.
 *
 * Every double is bit-identical to the reference's: the same operations in the same order, no
 * fused multiply-add (the pragmas at the top of this file), Python's min and max as they
 * compare (min(a, b) is b only if b < a, max(a, b) b only if b > a). */

#define TL_WINDOW_MAX 64
enum { TL_NORMAL = 0, TL_OVERUSE = 1, TL_UNDERUSE = 2 };

typedef struct {
    PyObject_HEAD
    /* the constants (bwe.py's) */
    int window;
    double smoothing, gain, threshold_start, k_up, k_down, threshold_min, threshold_max;
    double max_jump, max_dt_ms, overuse_time_ms;
    long long max_deltas, overuse_limit;
    /* the trendline */
    double accumulated, smoothed, first_arrival_ms;
    char has_first, has_last;
    long long deltas;
    double px[TL_WINDOW_MAX], py[TL_WINDOW_MAX]; /* ring: len points from head, oldest first */
    int head, len;
    /* the detector */
    double trend, threshold, overuse_ms, prev_trend, last_threshold_ms;
    long long overuse_count;
    int usage;
} Trendline;

static int
Trendline_init(Trendline *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"window",        "smoothing",     "gain",          "max_deltas",
                             "threshold",     "k_up",          "k_down",        "threshold_min",
                             "threshold_max", "max_jump",      "max_dt_ms",     "overuse_time_ms",
                             "overuse_count", NULL};
    int window;
    double smoothing, gain, threshold, k_up, k_down, tmin, tmax, max_jump, max_dt, overuse_time;
    long long max_deltas, overuse_count;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iddLddddddddL", kwlist, &window, &smoothing,
                                     &gain, &max_deltas, &threshold, &k_up, &k_down, &tmin, &tmax,
                                     &max_jump, &max_dt, &overuse_time, &overuse_count))
        return -1;
    if (window < 2 || window > TL_WINDOW_MAX) {
        PyErr_Format(PyExc_ValueError, "Trendline needs 2 <= window <= %d", TL_WINDOW_MAX);
        return -1;
    }
    self->window = window;
    self->smoothing = smoothing;
    self->gain = gain;
    self->max_deltas = max_deltas;
    self->threshold_start = threshold;
    self->k_up = k_up;
    self->k_down = k_down;
    self->threshold_min = tmin;
    self->threshold_max = tmax;
    self->max_jump = max_jump;
    self->max_dt_ms = max_dt;
    self->overuse_time_ms = overuse_time;
    self->overuse_limit = overuse_count;
    self->accumulated = self->smoothed = self->first_arrival_ms = 0.0;
    self->has_first = self->has_last = 0;
    self->deltas = 0;
    self->head = self->len = 0;
    self->trend = self->overuse_ms = self->prev_trend = self->last_threshold_ms = 0.0;
    self->threshold = threshold;
    self->overuse_count = 0;
    self->usage = TL_NORMAL;
    return 0;
}

/* _Trendline.update: 1 and the slope in *slope, or 0 (None). */
static int
tl_update(Trendline *s, double variation_ms, double arrival_ms, double *slope)
{
    if (!s->has_first) {
        s->first_arrival_ms = arrival_ms;
        s->has_first = 1;
    }
    s->deltas++;
    s->accumulated += variation_ms;
    s->smoothed = s->smoothing * s->smoothed + (1.0 - s->smoothing) * s->accumulated;
    int slot;
    if (s->len < s->window)
        slot = (s->head + s->len++) % s->window;
    else {
        slot = s->head;
        s->head = (s->head + 1) % s->window;
    }
    s->px[slot] = arrival_ms - s->first_arrival_ms;
    s->py[slot] = s->smoothed;
    if (s->len < s->window)
        return 0;
    /* least squares in one pass, x taken from the window's first point */
    double x0 = s->px[s->head], sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0;
    for (int i = 0, k = s->head; i < s->len; i++, k = k + 1 == s->window ? 0 : k + 1) {
        double x = s->px[k] - x0, y = s->py[k];
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    double n = (double)s->len;
    double den = n * sxx - sx * sx;
    if (den == 0)
        return 0;
    *slope = (n * sxy - sx * sy) / den;
    return 1;
}

/* _Trendline._adapt_threshold (§5.4's adaptive threshold). */
static void
tl_adapt_threshold(Trendline *s, double trend, double now_ms)
{
    double last = s->last_threshold_ms;
    char had = s->has_last;
    s->last_threshold_ms = now_ms;
    s->has_last = 1;
    if (!had)
        return;
    if (fabs(trend) > s->threshold + s->max_jump)
        return; /* a spike: it does not drag the threshold */
    double k = fabs(trend) < s->threshold ? s->k_down : s->k_up;
    double dt = now_ms - last;
    if (s->max_dt_ms < dt) /* min(now_ms - last, max_dt_ms) */
        dt = s->max_dt_ms;
    s->threshold += k * (fabs(trend) - s->threshold) * dt;
    double t = s->threshold;
    if (s->threshold_min > t) /* max(t, threshold_min) */
        t = s->threshold_min;
    if (s->threshold_max < t) /* min(t, threshold_max) */
        t = s->threshold_max;
    s->threshold = t;
}

/* One closed send group through _Trendline.detect's loop body. */
static void
tl_detect(Trendline *s, double variation_ms, double arrival_ms, double send_delta_ms)
{
    double slope;
    if (!tl_update(s, variation_ms, arrival_ms, &slope))
        return;
    long long m = s->max_deltas < s->deltas ? s->max_deltas : s->deltas;
    double trend = (double)m * slope * s->gain;
    s->trend = trend;
    if (trend > s->threshold) {
        s->overuse_ms += s->overuse_ms != 0.0 ? send_delta_ms : send_delta_ms / 2.0;
        s->overuse_count++;
        if (s->overuse_ms > s->overuse_time_ms && s->overuse_count > s->overuse_limit &&
            trend >= s->prev_trend) {
            s->overuse_ms = 0.0;
            s->overuse_count = 0;
            s->usage = TL_OVERUSE;
        }
    }
    else if (trend < -s->threshold) {
        s->overuse_ms = 0.0;
        s->overuse_count = 0;
        s->usage = TL_UNDERUSE;
    }
    else {
        s->overuse_ms = 0.0;
        s->overuse_count = 0;
        s->usage = TL_NORMAL;
    }
    s->prev_trend = trend;
    tl_adapt_threshold(s, trend, arrival_ms);
}

static PyObject *
Trendline_update(Trendline *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "update(variation_ms, arrival_ms) takes 2 arguments");
        return NULL;
    }
    if (!PyFloat_Check(args[0]) || !PyFloat_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "update(variation_ms, arrival_ms) takes floats");
        return NULL;
    }
    double slope;
    if (!tl_update(self, PyFloat_AS_DOUBLE(args[0]), PyFloat_AS_DOUBLE(args[1]), &slope))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(slope);
}

static PyObject *
Trendline_detect(Trendline *self, PyObject *groups)
{
    if (!PyList_Check(groups)) {
        PyErr_SetString(PyExc_TypeError, "groups must be a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(groups);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *g = PyList_GET_ITEM(groups, i);
        if (!PyTuple_Check(g) || PyTuple_GET_SIZE(g) != 3 ||
            !PyFloat_Check(PyTuple_GET_ITEM(g, 0)) || !PyFloat_Check(PyTuple_GET_ITEM(g, 1)) ||
            !PyFloat_Check(PyTuple_GET_ITEM(g, 2))) {
            PyErr_Format(PyExc_TypeError,
                         "group %zd is not (variation_ms, arrival_ms, send_delta_ms) of floats",
                         i);
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *g = PyList_GET_ITEM(groups, i);
        tl_detect(self, PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(g, 0)),
                  PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(g, 1)),
                  PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(g, 2)));
    }
    Py_RETURN_NONE;
}

static PyObject *
Trendline_get_first_arrival_ms(Trendline *self, void *Py_UNUSED(closure))
{
    if (!self->has_first)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->first_arrival_ms);
}

static PyObject *
Trendline_get_last_threshold_ms(Trendline *self, void *Py_UNUSED(closure))
{
    if (!self->has_last)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->last_threshold_ms);
}

static PyObject *
Trendline_get_points(Trendline *self, void *Py_UNUSED(closure))
{
    PyObject *out = PyList_New(self->len);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < self->len; i++) {
        int k = (self->head + i) % self->window;
        PyObject *point = Py_BuildValue("(dd)", self->px[k], self->py[k]);
        if (point == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, point);
    }
    return out;
}

static PyGetSetDef Trendline_getset[] = {
    {"first_arrival_ms", (getter)Trendline_get_first_arrival_ms, NULL,
     "The first group's arrival (ms), None before any.", NULL},
    {"last_threshold_ms", (getter)Trendline_get_last_threshold_ms, NULL,
     "When the threshold was last adapted (ms), None before any trend.", NULL},
    {"points", (getter)Trendline_get_points, NULL,
     "The window's (arrival - first arrival ms, smoothed delay ms), oldest first.", NULL},
    {NULL}};

static PyMemberDef Trendline_members[] = {
    {"window", T_INT, offsetof(Trendline, window), READONLY, NULL},
    {"accumulated", T_DOUBLE, offsetof(Trendline, accumulated), READONLY, NULL},
    {"smoothed", T_DOUBLE, offsetof(Trendline, smoothed), READONLY, NULL},
    {"deltas", T_LONGLONG, offsetof(Trendline, deltas), READONLY, NULL},
    {"trend", T_DOUBLE, offsetof(Trendline, trend), READONLY, NULL},
    {"threshold", T_DOUBLE, offsetof(Trendline, threshold), READONLY, NULL},
    {"usage", T_INT, offsetof(Trendline, usage), READONLY, NULL},
    {"overuse_ms", T_DOUBLE, offsetof(Trendline, overuse_ms), READONLY, NULL},
    {"overuse_count", T_LONGLONG, offsetof(Trendline, overuse_count), READONLY, NULL},
    {"prev_trend", T_DOUBLE, offsetof(Trendline, prev_trend), READONLY, NULL},
    {NULL}};

static PyMethodDef Trendline_methods[] = {
    {"update", (PyCFunction)(void (*)(void))Trendline_update, METH_FASTCALL,
     "update(variation_ms, arrival_ms) -> the window's slope, or None until it is full."},
    {"detect", (PyCFunction)Trendline_detect, METH_O,
     "detect(groups): each closed send group (variation_ms, arrival_ms, send_delta_ms) through "
     "the trendline, the overuse detector and the adaptive threshold."},
    {NULL}};

static PyTypeObject TrendlineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "zvonok.media._fastpath.Trendline",
    .tp_basicsize = sizeof(Trendline),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The delay-based detector of a downlink estimate (forwarding/bwe.py _Trendline).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Trendline_init,
    .tp_members = Trendline_members,
    .tp_getset = Trendline_getset,
    .tp_methods = Trendline_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* RFC 6464 audio levels read back from an audio producer's ring                             */

/* The loudness threshold and silence of rooms/speakers.py (ACTIVE_LEVEL, SILENCE). */
#define LEVEL_ACTIVE 50
#define LEVEL_SILENCE 127

/* audio_levels(slots, newest, count, ext_id, packets, loud, loudness, slow)
 *     -> (packets, loud, loudness)
 * The active-speaker detector's read of one audio track (rooms/speakers.py read_levels, which
 * it replaces when built, exactly): the packets of the ring ``slots`` (a list of bytes or None,
 * a power of two long, indexed by seq & (len - 1)) with sequence numbers newest - min(count,
 * len) + 1 .. newest, oldest first, each one whose slot holds that sequence number; its RFC
 * 6464 level read directly where browsers put it (the first element of a one-byte RFC 8285
 * block, id ``ext_id``, one byte long, no CSRCs), any other layout through ``slow(packet,
 * ext_id)`` (speakers.level_of: the level, or None for a packet without one). Each packet with
 * a level adds 1 to ``packets`` and, when the level is at most LEVEL_ACTIVE, 1 to ``loud`` and
 * (LEVEL_SILENCE - level) / LEVEL_SILENCE to ``loudness``, in order (the same doubles as the
 * reference's float sums). A slot shorter than 4 bytes (never in a ring: the core keeps RTP
 * packets) is skipped. */
static PyObject *
audio_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "audio_levels takes 8 arguments");
        return NULL;
    }
    PyObject *slots = args[0], *ext_obj = args[3], *slow = args[7];
    if (!PyList_Check(slots)) {
        PyErr_SetString(PyExc_TypeError, "slots must be a list");
        return NULL;
    }
    long newest = PyLong_AsLong(args[1]);
    long count = PyLong_AsLong(args[2]);
    long ext_id = PyLong_AsLong(ext_obj);
    long long packets = PyLong_AsLongLong(args[4]);
    long long loud = PyLong_AsLongLong(args[5]);
    double loudness = PyFloat_AsDouble(args[6]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t size = PyList_GET_SIZE(slots);
    if (size == 0 || (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError, "slots is not a power of two long");
        return NULL;
    }
    Py_ssize_t mask = size - 1;
    long todo = count < (long)size ? count : (long)size;
    int direct = ext_id >= 1 && ext_id <= 14 ? (int)(ext_id << 4) : -1;
    for (long back = todo - 1; back >= 0; back--) {
        unsigned seq = (unsigned)((newest - back) & 0xFFFF);
        PyObject *packet = PyList_GET_ITEM(slots, (Py_ssize_t)seq & mask);
        if (packet == Py_None)
            continue;
        if (!PyBytes_Check(packet)) {
            PyErr_SetString(PyExc_TypeError, "a ring slot holds neither bytes nor None");
            return NULL;
        }
        const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(packet);
        Py_ssize_t n = PyBytes_GET_SIZE(packet);
        if (n < 4 || rd16(p + 2) != seq)
            continue;
        long level;
        if (n >= 20 && (int)p[16] == direct && (p[0] & 0x1F) == 0x10 && p[12] == 0xBE &&
            p[13] == 0xDE && n >= 16 + 4 * (Py_ssize_t)rd16(p + 14) && rd16(p + 14) >= 1) {
            level = p[17] & 0x7F;
        }
        else {
            PyObject *found = PyObject_CallFunctionObjArgs(slow, packet, ext_obj, NULL);
            if (found == NULL)
                return NULL;
            if (found == Py_None) {
                Py_DECREF(found);
                continue;
            }
            level = PyLong_AsLong(found);
            Py_DECREF(found);
            if (level == -1 && PyErr_Occurred())
                return NULL;
        }
        packets++;
        if (level <= LEVEL_ACTIVE) {
            loud++;
            loudness += (double)(LEVEL_SILENCE - level) / (double)LEVEL_SILENCE;
        }
    }
    return Py_BuildValue("(LLd)", packets, loud, loudness);
}

/* ------------------------------------------------------------------------------------------ */

static PyObject *
set_slow_rewrite(PyObject *module, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "rewrite must be callable");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(slow_rewrite, fn);
    Py_RETURN_NONE;
}

static PyObject *
tx_batches(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(tx_flushes);
}

static PyMethodDef module_methods[] = {
    {"tx_batches", (PyCFunction)tx_batches, METH_NOARGS,
     "tx_batches() -> how many send batches (one sendmmsg each, unless it would block) left."},
    {"set_slow_rewrite", set_slow_rewrite, METH_O,
     "set_slow_rewrite(fn): the reference rewrite_rtp for two-byte header extensions."},
    {"twcc_parse", twcc_parse, METH_O,
     "twcc_parse(fci) -> (base_seq, reference_time, fb_count, deltas): a transport-cc "
     "feedback FCI (packets.rtcp.parse_twcc_fci)."},
    {"audio_levels", (PyCFunction)(void (*)(void))audio_levels, METH_FASTCALL,
     "audio_levels(slots, newest, count, ext_id, packets, loud, loudness, slow) -> (packets, "
     "loud, loudness): an audio ring's RFC 6464 levels (rooms.speakers.read_levels)."},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "zvonok.media._fastpath",
    "The compiled forwarding loop (see the C source's header comment).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&SendTargetType) < 0 || PyType_Ready(&ForwarderType) < 0 ||
        PyType_Ready(&FanoutType) < 0 || PyType_Ready(&RtpDispatcherType) < 0 ||
        PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&DemuxType) < 0 ||
        PyType_Ready(&ReceiveStatsBaseType) < 0 || PyType_Ready(&ProducerCoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "SendTarget", (PyObject *)&SendTargetType) < 0 ||
        PyModule_AddObjectRef(m, "Forwarder", (PyObject *)&ForwarderType) < 0 ||
        PyModule_AddObjectRef(m, "Fanout", (PyObject *)&FanoutType) < 0 ||
        PyModule_AddObjectRef(m, "RtpDispatcher", (PyObject *)&RtpDispatcherType) < 0 ||
        PyModule_AddObjectRef(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObjectRef(m, "Demux", (PyObject *)&DemuxType) < 0 ||
        PyModule_AddObjectRef(m, "ReceiveStatsBase", (PyObject *)&ReceiveStatsBaseType) < 0 ||
        PyModule_AddObjectRef(m, "ProducerCore", (PyObject *)&ProducerCoreType) < 0 ||
        PyType_Ready(&FeedbackCoreType) < 0 ||
        PyModule_AddObjectRef(m, "FeedbackCore", (PyObject *)&FeedbackCoreType) < 0 ||
        PyType_Ready(&TrendlineType) < 0 ||
        PyModule_AddObjectRef(m, "Trendline", (PyObject *)&TrendlineType) < 0 ||
        PyModule_AddIntConstant(m, "TRENDLINE_WINDOW_MAX", TL_WINDOW_MAX) < 0 ||
        PyModule_AddIntConstant(m, "FEEDBACK_SEEN", FB_SEEN) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PLAIN", MAX_PLAIN) < 0 ||
        PyModule_AddIntConstant(m, "BATCH", BATCH) < 0 ||
        PyModule_AddIntConstant(m, "RX_BATCH", RX_BATCH) < 0 ||
        PyModule_AddIntConstant(m, "RX_FLUSH", RX_FLUSH) < 0 ||
        PyModule_AddIntConstant(m, "SYNC_TRAIL", SYNC_TRAIL) < 0 ||
        PyModule_AddIntConstant(m, "MAX_DROPOUT", MAX_DROPOUT) < 0 ||
        PyModule_AddIntConstant(m, "MAX_MISORDER", MAX_MISORDER) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_SENT", TWCC_SENT) < 0 ||
        PyModule_AddIntConstant(m, "TWCC_ARRIVALS", TWCC_ARRIVALS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
