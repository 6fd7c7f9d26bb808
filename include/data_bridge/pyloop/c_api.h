/* include/data_bridge/pyloop/c_api.h — the table of plain functions PyLoop exports to other extensions.
 *
 * data_bridge.pyloop._pyloop publishes one instance of db_pyloop_c_api in the capsule
 * "data_bridge.pyloop._pyloop._C_API". Only C types cross it (and, as an opaque pointer,
 * the loop's asio::io_context), so extensions built by another compiler run, nanobind,
 * pybind11 or the raw C API can use it. api.hpp imports it and checks the version fields;
 * the C++ headers beside this file are the intended way to use it.
 *
 * Every function is noexcept. "GIL" means the caller holds the GIL; "any thread" means the
 * caller need not hold it. A function documented to fail with an exception returns NULL or
 * -1 with the Python error indicator set.
 */
#ifndef DATA_BRIDGE_PYLOOP_C_API_H
#define DATA_BRIDGE_PYLOOP_C_API_H

#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever a field is added, removed or changes meaning. */
#define DB_PYLOOP_API_VERSION 1
#define DB_PYLOOP_CAPSULE_NAME "data_bridge.pyloop._pyloop._C_API"

/* Asio configuration macros that change the layout or behaviour of shared Asio objects;
 * both sides must agree on them (see db_pyloop_c_api.asio_config). */
#define DB_PYLOOP_ASIO_STANDALONE 0x1u
#define DB_PYLOOP_ASIO_NO_DEPRECATED 0x2u
/* Without typeid, Asio keys services by the address of a static member, which differs in
 * each shared object: the extension would make a second reactor on PyLoop's context. */
#define DB_PYLOOP_ASIO_NO_TYPEID 0x4u
/* Asio frees handler memory the other side may have allocated: both must use
 * std::aligned_alloc/free (Asio picks it only when a C++ library header came first). */
#define DB_PYLOOP_ASIO_STD_ALIGNED_ALLOC 0x8u

/* What a native completion carries. */
enum db_pyloop_outcome_kind {
  DB_PYLOOP_VALUE = 0,      /* the future's result */
  DB_PYLOOP_EXCEPTION = 1,  /* the future's exception */
  DB_PYLOOP_CANCELLED = 2   /* the future is cancelled */
};

/* A completion made by native code, converted on the loop's thread. Owned by whoever holds
 * the pointer; complete() takes it over. */
typedef struct db_pyloop_outcome {
  int kind; /* a db_pyloop_outcome_kind */
  /* Loop's thread, GIL: a new reference to the result (DB_PYLOOP_VALUE) or to an exception
   * instance (DB_PYLOOP_EXCEPTION); NULL with an exception set if the conversion fails
   * (the future then gets that exception). Not called for DB_PYLOOP_CANCELLED. */
  PyObject* (*to_python)(struct db_pyloop_outcome* self);
  /* Any thread, GIL held or not: frees the outcome (it takes the GIL itself if it holds
   * Python references). */
  void (*destroy)(struct db_pyloop_outcome* self);
} db_pyloop_outcome;

/* What to run when the Python side of a native future is cancelled (the awaiting task was
 * cancelled, or someone called future.cancel()). cancel runs once, on the loop's thread,
 * with the GIL; release runs once when the link lets go of ctx (any thread). */
typedef struct db_pyloop_cancel_hook {
  void (*cancel)(void* ctx);
  void (*release)(void* ctx);
  void* ctx;
} db_pyloop_cancel_hook;

/* The native side of one future: reference counted, usable from any thread. */
typedef struct db_pyloop_link db_pyloop_link;

typedef struct db_pyloop_c_api {
  unsigned int api_version;   /* DB_PYLOOP_API_VERSION PyLoop was built with */
  unsigned int struct_size;   /* sizeof(db_pyloop_c_api) PyLoop was built with */
  unsigned long asio_version; /* ASIO_VERSION PyLoop was built with */
  unsigned int asio_config;   /* DB_PYLOOP_ASIO_* flags PyLoop was built with */

  /* GIL. True (1) when loop is a PyLoop, 0 otherwise. */
  int (*is_loop)(PyObject* loop);
  /* GIL. The loop's asio::io_context (as void*): TypeError if loop is not a PyLoop,
   * RuntimeError if it is closed. Valid until the loop is closed; its handlers run on the
   * loop's thread. */
  void* (*loop_io_context)(PyObject* loop);

  /* GIL. Makes a future of loop (a NativeFuture: an asyncio.Future whose cancel() marks the
   * link cancelled) and its native link; *future gets a new reference. hook is taken over
   * whatever the outcome (released on failure). NULL with TypeError/RuntimeError as
   * loop_io_context. The caller owns one reference to the link. */
  db_pyloop_link* (*future_new)(PyObject* loop, db_pyloop_cancel_hook hook, PyObject** future);
  /* Any thread, no GIL needed. Completes the future with outcome, which is taken over:
   * 1 when it was handed to the loop (it is converted there, unless the future was
   * cancelled meanwhile), 0 when the loop is closed, -1 when the link was already
   * completed (outcome destroyed in both cases). Wakes the loop. */
  int (*link_complete)(db_pyloop_link* link, db_pyloop_outcome* outcome);
  /* Any thread. 1 once the Python side was cancelled. */
  int (*link_cancelled)(const db_pyloop_link* link);
  /* Any thread. 1 once link_complete was called. */
  int (*link_completed)(const db_pyloop_link* link);
  void (*link_retain)(db_pyloop_link* link); /* any thread */
  void (*link_release)(db_pyloop_link* link); /* any thread */

  /* Any thread. Runs fn(arg) on the process-wide native pool (one thread per core, shared
   * by every loop), without the GIL. 0 when queued, -1 when out of memory (then nothing
   * runs: the caller still owns arg). */
  int (*run_on_pool)(void (*fn)(void* arg), void* arg);
  /* The pool's thread count. */
  unsigned int (*pool_size)(void);

  /* GIL. A new object exposing size bytes at data through the buffer protocol (read-only
   * unless writable); release(owner) runs (GIL held) when the object and every view of it
   * are gone. On failure release(owner) has run and NULL is returned with MemoryError. */
  PyObject* (*buffer_new)(void* data, Py_ssize_t size, int writable,
                          void (*release)(void* owner), void* owner);
} db_pyloop_c_api;

#ifdef __cplusplus
}
#endif

#endif /* DATA_BRIDGE_PYLOOP_C_API_H */
