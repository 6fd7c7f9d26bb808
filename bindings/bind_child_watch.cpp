// bindings/bind_child_watch.cpp — watch_child(): the core's child_watch for the subprocess
// transport (python/data_bridge/pyloop/_subprocess.py).
//
// watch_child() puts a child_watch in the loop's readiness set and calls back
// callback(pid, returncode) once the child is reaped (returncode None when someone else
// reaped it first).
#include <Python.h>

#include <nanobind/nanobind.h>

#include <utility>

#include "errors.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "pyloop/child_watch.hpp"

namespace pyloop::bindings {
namespace {

// One watched child: the core's watch and the Python callback it reports to. Reference-
// counted by the core (the registry entry, each queued dispatch) and by watch_child() while
// it starts the watch; deleted, with the GIL held, when the last one lets go.
// Thread safety: the loop's thread, GIL held.
struct child_waiter {
  child_waiter(loop_driver& loop, pid_t pid, nb::object cb);
  child_watch watch;    // the exit descriptor in the loop's readiness set
  nb::object callback;  // callback(pid, returncode)
  int refs = 1;         // the creator's reference, then the core's
};

child_waiter* as_waiter(void* owner) noexcept { return static_cast<child_waiter*>(owner); }

bool on_exited(void* owner, pid_t pid, int returncode, int error) noexcept {
  child_waiter* w = as_waiter(owner);
  nb::object callback = std::move(w->callback);  // called once: let go of it before calling
  nb::object pid_obj = nb::steal(PyLong_FromLong(pid));
  nb::object code = error != 0 ? nb::none() : nb::steal(PyLong_FromLong(returncode));
  if (!pid_obj.is_valid() || !code.is_valid()) return false;
  PyObject* argv[] = {pid_obj.ptr(), code.ptr()};
  nb::object done = nb::steal(PyObject_Vectorcall(callback.ptr(), argv, 2, nullptr));
  if (done.is_valid()) return true;
  w->callback = std::move(callback);  // for callback_failed's report
  return false;
}

callback_status on_callback_failed(void* owner) noexcept {
  child_waiter* w = as_waiter(owner);
  return report_callback_error(w->callback.is_valid() ? w->callback.ptr() : Py_None);
}

void retain_waiter(void* owner) noexcept { ++as_waiter(owner)->refs; }

void release_waiter(void* owner) noexcept {
  child_waiter* w = as_waiter(owner);
  if (--w->refs == 0) delete w;
}

const child_watch_events waiter_events{on_exited, on_callback_failed, retain_waiter, release_waiter};

child_waiter::child_waiter(loop_driver& loop, pid_t pid, nb::object cb)
    : watch(loop, pid, waiter_events, this), callback(std::move(cb)) {}

int traverse_child_watch(void* payload, visitproc visit, void* arg) {
  const child_waiter* w = as_waiter(child_watch::from_watch(payload)->owner());
  Py_VISIT(w->callback.ptr());
  return 0;
}

// watch_child(loop, pid, callback): calls callback(pid, returncode) once the child has ended
// and is reaped. OSError: ESRCH (no such child: already reaped), ENOSYS (no pidfd: the
// caller waits another way), or the kernel's refusal of a descriptor.
PyObject* watch_child_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_SetString(PyExc_TypeError, "watch_child(loop, pid, callback) takes 3 arguments");
    return nullptr;
  }
  if (!PyObject_TypeCheck(args[0], state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "watch_child() expects a PyLoop");
    return nullptr;
  }
  loop_object* loop = as_loop(args[0]);
  if (!require_open(loop)) return nullptr;
  const long pid = PyLong_AsLong(args[1]);
  if (pid == -1 && PyErr_Occurred()) return nullptr;
  if (pid <= 0) {
    PyErr_Format(PyExc_ValueError, "invalid pid %ld", pid);
    return nullptr;
  }
  auto* w = new child_waiter(*loop->driver, static_cast<pid_t>(pid), nb::borrow(args[2]));
  const std::error_code ec = w->watch.start();
  release_waiter(w);  // the creator's reference: the registry holds its own if started
  if (ec) return set_os_error(ec);
  Py_RETURN_NONE;
}

PyMethodDef watch_child_def = {
    "watch_child", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<watch_child_fn>::call)),
    METH_FASTCALL,
    "watch_child(loop, pid, callback)\n--\n\nCall callback(pid, returncode) once the child "
    "has ended (returncode None if someone else reaped it)."};

}  // namespace

const native_watch_kind child_watch_kind{&child_watch::watch_ops, traverse_child_watch};

void export_child_watch(nb::module_& m) {
  nb::object fn = nb::steal(PyCFunction_NewEx(&watch_child_def, nullptr, m.attr("__name__").ptr()));
  if (!fn.is_valid()) throw nb::python_error();
  m.attr(watch_child_def.ml_name) = fn;
}

}  // namespace pyloop::bindings
