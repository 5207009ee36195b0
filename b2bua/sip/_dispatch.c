/*
 * The signalling dispatcher: with several signalling workers, one thread reads the SIP
 * UDP socket and passes every datagram to worker hash(Call-ID) mod N over that worker's
 * datagram socketpair, so one worker sees a call from its INVITE to its BYE, and every
 * retransmission and digest retry of it (docs/scaling.md).
 *
 * The Call-ID is found with a byte scan of the header lines (full name or compact "i"),
 * not a parse. REGISTER requests, and datagrams without a readable Call-ID (keep-alives,
 * garbage), go to worker 0: registrations live there, and its parser counts the garbage.
 *
 * The thread never touches a Python object and runs without the GIL, so a busy worker's
 * event loop never delays the others' traffic. Each datagram reaches its worker as one
 * frame of b2bua/ipc.py: a 4-byte big-endian length, then the msgpack array
 * ["udp", source ip, source port, datagram as bin], whose header is written here by hand
 * in front of the datagram (sent from where it was read, never copied). A worker that
 * does not read fast enough loses datagrams here (counted as dropped), as it would from
 * a full UDP buffer.
 *
 * The dispatcher holds descriptor numbers it does not own: Python stops it (which joins
 * the thread) before closing any of them.
 */
#define _GNU_SOURCE  /* pthread_setname_np */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 16          /* datagrams read per recvmmsg */
#define BUFSIZE 65536     /* a whole UDP datagram always fits: never truncated */
#define HEADSIZE 96       /* the frame's head: an IPv6 address and a port fit */
#define MAX_WORKERS 64

/* ------------------------------------------------------------------ the routing rule */

/* FNV-1a, 32 bits: the same function in the thread and in call_id_hash(), which the
 * workers use to choose Call-IDs of their own that come back to them. */
static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Does the header line at p (up to end) have the name `name` (lower case)? Returns the
 * position just after its colon, or NULL. */
static const unsigned char *header_value(const unsigned char *p, const unsigned char *end,
                                         const char *name) {
    size_t n = strlen(name);
    if ((size_t)(end - p) <= n) return NULL;
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != name[i]) return NULL;
    p += n;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return (p < end && *p == ':') ? p + 1 : NULL;
}

/* The Call-ID's value, whitespace trimmed; 0 when the headers end without one. */
static int find_call_id(const unsigned char *msg, size_t len, const unsigned char **value,
                        size_t *value_len) {
    const unsigned char *end = msg + len;
    const unsigned char *line = memchr(msg, '\n', len);
    while (line != NULL && ++line < end) {
        if (*line == '\r' || *line == '\n') return 0;  /* the blank line: no Call-ID */
        const unsigned char *v = header_value(line, end, "call-id");
        if (v == NULL) v = header_value(line, end, "i");
        const unsigned char *eol = memchr(line, '\n', (size_t)(end - line));
        if (v != NULL) {
            const unsigned char *stop = eol ? eol : end;
            while (v < stop && (*v == ' ' || *v == '\t')) v++;
            while (stop > v && (stop[-1] == '\r' || stop[-1] == ' ' || stop[-1] == '\t'))
                stop--;
            if (stop == v) return 0;
            *value = v;
            *value_len = (size_t)(stop - v);
            return 1;
        }
        line = eol;
    }
    return 0;
}

/* The worker of N a datagram goes to; *found says whether it had a Call-ID. */
static unsigned route(const unsigned char *msg, size_t len, unsigned workers, int *found) {
    static const char reg[] = "REGISTER ";
    const unsigned char *value;
    size_t value_len;
    *found = find_call_id(msg, len, &value, &value_len);
    if (!*found || workers <= 1 ||
        (len >= sizeof(reg) - 1 && memcmp(msg, reg, sizeof(reg) - 1) == 0))
        return 0;
    return fnv1a(value, value_len) % workers;
}

/* ------------------------------------------------------------------ the thread */

typedef struct {
    PyObject_HEAD
    int sip_fd;
    int stop_fd;          /* eventfd: written once to end the thread */
    unsigned workers;
    int worker_fds[MAX_WORKERS];
    int running;
    pthread_t thread;
    uint64_t received, read_errors, no_call_id;
    uint64_t dispatched[MAX_WORKERS], dropped[MAX_WORKERS];
} Dispatcher;

static void count(uint64_t *counter) { __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED); }

static unsigned char *put_be(unsigned char *p, uint32_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

/* The frame's head for ["udp", host, port, <len bytes>]: returns its length. */
static size_t frame_head(unsigned char *head, const char *host, unsigned port, size_t len) {
    size_t host_len = strlen(host);  /* < INET6_ADDRSTRLEN: fits a str8 */
    unsigned char *p = head + 4;     /* the length, filled in last */
    *p++ = 0x94;                     /* array of 4 */
    *p++ = 0xa3;                     /* str of 3 */
    memcpy(p, "udp", 3);
    p += 3;
    *p++ = 0xd9;                     /* str8 */
    *p++ = (unsigned char)host_len;
    memcpy(p, host, host_len);
    p += host_len;
    *p++ = 0xcd;                     /* uint16 */
    p = put_be(p, port, 2);
    *p++ = 0xc6;                     /* bin32 */
    p = put_be(p, (uint32_t)len, 4);
    size_t head_len = (size_t)(p - head);
    put_be(head, (uint32_t)(head_len - 4 + len), 4);
    return head_len;
}

static void pass_on(Dispatcher *d, unsigned char *data, size_t len,
                    const struct sockaddr_storage *name) {
    unsigned char head[HEADSIZE];
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    if (name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)name;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)name;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    }
    size_t head_len = frame_head(head, host, port, len);
    int found;
    unsigned target = route(data, len, d->workers, &found);
    if (!found) count(&d->no_call_id);
    struct iovec iov[2] = {{head, head_len}, {data, len}};
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    if (sendmsg(d->worker_fds[target], &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        count(&d->dropped[target]);
    else
        count(&d->dispatched[target]);
}

static void *dispatch_loop(void *arg) {
    Dispatcher *d = arg;
    pthread_setname_np(pthread_self(), "sip-dispatch");  /* for top -H and bench/cps.py */
    unsigned char (*bufs)[BUFSIZE] = malloc(sizeof(unsigned char[BATCH][BUFSIZE]));
    if (bufs == NULL) {
        count(&d->read_errors);
        return NULL;
    }
    struct sockaddr_storage names[BATCH];
    struct iovec iovs[BATCH];
    struct mmsghdr msgs[BATCH];
    struct pollfd fds[2] = {{d->sip_fd, POLLIN, 0}, {d->stop_fd, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            count(&d->read_errors);
            break;
        }
        if (fds[1].revents) break;
        for (;;) {
            for (int i = 0; i < BATCH; i++) {
                iovs[i].iov_base = bufs[i];
                iovs[i].iov_len = BUFSIZE;
                memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
                msgs[i].msg_hdr.msg_iov = &iovs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = &names[i];
                msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
            }
            int n = recvmmsg(d->sip_fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (n < 0) {
                /* ICMP errors of earlier sends surface here: counted, not fatal. */
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    count(&d->read_errors);
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                continue;
            }
            for (int i = 0; i < n; i++) {
                count(&d->received);
                pass_on(d, bufs[i], msgs[i].msg_len, &names[i]);
            }
            if (n < BATCH) break;
        }
    }
    free(bufs);
    return NULL;
}

/* ------------------------------------------------------------------ Python type */

static int Dispatcher_init(Dispatcher *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"sip_fd", "worker_fds", NULL};
    int sip_fd;
    PyObject *fds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO", kwlist, &sip_fd, &fds)) return -1;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "dispatcher is running");
        return -1;
    }
    PyObject *seq = PySequence_Fast(fds, "worker_fds must be a sequence of descriptors");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > MAX_WORKERS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "1 to %d workers", MAX_WORKERS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (fd == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        self->worker_fds[i] = (int)fd;
    }
    Py_DECREF(seq);
    self->workers = (unsigned)n;
    self->sip_fd = sip_fd;
    if (self->stop_fd < 0 && (self->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static PyObject *Dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    Dispatcher *self = (Dispatcher *)type->tp_alloc(type, 0);
    if (self != NULL) self->stop_fd = -1;
    return (PyObject *)self;
}

static PyObject *Dispatcher_start(Dispatcher *self, PyObject *Py_UNUSED(ignored)) {
    if (self->running) Py_RETURN_NONE;
    if (self->stop_fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "dispatcher not initialised");
        return NULL;
    }
    /* The thread takes no signal: Python's handlers run in the main thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&self->thread, NULL, dispatch_loop, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    self->running = 1;
    Py_RETURN_NONE;
}

static void stop_thread(Dispatcher *self) {
    if (!self->running) return;
    uint64_t one = 1;
    while (write(self->stop_fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    pthread_join(self->thread, NULL);
    self->running = 0;
    uint64_t drain;
    while (read(self->stop_fd, &drain, sizeof(drain)) < 0 && errno == EINTR) {
    }
}

static PyObject *Dispatcher_stop(Dispatcher *self, PyObject *Py_UNUSED(ignored)) {
    Py_BEGIN_ALLOW_THREADS
    stop_thread(self);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static uint64_t load(const uint64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static PyObject *counter_list(const uint64_t *counters, unsigned n) {
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (unsigned i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(load(&counters[i]));
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *Dispatcher_stats(Dispatcher *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *dispatched = counter_list(self->dispatched, self->workers);
    PyObject *dropped = counter_list(self->dropped, self->workers);
    PyObject *out = NULL;
    if (dispatched != NULL && dropped != NULL)
        out = Py_BuildValue("{s:K,s:K,s:K,s:O,s:O,s:O}",
                            "received", (unsigned long long)load(&self->received),
                            "read_errors", (unsigned long long)load(&self->read_errors),
                            "no_call_id", (unsigned long long)load(&self->no_call_id),
                            "dispatched", dispatched, "dropped", dropped,
                            "running", self->running ? Py_True : Py_False);
    Py_XDECREF(dispatched);
    Py_XDECREF(dropped);
    return out;
}

static void Dispatcher_dealloc(Dispatcher *self) {
    Py_BEGIN_ALLOW_THREADS
    stop_thread(self);
    Py_END_ALLOW_THREADS
    if (self->stop_fd >= 0) close(self->stop_fd);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Dispatcher_methods[] = {
    {"start", (PyCFunction)Dispatcher_start, METH_NOARGS, "Start the dispatching thread."},
    {"stop", (PyCFunction)Dispatcher_stop, METH_NOARGS, "Stop the thread and wait for it."},
    {"stats", (PyCFunction)Dispatcher_stats, METH_NOARGS, "Counters since creation."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DispatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "b2bua.sip._dispatch.Dispatcher",
    .tp_basicsize = sizeof(Dispatcher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Passes SIP datagrams to signalling workers by Call-ID, in its own thread.",
    .tp_new = Dispatcher_new,
    .tp_init = (initproc)Dispatcher_init,
    .tp_dealloc = (destructor)Dispatcher_dealloc,
    .tp_methods = Dispatcher_methods,
};

/* ------------------------------------------------------------------ functions */

static PyObject *py_call_id_hash(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint32_t h = fnv1a(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(h);
}

static PyObject *py_route(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    unsigned workers;
    if (!PyArg_ParseTuple(args, "y*I", &view, &workers)) return NULL;
    if (workers < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "at least one worker");
        return NULL;
    }
    int found;
    unsigned target = route(view.buf, (size_t)view.len, workers, &found);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(target);
}

static PyMethodDef module_methods[] = {
    {"call_id_hash", py_call_id_hash, METH_O, "The dispatcher's hash of a Call-ID value."},
    {"route", py_route, METH_VARARGS, "The worker a datagram goes to, of N."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_dispatch", "SIP dispatcher by Call-ID.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__dispatch(void) {
    if (PyType_Ready(&DispatcherType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&DispatcherType);
    if (PyModule_AddObject(m, "Dispatcher", (PyObject *)&DispatcherType) < 0) {
        Py_DECREF(&DispatcherType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_WORKERS", MAX_WORKERS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
