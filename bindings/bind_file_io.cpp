// bindings/bind_file_io.cpp — file_open, file_read, file_write...: the core's file jobs
// (pyloop/file_io.hpp) for data_bridge.pyloop.fs, each settling an asyncio future on the loop.
//
// Data crosses without copies: a read fills a bytes object made here, on the loop's thread
// with the GIL, before any Python code can see it (or, for readinto, the caller's writable
// buffer); a write reads the caller's buffer in place, exported (Py_buffer) until the job
// ends. Python objects a job holds are released with the GIL only, after the worker is done
// with them: on the loop's thread, or, when the loop closed while the job ran, from a list
// drained later with the GIL (workers never take it).
#include <Python.h>

#include <nanobind/nanobind.h>

#include <sys/stat.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "errors.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "pyloop/file_io.hpp"

namespace pyloop::bindings {
namespace {

// A file job with the Python objects it carries.
// Thread safety: as file_job; its Python members are touched with the GIL held only.
struct py_file_job : file_job {
  std::shared_ptr<loop_mailbox> mailbox;  // the loop the job completes into
  loop_object* loop = nullptr;            // its object: counts the job in flight (file_jobs);
                                          // used on the loop's thread only, while it is alive
  nb::object future;                      // what the caller awaits
  nb::object filename;                    // the path as given (OSError.filename), or None
  nb::object buffer;                      // read: the bytes object the worker fills
  Py_buffer view{};                       // write, readinto: the caller's buffer, exported
  bool has_view = false;                  // view is held
  bool whole_file = false;                // open: go on to read the whole file (fs.read)

  ~py_file_job() {
    if (has_view) PyBuffer_Release(&view);
  }
};

py_file_job* as_job(void* payload) noexcept {
  return static_cast<py_file_job*>(static_cast<file_job*>(payload));
}

// Jobs whose loop closed while they ran, waiting for the GIL to release their Python
// objects. A worker never takes the GIL itself: at interpreter exit (a program cancelled in
// the middle of a large read, say) a thread taking it may be ended on the spot, or wait
// forever. They are released by a pending call (CPython runs it on the main thread, with the
// GIL) or by the next file operation of any loop, whichever comes first; whatever is still
// here when the interpreter ends is left alone.
std::mutex graveyard_mutex;                                       // guards graveyard
std::vector<py_file_job*>* graveyard = new std::vector<py_file_job*>();  // never destroyed
std::atomic<bool> graveyard_filled{false};  // graveyard may hold jobs
std::atomic<bool> drain_scheduled{false};   // a pending call to drain it is queued

// With the GIL: releases the jobs left in the graveyard.
void drain_graveyard() noexcept {
  if (!graveyard_filled.load(std::memory_order_acquire)) return;
  std::vector<py_file_job*> jobs;
  {
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    jobs.swap(*graveyard);
    graveyard_filled.store(false, std::memory_order_release);
  }
  for (py_file_job* job : jobs) delete job;
}

int drain_pending_call(void*) noexcept {
  drain_scheduled.store(false, std::memory_order_release);
  drain_graveyard();
  return 0;
}

// Drops the Python references a job holds without releasing them (no GIL to do it with).
void abandon(py_file_job* job) noexcept {
  job->future.release();
  job->filename.release();
  job->buffer.release();
  job->has_view = false;
  delete job;  // still closes a descriptor it owns
}

// The job was not run (the loop closed with it queued) or its loop closed while it ran: it
// goes without settling its future, which stays pending as an executor future would. With
// the GIL (the loop's thread, clearing its queue) it is released at once; on a worker it goes
// to the graveyard, its descriptor closed now (the bytes object it filled lives until then).
void discard_job(void* payload) noexcept {
  py_file_job* job = as_job(payload);
  if (!job->orphaned) {  // from the loop's queue: its thread, with the GIL
    --job->loop->file_jobs;
    delete job;
    return;
  }
  job->close_owned();
  if (!Py_IsInitialized()) {
    abandon(job);
    return;
  }
  try {
    std::lock_guard<std::mutex> lock(graveyard_mutex);
    graveyard->push_back(job);
    graveyard_filled.store(true, std::memory_order_release);
  } catch (...) {  // std::bad_alloc: the Python objects are left alone
    abandon(job);
    return;
  }
  if (!drain_scheduled.exchange(true, std::memory_order_acq_rel) &&
      Py_AddPendingCall(drain_pending_call, nullptr) < 0) {
    drain_scheduled.store(false, std::memory_order_release);  // the next file operation drains
  }
}

callback_status file_done(void* payload) noexcept;
const callback_ops file_ops{file_done, discard_job, nullptr, nullptr, nullptr};

// Hands job to the blocking pool, counted in flight until it comes back; on failure
// (std::bad_alloc) it stays with the caller.
void submit(std::unique_ptr<py_file_job>& job) {
  submit_file_job(job->mailbox, job.get(), &file_ops);
  ++job->loop->file_jobs;
  job.release();
}

// Once no job of loop is in flight, the futures waiting for that (file_jobs_idle) get None.
void wake_idle_waiters(loop_object* loop) noexcept {
  if (loop->file_jobs != 0 || !loop->file_jobs_waiters.is_valid()) return;
  nb::object waiters = std::move(loop->file_jobs_waiters);
  // An exception the job's settling left pending (SystemExit) waits while the futures are set.
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  const Py_ssize_t n = PyList_GET_SIZE(waiters.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* future = PyList_GET_ITEM(waiters.ptr(), i);
    nb::object done = nb::steal(PyObject_CallMethod(future, "done", nullptr));
    if (done.is_valid() && done.ptr() == Py_False) {
      done = nb::steal(PyObject_CallMethod(future, "set_result", "(O)", Py_None));
    }
    if (!done.is_valid()) PyErr_WriteUnraisable(future);
  }
  PyErr_Restore(type, value, traceback);
}

PyObject* set_job_error(const py_file_job& job) noexcept {
  if (job.filename.is_valid() && !job.filename.is_none()) {
    return set_os_error_with_filename(job.error, job.filename.ptr());
  }
  return set_os_error(job.error);
}

// The bytes a read produced: the object the worker filled, cut to what was read; only when
// the file grew past it are the two parts joined (one copy, in that rare case).
nb::object read_result(py_file_job& job) {
  nb::object data = std::move(job.buffer);
  if (job.overflow.empty()) {
    if (job.transferred == job.capacity) return data;
    PyObject* raw = data.release().ptr();
    // Its only reference is ours, as _PyBytes_Resize requires; on failure it frees raw.
    if (_PyBytes_Resize(&raw, static_cast<Py_ssize_t>(job.transferred)) < 0) return nb::object();
    return nb::steal(raw);
  }
  const std::size_t total = job.transferred + job.overflow.size();
  nb::object joined = nb::steal(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total)));
  if (!joined.is_valid()) return nb::object();
  char* out = PyBytes_AS_STRING(joined.ptr());
  if (job.transferred != 0) std::memcpy(out, PyBytes_AS_STRING(data.ptr()), job.transferred);
  std::memcpy(out + job.transferred, job.overflow.data(), job.overflow.size());
  return joined;
}

// st_* fields as integers, for fs.py to build os.stat_result from: (mode, ino, dev, nlink,
// uid, gid, size, atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns, blksize, blocks,
// rdev).
nb::object stat_result(const struct stat& st) {
  return nb::steal(Py_BuildValue(
      "(KKKKKKLLlLlLlLLK)", static_cast<unsigned long long>(st.st_mode),
      static_cast<unsigned long long>(st.st_ino), static_cast<unsigned long long>(st.st_dev),
      static_cast<unsigned long long>(st.st_nlink), static_cast<unsigned long long>(st.st_uid),
      static_cast<unsigned long long>(st.st_gid), static_cast<long long>(st.st_size),
      static_cast<long long>(st.st_atim.tv_sec), static_cast<long>(st.st_atim.tv_nsec),
      static_cast<long long>(st.st_mtim.tv_sec), static_cast<long>(st.st_mtim.tv_nsec),
      static_cast<long long>(st.st_ctim.tv_sec), static_cast<long>(st.st_ctim.tv_nsec),
      static_cast<long long>(st.st_blksize), static_cast<long long>(st.st_blocks),
      static_cast<unsigned long long>(st.st_rdev)));
}

// The value the future gets, or null with the exception it gets instead.
nb::object job_result(py_file_job& job) {
  if (job.error != 0) {
    set_job_error(job);
    return nb::object();
  }
  switch (job.op) {
    case file_op::open:
      // (fd, size, regular): a regular file is read and written at explicit offsets.
      return nb::steal(Py_BuildValue("(iLO)", job.fd, static_cast<long long>(job.info.st_size),
                                     S_ISREG(job.info.st_mode) ? Py_True : Py_False));
    case file_op::read:
      if (job.has_view) return nb::steal(PyLong_FromSize_t(job.transferred));  // readinto
      return read_result(job);
    case file_op::write:
      return nb::steal(PyLong_FromLongLong(job.position));
    case file_op::write_path:
      return nb::steal(PyLong_FromSize_t(job.transferred));
    case file_op::stat:
      return stat_result(job.info);
    case file_op::truncate:
    case file_op::close:
      return nb::none();
  }
  return nb::none();
}

// fs.read's second step, after the open: a bytes object of the size fstat gave (nothing for
// files that report none, /proc's), which the worker fills, reading on to the end.
void start_whole_read(std::unique_ptr<py_file_job>& job) {
  const bool regular = S_ISREG(job->info.st_mode);
  const auto size = regular && job->info.st_size > 0 ? static_cast<std::size_t>(job->info.st_size) : 0;
  job->buffer = nb::steal(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(size)));
  if (!job->buffer.is_valid()) throw nb::python_error();
  job->op = file_op::read;
  job->data = size != 0 ? PyBytes_AS_STRING(job->buffer.ptr()) : nullptr;
  job->capacity = size;
  job->to_end = true;
  job->close_after = true;
  job->offset = regular ? 0 : -1;
  submit(job);
}

callback_status settle_job(void* payload) noexcept {
  std::unique_ptr<py_file_job> job(as_job(payload));
  PyObject* future = job->future.ptr();
  nb::object done = nb::steal(PyObject_CallMethod(future, "done", nullptr));
  if (!done.is_valid()) return report_callback_error(future);
  // Cancelled meanwhile: the result is dropped; a descriptor just opened closes with the job.
  if (done.ptr() == Py_True) return callback_status::done;
  if (job->whole_file && job->op == file_op::open && job->error == 0) {
    try {
      start_whole_read(job);
      return callback_status::done;
    } catch (...) {
      set_error_from_current_exception();
    }
  }
  nb::object value = PyErr_Occurred() ? nb::object() : job_result(*job);
  const char* method = "set_result";
  if (!value.is_valid()) {
    value = take_exception();
    method = "set_exception";
  }
  nb::object set = nb::steal(PyObject_CallMethod(future, method, "(O)", value.ptr()));
  // The caller owns an opened descriptor once the future holds it.
  if (set.is_valid() && job->op == file_op::open && job->error == 0) job->owns_fd = false;
  if (PyErr_Occurred()) return report_callback_error(future);
  return callback_status::done;
}

// A job came back: its future settled (or the job went on to its next step), the job freed
// (a descriptor nobody took closed with it), and then the loop's idle waiters woken.
callback_status file_done(void* payload) noexcept {
  loop_object* loop = as_job(payload)->loop;
  --loop->file_jobs;
  const callback_status status = settle_job(payload);
  wake_idle_waiters(loop);
  return status;
}

// -- entry points -------------------------------------------------------------------------

bool as_int(PyObject* value, int& out) {
  const long v = PyLong_AsLong(value);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < INT_MIN || v > INT_MAX) {
    PyErr_SetString(PyExc_OverflowError, "value out of range for a C int");
    return false;
  }
  out = static_cast<int>(v);
  return true;
}

bool as_int64(PyObject* value, std::int64_t& out) {
  const long long v = PyLong_AsLongLong(value);
  if (v == -1 && PyErr_Occurred()) return false;
  out = v;
  return true;
}

// A path as open() passes it to the system: bytes (fs.py applies os.fsencode) without NUL.
bool as_path(PyObject* value, std::string& out) {
  if (!PyBytes_Check(value)) {
    PyErr_SetString(PyExc_TypeError, "file path must be bytes (os.fsencode)");
    return false;
  }
  const char* s = PyBytes_AS_STRING(value);
  const auto n = static_cast<std::size_t>(PyBytes_GET_SIZE(value));
  if (std::memchr(s, 0, n) != nullptr) {
    PyErr_SetString(PyExc_ValueError, "embedded null byte");
    return false;
  }
  out.assign(s, n);
  return true;
}

// A job for loop (args[0]) settling future (args[1]), or null with the exception set.
std::unique_ptr<py_file_job> new_job(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t expected,
                                     const char* name, file_op op) {
  if (nargs != expected) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, expected);
    return nullptr;
  }
  if (!PyObject_TypeCheck(args[0], state().loop_type)) {
    PyErr_Format(PyExc_TypeError, "%s() expects a PyLoop", name);
    return nullptr;
  }
  loop_object* loop = as_loop(args[0]);
  if (!require_open(loop)) return nullptr;
  drain_graveyard();
  auto job = std::make_unique<py_file_job>();
  job->op = op;
  job->loop = loop;
  job->mailbox = loop->driver->mailbox();
  job->future = nb::borrow(args[1]);
  job->filename = nb::none();
  return job;
}

// file_open(loop, future, path, flags, mode, filename, whole_file): the future gets (fd, size,
// regular), or with whole_file the file's bytes (the descriptor closed again).
PyObject* file_open_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 7, "file_open", file_op::open);
  if (!job || !as_path(args[2], job->path) || !as_int(args[3], job->flags)) return nullptr;
  int mode = 0;
  if (!as_int(args[4], mode)) return nullptr;
  job->mode = static_cast<unsigned>(mode);
  job->filename = nb::borrow(args[5]);
  const int whole = PyObject_IsTrue(args[6]);
  if (whole < 0) return nullptr;
  job->whole_file = whole != 0;
  submit(job);
  Py_RETURN_NONE;
}

// file_read(loop, future, fd, capacity, limit, offset): the future gets up to limit bytes
// (fewer at the end of the file) read from offset (-1: the descriptor's position). capacity
// is the expected size, read without a copy; past it the read goes on only if limit allows.
PyObject* file_read_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 6, "file_read", file_op::read);
  std::int64_t capacity = 0, limit = 0;
  if (!job || !as_int(args[2], job->fd) || !as_int64(args[3], capacity) || !as_int64(args[4], limit) ||
      !as_int64(args[5], job->offset)) {
    return nullptr;
  }
  if (capacity < 0 || (limit >= 0 && capacity > limit)) {
    PyErr_SetString(PyExc_ValueError, "file_read(): bad capacity");
    return nullptr;
  }
  job->buffer = nb::steal(PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity)));
  if (!job->buffer.is_valid()) return nullptr;
  job->data = capacity != 0 ? PyBytes_AS_STRING(job->buffer.ptr()) : nullptr;
  job->capacity = static_cast<std::size_t>(capacity);
  job->to_end = limit < 0 || limit > capacity;
  job->limit = limit < 0 ? SIZE_MAX : static_cast<std::size_t>(limit);
  submit(job);
  Py_RETURN_NONE;
}

// file_read_into(loop, future, fd, buffer, offset): reads into a writable buffer in place,
// exported until the job ends, up to its size (less at the end of the file) from offset (-1:
// the descriptor's position); the future gets the count.
PyObject* file_read_into_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 5, "file_read_into", file_op::read);
  if (!job || !as_int(args[2], job->fd) || !as_int64(args[4], job->offset)) return nullptr;
  if (PyObject_GetBuffer(args[3], &job->view, PyBUF_WRITABLE) < 0) return nullptr;
  job->has_view = true;
  job->data = static_cast<char*>(job->view.buf);
  job->capacity = static_cast<std::size_t>(job->view.len);
  submit(job);
  Py_RETURN_NONE;
}

// Exports data (any buffer) to the job, which writes from it in place.
bool hold_buffer(py_file_job& job, PyObject* data) {
  if (PyObject_GetBuffer(data, &job.view, PyBUF_SIMPLE) < 0) return false;
  job.has_view = true;
  job.source = static_cast<const char*>(job.view.buf);
  job.length = static_cast<std::size_t>(job.view.len);
  return true;
}

// file_write(loop, future, fd, data, offset): writes all of data at offset (-1: at the
// descriptor's position, the end for O_APPEND); the future gets the position after it.
PyObject* file_write_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 5, "file_write", file_op::write);
  if (!job || !as_int(args[2], job->fd) || !as_int64(args[4], job->offset) || !hold_buffer(*job, args[3])) {
    return nullptr;
  }
  submit(job);
  Py_RETURN_NONE;
}

// file_write_path(loop, future, path, data, flags, mode, filename): open, write all, close;
// the future gets the number of bytes written.
PyObject* file_write_path_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 7, "file_write_path", file_op::write_path);
  if (!job || !as_path(args[2], job->path) || !as_int(args[4], job->flags)) return nullptr;
  int mode = 0;
  if (!as_int(args[5], mode) || !hold_buffer(*job, args[3])) return nullptr;
  job->mode = static_cast<unsigned>(mode);
  job->filename = nb::borrow(args[6]);
  submit(job);
  Py_RETURN_NONE;
}

// file_stat(loop, future, path, fd, follow_symlinks, filename): stat(path) (lstat without
// follow_symlinks), or fstat(fd) when path is None; the future gets the st_* integers.
PyObject* file_stat_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 6, "file_stat", file_op::stat);
  if (!job) return nullptr;
  if (args[2] != Py_None && !as_path(args[2], job->path)) return nullptr;
  if (!as_int(args[3], job->fd)) return nullptr;
  if (args[2] != Py_None) job->fd = -1;
  const int follow = PyObject_IsTrue(args[4]);
  if (follow < 0) return nullptr;
  job->follow_symlinks = follow != 0;
  job->filename = nb::borrow(args[5]);
  submit(job);
  Py_RETURN_NONE;
}

// file_truncate(loop, future, fd, length) and file_close(loop, future, fd).
PyObject* file_truncate_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 4, "file_truncate", file_op::truncate);
  if (!job || !as_int(args[2], job->fd) || !as_int64(args[3], job->offset)) return nullptr;
  submit(job);
  Py_RETURN_NONE;
}

PyObject* file_close_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  auto job = new_job(args, nargs, 3, "file_close", file_op::close);
  if (!job || !as_int(args[2], job->fd)) return nullptr;
  submit(job);
  Py_RETURN_NONE;
}

// file_jobs_idle(loop, future): the future gets None once no file job of the loop is in
// flight (at once if none is), cancelled callers' jobs included.
PyObject* file_jobs_idle_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 || !PyObject_TypeCheck(args[0], state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "file_jobs_idle(loop, future) expects a PyLoop and a future");
    return nullptr;
  }
  loop_object* loop = as_loop(args[0]);
  if (!require_open(loop)) return nullptr;
  if (loop->file_jobs == 0) return PyObject_CallMethod(args[1], "set_result", "(O)", Py_None);
  if (!loop->file_jobs_waiters.is_valid()) {
    loop->file_jobs_waiters = nb::steal(PyList_New(0));
    if (!loop->file_jobs_waiters.is_valid()) return nullptr;
  }
  if (PyList_Append(loop->file_jobs_waiters.ptr(), args[1]) < 0) return nullptr;
  Py_RETURN_NONE;
}

template <auto Fn>
PyMethodDef method(const char* name, const char* doc) {
  return {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<Fn>::call)),
          METH_FASTCALL, doc};
}

PyMethodDef file_defs[] = {
    method<file_open_fn>("file_open", "file_open(loop, future, path, flags, mode, filename, whole_file)\n--\n\n"
                                      "open(2) on a native worker; the future gets (fd, size, regular), "
                                      "or the whole file's bytes."),
    method<file_read_fn>("file_read", "file_read(loop, future, fd, capacity, limit, offset)\n--\n\n"
                                      "Read on a native worker into a new bytes object."),
    method<file_read_into_fn>("file_read_into", "file_read_into(loop, future, fd, buffer, offset)\n--\n\n"
                                                "Read on a native worker into a writable buffer, in place."),
    method<file_write_fn>("file_write", "file_write(loop, future, fd, data, offset)\n--\n\n"
                                        "Write all of a buffer on a native worker."),
    method<file_write_path_fn>("file_write_path",
                               "file_write_path(loop, future, path, data, flags, mode, filename)\n--\n\n"
                               "Open, write and close a file on a native worker."),
    method<file_stat_fn>("file_stat", "file_stat(loop, future, path, fd, follow_symlinks, filename)\n--\n\n"
                                      "stat, lstat or fstat on a native worker."),
    method<file_truncate_fn>("file_truncate", "file_truncate(loop, future, fd, length)\n--\n\n"
                                              "ftruncate on a native worker."),
    method<file_close_fn>("file_close", "file_close(loop, future, fd)\n--\n\nclose on a native worker."),
    method<file_jobs_idle_fn>("file_jobs_idle", "file_jobs_idle(loop, future)\n--\n\n"
                                                "Resolve the future once no file job of the loop is in flight."),
};

}  // namespace

void export_file_io(nb::module_& m) {
  for (PyMethodDef& def : file_defs) {
    nb::object fn = nb::steal(PyCFunction_NewEx(&def, nullptr, m.attr("__name__").ptr()));
    if (!fn.is_valid()) throw nb::python_error();
    m.attr(def.ml_name) = fn;
  }
}

}  // namespace pyloop::bindings
