/*
 * Counters shared by the signalling workers: a table in shared memory (a memfd every
 * worker maps) keyed by 64-bit integers, with one column per worker.
 *
 * A worker only ever changes its own column, with atomic adds; a total is the sum of the
 * columns. So a worker that dies leaves exactly its own contribution behind, which worker
 * 0 clears before starting it again, and no lock is ever held: a capacity check is
 * "add one, read the total, take the one back if it is over", which never admits more
 * than the limit (two workers racing for the last place may both back off; neither
 * overshoots).
 *
 * Keys are inserted by compare-and-swap into open addressing and never removed: they are
 * configuration ids (gateways, phones), so the table only holds as many as are configured.
 * Key 0 marks a free slot and is refused.
 *
 * An "evicting" table (security state keyed by hashes of what sources send) is direct
 * mapped instead: a key has one slot, and a new key takes it over from the old one, whose
 * counts are dropped. So a flood of distinct keys costs no memory beyond the table, as
 * with the engine's bounded maps; under such a flood an entry can be replaced early.
 *
 * Call rates (`pace`) are the exception to "a worker writes only its own column". A rate
 * is not a sum of what each worker did but one moving deadline, the GCRA's theoretical
 * arrival time (TAT): a call at `now` is admitted iff max(TAT, now) - now <= (burst - 1)
 * x interval, and then TAT = max(TAT, now) + interval. Split into per-worker columns it
 * could not be exact (each worker would grant its own burst), so a rate key keeps its TAT
 * in column 0 of its slot and every worker updates that one cell with a compare-and-swap
 * loop: read the TAT, decide, swap the new TAT in only if nobody changed it meanwhile,
 * else decide again on what the other worker wrote. Every admission moves the TAT by
 * exactly one interval from the value it was decided on, so the workers together admit
 * what one would; a retry happens only because another worker's swap succeeded (lock-free).
 * Rate keys are a kind of their own (b2bua/calls/counts.py), never counted with `add` or
 * `admit`, so no column-0 count is mixed into them. Column 0 is worker 0's, the
 * supervisor's, which is never cleared while the switch runs (a worker restarted has its
 * own column cleared): a TAT outlives any other worker's restart. Were it cleared, or the
 * key evicted, the TAT reads 0, a fresh bucket: at most one extra burst. Times are
 * microseconds of a clock every worker shares (CLOCK_MONOTONIC); the arithmetic
 * saturates, so no input overflows.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define MAX_WORKERS 64

typedef struct {
    PyObject_HEAD
    Py_buffer view;       /* the shared memory, held for the object's life */
    int64_t *keys;
    int64_t *values;      /* slots x workers, a slot's columns side by side */
    uint64_t mask;        /* slots - 1 */
    unsigned workers;
    unsigned worker;
    int evicting;
} Tally;

static uint64_t mix(uint64_t k) {  /* splitmix64's finaliser: ids are sequential */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    return k ^ (k >> 31);
}

static int64_t *column(Tally *t, int64_t slot, unsigned worker);

/* Evicting tables: the key's one slot, taken over from another key when `insert`. */
static int64_t own_slot(Tally *t, int64_t key, int insert) {
    uint64_t i = mix((uint64_t)key) & t->mask;
    for (int tries = 0; tries < 4; tries++) {
        int64_t seen = __atomic_load_n(&t->keys[i], __ATOMIC_ACQUIRE);
        if (seen == key) return (int64_t)i;
        if (!insert) return -1;
        if (__atomic_compare_exchange_n(&t->keys[i], &seen, key, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            for (unsigned w = 0; w < t->workers; w++)
                __atomic_store_n(column(t, (int64_t)i, w), 0, __ATOMIC_RELEASE);
            return (int64_t)i;
        }
    }
    return -1;  /* contended by other keys: the caller counts it as a full table */
}

/* The slot of key, inserted when `insert`; -1 when absent (or the table is full). */
static int64_t slot_of(Tally *t, int64_t key, int insert) {
    if (t->evicting) return own_slot(t, key, insert);
    uint64_t i = mix((uint64_t)key) & t->mask;
    for (uint64_t probes = 0; probes <= t->mask; probes++, i = (i + 1) & t->mask) {
        int64_t seen = __atomic_load_n(&t->keys[i], __ATOMIC_ACQUIRE);
        if (seen == key) return (int64_t)i;
        if (seen == 0) {
            if (!insert) return -1;
            int64_t expected = 0;
            if (__atomic_compare_exchange_n(&t->keys[i], &expected, key, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return (int64_t)i;
            if (expected == key) return (int64_t)i;  /* another worker inserted it */
        }
    }
    return -1;
}

static int64_t *column(Tally *t, int64_t slot, unsigned worker) {
    return &t->values[(uint64_t)slot * t->workers + worker];
}

static int64_t total_at(Tally *t, int64_t slot) {
    int64_t sum = 0;
    for (unsigned w = 0; w < t->workers; w++)
        sum += __atomic_load_n(column(t, slot, w), __ATOMIC_ACQUIRE);
    return sum;
}

static int Tally_init(Tally *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"memory", "workers", "worker", "evicting", NULL};
    PyObject *memory;
    unsigned workers, worker;
    int evicting = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OII|p", kwlist, &memory, &workers, &worker,
                                     &evicting))
        return -1;
    if (workers < 1 || workers > MAX_WORKERS || worker >= workers) {
        PyErr_SetString(PyExc_ValueError, "worker must be below workers, 1 to 64 workers");
        return -1;
    }
    if (self->view.obj != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(memory, &self->view, PyBUF_WRITABLE) < 0) return -1;
    uint64_t per_slot = 8ULL * (1 + workers);
    uint64_t slots = 1;
    while (slots * 2 * per_slot <= (uint64_t)self->view.len) slots *= 2;
    if (slots * per_slot > (uint64_t)self->view.len || slots < 2 ||
        ((uintptr_t)self->view.buf & 7) != 0) {
        PyBuffer_Release(&self->view);
        PyErr_SetString(PyExc_ValueError, "memory too small or misaligned for a table");
        return -1;
    }
    self->keys = self->view.buf;
    self->values = (int64_t *)self->view.buf + slots;
    self->mask = slots - 1;
    self->workers = workers;
    self->worker = worker;
    self->evicting = evicting;
    return 0;
}

static int ready(Tally *self) {
    if (self->view.obj == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tally not initialised");
        return 0;
    }
    return 1;
}

/* The slot of the key object; inserted when `insert` (OverflowError when the table has
 * no room), else -1 when absent. Returns -1 with an exception set on error. */
static int find(Tally *t, PyObject *key_obj, int insert, int64_t *slot) {
    if (!ready(t)) return -1;
    int64_t key = PyLong_AsLongLong(key_obj);
    if (PyErr_Occurred()) return -1;
    if (key == 0) {
        PyErr_SetString(PyExc_ValueError, "key 0 is reserved");
        return -1;
    }
    *slot = slot_of(t, key, insert);
    if (insert && *slot < 0) {
        PyErr_SetString(PyExc_OverflowError, "shared counter table is full");
        return -1;
    }
    return 0;
}

static PyObject *Tally_add(Tally *self, PyObject *args) {
    PyObject *key_obj;
    long long delta;
    int64_t slot;
    if (!PyArg_ParseTuple(args, "OL", &key_obj, &delta) || find(self, key_obj, 1, &slot) < 0)
        return NULL;
    __atomic_add_fetch(column(self, slot, self->worker), delta, __ATOMIC_ACQ_REL);
    return PyLong_FromLongLong(total_at(self, slot));
}

static PyObject *Tally_admit(Tally *self, PyObject *args) {
    PyObject *key_obj;
    long long limit;
    int64_t slot;
    if (!PyArg_ParseTuple(args, "OL", &key_obj, &limit) || find(self, key_obj, 1, &slot) < 0)
        return NULL;
    int64_t *mine = column(self, slot, self->worker);
    __atomic_add_fetch(mine, 1, __ATOMIC_ACQ_REL);
    if (total_at(self, slot) > limit) {
        __atomic_sub_fetch(mine, 1, __ATOMIC_ACQ_REL);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static int64_t sat_add(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_mul(int64_t a, int64_t b) {  /* a, b >= 0 here */
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return INT64_MAX;
    return r;
}

/* pace(key, now_us, interval_us, burst): GCRA on the TAT in column 0 of the key's slot
 * (see the header). 0: admitted; else the microseconds until a call would be. */
static PyObject *Tally_pace(Tally *self, PyObject *args) {
    PyObject *key_obj;
    long long now, interval, burst;
    int64_t slot;
    if (!PyArg_ParseTuple(args, "OLLL", &key_obj, &now, &interval, &burst)) return NULL;
    if (interval <= 0 || burst < 1) {
        PyErr_SetString(PyExc_ValueError, "interval must be above 0 and burst at least 1");
        return NULL;
    }
    if (find(self, key_obj, 1, &slot) < 0) return NULL;
    int64_t tolerance = sat_mul(burst - 1, interval);
    int64_t *cell = column(self, slot, 0);
    int64_t seen = __atomic_load_n(cell, __ATOMIC_ACQUIRE);
    for (;;) {
        int64_t base = seen > now ? seen : now;
        int64_t wait = sat_sub(sat_sub(base, now), tolerance);
        if (wait > 0) return PyLong_FromLongLong(wait);  /* refused: nothing written */
        /* seen is refreshed with the other worker's TAT when the swap fails */
        if (__atomic_compare_exchange_n(cell, &seen, sat_add(base, interval), 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return PyLong_FromLong(0);
    }
}

static PyObject *Tally_total(Tally *self, PyObject *key_obj) {
    int64_t slot;
    if (find(self, key_obj, 0, &slot) < 0) return NULL;
    return PyLong_FromLongLong(slot < 0 ? 0 : total_at(self, slot));
}

static PyObject *Tally_maximum(Tally *self, PyObject *key_obj) {
    int64_t slot;
    if (find(self, key_obj, 0, &slot) < 0) return NULL;
    int64_t best = 0;
    for (unsigned w = 0; slot >= 0 && w < self->workers; w++) {
        int64_t v = __atomic_load_n(column(self, slot, w), __ATOMIC_ACQUIRE);
        if (v > best) best = v;
    }
    return PyLong_FromLongLong(best);
}

static PyObject *Tally_store(Tally *self, PyObject *args) {
    PyObject *key_obj;
    long long value;
    int64_t slot;
    if (!PyArg_ParseTuple(args, "OL", &key_obj, &value) || find(self, key_obj, 1, &slot) < 0)
        return NULL;
    __atomic_store_n(column(self, slot, self->worker), value, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Tally_reset(Tally *self, PyObject *key_obj) {
    int64_t slot;
    if (find(self, key_obj, 0, &slot) < 0) return NULL;
    for (unsigned w = 0; slot >= 0 && w < self->workers; w++)
        __atomic_store_n(column(self, slot, w), 0, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Tally_clear_column(Tally *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    long worker = PyLong_AsLong(arg);
    if (worker == -1 && PyErr_Occurred()) return NULL;
    if (worker < 0 || (unsigned long)worker >= self->workers) {
        PyErr_SetString(PyExc_ValueError, "no such worker");
        return NULL;
    }
    for (uint64_t i = 0; i <= self->mask; i++)
        __atomic_store_n(column(self, (int64_t)i, (unsigned)worker), 0, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Tally_used(Tally *self, PyObject *Py_UNUSED(ignored)) {
    if (!ready(self)) return NULL;
    uint64_t used = 0;
    for (uint64_t i = 0; i <= self->mask; i++)
        used += __atomic_load_n(&self->keys[i], __ATOMIC_RELAXED) != 0;
    return Py_BuildValue("(KK)", (unsigned long long)used,
                         (unsigned long long)(self->mask + 1));
}

static void Tally_dealloc(Tally *self) {
    if (self->view.obj != NULL) PyBuffer_Release(&self->view);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Tally_methods[] = {
    {"add", (PyCFunction)Tally_add, METH_VARARGS,
     "add(key, delta) -> total: change this worker's column."},
    {"admit", (PyCFunction)Tally_admit, METH_VARARGS,
     "admit(key, limit) -> bool: one more unless the total would pass limit."},
    {"pace", (PyCFunction)Tally_pace, METH_VARARGS,
     "pace(key, now_us, interval_us, burst) -> 0 when a call is admitted at this rate "
     "(GCRA, shared by every worker), else the microseconds until one would be."},
    {"total", (PyCFunction)Tally_total, METH_O, "Sum of every worker's column."},
    {"maximum", (PyCFunction)Tally_maximum, METH_O, "Largest column (a deadline)."},
    {"store", (PyCFunction)Tally_store, METH_VARARGS, "store(key, value): this column."},
    {"reset", (PyCFunction)Tally_reset, METH_O, "Zero every worker's column of a key."},
    {"clear_column", (PyCFunction)Tally_clear_column, METH_O,
     "Zero a worker's column, every key (the worker is down)."},
    {"used", (PyCFunction)Tally_used, METH_NOARGS, "(slots used, slots)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TallyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "b2bua._tally.Tally",
    .tp_basicsize = sizeof(Tally),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counters in shared memory, one column per signalling worker.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tally_init,
    .tp_dealloc = (destructor)Tally_dealloc,
    .tp_methods = Tally_methods,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_tally", "Counters shared by the signalling workers.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__tally(void) {
    if (PyType_Ready(&TallyType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&TallyType);
    if (PyModule_AddObject(m, "Tally", (PyObject *)&TallyType) < 0) {
        Py_DECREF(&TallyType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
