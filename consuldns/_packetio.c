/* consuldns._packetio: the UDP packet loop with recvmmsg/sendmmsg, tens of datagrams per
 * system call. Optional: consuldns/packetio.py falls back to recvfrom/sendto without it and
 * documents the contract both follow. Only packets and addresses live here; every DNS
 * decision stays in Python.
 *
 * Both calls pass MSG_DONTWAIT, so they never block whatever the socket's mode, and they
 * keep the GIL: that makes the shared receive buffers safe without a lock. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_BATCH 64        /* datagrams per system call */
#define MAX_DATAGRAM 4096   /* longer datagrams are cut here, as recvfrom(4096) cuts them */
#define HOST_MEMO_SIZE 256  /* client addresses whose text is kept; a power of two */

typedef union {
    struct sockaddr any;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} SocketAddress;

/* A client address as the kernel gave it: compared and hashed by its bytes, indexed like
 * the tuple recvfrom returns ((host, port) or (host, port, flowinfo, scope_id)). */
typedef struct {
    PyObject_HEAD
    SocketAddress name;
    socklen_t length;
} Address;

static PyTypeObject AddressType;

/* ------------------------------------------------------------------ host text memo */

/* The text of recently seen client IPs, so a client sending many queries gets the same str
 * object each time: no inet_ntop, and the ACL's dict lookup hits on identity. */
typedef struct {
    sa_family_t family;
    unsigned char raw[16];
    PyObject *text;
} MemoEntry;

static MemoEntry host_memo[HOST_MEMO_SIZE];

static const unsigned char *
raw_ip(const Address *address, size_t *size)
{
    if (address->name.any.sa_family == AF_INET6) {
        *size = 16;
        return (const unsigned char *)&address->name.v6.sin6_addr;
    }
    *size = 4;
    return (const unsigned char *)&address->name.v4.sin_addr;
}

static size_t
memo_slot(const unsigned char *raw, size_t size)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < size; i++) {
        hash = (hash ^ raw[i]) * 16777619u;
    }
    return (hash ^ (hash >> 16)) & (HOST_MEMO_SIZE - 1);
}

static PyObject *
host_text(const Address *address)
{
    size_t size;
    const unsigned char *raw = raw_ip(address, &size);
    sa_family_t family = address->name.any.sa_family;
    MemoEntry *entry = &host_memo[memo_slot(raw, size)];
    if (entry->text != NULL && entry->family == family && memcmp(entry->raw, raw, size) == 0) {
        Py_INCREF(entry->text);
        return entry->text;
    }
    char buffer[INET6_ADDRSTRLEN];
    if (inet_ntop(family, raw, buffer, sizeof buffer) == NULL) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *text = PyUnicode_DecodeASCII(buffer, (Py_ssize_t)strlen(buffer), NULL);
    if (text == NULL) {
        return NULL;
    }
    Py_INCREF(text);
    Py_XSETREF(entry->text, text);
    entry->family = family;
    memcpy(entry->raw, raw, size);
    return text;
}

/* ------------------------------------------------------------------ Address */

static PyObject *
new_address(const SocketAddress *name, socklen_t length)
{
    socklen_t wanted;
    if (name->any.sa_family == AF_INET) {
        wanted = sizeof(struct sockaddr_in);
    } else if (name->any.sa_family == AF_INET6) {
        wanted = sizeof(struct sockaddr_in6);
    } else {
        wanted = 0;
    }
    if (wanted == 0 || length < wanted) {
        PyErr_Format(PyExc_ValueError, "unsupported address family %d", name->any.sa_family);
        return NULL;
    }
    Address *address = PyObject_New(Address, &AddressType);
    if (address == NULL) {
        return NULL;
    }
    memcpy(&address->name, name, wanted);
    address->length = wanted;
    return (PyObject *)address;
}

static int
is_v6(const Address *address)
{
    return address->name.any.sa_family == AF_INET6;
}

static Py_ssize_t
address_length(PyObject *self)
{
    return is_v6((Address *)self) ? 4 : 2;
}

static PyObject *
address_item(PyObject *self, Py_ssize_t index)
{
    const Address *address = (Address *)self;
    switch (index) {
    case 0:
        return host_text(address);
    case 1: /* sin_port and sin6_port share their offset */
        return PyLong_FromLong(ntohs(address->name.v4.sin_port));
    case 2:
        if (is_v6(address)) {
            return PyLong_FromUnsignedLong(ntohl(address->name.v6.sin6_flowinfo));
        }
        break;
    case 3:
        if (is_v6(address)) {
            return PyLong_FromUnsignedLong(address->name.v6.sin6_scope_id);
        }
        break;
    }
    PyErr_SetString(PyExc_IndexError, "Address index out of range");
    return NULL;
}

static PyObject *
address_repr(PyObject *self)
{
    PyObject *fields = PySequence_Tuple(self);
    if (fields == NULL) {
        return NULL;
    }
    PyObject *text = PyUnicode_FromFormat("Address%R", fields);
    Py_DECREF(fields);
    return text;
}

static Py_hash_t
address_hash(PyObject *self)
{
    const Address *address = (Address *)self;
    const unsigned char *bytes = (const unsigned char *)&address->name;
    Py_uhash_t hash = 14695981039346656037u; /* FNV-1a, 64 bits */
    for (socklen_t i = 0; i < address->length; i++) {
        hash = (hash ^ bytes[i]) * 1099511628211u;
    }
    return hash == (Py_uhash_t)-1 ? -2 : (Py_hash_t)hash;
}

static PyObject *
address_compare(PyObject *self, PyObject *other, int op)
{
    if (!Py_IS_TYPE(other, &AddressType) || (op != Py_EQ && op != Py_NE)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    const Address *left = (Address *)self, *right = (Address *)other;
    int same = left->length == right->length
               && memcmp(&left->name, &right->name, left->length) == 0;
    return PyBool_FromLong(op == Py_EQ ? same : !same);
}

static void
address_dealloc(PyObject *self)
{
    PyObject_Free(self);
}

static PySequenceMethods address_as_sequence = {
    .sq_length = address_length,
    .sq_item = address_item,
};

static PyTypeObject AddressType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "consuldns._packetio.Address",
    .tp_doc = PyDoc_STR("A datagram's source address, indexed like recvfrom's tuple: "
                        "[0] host text, [1] port (IPv6 also [2] flowinfo, [3] scope_id)."),
    .tp_basicsize = sizeof(Address),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = address_dealloc,
    .tp_repr = address_repr,
    .tp_hash = address_hash,
    .tp_richcompare = address_compare,
    .tp_as_sequence = &address_as_sequence,
};

/* ------------------------------------------------------------------ sockets */

static PyObject *fileno_name; /* "fileno", interned at import */

/* The descriptor of a socket object; a closed socket (fileno() -1) raises EBADF, as the
 * socket's own methods do. */
static int
socket_fd(PyObject *sock)
{
    PyObject *number = PyObject_CallMethodNoArgs(sock, fileno_name);
    if (number == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(number);
    Py_DECREF(number);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return (int)fd;
}

/* ------------------------------------------------------------------ receive */

static char receive_buffers[MAX_BATCH][MAX_DATAGRAM];

static int
batch_count(PyObject *object, long *count)
{
    *count = PyLong_AsLong(object);
    if (*count == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*count < 1 || *count > MAX_BATCH) {
        PyErr_Format(PyExc_ValueError, "max_count must be 1 to %d", MAX_BATCH);
        return -1;
    }
    return 0;
}

static PyObject *
received_pairs(const struct mmsghdr *messages, const SocketAddress *names, int count)
{
    PyObject *batch = PyList_New(count);
    if (batch == NULL) {
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        PyObject *data = PyBytes_FromStringAndSize(receive_buffers[i], messages[i].msg_len);
        PyObject *address = data ? new_address(&names[i], messages[i].msg_hdr.msg_namelen)
                                 : NULL;
        PyObject *pair = address ? PyTuple_New(2) : NULL;
        if (pair == NULL) {
            Py_XDECREF(data);
            Py_XDECREF(address);
            Py_DECREF(batch);
            return NULL;
        }
        PyTuple_SET_ITEM(pair, 0, data);
        PyTuple_SET_ITEM(pair, 1, address);
        PyList_SET_ITEM(batch, i, pair);
    }
    return batch;
}

/* Point message i at receive buffer i and name slot i. */
static void
prepare_receive(struct mmsghdr *messages, struct iovec *vectors, SocketAddress *names,
                long count)
{
    memset(messages, 0, sizeof(messages[0]) * (size_t)count);
    for (long i = 0; i < count; i++) {
        vectors[i].iov_base = receive_buffers[i];
        vectors[i].iov_len = MAX_DATAGRAM;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = &names[i];
        messages[i].msg_hdr.msg_namelen = sizeof names[i];
    }
}

PyDoc_STRVAR(recv_batch_doc,
"recv_batch(sock, max_count) -> list of (data, address)\n\n"
"Up to max_count (1..MAX_BATCH) waiting datagrams in one recvmmsg call; [] when none wait.\n"
"Data beyond MAX_DATAGRAM bytes is cut off. Other errors raise OSError.");

static PyObject *
recv_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    long count;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv_batch(sock, max_count) takes 2 arguments");
        return NULL;
    }
    int fd = socket_fd(args[0]);
    if (fd < 0 || batch_count(args[1], &count) < 0) {
        return NULL;
    }
    struct mmsghdr messages[MAX_BATCH];
    struct iovec vectors[MAX_BATCH];
    SocketAddress names[MAX_BATCH];
    prepare_receive(messages, vectors, names, count);
    int received;
    while ((received = recvmmsg(fd, messages, (unsigned int)count, MSG_DONTWAIT, NULL)) < 0
           && errno == EINTR) {
        if (PyErr_CheckSignals() < 0) {
            return NULL;
        }
    }
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return PyList_New(0);
        }
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return received_pairs(messages, names, received);
}

/* ------------------------------------------------------------------ send */

static int
parse_port(PyObject *object, in_port_t *port)
{
    long value = PyLong_AsLong(object);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > 65535) {
        PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
        return -1;
    }
    *port = htons((uint16_t)value);
    return 0;
}

static int
parse_v6_extras(PyObject *address, struct sockaddr_in6 *v6)
{
    Py_ssize_t size = PyTuple_GET_SIZE(address);
    if (size > 2) {
        unsigned long flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 2));
        if (flowinfo == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        v6->sin6_flowinfo = htonl((uint32_t)flowinfo);
    }
    if (size > 3) {
        unsigned long scope = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(address, 3));
        if (scope == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        v6->sin6_scope_id = (uint32_t)scope;
    }
    return 0;
}

/* A (host, port) tuple (IPv6: up to (host, port, flowinfo, scope_id)) with a numeric host. */
static int
parse_tuple(PyObject *address, SocketAddress *name, socklen_t *length)
{
    Py_ssize_t size = PyTuple_Check(address) ? PyTuple_GET_SIZE(address) : 0;
    if (size < 2 || size > 4 || !PyUnicode_Check(PyTuple_GET_ITEM(address, 0))) {
        PyErr_SetString(PyExc_TypeError, "an address is an Address or a (host, port) tuple");
        return -1;
    }
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(address, 0));
    if (host == NULL) {
        return -1;
    }
    memset(name, 0, sizeof *name);
    if (size == 2 && inet_pton(AF_INET, host, &name->v4.sin_addr) == 1) {
        name->v4.sin_family = AF_INET;
        *length = sizeof name->v4;
        return parse_port(PyTuple_GET_ITEM(address, 1), &name->v4.sin_port);
    }
    if (inet_pton(AF_INET6, host, &name->v6.sin6_addr) == 1) {
        name->v6.sin6_family = AF_INET6;
        *length = sizeof name->v6;
        if (parse_port(PyTuple_GET_ITEM(address, 1), &name->v6.sin6_port) < 0) {
            return -1;
        }
        return parse_v6_extras(address, &name->v6);
    }
    PyErr_Format(PyExc_ValueError, "%R is not a numeric IP address", PyTuple_GET_ITEM(address, 0));
    return -1;
}

/* Point message at one (reply, address) pair; tuple addresses are parsed into name. */
static int
prepare(PyObject *pair, struct mmsghdr *message, struct iovec *vector, SocketAddress *name)
{
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
        || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0))) {
        PyErr_SetString(PyExc_TypeError, "send_batch wants (bytes, address) pairs");
        return -1;
    }
    PyObject *reply = PyTuple_GET_ITEM(pair, 0);
    PyObject *address = PyTuple_GET_ITEM(pair, 1);
    memset(message, 0, sizeof *message);
    vector->iov_base = PyBytes_AS_STRING(reply);
    vector->iov_len = (size_t)PyBytes_GET_SIZE(reply);
    message->msg_hdr.msg_iov = vector;
    message->msg_hdr.msg_iovlen = 1;
    if (Py_IS_TYPE(address, &AddressType)) {
        message->msg_hdr.msg_name = &((Address *)address)->name;
        message->msg_hdr.msg_namelen = ((Address *)address)->length;
        return 0;
    }
    message->msg_hdr.msg_name = name;
    return parse_tuple(address, name, &message->msg_hdr.msg_namelen);
}

static int
add_failure(PyObject *failures, Py_ssize_t index, int error)
{
    PyObject *failure = Py_BuildValue("(ni)", index, error);
    if (failure == NULL) {
        return -1;
    }
    int result = PyList_Append(failures, failure);
    Py_DECREF(failure);
    return result;
}

/* sendmmsg until every message went out or the send buffer is full. A message the kernel
 * refuses is reported and skipped. Returns how many messages were dealt with (count unless
 * the buffer filled up), -1 with OSError set when the socket itself is unusable. */
static int
transmit(int fd, struct mmsghdr *messages, int count, Py_ssize_t offset, PyObject *failures)
{
    int next = 0;
    while (next < count) {
        int sent = sendmmsg(fd, messages + next, (unsigned int)(count - next), MSG_DONTWAIT);
        if (sent > 0) {
            next += sent;
            continue;
        }
        int error = sent == 0 ? EAGAIN : errno;
        if (error == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        if (error == EAGAIN || error == EWOULDBLOCK) {
            return next;
        }
        if (error == EBADF || error == ENOTSOCK) { /* the socket, not this message */
            errno = error;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (add_failure(failures, offset + next, error) < 0) {
            return -1;
        }
        next++;
    }
    return count;
}

static int
report_unsent(PyObject *failures, Py_ssize_t start, Py_ssize_t end)
{
    for (Py_ssize_t i = start; i < end; i++) {
        if (add_failure(failures, i, EAGAIN) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Send pairs[start:start + count] (count <= MAX_BATCH); returns how many were dealt with. */
static Py_ssize_t
send_chunk(int fd, PyObject **pairs, Py_ssize_t start, int count, PyObject *failures)
{
    struct mmsghdr messages[MAX_BATCH];
    struct iovec vectors[MAX_BATCH];
    SocketAddress names[MAX_BATCH];
    for (int i = 0; i < count; i++) {
        if (prepare(pairs[start + i], &messages[i], &vectors[i], &names[i]) < 0) {
            return -1;
        }
    }
    return transmit(fd, messages, count, start, failures);
}

PyDoc_STRVAR(send_batch_doc,
"send_batch(sock, pairs) -> list of (index, errno)\n\n"
"Send (bytes, address) pairs with sendmmsg, MAX_BATCH per system call. Returns the pairs\n"
"not sent: one the kernel refused, with its errno; when the send buffer is full (EAGAIN),\n"
"that pair and every later one. An address is one recv_batch returned or a numeric tuple.");

/* Send every pair, a chunk of MAX_BATCH at a time; 0, or -1 on a Python error. */
static int
send_all(int fd, PyObject **pairs, Py_ssize_t total, PyObject *failures)
{
    for (Py_ssize_t start = 0; start < total; start += MAX_BATCH) {
        int count = total - start < MAX_BATCH ? (int)(total - start) : MAX_BATCH;
        Py_ssize_t done = send_chunk(fd, pairs, start, count, failures);
        if (done < 0) {
            return -1;
        }
        if (done < count) { /* the send buffer is full: the rest is not tried */
            return report_unsent(failures, start + done, total);
        }
    }
    return 0;
}

static PyObject *
send_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_batch(sock, pairs) takes 2 arguments");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(args[1], "send_batch wants a list of pairs");
    if (sequence == NULL) {
        return NULL;
    }
    Py_ssize_t total = PySequence_Fast_GET_SIZE(sequence);
    PyObject *failures = PyList_New(0);
    int fd = failures != NULL && total > 0 ? socket_fd(args[0]) : 0;
    if (failures != NULL
        && (fd < 0 || send_all(fd, PySequence_Fast_ITEMS(sequence), total, failures) < 0)) {
        Py_CLEAR(failures);
    }
    Py_DECREF(sequence);
    return failures;
}

/* ------------------------------------------------------------------ module */

static PyMethodDef methods[] = {
    {"recv_batch", (PyCFunction)(void (*)(void))recv_batch, METH_FASTCALL, recv_batch_doc},
    {"send_batch", (PyCFunction)(void (*)(void))send_batch, METH_FASTCALL, send_batch_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT,
    .m_name = "consuldns._packetio",
    .m_doc = "Batched UDP receive and send (recvmmsg/sendmmsg) for consuldns's packet loop.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__packetio(void)
{
    fileno_name = PyUnicode_InternFromString("fileno");
    if (fileno_name == NULL || PyType_Ready(&AddressType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_definition);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&AddressType);
    if (PyModule_AddObject(module, "Address", (PyObject *)&AddressType) < 0
        || PyModule_AddIntConstant(module, "MAX_BATCH", MAX_BATCH) < 0
        || PyModule_AddIntConstant(module, "MAX_DATAGRAM", MAX_DATAGRAM) < 0) {
        Py_DECREF(&AddressType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
