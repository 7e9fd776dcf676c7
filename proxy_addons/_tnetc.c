/* The flows.mitm tnetstring encoder in C: byte-identical to mitmproxy.io.tnetstring.dumps.
 *
 * proxy_addons/tnet.py loads it when it was built (``pip install`` compiles it where a C
 * compiler is present) and keeps its pure-Python encoder otherwise. Encoding a flow in Python
 * was about a quarter of what recording costs the gateway per hop (docs/performance.md).
 *
 * Exact types only (None, bool, int, float, str, bytes, list, tuple, dict, and the already
 * encoded ``tnet.Encoded`` spliced as it is); anything else, a subclass included, is handed to
 * the fallback (mitmproxy's own encoder), so the output never differs from mitmproxy's.
 * A dict's items are written last first, as mitmproxy writes them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *fallback = NULL;      /* mitmproxy.io.tnetstring.dumps */
static PyTypeObject *encoded = NULL;   /* proxy_addons.tnet.Encoded */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Buf;

static int grow(Buf *b, Py_ssize_t need) {
    if (b->len + need <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < b->len + need)
        cap = b->len + need;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, Py_ssize_t n) {
    if (grow(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* "<n>:" into head (≥ 24 chars), returns its length: snprintf cost more than the rest */
static int decimal(char *head, long long n) {
    char tmp[24];
    int i = 0, h = 0;
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        tmp[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        head[h++] = '-';
    while (i)
        head[h++] = tmp[--i];
    return h;
}

static int length(char *head, Py_ssize_t n) {
    int h = decimal(head, n);
    head[h++] = ':';
    return h;
}

/* "<len>:<data><tag>" */
static int atom(Buf *b, const char *s, Py_ssize_t n, char tag) {
    char head[32];
    int h = length(head, n);
    if (grow(b, h + n + 1) < 0)
        return -1;
    memcpy(b->data + b->len, head, h);
    memcpy(b->data + b->len + h, s, n);
    b->data[b->len + h + n] = tag;
    b->len += h + n + 1;
    return 0;
}

/* The payload written since ``start`` becomes "<len>:<payload><tag>". */
static int wrap(Buf *b, Py_ssize_t start, char tag) {
    Py_ssize_t n = b->len - start;
    char head[32];
    int h = length(head, n);
    if (grow(b, h + 1) < 0)
        return -1;
    memmove(b->data + start + h, b->data + start, n);
    memcpy(b->data + start, head, h);
    b->len += h;
    b->data[b->len++] = tag;
    return 0;
}

static int enc(Buf *b, PyObject *v);

static int text(Buf *b, PyObject *s, char tag) { /* s: an exact str */
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    return u == NULL ? -1 : atom(b, u, n, tag);
}

static int bytes_of(Buf *b, PyObject *out) { /* splice what the fallback returned */
    int r;
    if (out == NULL)
        return -1;
    if (!PyBytes_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "tnetstring fallback did not return bytes");
        r = -1;
    } else {
        r = put(b, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out));
    }
    Py_DECREF(out);
    return r;
}

static int seq(Buf *b, PyObject *v) { /* an exact list or tuple, in order */
    Py_ssize_t start = b->len;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(v); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(v, i);
        Py_INCREF(item);
        int r = enc(b, item);
        Py_DECREF(item);
        if (r < 0)
            return -1;
    }
    return wrap(b, start, ']');
}

static int dict(Buf *b, PyObject *v) { /* an exact dict, items last first */
    Py_ssize_t n = PyDict_GET_SIZE(v), pos = 0, i = 0, start = b->len;
    PyObject *k, *x, *small[64];
    PyObject **items = n <= 32 ? small : PyMem_New(PyObject *, 2 * n);
    int r = 0;
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    while (i < n && PyDict_Next(v, &pos, &k, &x)) {
        Py_INCREF(k);
        Py_INCREF(x);
        items[2 * i] = k;
        items[2 * i + 1] = x;
        i++;
    }
    for (Py_ssize_t j = i - 1; j >= 0; j--) {
        if (r == 0 && (enc(b, items[2 * j]) < 0 || enc(b, items[2 * j + 1]) < 0))
            r = -1;
    }
    for (Py_ssize_t j = 0; j < i; j++) {
        Py_DECREF(items[2 * j]);
        Py_DECREF(items[2 * j + 1]);
    }
    if (items != small)
        PyMem_Free(items);
    return r < 0 ? -1 : wrap(b, start, '}');
}

static int enc(Buf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None)
        return put(b, "0:~", 3);
    if (v == Py_True)
        return put(b, "4:true!", 7);
    if (v == Py_False)
        return put(b, "5:false!", 8);
    if (t == &PyUnicode_Type)
        return text(b, v, ';');
    if (t == &PyBytes_Type)
        return atom(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), ',');
    if (t == encoded)
        return put(b, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    if (t == &PyLong_Type) {
        int over;
        long long n = PyLong_AsLongLongAndOverflow(v, &over);
        if (n == -1 && PyErr_Occurred())
            return -1;
        if (!over) {
            char digits[24];
            return atom(b, digits, decimal(digits, n), '#');
        }
        PyObject *s = PyObject_Str(v); /* beyond 64 bits */
        if (s == NULL)
            return -1;
        int r = text(b, s, '#');
        Py_DECREF(s);
        return r;
    }
    if (t == &PyFloat_Type) { /* what float.__repr__ writes */
        char *s = PyOS_double_to_string(PyFloat_AS_DOUBLE(v), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (s == NULL)
            return -1;
        int r = atom(b, s, (Py_ssize_t)strlen(s), '^');
        PyMem_Free(s);
        return r;
    }
    if (t == &PyList_Type || t == &PyTuple_Type || t == &PyDict_Type) {
        if (Py_EnterRecursiveCall(" while encoding a tnetstring"))
            return -1;
        int r = t == &PyDict_Type ? dict(b, v) : seq(b, v);
        Py_LeaveRecursiveCall();
        return r;
    }
    return bytes_of(b, PyObject_CallOneArg(fallback, v));
}

static PyObject *dumps(PyObject *self, PyObject *v) {
    if (fallback == NULL || encoded == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_tnetc.setup(fallback, Encoded) was not called");
        return NULL;
    }
    Buf b = {NULL, 0, 0};
    if (grow(&b, 4096) < 0)
        return NULL;
    PyObject *out = enc(&b, v) < 0 ? NULL : PyBytes_FromStringAndSize(b.data, b.len);
    PyMem_Free(b.data);
    return out;
}

static PyObject *setup(PyObject *self, PyObject *args) {
    PyObject *f, *t;
    if (!PyArg_ParseTuple(args, "OO!", &f, &PyType_Type, &t))
        return NULL;
    if (!PyCallable_Check(f) || !PyType_IsSubtype((PyTypeObject *)t, &PyBytes_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup(fallback: callable, Encoded: a bytes subclass)");
        return NULL;
    }
    Py_XSETREF(fallback, Py_NewRef(f));
    Py_XSETREF(encoded, (PyTypeObject *)Py_NewRef(t));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"dumps", dumps, METH_O, "A value as a tnetstring, byte-identical to mitmproxy's encoder."},
    {"setup", setup, METH_VARARGS, "setup(fallback, Encoded): the encoder for other types; the spliced type."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tnetc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__tnetc(void) { return PyModule_Create(&module); }
