// bindings/bind_loop.cpp — the native Loop type: its life cycle, the run loop's hooks, and the
// method table that gathers the methods of bind_scheduling, bind_readiness, bind_signals,
// bind_resolver and bind_sock_ops.
//
// Lifecycle logic that asyncio code observes in detail (run_forever's set-up,
// run_until_complete, close) lives in the Python PyLoop subclass (python/.../_loop.py) and
// calls the underscored methods here. Every method is wrapped in guarded<>: no C++ exception
// reaches CPython.
#include <new>

#include "handle_object.hpp"
#include "loop_methods.hpp"
#include "module_state.hpp"
#include "stream_io_object.hpp"

namespace pyloop::bindings {
namespace {

// -- hooks the driver calls around each iteration ------------------------------------------

void release_gil(void* data) noexcept { as_loop(static_cast<PyObject*>(data))->released_state = PyEval_SaveThread(); }

bool retake_gil(void* data) noexcept {
  loop_object* loop = as_loop(static_cast<PyObject*>(data));
  PyEval_RestoreThread(loop->released_state);
  loop->released_state = nullptr;
  // A signal may have ended the wait: run Python's handlers now, as asyncio's select() does
  // on EINTR; KeyboardInterrupt from the default SIGINT handler then leaves run_forever.
  return PyErr_CheckSignals() == 0;
}

// Phase 7: the transports written to during the turn send what they wrote (most turns have
// none: checked here, before the call that sets up for failures).
bool end_of_turn(void* data) noexcept {
  loop_object* loop = as_loop(static_cast<PyObject*>(data));
  return !loop->driver->flush_pending() || flush_stream_writers(loop);
}

// -- lifecycle -----------------------------------------------------------------------------

PyObject* loop_get_debug(PyObject* self, PyObject*) noexcept { return PyBool_FromLong(as_loop(self)->debug); }

PyObject* loop_is_closed(PyObject* self, PyObject*) noexcept { return PyBool_FromLong(as_loop(self)->closed); }

PyObject* loop_is_running(PyObject* self, PyObject*) noexcept { return PyBool_FromLong(as_loop(self)->running); }

PyObject* loop_stop(PyObject* self, PyObject*) noexcept {
  as_loop(self)->driver->stop();
  Py_RETURN_NONE;
}

PyObject* loop_run_forever_native(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  nb::object keep_alive = nb::borrow(self);
  if (loop->driver->run_until_stopped() == run_status::aborted) return nullptr;
  Py_RETURN_NONE;
}

// Closing releases everything the engine holds, descriptors included (the readiness set's
// epoll and eventfd, Asio's reactor, the signal pipe), as asyncio's close() closes its
// selector. The driver object stays until the loop is freed: transports and sock_* calls
// that keep the loop alive see it closed.
PyObject* loop_close_native(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  // Output written after the last turn (none normally: each turn ends with a flush) is sent
  // now if the kernel takes it, as asyncio would have sent it at write() time.
  if (!loop->closed && !flush_stream_writers(loop)) return nullptr;
  loop->closed = true;
  loop->driver->close();
  // No completion can reach a closed loop: the futures it kept for native work (resolver
  // queries, native bridge futures) are let go, pending, as an executor's are.
  if (loop->pending_queries != nullptr) {
    auto detached = std::move(*loop->pending_queries);
    loop->pending_queries->clear();
  }
  clear_ref(loop->file_jobs_waiters);
  Py_RETURN_NONE;
}

PyObject* loop_native_stats(PyObject* self, PyObject*) {
  const loop_driver& d = *as_loop(self)->driver;
  auto count = [](std::size_t n) { return static_cast<Py_ssize_t>(n); };
  return Py_BuildValue("{s:n,s:n,s:n,s:K}", "ready", count(d.ready_count()), "timers",
                       count(d.timer_count()), "cancelled_timers",
                       count(d.cancelled_timer_count()), "sends",
                       static_cast<unsigned long long>(d.sends()));
}

// -- attributes PyLoop reads and sets --------------------------------------------------------

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

PyObject* get_stopping(PyObject* self, void*) { return PyBool_FromLong(as_loop(self)->driver->stopping()); }

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

// -- the type --------------------------------------------------------------------------------

PyObject* loop_new(PyTypeObject* type, PyObject*, PyObject*) {
  nb::object self = nb::steal(type->tp_alloc(type, 0));
  if (!self.is_valid()) return nullptr;
  loop_object* loop = as_loop(self.ptr());
  new (&loop->task_factory) nb::object();
  new (&loop->file_jobs_waiters) nb::object();
  loop->driver = new loop_driver();  // std::bad_alloc becomes MemoryError (guarded)
  // The kernel's refusal (EMFILE...) is asyncio's OSError from creating its selector. The
  // half-made object is marked closed first: PyLoop.__del__ runs on it as it is freed, and a
  // loop nobody ever saw must not be reported as an unclosed one (nor closed again).
  if (std::error_code ec = loop->driver->open_error()) {
    loop->closed = true;
    return set_os_error(ec);
  }
  loop->driver->set_hooks(loop_hooks{release_gil, retake_gil, self.ptr(), dispatch_signals, end_of_turn});
  return self.release().ptr();
}

int loop_traverse(PyObject* self, visitproc visit, void* arg) {
  loop_object* loop = as_loop(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(loop->task_factory.ptr());
  Py_VISIT(loop->file_jobs_waiters.ptr());
  if (loop->pending_queries != nullptr) {
    for (const auto& [id, future] : *loop->pending_queries) Py_VISIT(future.ptr());
  }
  if (loop->driver == nullptr) return 0;
  int result = 0;
  loop->driver->for_each_flush_owner([&](void* owner) {
    if (result == 0) result = visit(static_cast<PyObject*>(owner), arg);
  });
  if (result != 0) return result;
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
  clear_ref(loop->file_jobs_waiters);
  if (loop->pending_queries != nullptr) {
    auto detached = std::move(*loop->pending_queries);
    loop->pending_queries->clear();
  }
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
  loop->file_jobs_waiters.~object();
  delete loop->pending_queries;
  loop->pending_queries = nullptr;
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

constexpr int fastcall_kw = METH_FASTCALL | METH_KEYWORDS;

PyMethodDef loop_methods[] = {
    {"call_soon", guarded_method<loop_call_soon>(), fastcall_kw,
     "call_soon(callback, *args, context=None)\n--\n\nSchedule callback(*args) for the next iteration."},
    {"call_soon_threadsafe", guarded_method<loop_call_soon_threadsafe>(), fastcall_kw,
     "call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes the loop."},
    {"call_later", guarded_method<loop_call_later>(), fastcall_kw,
     "call_later(delay, callback, *args, context=None)\n--\n\nSchedule callback(*args) after delay seconds."},
    {"call_at", guarded_method<loop_call_at>(), fastcall_kw,
     "call_at(when, callback, *args, context=None)\n--\n\nSchedule callback(*args) at loop time when."},
    {"create_task", guarded_method<loop_create_task>(), fastcall_kw,
     "create_task(coro, *, name=None, context=None)\n--\n\nSchedule the execution of a coroutine; return a Task."},
    {"time", guarded_method<loop_time>(), METH_NOARGS, "Return the loop's monotonic time in seconds."},
    {"get_debug", guarded_method<loop_get_debug>(), METH_NOARGS, "Return True if the loop is in debug mode."},
    {"is_closed", guarded_method<loop_is_closed>(), METH_NOARGS, "Return True if the loop was closed."},
    {"is_running", guarded_method<loop_is_running>(), METH_NOARGS, "Return True if the loop is running."},
    {"stop", guarded_method<loop_stop>(), METH_NOARGS, "Stop the loop after the current iteration."},
    {"create_future", guarded_method<loop_create_future>(), METH_NOARGS, "Create a Future attached to the loop."},
    {"_run_forever_native", guarded_method<loop_run_forever_native>(), METH_NOARGS, "Run iterations until stop()."},
    {"_close_native", guarded_method<loop_close_native>(), METH_NOARGS,
     "Mark the loop closed, drop queued callbacks and release every kernel object."},
    {"_signal_wakeup_fd", guarded_method<loop_signal_wakeup_fd>(), METH_NOARGS,
     "Write end of the pipe that ends a blocked wait (for signal.set_wakeup_fd)."},
    {"_add_reader", guarded_method<loop_add_reader>(), fastcall_kw,
     "_add_reader(fd, callback, *args)\n--\n\nInstall a readiness callback on an integer descriptor."},
    {"_add_writer", guarded_method<loop_add_writer>(), fastcall_kw,
     "_add_writer(fd, callback, *args)\n--\n\nInstall a writability callback on an integer descriptor."},
    {"_remove_reader", guarded_method<loop_remove_reader>(), METH_O, "Remove the readiness callback of a descriptor."},
    {"_remove_writer", guarded_method<loop_remove_writer>(), METH_O, "Remove the writability callback of a descriptor."},
    {"_watch_signals", guarded_method<loop_watch_signals>(), METH_O, "Poll the signal pipe every iteration (or stop)."},
    {"_make_handle", guarded_method<loop_make_handle>(), fastcall_kw,
     "_make_handle(callback, *args)\n--\n\nA Handle that is not queued."},
    {"_add_callback", guarded_method<loop_add_callback>(), METH_O, "Queue an existing Handle for the next iteration."},
    {"_resolve", guarded_method<loop_resolve>(), METH_FASTCALL,
     "_resolve(host, port, family, type, proto, flags, future): getaddrinfo on the native runtime."},
    {"_resolve_name", guarded_method<loop_resolve_name>(), METH_VARARGS,
     "_resolve_name(sockaddr, flags) -> future: getnameinfo on the native runtime."},
    {"_sock_recv", guarded_method<loop_sock_recv>(), METH_FASTCALL,
     "_sock_recv(sock, n): sock_recv's native attempt: bytes, an awaitable, or NotImplemented."},
    {"_sock_recv_into", guarded_method<loop_sock_recv_into>(), METH_FASTCALL,
     "_sock_recv_into(sock, buf): sock_recv_into's native attempt: int, an awaitable, or NotImplemented."},
    {"_sock_sendall", guarded_method<loop_sock_sendall>(), METH_FASTCALL,
     "_sock_sendall(sock, data): sock_sendall's native attempt: None, an awaitable, or NotImplemented."},
    {"_sock_wait", guarded_method<loop_sock_wait>(), METH_FASTCALL,
     "_sock_wait(fd, writing, attempt, *args): an awaitable of attempt(*args), retried on each readiness."},
    {"_native_stats", guarded_method<loop_native_stats>(), METH_NOARGS, "Queue sizes, for tests and diagnostics."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef loop_getset[] = {
    {"_debug", get_debug_flag, set_debug_flag, nullptr, nullptr},
    {"_thread_id", get_thread_id, guarded<set_thread_id>::call, nullptr, nullptr},
    {"_closed", get_closed, nullptr, nullptr, nullptr},
    {"_stopping", get_stopping, nullptr, nullptr, nullptr},
    {"_task_factory", get_task_factory_field, set_task_factory_field, nullptr, nullptr},
    {"_clock_resolution", get_clock_resolution, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot loop_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(guarded<loop_new>::call)},
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

bool flush_stream_writers(loop_object* loop) noexcept {
  loop_driver& driver = *loop->driver;
  if (!driver.flush_pending()) return true;
  // A callback that aborted left its exception set: keep it through the flush.
  nb::object pending;
  if (PyErr_Occurred()) pending = take_exception();
  bool leaving = false;
  driver.flush_writers([&](stream_writer& writer, write_outcome outcome) {
    if (outcome == write_outcome::loop_closed) {
      set_loop_closed();
    } else if (outcome == write_outcome::watch_failed) {
      set_os_error(writer.last_error());
    }
    if (exiting_exception_pending() && !pending.is_valid()) {
      pending = take_exception();  // leaves the loop once every transport is flushed
      leaving = true;
    } else {
      stream_io_object* io = as_stream_io(stream_io_of_writer(&writer));
      PyErr_WriteUnraisable(io->transport.is_valid() ? io->transport.ptr() : reinterpret_cast<PyObject*>(io));
    }
    return true;
  });
  if (pending.is_valid()) restore_exception(std::move(pending));
  return !leaving;
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
