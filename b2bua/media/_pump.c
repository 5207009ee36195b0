/*
 * The relay's receive loop: every RTP socket of an event loop's relay sessions in one
 * epoll set, read in batches with recvmmsg.
 *
 * A socket is registered with a callback, its protocol's datagram_received(data, addr),
 * and starts in "slow" mode: each packet goes to that callback, where the Python relay
 * decides (latching, ciphers, counters). When the Python side has latched both legs, it
 * switches the socket to "forward" mode with the other leg's socket: from then on a
 * well-formed RTP packet from the connected peer is sent out of that socket here, in C,
 * without a Python call, and only counted (with up to two payload ciphers applied in
 * turn: the receiving leg's, to decrypt, and the sending leg's, to encrypt;
 * rtpcipher.c). A packet a cipher fails on is counted and dropped. Anything else (RTCP
 * multiplexed on the port, a malformed packet, a packet queued from another source
 * before the latch) still goes to the callback.
 *
 * The event loop watches the epoll descriptor with add_reader(fd, pump.run): one Python
 * call per wake-up, however many packets are ready. Level-triggered: a socket with more
 * packets than one batch, or a run that stops at its budget, is simply ready again.
 *
 * The pump holds descriptor numbers, not sockets: the Python side removes a socket
 * before closing it, and takes back (forward -1) every direction that sends out of a
 * socket before closing that one, so no number here is ever stale.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rtpcipher.h"

#define BATCH 8           /* datagrams read per recvmmsg */
#define BUFSIZE 65536     /* a whole UDP datagram always fits: never truncated */
#define EVENTS 256        /* sockets per epoll_wait */
#define ROUNDS 64         /* epoll_wait calls per run at most, whatever they yield */

typedef struct {
    int fd;               /* -1: free */
    int out_fd;           /* -1: slow mode, every packet to the callback */
    PyObject *ciphers[2];  /* forward mode: NativeCipher objects applied in turn */
    uint32_t gen;         /* bumped on remove, so a stale epoll event is ignored */
    PyObject *callback;
    struct sockaddr_storage peer;  /* forward mode: the connected source */
    socklen_t peer_len;
    struct sockaddr_storage last_name;  /* the source of the last slow packet ... */
    socklen_t last_len;
    PyObject *last_addr;  /* ... and its (host, port) tuple, reused while it repeats */
    uint64_t rx_packets, rx_bytes, sock_errors, out_errors, out_dropped, cipher_errors;
    double last_rx;
} Slot;

typedef struct {
    PyObject_HEAD
    int epfd;
    int running;
    Slot *slots;
    uint32_t nslots, cap;
    uint32_t *free_slots;
    uint32_t nfree;
    uint32_t active;
    unsigned char *bufs;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage names[BATCH];
} Pump;

/* The payload offset of a well-formed RTP packet; -1 for anything else. */
static long
rtp_payload(const unsigned char *d, size_t n)
{
    if (n < 12)
        return -1;
    unsigned b0 = d[0];
    if ((b0 & 0xC0) != 0x80 || (d[1] >= 192 && d[1] <= 223))
        return -1;  /* not version 2, or RTCP multiplexed on the RTP port */
    size_t off = 12 + ((size_t)(b0 & 15) << 2);
    if (b0 & 0x10) {
        if (n < off + 4)
            return -1;
        off += 4 + ((((size_t)d[off + 2] << 8) | d[off + 3]) << 2);
    }
    return off <= n ? (long)off : -1;
}

/* A payload cipher of SS_RTPENCRYPTIONMODE 1-3 (rtpcipher.c) as a Python object, so the
 * relay builds it once per call leg and hands it to forward(). */
typedef struct {
    PyObject_HEAD
    rtp_cipher *cipher;
    int mode;
} NativeCipher;

static PyTypeObject NativeCipherType;

static void
clear_ciphers(Slot *s)
{
    Py_CLEAR(s->ciphers[0]);
    Py_CLEAR(s->ciphers[1]);
}

static int
same_source(const Slot *s, const struct sockaddr_storage *name, socklen_t len)
{
    if (name->ss_family != s->peer.ss_family)
        return 0;
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        const struct sockaddr_in *b = (const struct sockaddr_in *)&s->peer;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&s->peer;
        return a->sin6_port == b->sin6_port
               && memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
    }
    (void)len;
    return 0;
}

/* The source as Python's socket module and the event loop give it: (host, port) for
 * IPv4, (host, port, flowinfo, scope_id) for IPv6. */
static PyObject *
make_addr(const struct sockaddr_storage *name)
{
    char host[INET6_ADDRSTRLEN];
    if (name->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned)ntohl(a->sin6_flowinfo), (unsigned)a->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

static PyObject *
slot_addr(Slot *s, const struct sockaddr_storage *name, socklen_t len)
{
    if (s->last_addr != NULL && len == s->last_len && memcmp(name, &s->last_name, len) == 0) {
        Py_INCREF(s->last_addr);
        return s->last_addr;
    }
    PyObject *addr = make_addr(name);
    if (addr == NULL)
        return NULL;
    Py_XSETREF(s->last_addr, Py_NewRef(addr));
    memcpy(&s->last_name, name, len);
    s->last_len = len;
    return addr;
}

static Slot *
get_slot(Pump *self, unsigned long idx)
{
    if (idx >= self->nslots || self->slots[idx].fd < 0) {
        PyErr_Format(PyExc_KeyError, "no relay socket in slot %lu", idx);
        return NULL;
    }
    return &self->slots[idx];
}

static PyObject *
Pump_new(PyTypeObject *type, PyObject *args, PyObject *Py_UNUSED(kwds))
{
    if (!PyArg_ParseTuple(args, ":Pump"))
        return NULL;
    Pump *self = (Pump *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->bufs = PyMem_Malloc((size_t)BATCH * BUFSIZE);
    if (self->epfd < 0 || self->bufs == NULL) {
        if (self->epfd < 0)
            PyErr_SetFromErrno(PyExc_OSError);
        else
            PyErr_NoMemory();
        Py_DECREF(self);
        return NULL;
    }
    for (int j = 0; j < BATCH; j++) {
        self->iov[j].iov_base = self->bufs + (size_t)j * BUFSIZE;
        self->iov[j].iov_len = BUFSIZE;
    }
    return (PyObject *)self;
}

static void
Pump_dealloc(Pump *self)
{
    for (uint32_t i = 0; i < self->nslots; i++) {
        Py_CLEAR(self->slots[i].callback);
        Py_CLEAR(self->slots[i].last_addr);
        clear_ciphers(&self->slots[i]);
    }
    if (self->epfd >= 0)
        close(self->epfd);
    PyMem_Free(self->slots);
    PyMem_Free(self->free_slots);
    PyMem_Free(self->bufs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Pump_fileno(Pump *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->epfd);
}

static PyObject *
Pump_add(Pump *self, PyObject *args)
{
    int fd;
    PyObject *callback;
    if (!PyArg_ParseTuple(args, "iO:add", &fd, &callback))
        return NULL;
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    uint32_t idx;
    if (self->nfree > 0) {
        idx = self->free_slots[--self->nfree];
    } else {
        if (self->nslots == self->cap) {
            uint32_t cap = self->cap ? self->cap * 2 : 64;
            Slot *slots = PyMem_Realloc(self->slots, cap * sizeof(Slot));
            if (slots == NULL)
                return PyErr_NoMemory();
            self->slots = slots;
            uint32_t *free_slots = PyMem_Realloc(self->free_slots, cap * sizeof(uint32_t));
            if (free_slots == NULL)
                return PyErr_NoMemory();
            self->free_slots = free_slots;
            self->cap = cap;
        }
        idx = self->nslots++;
        memset(&self->slots[idx], 0, sizeof(Slot));
        self->slots[idx].fd = -1;
    }
    Slot *s = &self->slots[idx];
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)s->gen << 32) | idx};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        self->free_slots[self->nfree++] = idx;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    uint32_t gen = s->gen;
    memset(s, 0, sizeof(Slot));
    s->gen = gen;
    s->fd = fd;
    s->out_fd = -1;
    s->callback = Py_NewRef(callback);
    self->active++;
    return PyLong_FromUnsignedLong(idx);
}

static PyObject *
Pump_forward(Pump *self, PyObject *args)
{
    unsigned long idx;
    int out_fd;
    PyObject *ciphers = NULL;
    if (!PyArg_ParseTuple(args, "ki|O!:forward", &idx, &out_fd, &PyTuple_Type, &ciphers))
        return NULL;
    Slot *s = get_slot(self, idx);
    if (s == NULL)
        return NULL;
    Py_ssize_t n = ciphers == NULL ? 0 : PyTuple_GET_SIZE(ciphers);
    if (n > 2) {
        PyErr_SetString(PyExc_ValueError, "at most two ciphers");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(ciphers, i), &NativeCipherType)) {
            PyErr_SetString(PyExc_TypeError, "a cipher is a NativeCipher");
            return NULL;
        }
    }
    if (out_fd >= 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        if (getpeername(s->fd, (struct sockaddr *)&peer, &len) != 0)
            return PyErr_SetFromErrno(PyExc_OSError);  /* forward only from a connected source */
        memcpy(&s->peer, &peer, len);
        s->peer_len = len;
    }
    s->out_fd = out_fd < 0 ? -1 : out_fd;
    clear_ciphers(s);
    for (Py_ssize_t i = 0; i < n && s->out_fd >= 0; i++)
        s->ciphers[i] = Py_NewRef(PyTuple_GET_ITEM(ciphers, i));
    Py_RETURN_NONE;
}

/* (rx_packets, rx_bytes, socket_errors, out_errors, out_dropped, cipher_errors, last_rx
 * or None): what was forwarded here since the last take, then zeroed (last_rx is kept).
 * A packet a cipher failed on is in cipher_errors only: received, never sent. */
static PyObject *
take_counters(Slot *s)
{
    PyObject *last = s->last_rx > 0 ? PyFloat_FromDouble(s->last_rx) : Py_NewRef(Py_None);
    if (last == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(KKKKKKN)", (unsigned long long)s->rx_packets,
                                  (unsigned long long)s->rx_bytes,
                                  (unsigned long long)s->sock_errors,
                                  (unsigned long long)s->out_errors,
                                  (unsigned long long)s->out_dropped,
                                  (unsigned long long)s->cipher_errors, last);
    if (out != NULL)
        s->rx_packets = s->rx_bytes = s->sock_errors = s->out_errors = s->out_dropped =
            s->cipher_errors = 0;
    return out;
}

static PyObject *
Pump_take(Pump *self, PyObject *args)
{
    unsigned long idx;
    if (!PyArg_ParseTuple(args, "k:take", &idx))
        return NULL;
    Slot *s = get_slot(self, idx);
    return s == NULL ? NULL : take_counters(s);
}

static PyObject *
Pump_remove(Pump *self, PyObject *args)
{
    unsigned long idx;
    if (!PyArg_ParseTuple(args, "k:remove", &idx))
        return NULL;
    Slot *s = get_slot(self, idx);
    if (s == NULL)
        return NULL;
    /* Unregister first: whatever happens next, the socket is never read again. Fails
     * only if the socket was closed first, which dropped it from the set anyway. */
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    PyObject *counters = take_counters(s);
    s->fd = -1;
    s->out_fd = -1;
    s->gen++;
    Py_CLEAR(s->callback);
    Py_CLEAR(s->last_addr);
    clear_ciphers(s);
    self->free_slots[self->nfree++] = (uint32_t)idx;
    self->active--;
    return counters;  /* NULL (MemoryError) only after the slot is gone */
}

/* Returns -1 when the callback raised something that is not an Exception
 * (KeyboardInterrupt, SystemExit): that must reach the event loop. */
static int
deliver(Pump *self, uint32_t idx, const unsigned char *data, size_t len,
        const struct sockaddr_storage *name, socklen_t namelen)
{
    Slot *s = &self->slots[idx];
    PyObject *callback = Py_NewRef(s->callback);
    PyObject *addr = slot_addr(s, name, namelen);
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
    PyObject *result = NULL;
    if (addr != NULL && bytes != NULL) {
        PyObject *argv[2] = {bytes, addr};
        result = PyObject_Vectorcall(callback, argv, 2, NULL);
    }
    int status = 0;
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception))
            PyErr_WriteUnraisable(callback);  /* one bad packet must not stop the others */
        else
            status = -1;
    }
    Py_XDECREF(result);
    Py_XDECREF(bytes);
    Py_XDECREF(addr);
    Py_DECREF(callback);
    return status;
}

/* Read and relay what is ready, up to about `budget` datagrams; returns how many. */
static PyObject *
Pump_run(Pump *self, PyObject *args)
{
    int budget = 4096;
    if (!PyArg_ParseTuple(args, "|i:run", &budget))
        return NULL;
    if (self->running)
        return PyLong_FromLong(0);
    self->running = 1;
    struct epoll_event events[EVENTS];
    long handled = 0;
    /* Bounded by rounds too: a socket that stays ready but yields nothing (an error
     * repeated on every read) must not hold the loop. */
    for (int round = 0; round < ROUNDS && handled < budget; round++) {
        int n = epoll_wait(self->epfd, events, EVENTS, 0);
        if (n <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);  /* time.monotonic()'s clock */
        double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        for (int e = 0; e < n; e++) {
            uint32_t idx = (uint32_t)events[e].data.u64;
            uint32_t gen = (uint32_t)(events[e].data.u64 >> 32);
            if (idx >= self->nslots || self->slots[idx].fd < 0 || self->slots[idx].gen != gen)
                continue;  /* removed by a callback earlier in this run */
            for (int j = 0; j < BATCH; j++) {
                struct msghdr *h = &self->msgs[j].msg_hdr;
                h->msg_name = &self->names[j];
                h->msg_namelen = sizeof self->names[j];
                h->msg_iov = &self->iov[j];
                h->msg_iovlen = 1;
                h->msg_control = NULL;
                h->msg_controllen = 0;
                h->msg_flags = 0;
            }
            int r = recvmmsg(self->slots[idx].fd, self->msgs, BATCH, MSG_DONTWAIT, NULL);
            if (r < 0) {
                /* An ICMP error reported on this socket (after a send from it). */
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    self->slots[idx].sock_errors++;
                continue;
            }
            for (int j = 0; j < r; j++) {
                Slot *s = &self->slots[idx];  /* re-read: a callback may grow the table */
                if (s->fd < 0 || s->gen != gen)
                    break;
                unsigned char *data = self->iov[j].iov_base;
                size_t len = self->msgs[j].msg_len;
                socklen_t namelen = self->msgs[j].msg_hdr.msg_namelen;
                handled++;
                long off;
                if (s->out_fd >= 0 && (off = rtp_payload(data, len)) >= 0
                    && same_source(s, &self->names[j], namelen)) {
                    s->last_rx = now;
                    int failed = 0;
                    for (int k = 0; k < 2 && s->ciphers[k] != NULL && !failed; k++)
                        failed = rtp_cipher_apply(((NativeCipher *)s->ciphers[k])->cipher,
                                                  data, (size_t)off, len);
                    if (failed) {
                        s->cipher_errors++;
                        continue;
                    }
                    s->rx_packets++;
                    s->rx_bytes += len;
                    if (send(s->out_fd, data, len, MSG_DONTWAIT) < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
                            s->out_dropped++;
                        else
                            s->out_errors++;
                    }
                    continue;
                }
                if (deliver(self, idx, data, len, &self->names[j], namelen) < 0) {
                    self->running = 0;
                    return NULL;
                }
            }
        }
    }
    self->running = 0;
    return PyLong_FromLong(handled);
}

static PyObject *
Pump_len(Pump *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLong(self->active);
}

static PyMethodDef Pump_methods[] = {
    {"fileno", (PyCFunction)Pump_fileno, METH_NOARGS, "The epoll descriptor to watch."},
    {"add", (PyCFunction)Pump_add, METH_VARARGS,
     "add(fd, callback) -> slot: read this socket; packets go to callback(data, addr)."},
    {"forward", (PyCFunction)Pump_forward, METH_VARARGS,
     "forward(slot, out_fd[, ciphers]): relay well-formed RTP from the connected peer out "
     "of out_fd, each NativeCipher applied to the payload in turn (-1: every packet to the "
     "callback)."},
    {"take", (PyCFunction)Pump_take, METH_VARARGS,
     "take(slot) -> (rx_packets, rx_bytes, socket_errors, out_errors, out_dropped, "
     "cipher_errors, last_rx): counted since the last take."},
    {"remove", (PyCFunction)Pump_remove, METH_VARARGS,
     "remove(slot) -> the last take(slot): stop reading the socket (before closing it)."},
    {"run", (PyCFunction)Pump_run, METH_VARARGS,
     "run([budget]) -> datagrams handled: read and relay what is ready."},
    {"active", (PyCFunction)Pump_len, METH_NOARGS, "Sockets registered."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
NativeCipher_new(PyTypeObject *type, PyObject *args, PyObject *Py_UNUSED(kwds))
{
    int mode;
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "iy*:NativeCipher", &mode, &key))
        return NULL;
    const char *why = NULL;
    rtp_cipher *cipher = rtp_cipher_new(mode, key.buf, (size_t)key.len, &why);
    PyBuffer_Release(&key);
    if (cipher == NULL) {
        PyErr_SetString(PyExc_ValueError, why);
        return NULL;
    }
    NativeCipher *self = (NativeCipher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        rtp_cipher_free(cipher);
        return NULL;
    }
    self->cipher = cipher;
    self->mode = mode;
    return (PyObject *)self;
}

static void
NativeCipher_dealloc(NativeCipher *self)
{
    rtp_cipher_free(self->cipher);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The whole packet with its payload ciphered, as the receive loop does it; a packet
 * that is not well-formed RTP comes back unchanged (PayloadCipher.encrypt passes it). */
static PyObject *
NativeCipher_apply(NativeCipher *self, PyObject *arg)
{
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "apply() takes bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(arg);
    size_t len = (size_t)PyBytes_GET_SIZE(arg);
    long off = rtp_payload(data, len);
    if (off < 0)
        return Py_NewRef(arg);
    PyObject *out = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)len);
    if (out == NULL)
        return NULL;
    if (rtp_cipher_apply(self->cipher, (unsigned char *)PyBytes_AS_STRING(out), (size_t)off,
                         len) != 0) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "the cipher failed on this packet");
        return NULL;
    }
    return out;
}

static PyObject *
NativeCipher_inject_failures(NativeCipher *self, PyObject *arg)
{
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred())
        return NULL;
    rtp_cipher_inject_failures(self->cipher, (unsigned)n);
    Py_RETURN_NONE;
}

static PyObject *
NativeCipher_get_mode(NativeCipher *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->mode);
}

static PyMethodDef NativeCipher_methods[] = {
    {"apply", (PyCFunction)NativeCipher_apply, METH_O,
     "apply(packet) -> the packet with its RTP payload ciphered (unchanged if not RTP)."},
    {"_inject_failures", (PyCFunction)NativeCipher_inject_failures, METH_O,
     "For tests: the next n applications fail as a libcrypto failure would."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef NativeCipher_getset[] = {
    {"mode", (getter)NativeCipher_get_mode, NULL, "SS_RTPENCRYPTIONMODE (1-3).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject NativeCipherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "b2bua.media._pump.NativeCipher",
    .tp_basicsize = sizeof(NativeCipher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "NativeCipher(mode, key): an RTP payload cipher (modes 1-3) for the receive "
              "loop.",
    .tp_new = NativeCipher_new,
    .tp_dealloc = (destructor)NativeCipher_dealloc,
    .tp_methods = NativeCipher_methods,
    .tp_getset = NativeCipher_getset,
};

static PyObject *
rc4_keystream(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer key;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*n:rc4_keystream", &key, &n))
        return NULL;
    if (key.len < 1 || key.len > 256 || n < 0 || n > 65536) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "a key of 1 to 256 bytes, at most 65536 bytes out");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out != NULL)
        rtp_rc4_keystream(key.buf, (size_t)key.len, (unsigned char *)PyBytes_AS_STRING(out),
                          (size_t)n);
    PyBuffer_Release(&key);
    return out;
}

static PyMethodDef module_methods[] = {
    {"rc4_keystream", rc4_keystream, METH_VARARGS,
     "rc4_keystream(key, n) -> the first n bytes of RC4's keystream (for RFC 6229's "
     "vectors)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "b2bua.media._pump.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The relay's receive loop over its RTP sockets (epoll + recvmmsg).",
    .tp_new = Pump_new,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_methods = Pump_methods,
};

static struct PyModuleDef pump_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_pump",
    .m_doc = "The relay's receive loop in C.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__pump(void)
{
    if (PyType_Ready(&PumpType) < 0 || PyType_Ready(&NativeCipherType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&pump_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Pump", (PyObject *)&PumpType) < 0
        || PyModule_AddObjectRef(m, "NativeCipher", (PyObject *)&NativeCipherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
