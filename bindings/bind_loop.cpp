// bindings/bind_loop.cpp — the native Loop type: scheduling entry points and the run loop.
//
// The methods on asyncio's hot paths (call_soon, call_later, call_at, call_soon_threadsafe,
// time, get_debug, create_future, create_task) are METH_FASTCALL functions on a CPython heap
// type: Tasks and Futures call them through vectorcall with no argument tuple, no nanobind
// overload dispatch and no Python frame. Lifecycle logic that asyncio code observes in detail
// (run_forever's set-up, run_until_complete, close) lives in the Python PyLoop subclass and
// calls the underscored methods below.
#include "loop_object.hpp"

#include <cerrno>
#include <climits>
#include <new>
#include <string_view>

#include <pythread.h>
#include <sys/socket.h>

#include "handle_object.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

// Python's own phrasing for argument errors, so messages read like asyncio's.
PyObject* missing_argument(const char* method, const char* name) {
  PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: '%s'", method,
               name);
  return nullptr;
}

// The arguments of call_soon(callback, *args, context=None) and its siblings, which take
// one extra leading parameter (delay or when) before callback.
struct parsed_call {
  PyObject* leading = nullptr;   // delay or when; null for call_soon
  PyObject* callback = nullptr;  // the callable
  PyObject* const* args = nullptr;
  Py_ssize_t nargs = 0;
  PyObject* context = nullptr;  // null or None: capture the current context
};

bool parse_call(const char* method, const char* leading_name, PyObject* const* args,
                size_t nargsf, PyObject* kwnames, parsed_call& out) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t pos = 0;
  if (leading_name != nullptr && pos < nargs) out.leading = args[pos++];
  if (pos < nargs) out.callback = args[pos++];
  out.args = args + pos;
  out.nargs = nargs - pos;
  if (kwnames != nullptr) {
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject* value = args[nargs + i];
      PyObject** slot = nullptr;
      if (key == state().str_context.ptr() || PyUnicode_CompareWithASCIIString(key, "context") == 0) {
        slot = &out.context;
      } else if (PyUnicode_CompareWithASCIIString(key, "callback") == 0 && nargs <= (leading_name ? 1 : 0)) {
        slot = &out.callback;
      } else if (leading_name != nullptr && nargs == 0 &&
                 PyUnicode_CompareWithASCIIString(key, leading_name) == 0) {
        slot = &out.leading;
      }
      if (slot == nullptr || *slot != nullptr) {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, key);
        return false;
      }
      *slot = value;
    }
  }
  if (leading_name != nullptr && out.leading == nullptr) {
    missing_argument(method, leading_name);
    return false;
  }
  if (out.callback == nullptr) {
    missing_argument(method, "callback");
    return false;
  }
  return true;
}

bool check_open(loop_object* loop) {
  if (!loop->closed && loop->driver != nullptr) return true;
  PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
  return false;
}

// Debug-mode checks, delegated to PyLoop._check_thread / _check_callback (asyncio's rules).
bool debug_checks(PyObject* self, PyObject* callback, const char* method, bool check_thread) {
  module_state& s = state();
  if (check_thread) {
    PyObject* argv[] = {self};
    nb::object ok = nb::steal(PyObject_VectorcallMethod(
        s.str_check_thread.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
    if (!ok.is_valid()) return false;
  }
  nb::object name = nb::steal(PyUnicode_FromString(method));
  if (!name.is_valid()) return false;
  PyObject* argv[] = {self, callback, name.ptr()};
  nb::object ok = nb::steal(PyObject_VectorcallMethod(
      s.str_check_callback.ptr(), argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return ok.is_valid();
}

PyObject* schedule_soon(PyObject* self, const parsed_call& call, bool threadsafe) {
  loop_object* loop = as_loop(self);
  handle_object* h = new_handle(self, call.callback, call.args, call.nargs, call.context);
  if (h == nullptr) return nullptr;
  if (!check_open(loop)) {  // closed by code that ran while the handle was made
    nb::object discarded = nb::steal(reinterpret_cast<PyObject*>(h));
    return nullptr;
  }
  // The queue's reference; the caller gets the one new_handle returned.
  callback cb{&handle_callback_ops, Py_NewRef(reinterpret_cast<PyObject*>(h))};
  // From the loop's own thread, or while no thread runs the loop (run_forever sets and
  // clears `running` with the GIL held), the ready queue is safe to touch directly, which
  // keeps call_soon and call_soon_threadsafe in one FIFO order, as asyncio's shared deque does.
  if (threadsafe && loop->running && loop->thread_id != PyThread_get_thread_ident()) {
    loop->driver->call_soon_threadsafe(cb);
  } else {
    loop->driver->call_soon(cb);
  }
  return reinterpret_cast<PyObject*>(h);
}

PyObject* loop_call_soon(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  parsed_call call;
  if (!parse_call("call_soon", nullptr, args, nargsf, kwnames, call)) return nullptr;
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_soon", true)) return nullptr;
  return schedule_soon(self, call, false);
}

PyObject* loop_call_soon_threadsafe(PyObject* self, PyObject* const* args, size_t nargsf,
                                    PyObject* kwnames) {
  parsed_call call;
  if (!parse_call("call_soon_threadsafe", nullptr, args, nargsf, kwnames, call)) return nullptr;
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_soon_threadsafe", false)) {
    return nullptr;
  }
  return schedule_soon(self, call, true);
}

PyObject* schedule_at(PyObject* self, double when, const parsed_call& call) {
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_at", true)) return nullptr;
  handle_object* h = new_timer_handle(when, self, call.callback, call.args, call.nargs, call.context);
  if (h == nullptr) return nullptr;
  if (!check_open(loop)) {  // closed by code that ran while the handle was made
    nb::object discarded = nb::steal(reinterpret_cast<PyObject*>(h));
    return nullptr;
  }
  h->scheduled = true;
  loop->driver->call_at(when, callback{&timer_callback_ops, Py_NewRef(reinterpret_cast<PyObject*>(h))});
  return reinterpret_cast<PyObject*>(h);
}

// Converts a deadline or delay the way asyncio's arithmetic would accept it.
bool as_seconds(PyObject* value, double& out) {
  if (PyFloat_CheckExact(value)) {
    out = PyFloat_AS_DOUBLE(value);
    return true;
  }
  out = PyFloat_AsDouble(value);
  return !(out == -1.0 && PyErr_Occurred());
}

PyObject* loop_call_later(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  parsed_call call;
  if (!parse_call("call_later", "delay", args, nargsf, kwnames, call)) return nullptr;
  if (call.leading == Py_None) {
    PyErr_SetString(PyExc_TypeError, "delay must not be None");
    return nullptr;
  }
  double when;
  const double now = loop_driver::now();
  if (PyFloat_CheckExact(call.leading) || PyLong_CheckExact(call.leading)) {
    double delay;
    if (!as_seconds(call.leading, delay)) return nullptr;
    when = now + delay;
  } else {
    // Anything else goes through float.__add__, so exactly asyncio's "time() + delay"
    // succeeds or raises.
    nb::object start = nb::steal(PyFloat_FromDouble(now));
    if (!start.is_valid()) return nullptr;
    nb::object sum = nb::steal(PyNumber_Add(start.ptr(), call.leading));
    if (!sum.is_valid() || !as_seconds(sum.ptr(), when)) return nullptr;
  }
  return schedule_at(self, when, call);
}

PyObject* loop_call_at(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  parsed_call call;
  if (!parse_call("call_at", "when", args, nargsf, kwnames, call)) return nullptr;
  if (call.leading == Py_None) {
    PyErr_SetString(PyExc_TypeError, "when cannot be None");
    return nullptr;
  }
  double when;
  if (!as_seconds(call.leading, when)) return nullptr;
  return schedule_at(self, when, call);
}

PyObject* loop_time(PyObject*, PyObject*) { return PyFloat_FromDouble(loop_driver::now()); }

PyObject* loop_get_debug(PyObject* self, PyObject*) { return PyBool_FromLong(as_loop(self)->debug); }

PyObject* loop_is_closed(PyObject* self, PyObject*) { return PyBool_FromLong(as_loop(self)->closed); }

PyObject* loop_is_running(PyObject* self, PyObject*) {
  return PyBool_FromLong(as_loop(self)->running);
}

PyObject* loop_stop(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  if (loop->driver != nullptr) loop->driver->stop();
  Py_RETURN_NONE;
}

PyObject* loop_create_future(PyObject* self, PyObject*) {
  // Code that creates a future is about to wait for something (asyncio's streams, locks,
  // queues and sleep all wait on loop.create_future()): what it wrote so far goes out now
  // rather than after the rest of its step. Writes made before it still share one send.
  loop_object* loop = as_loop(self);
  if (loop->flush_list != nullptr && !loop->flush_list->empty() && !flush_stream_senders(self)) {
    return nullptr;
  }
  module_state& s = state();
  PyObject* argv[] = {self};
  return PyObject_Vectorcall(s.future_type.ptr(), argv, 0, s.kwnames_loop.ptr());
}

PyObject* loop_create_task(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject* coro = nargs > 0 ? args[0] : nullptr;
  PyObject* name = Py_None;
  PyObject* context = Py_None;
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "create_task() takes 2 positional arguments but %zd were given",
                 nargs + 1);
    return nullptr;
  }
  if (kwnames != nullptr) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject* value = args[nargs + i];
      if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
        name = value;
      } else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
        context = value;
      } else if (PyUnicode_CompareWithASCIIString(key, "coro") == 0 && coro == nullptr) {
        coro = value;
      } else {
        PyErr_Format(PyExc_TypeError, "create_task() got an unexpected keyword argument '%U'", key);
        return nullptr;
      }
    }
  }
  if (coro == nullptr) return missing_argument("create_task", "coro");
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  if (loop->task_factory.is_valid()) {
    PyObject* argv[] = {self, coro, name, context};
    return PyObject_VectorcallMethod(state().str_create_task_with_factory.ptr(), argv,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  }
  module_state& s = state();
  if (name == Py_None && context == Py_None) {
    PyObject* argv[] = {coro, self};
    return PyObject_Vectorcall(s.task_type.ptr(), argv, 1, s.kwnames_loop.ptr());
  }
  PyObject* argv[] = {coro, self, name, context};
  return PyObject_Vectorcall(s.task_type.ptr(), argv, 1, s.kwnames_loop_name_context.ptr());
}

PyObject* loop_run_forever_native(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  nb::object keep_alive = nb::borrow(self);
  if (loop->driver->run_until_stopped() == run_status::aborted) return nullptr;
  Py_RETURN_NONE;
}

// Closing releases everything the engine holds, descriptors included (the readiness set's
// epoll and eventfd, Asio's reactor, the signal pipe), as asyncio's close() closes its selector: after it
// `driver` is null, and every method checks `closed` (or the null) before using it.
PyObject* loop_close_native(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  // Output written after the last turn (none normally: each turn ends with a flush) is sent
  // now if the kernel takes it, as asyncio would have sent it at write() time.
  if (!flush_stream_senders(self)) return nullptr;
  drop_stream_senders(loop);
  loop->closed = true;
  if (loop->driver != nullptr) {
    loop->driver->clear();
    delete loop->driver;
    loop->driver = nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* loop_native_stats(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  loop_driver* d = loop->driver;
  auto count = [](std::size_t n) { return static_cast<Py_ssize_t>(n); };
  return Py_BuildValue("{s:n,s:n,s:n,s:K}", "ready", d ? count(d->ready_count()) : 0, "timers",
                       d ? count(d->timer_count()) : 0, "cancelled_timers",
                       d ? count(d->cancelled_timer_count()) : 0, "sends",
                       static_cast<unsigned long long>(loop->sends));
}


// _add_reader(fd, callback, *args) / _add_writer(...): installs a readiness callback on an
// integer descriptor (PyLoop.add_reader validates and converts first). A callback already
// installed for that descriptor and direction is cancelled, as asyncio does. Returns the
// new handle.
PyObject* add_watch(PyObject* self, PyObject* const* args, size_t nargsf, io_watch::direction d,
                    const char* method) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2) return missing_argument(method, nargs == 0 ? "fd" : "callback");
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  int fd;
  if (!as_descriptor(args[0], fd)) return nullptr;
  handle_object* h = new_handle(self, args[1], args + 2, nargs - 2, nullptr);
  if (h == nullptr) return nullptr;
  nb::object result = nb::steal(reinterpret_cast<PyObject*>(h));
  if (!check_open(loop)) return nullptr;
  callback replaced;
  std::error_code ec = loop->driver->watch(
      fd, d, callback{&handle_callback_ops, Py_NewRef(reinterpret_cast<PyObject*>(h))}, replaced);
  if (ec) {
    nb::object rejected = nb::steal(reinterpret_cast<PyObject*>(h));  // the watch's reference
    errno = ec.value();
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  if (!dispose_watch_callback(replaced)) return nullptr;
  return result.release().ptr();
}

// _remove_reader(fd) / _remove_writer(fd): True if a callback was installed; it is cancelled.
PyObject* remove_watch(PyObject* self, PyObject* fd_object, io_watch::direction d) {
  loop_object* loop = as_loop(self);
  int fd;
  if (!as_descriptor(fd_object, fd)) {
    // A descriptor beyond any registrable one is simply not registered.
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return nullptr;
    PyErr_Clear();
    Py_RETURN_FALSE;
  }
  if (loop->closed) Py_RETURN_FALSE;
  callback removed = loop->driver->unwatch(fd, d);
  if (removed.ops == nullptr) Py_RETURN_FALSE;
  if (!dispose_watch_callback(removed)) return nullptr;
  Py_RETURN_TRUE;
}

PyObject* loop_add_reader(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
    PyErr_SetString(PyExc_TypeError, "_add_reader() takes no keyword arguments");
    return nullptr;
  }
  return add_watch(self, args, nargsf, io_watch::direction::read, "_add_reader");
}

PyObject* loop_add_writer(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
    PyErr_SetString(PyExc_TypeError, "_add_writer() takes no keyword arguments");
    return nullptr;
  }
  return add_watch(self, args, nargsf, io_watch::direction::write, "_add_writer");
}

PyObject* loop_remove_reader(PyObject* self, PyObject* fd) {
  return remove_watch(self, fd, io_watch::direction::read);
}

PyObject* loop_remove_writer(PyObject* self, PyObject* fd) {
  return remove_watch(self, fd, io_watch::direction::write);
}

// _recv(fd) -> bytes: one recv() into the loop's receive buffer, returned as bytes of the
// size received (b"" at end of stream). A fresh bytes object of 256 KiB per read, as
// socket.recv(256 KiB) makes, goes through mmap/munmap and page faults on every call; this
// reads into memory that stays mapped and copies only what arrived. Errors raise the OSError
// subclass of errno (BlockingIOError when nothing is there), as socket.recv does.
PyObject* loop_recv(PyObject* self, PyObject* fd_object) {
  loop_object* loop = as_loop(self);
  int fd;
  if (!as_descriptor(fd_object, fd)) return nullptr;
  return recv_bytes(loop, fd).release().ptr();
}

PyObject* get_debug_flag(PyObject* self, void*) { return PyBool_FromLong(as_loop(self)->debug); }

int set_debug_flag(PyObject* self, PyObject* value, void*) {
  if (value == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "cannot delete _debug");
    return -1;
  }
  int truth = PyObject_IsTrue(value);
  if (truth < 0) return -1;
  as_loop(self)->debug = truth != 0;
  return 0;
}

PyObject* get_thread_id(PyObject* self, void*) {
  loop_object* loop = as_loop(self);
  if (!loop->running) Py_RETURN_NONE;
  return PyLong_FromUnsignedLong(loop->thread_id);
}

int set_thread_id(PyObject* self, PyObject* value, void*) {
  loop_object* loop = as_loop(self);
  if (value == nullptr || value == Py_None) {
    loop->running = false;
    loop->thread_id = 0;
    return 0;
  }
  unsigned long id = PyLong_AsUnsignedLong(value);
  if (id == static_cast<unsigned long>(-1) && PyErr_Occurred()) return -1;
  loop->thread_id = id;
  loop->running = true;
  return 0;
}

PyObject* get_closed(PyObject* self, void*) { return PyBool_FromLong(as_loop(self)->closed); }

PyObject* get_stopping(PyObject* self, void*) {
  loop_driver* d = as_loop(self)->driver;
  return PyBool_FromLong(d != nullptr && d->stopping());
}

PyObject* get_task_factory_field(PyObject* self, void*) {
  const nb::object& f = as_loop(self)->task_factory;
  return Py_NewRef(f.is_valid() ? f.ptr() : Py_None);
}

int set_task_factory_field(PyObject* self, PyObject* value, void*) {
  nb::object& f = as_loop(self)->task_factory;
  if (value == nullptr || value == Py_None) {
    clear_ref(f);
  } else {
    f = nb::borrow(value);
  }
  return 0;
}

PyObject* get_clock_resolution(PyObject*, void*) {
  return PyFloat_FromDouble(loop_driver::clock_resolution());
}

void release_gil(void* data) noexcept { as_loop(static_cast<PyObject*>(data))->released_state = PyEval_SaveThread(); }

bool retake_gil(void* data) noexcept {
  loop_object* loop = as_loop(static_cast<PyObject*>(data));
  PyEval_RestoreThread(loop->released_state);
  loop->released_state = nullptr;
  // A signal may have ended the wait: run Python's handlers now, as asyncio's select() does
  // on EINTR; KeyboardInterrupt from the default SIGINT handler then leaves run_forever.
  return PyErr_CheckSignals() == 0;
}

// Signal numbers read from the interrupt pipe go to PyLoop._handle_signal (the handlers of
// add_signal_handler), in phase 4 of the iteration, as asyncio's self-pipe reader does.
bool dispatch_signals(void* data) noexcept {
  PyObject* self = static_cast<PyObject*>(data);
  bool ok = true;
  as_loop(self)->driver->take_signals([&](int signum) {
    if (!ok) return;
    nb::object number = nb::steal(PyLong_FromLong(signum));
    PyObject* argv[] = {self, number.ptr()};
    nb::object done = nb::steal(PyObject_VectorcallMethod(
        state().str_handle_signal.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
    ok = done.is_valid();
  });
  return ok;
}

// _watch_signals(enabled): while signal handlers are installed, the interrupt pipe counts as
// an I/O source, so a busy loop polls it every iteration instead of only when it waits.
PyObject* loop_watch_signals(PyObject* self, PyObject* enabled) {
  loop_object* loop = as_loop(self);
  if (!check_open(loop)) return nullptr;
  int on = PyObject_IsTrue(enabled);
  if (on < 0) return nullptr;
  if (on && !loop->watching_signals) {
    loop->driver->add_io_source();
  } else if (!on && loop->watching_signals) {
    loop->driver->remove_io_source();
  }
  loop->watching_signals = on != 0;
  Py_RETURN_NONE;
}

// _make_handle(callback, *args): a Handle that is not queued (signal handlers keep one).
PyObject* loop_make_handle(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
    PyErr_SetString(PyExc_TypeError, "_make_handle() takes no keyword arguments");
    return nullptr;
  }
  if (nargs < 1) return missing_argument("_make_handle", "callback");
  return reinterpret_cast<PyObject*>(new_handle(self, args[0], args + 1, nargs - 1, nullptr));
}

// _add_callback(handle): queue an existing handle for the next iteration (signal handlers).
PyObject* loop_add_callback(PyObject* self, PyObject* handle) {
  loop_object* loop = as_loop(self);
  if (!PyObject_TypeCheck(handle, state().handle_type)) {
    PyErr_SetString(PyExc_TypeError, "_add_callback() expects a Handle");
    return nullptr;
  }
  if (!check_open(loop)) return nullptr;
  if (!as_handle(handle)->cancelled) {
    loop->driver->call_soon(callback{&handle_callback_ops, Py_NewRef(handle)});
  }
  Py_RETURN_NONE;
}

PyObject* loop_signal_wakeup_fd(PyObject* self, PyObject*) {
  if (!check_open(as_loop(self))) return nullptr;
  std::error_code ec;
  int fd = as_loop(self)->driver->interrupt_fd(ec);
  if (fd < 0) {
    errno = ec.value();
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  return PyLong_FromLong(fd);
}

PyObject* loop_new(PyTypeObject* type, PyObject*, PyObject*) {
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  loop_object* loop = as_loop(self);
  new (&loop->task_factory) nb::object();
  loop->driver = new (std::nothrow) loop_driver();
  if (loop->driver == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  loop->driver->set_hooks(loop_hooks{release_gil, retake_gil, self, dispatch_signals, end_stream_turn});
  return self;
}

int loop_traverse(PyObject* self, visitproc visit, void* arg) {
  loop_object* loop = as_loop(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(loop->task_factory.ptr());
  if (loop->pending_queries != nullptr) {
    for (const auto& [id, future] : *loop->pending_queries) Py_VISIT(future.ptr());
  }
  if (loop->flush_list != nullptr) {
    for (PyObject* sender : *loop->flush_list) Py_VISIT(sender);
  }
  if (loop->driver == nullptr) return 0;
  int result = 0;
  loop->driver->for_each_queued([&](const callback& cb) {
    if (result != 0) return;
    if (cb.ops == &handle_callback_ops || cb.ops == &timer_callback_ops) {
      result = traverse_queued_handle(cb.payload, visit, arg);
    } else if (const native_watch_kind* kind = native_kind_of(cb)) {
      result = kind->traverse(cb.payload, visit, arg);
    }
  });
  return result;
}

int loop_clear(PyObject* self) {
  loop_object* loop = as_loop(self);
  clear_ref(loop->task_factory);
  if (loop->pending_queries != nullptr) {
    auto detached = std::move(*loop->pending_queries);
    loop->pending_queries->clear();
  }
  drop_stream_senders(loop);
  if (loop->driver != nullptr) loop->driver->clear();
  return 0;
}

void loop_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  loop_object* loop = as_loop(self);
  loop_clear(self);
  delete loop->driver;
  loop->driver = nullptr;
  loop->task_factory.~object();
  delete loop->pending_queries;
  loop->pending_queries = nullptr;
  delete loop->flush_list;
  loop->flush_list = nullptr;
  PyMem_RawFree(loop->read_buffer);
  loop->read_buffer = nullptr;
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

constexpr int fastcall_kw = METH_FASTCALL | METH_KEYWORDS;

PyMethodDef loop_methods[] = {
    {"call_soon", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_call_soon)), fastcall_kw,
     "call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next iteration."},
    {"call_soon_threadsafe",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_call_soon_threadsafe)), fastcall_kw,
     "call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes the loop."},
    {"call_later", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_call_later)), fastcall_kw,
     "call_later(delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) after delay seconds."},
    {"call_at", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_call_at)), fastcall_kw,
     "call_at(when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time when."},
    {"create_task", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_create_task)), fastcall_kw,
     "create_task(coro, *, name=None, context=None)\n--\n\nSchedule the execution of a coroutine; return a Task."},
    {"time", loop_time, METH_NOARGS, "Return the loop's monotonic time in seconds."},
    {"get_debug", loop_get_debug, METH_NOARGS, "Return True if the loop is in debug mode."},
    {"is_closed", loop_is_closed, METH_NOARGS, "Return True if the loop was closed."},
    {"is_running", loop_is_running, METH_NOARGS, "Return True if the loop is running."},
    {"stop", loop_stop, METH_NOARGS, "Stop the loop after the current iteration."},
    {"create_future", loop_create_future, METH_NOARGS, "Create a Future attached to the loop."},
    {"_run_forever_native", loop_run_forever_native, METH_NOARGS, "Run iterations until stop()."},
    {"_close_native", loop_close_native, METH_NOARGS, "Mark the loop closed and drop queued callbacks."},
    {"_signal_wakeup_fd", loop_signal_wakeup_fd, METH_NOARGS,
     "Write end of the pipe that ends a blocked wait (for signal.set_wakeup_fd)."},
    {"_add_reader", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_add_reader)), fastcall_kw,
     "_add_reader(fd, callback, *args)\n--\n\nInstall a readiness callback on an integer descriptor."},
    {"_add_writer", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_add_writer)), fastcall_kw,
     "_add_writer(fd, callback, *args)\n--\n\nInstall a writability callback on an integer descriptor."},
    {"_remove_reader", loop_remove_reader, METH_O, "Remove the readiness callback of a descriptor."},
    {"_remove_writer", loop_remove_writer, METH_O, "Remove the writability callback of a descriptor."},
    {"_watch_signals", loop_watch_signals, METH_O, "Poll the signal pipe every iteration (or stop)."},
    {"_make_handle", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_make_handle)), fastcall_kw,
     "_make_handle(callback, *args)\n--\n\nA Handle that is not queued."},
    {"_add_callback", loop_add_callback, METH_O, "Queue an existing Handle for the next iteration."},
    {"_resolve", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_resolve)), METH_FASTCALL,
     "_resolve(host, port, family, type, proto, flags, future): getaddrinfo on the native runtime."},
    {"_resolve_name", loop_resolve_name, METH_VARARGS,
     "_resolve_name(sockaddr, flags) -> future: getnameinfo on the native runtime."},
    {"_add_stream_reader", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_add_stream_reader)), METH_FASTCALL,
     "_add_stream_reader(fd, transport, protocol, buffered): the native read path of a stream transport."},
    {"_recv", loop_recv, METH_O, "_recv(fd) -> bytes: one recv() through the loop's receive buffer."},
    {"_sock_recv", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_sock_recv)), METH_FASTCALL,
     "_sock_recv(sock, n): sock_recv's native attempt: bytes, an awaitable, or NotImplemented."},
    {"_sock_recv_into", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_sock_recv_into)), METH_FASTCALL,
     "_sock_recv_into(sock, buf): sock_recv_into's native attempt: int, an awaitable, or NotImplemented."},
    {"_sock_sendall", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(loop_sock_sendall)), METH_FASTCALL,
     "_sock_sendall(sock, data): sock_sendall's native attempt: None, an awaitable, or NotImplemented."},
    {"_native_stats", loop_native_stats, METH_NOARGS, "Queue sizes, for tests and diagnostics."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef loop_getset[] = {
    {"_debug", get_debug_flag, set_debug_flag, nullptr, nullptr},
    {"_thread_id", get_thread_id, set_thread_id, nullptr, nullptr},
    {"_closed", get_closed, nullptr, nullptr, nullptr},
    {"_stopping", get_stopping, nullptr, nullptr, nullptr},
    {"_task_factory", get_task_factory_field, set_task_factory_field, nullptr, nullptr},
    {"_clock_resolution", get_clock_resolution, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot loop_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(loop_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(loop_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(loop_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(loop_clear)},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, loop_getset},
    {Py_tp_doc, const_cast<char*>("Native engine of PyLoop; use data_bridge.pyloop.PyLoop.")},
    {0, nullptr},
};

PyType_Spec loop_spec = {"data_bridge.pyloop._pyloop.Loop", sizeof(loop_object), 0,
                         Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE, loop_slots};

}  // namespace

// Helpers shared with the other loop files (declared in loop_object.hpp).

bool as_descriptor(PyObject* value, int& fd) {
  long v = PyLong_AsLong(value);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < 0) {
    PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", v);
    return false;
  }
  if (v > INT_MAX) {  // what epoll registration raises for it in asyncio
    PyErr_SetString(PyExc_OverflowError, "file descriptor is greater than maximum");
    return false;
  }
  fd = static_cast<int>(v);
  return true;
}

namespace {

// recv() retried on EINTR.
ssize_t receive(int fd, char* into, Py_ssize_t size) noexcept {
  ssize_t received;
  do {
    received = ::recv(fd, into, static_cast<size_t>(size), 0);
  } while (received < 0 && errno == EINTR);
  return received;
}

}  // namespace

nb::object recv_bytes(loop_object* loop, int fd, Py_ssize_t size, bool& would_block) {
  would_block = false;
  ssize_t received;
  nb::object out;
  if (size > read_buffer_size) {
    // Larger than the loop's buffer: one recv of up to `size` bytes, as socket.recv(size)
    // does, into its own bytes object, shrunk below to what arrived.
    out = nb::steal(PyBytes_FromStringAndSize(nullptr, size));
    if (!out.is_valid()) return nb::object();
    received = receive(fd, PyBytes_AS_STRING(out.ptr()), size);
  } else {
    if (loop->read_buffer == nullptr) {
      loop->read_buffer = static_cast<char*>(PyMem_RawMalloc(read_buffer_size));
      if (loop->read_buffer == nullptr) {
        PyErr_NoMemory();
        return nb::object();
      }
    }
    received = receive(fd, loop->read_buffer, size);
  }
  if (received < 0) {
    // No exception object for the common "nothing yet": the sock_* wait path never needs one.
    would_block = errno == EAGAIN || errno == EWOULDBLOCK;
    if (!would_block) PyErr_SetFromErrno(PyExc_OSError);
    return nb::object();
  }
  if (!out.is_valid()) return nb::steal(PyBytes_FromStringAndSize(loop->read_buffer, received));
  if (received == size) return out;
  PyObject* raw = out.release().ptr();
  if (_PyBytes_Resize(&raw, received) < 0) return nb::object();
  return nb::steal(raw);
}

nb::object recv_bytes(loop_object* loop, int fd) {
  bool would_block;
  nb::object data = recv_bytes(loop, fd, read_buffer_size, would_block);
  if (would_block) {
    errno = EAGAIN;  // what socket.recv raises: BlockingIOError
    PyErr_SetFromErrno(PyExc_OSError);
  }
  return data;
}

const native_watch_kind* native_kind_of(const callback& cb) noexcept {
  for (const native_watch_kind* kind : {&stream_reader_kind, &stream_sender_kind, &sock_op_kind}) {
    if (cb.ops == &kind->ops) return kind;
  }
  return nullptr;
}

bool dispose_watch_callback(const callback& cb) {
  if (cb.ops == nullptr) return true;
  if (native_kind_of(cb) != nullptr) {
    cb.discard();
    return true;
  }
  // A Python handle: cancelled, as asyncio cancels a replaced or removed reader's handle.
  nb::object old = release_from_queue(cb.payload);
  nb::object done = nb::steal(PyObject_CallMethod(old.ptr(), "cancel", nullptr));
  return done.is_valid();
}

void export_loop(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&loop_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.loop_type = reinterpret_cast<PyTypeObject*>(type);
  m.attr("Loop") = nb::borrow(type);
}

}  // namespace pyloop::bindings
