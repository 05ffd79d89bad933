# cython: language_level=3, boundscheck=False, wraparound=False
"""The SQLite writer's bulk insert (storage/sqlite_writer.py, issue 20): a group's
rows in ONE transaction on a connection of its own, bound and stepped in C with
the GIL released for the whole transaction.

Why. ``sqlite3.Cursor.executemany`` takes the GIL back after every row's
``sqlite3_step`` and binds each value through Python's adapter machinery (a
``None`` costs a failed adapter lookup); in the daemon's writer process the
event loop's thread competes for that GIL. Here the values' UTF-8 buffers are
collected first, with the GIL held, and the transaction then runs without it:
``BEGIN IMMEDIATE``, each row bound (``SQLITE_STATIC``: no copy) and stepped,
``COMMIT``. SQLite does the same work as for ``executemany``; what goes is the
interpreter's share.

Safety of the GIL-free part: every buffer belongs to a ``str`` object, or lies
inside a ``bytes`` object of packed rows, that a Python list owned by this
call (``keep``) holds for the call's whole duration; both are immutable, so
the pointers stay valid. A packed part's every length is checked against its
end before any SQL. The bindings are cleared before the GIL is taken back. The connection is used by one
thread at a time (the writer thread, under the store's lock).

The connection links the same ``libsqlite3`` as Python's ``_sqlite3`` module
(one copy of SQLite in the process), which matters for POSIX locks: SQLite
tracks every connection to a file in one process only within one copy of the
library.

Errors are raised as the ``sqlite3`` module's exception classes with SQLite's
own message (``sqlite3_errmsg``), as ``executemany`` raises them, so the
store's error mapping (storage/sqlite_conn.py ``map_error``) and the writer's
fallback (a constraint error: the group is written again call by call) see
the same thing. A failed transaction is rolled back here: nothing of it stays.
"""

import sqlite3 as _sqlite3_module

from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdlib cimport free, malloc
from libc.string cimport strdup

cdef extern from "sqlite3.h" nogil:
    ctypedef struct sqlite3
    ctypedef struct sqlite3_stmt
    ctypedef long long sqlite3_int64
    int SQLITE_OK
    int SQLITE_DONE
    int SQLITE_OPEN_READWRITE
    int SQLITE_OPEN_URI
    int SQLITE_PREPARE_PERSISTENT
    void SQLITE_STATIC(void*)
    int sqlite3_open_v2(const char *filename, sqlite3 **db, int flags, const char *vfs)
    int sqlite3_close_v2(sqlite3 *db)
    int sqlite3_extended_result_codes(sqlite3 *db, int onoff)
    int sqlite3_busy_timeout(sqlite3 *db, int ms)
    int sqlite3_exec(sqlite3 *db, const char *sql, void *callback, void *arg, char **errmsg)
    int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int n, unsigned int flags,
                           sqlite3_stmt **stmt, const char **tail)
    int sqlite3_bind_text(sqlite3_stmt *stmt, int i, const char *text, int n, void (*)(void*))
    int sqlite3_bind_null(sqlite3_stmt *stmt, int i)
    int sqlite3_bind_parameter_count(sqlite3_stmt *stmt)
    int sqlite3_step(sqlite3_stmt *stmt)
    int sqlite3_reset(sqlite3_stmt *stmt)
    int sqlite3_clear_bindings(sqlite3_stmt *stmt)
    int sqlite3_finalize(sqlite3_stmt *stmt)
    int sqlite3_extended_errcode(sqlite3 *db)
    const char *sqlite3_errmsg(sqlite3 *db)
    const char *sqlite3_errstr(int code)
    int sqlite3_get_autocommit(sqlite3 *db)
    const char *sqlite3_libversion()


def library_address():
    """Where this module's SQLite is: the address of its ``sqlite3_libversion``
    (storage/sqlite_writer.py uses the module only when ``_sqlite3``'s SQLite
    is at the same address: one copy of SQLite in the process)."""
    return <size_t><void *>sqlite3_libversion


# SQLite's primary result codes (the low byte of an extended code) as the
# sqlite3 module maps them (CPython Modules/_sqlite/util.c).
cdef dict _CLASSES = {
    2: _sqlite3_module.InternalError,  # SQLITE_INTERNAL
    12: _sqlite3_module.InternalError,  # SQLITE_NOTFOUND
    11: _sqlite3_module.DatabaseError,  # SQLITE_CORRUPT
    18: _sqlite3_module.DataError,  # SQLITE_TOOBIG
    19: _sqlite3_module.IntegrityError,  # SQLITE_CONSTRAINT
    20: _sqlite3_module.IntegrityError,  # SQLITE_MISMATCH
    21: _sqlite3_module.InterfaceError,  # SQLITE_MISUSE
    25: _sqlite3_module.InterfaceError,  # SQLITE_RANGE
}


cdef object _error(int code, const char *message):
    """The sqlite3 exception for ``code`` with SQLite's ``message``."""
    if code & 0xFF == 7:  # SQLITE_NOMEM
        return MemoryError()
    cls = _CLASSES.get(code & 0xFF, _sqlite3_module.OperationalError)
    text = message.decode("utf-8", "replace") if message != NULL else "unknown error"
    exc = cls(text)
    exc.sqlite_errorcode = code
    return exc


cdef Py_ssize_t _header(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos,
                        int array) noexcept:
    """The length in the msgpack header at ``pos[0]`` (moved past it) of an array
    (``array``) or a str; -1 for nil (a str's place only), -2 for anything else
    or a header cut short."""
    cdef Py_ssize_t at = pos[0]
    if at >= end:
        return -2
    cdef unsigned char b = p[at]
    cdef int width
    if array:
        if b & 0xF0 == 0x90:  # fixarray
            pos[0] = at + 1
            return b & 0x0F
        width = 2 if b == 0xDC else 4 if b == 0xDD else 0
    else:
        if b & 0xE0 == 0xA0:  # fixstr
            pos[0] = at + 1
            return b & 0x1F
        if b == 0xC0:  # nil
            pos[0] = at + 1
            return -1
        width = 1 if b == 0xD9 else 2 if b == 0xDA else 4 if b == 0xDB else 0
    if width == 0 or at + 1 + width > end:
        return -2
    cdef Py_ssize_t n = 0
    cdef int i
    for i in range(width):  # big-endian
        n = (n << 8) | p[at + 1 + i]
    pos[0] = at + 1 + width
    return n


cdef Py_ssize_t _packed(bytes part, int columns, const char **texts, int *lengths) noexcept:
    """The rows in ``part`` (see ``BulkInsert.insert_parts``), or -1 when it is not
    that shape; with ``texts``, each value's place and length (-1: NULL) too."""
    cdef const unsigned char *p = <const unsigned char *><const char *>part
    cdef Py_ssize_t end = len(part), pos = 0, k = 0, r, n, length
    cdef int c
    n = _header(p, end, &pos, 1)
    if n < 0:
        return -1
    for r in range(n):
        if _header(p, end, &pos, 1) != columns:
            return -1
        for c in range(columns):
            length = _header(p, end, &pos, 0)
            if length < -1 or length > 0x7FFFFFFF or pos + max(length, 0) > end:
                return -1
            if texts != NULL:
                texts[k] = <const char *>p + pos
                lengths[k] = <int>length
            k += 1
            if length > 0:
                pos += length
    return n if pos == end else -1


cdef int _run(sqlite3 *db, sqlite3_stmt *stmt, const char **texts, int *lengths,
              Py_ssize_t rows, int columns) noexcept nogil:
    """The transaction: SQLITE_OK, or the failing call's code (then rolled back by
    the caller, who reads the message first). ``lengths[i] < 0``: NULL."""
    cdef int rc = sqlite3_exec(db, b"BEGIN IMMEDIATE", NULL, NULL, NULL)
    if rc != SQLITE_OK:
        return rc
    cdef Py_ssize_t r, k = 0
    cdef int c
    for r in range(rows):
        for c in range(columns):
            if lengths[k] < 0:
                rc = sqlite3_bind_null(stmt, c + 1)
            else:
                rc = sqlite3_bind_text(stmt, c + 1, texts[k], lengths[k], SQLITE_STATIC)
            k += 1
            if rc != SQLITE_OK:
                return rc
        rc = sqlite3_step(stmt)
        if rc != SQLITE_DONE:
            return sqlite3_reset(stmt) or rc  # reset gives the step's precise code
        rc = sqlite3_reset(stmt)
        if rc != SQLITE_OK:
            return rc
    return sqlite3_exec(db, b"COMMIT", NULL, NULL, NULL)


cdef class BulkInsert:
    """One connection to the store at ``path`` (which must exist), prepared for
    ``sql``: an ``INSERT`` with one ``?`` per column. ``pragmas`` run once, as
    given, after opening."""

    cdef sqlite3 *db
    cdef sqlite3_stmt *stmt
    cdef readonly int columns

    def __cinit__(self):
        self.db = NULL
        self.stmt = NULL

    def __init__(self, str path, str sql, pragmas=(), int busy_timeout_ms=5000):
        cdef bytes name = path.encode("utf-8")
        cdef int rc = sqlite3_open_v2(name, &self.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, NULL)
        if rc != SQLITE_OK:
            exc = _error(rc, sqlite3_errmsg(self.db) if self.db != NULL else sqlite3_errstr(rc))
            self.close()
            raise exc
        sqlite3_extended_result_codes(self.db, 1)
        sqlite3_busy_timeout(self.db, busy_timeout_ms)
        cdef bytes text
        for pragma in pragmas:
            text = str(pragma).encode("utf-8")
            if sqlite3_exec(self.db, text, NULL, NULL, NULL) != SQLITE_OK:
                self._fail()
        text = sql.encode("utf-8")
        if sqlite3_prepare_v3(self.db, text, len(text), SQLITE_PREPARE_PERSISTENT,
                              &self.stmt, NULL) != SQLITE_OK:
            self._fail()
        self.columns = sqlite3_bind_parameter_count(self.stmt)

    cdef _fail(self):
        exc = _error(sqlite3_extended_errcode(self.db), sqlite3_errmsg(self.db))
        self.close()
        raise exc

    def insert(self, rows):
        """Insert ``rows`` (a sequence of sequences of ``str`` or ``None``, ``columns``
        each) in one ``BEGIN IMMEDIATE`` … ``COMMIT``: all or nothing. Raises
        TypeError or ValueError, before any SQL, on a row of another shape or a
        value of another type; ``sqlite3.Error`` when SQLite fails (rolled back)."""
        return self.insert_parts([rows])

    def insert_parts(self, parts):
        """Insert the rows of every part of ``parts``, in order, in one transaction,
        as ``insert`` does. A part is a sequence of rows, as ``insert`` takes, or
        ``bytes``: the rows packed as ``msgspec.msgpack`` writes such a sequence
        (an array of arrays of ``columns`` str or nil values, nothing else and
        nothing after it), bound straight from those bytes, no ``str`` made. An
        ingest worker packs its request's rows so (daemon/ingest_channel.py).
        Raises ValueError, before any SQL, on packed rows of another shape."""
        if self.db == NULL:
            raise _sqlite3_module.ProgrammingError("Cannot operate on a closed database.")
        cdef int columns = self.columns
        cdef list keep = []
        cdef Py_ssize_t n = 0, got
        for part in parts:
            if type(part) is bytes:
                got = _packed(part, columns, NULL, NULL)
                if got < 0:
                    raise ValueError(
                        f"packed rows are not a msgpack array of {columns}-value rows "
                        "of str or nil"
                    )
            else:
                part = [r if type(r) is tuple or type(r) is list else tuple(r) for r in part]
                got = len(<list>part)
            keep.append(part)
            n += got
        cdef Py_ssize_t total = n * columns
        cdef const char **texts = <const char **>malloc(max(total, 1) * sizeof(char *))
        cdef int *lengths = <int *>malloc(max(total, 1) * sizeof(int))
        cdef Py_ssize_t k = 0, size
        cdef const char *data
        cdef int rc
        cdef char *message = NULL
        if texts == NULL or lengths == NULL:
            free(texts)
            free(lengths)
            raise MemoryError()
        try:
            for part in keep:
                if type(part) is bytes:
                    k += _packed(part, columns, texts + k, lengths + k) * columns
                    continue
                for row in <list>part:
                    if len(row) != columns:
                        raise ValueError(
                            f"a row has {len(row)} values, the statement takes {columns}"
                        )
                    for value in row:
                        if value is None:
                            lengths[k] = -1
                        elif type(value) is str:
                            data = PyUnicode_AsUTF8AndSize(value, &size)
                            if size > 0x7FFFFFFF:
                                raise ValueError("a text value is over 2 GiB")
                            texts[k] = data
                            lengths[k] = <int>size
                        else:
                            raise TypeError(
                                f"a value is {type(value).__name__}: only str or None are bound"
                            )
                        k += 1
            with nogil:
                rc = _run(self.db, self.stmt, texts, lengths, n, columns)
                sqlite3_clear_bindings(self.stmt)
                if rc != SQLITE_OK:
                    rc = sqlite3_extended_errcode(self.db) or rc
                    message = strdup(sqlite3_errmsg(self.db))
                    sqlite3_reset(self.stmt)
                    if not sqlite3_get_autocommit(self.db):
                        sqlite3_exec(self.db, b"ROLLBACK", NULL, NULL, NULL)
            if rc != SQLITE_OK:
                raise _error(rc, message)
        finally:
            free(texts)
            free(lengths)
            free(message)
        return n

    def close(self):
        """Finalize the statement and close the connection (idempotent)."""
        if self.stmt != NULL:
            sqlite3_finalize(self.stmt)
            self.stmt = NULL
        if self.db != NULL:
            sqlite3_close_v2(self.db)
            self.db = NULL

    def __dealloc__(self):
        self.close()
