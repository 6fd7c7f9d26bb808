// bindings/bind_subprocess.cpp — spawn() and watch_child(): the core's process start and exit
// watch, for the subprocess transport (python/data_bridge/pyloop/_subprocess.py).
//
// spawn() converts what the package prepared with Popen's own rules (encoded argv, the
// executables to try, the environment list, the standard streams) into a spawn_request and
// raises Popen's OSError when the child could not start. watch_child() puts a child_watch in
// the loop's readiness set and calls back callback(pid, returncode) once the child is reaped
// (returncode None when someone else reaped it first).
#include <Python.h>

#include <nanobind/nanobind.h>

#include <cerrno>
#include <vector>

#include "errors.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "pyloop/child_watch.hpp"
#include "pyloop/process_spawn.hpp"

namespace pyloop::bindings {
namespace {

// -- the exit watch -----------------------------------------------------------------------

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

// -- the start ----------------------------------------------------------------------------

// Pointers to the contents of a list of bytes, null-terminated, valid while `keep` lives.
bool c_strings(PyObject* list, std::vector<nb::object>& keep, std::vector<const char*>& out) {
  if (!PyList_Check(list)) {
    PyErr_SetString(PyExc_TypeError, "spawn() expects lists of bytes");
    return false;
  }
  const Py_ssize_t n = PyList_GET_SIZE(list);
  out.reserve(static_cast<std::size_t>(n) + 1);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(list, i);
    if (!PyBytes_Check(item)) {
      PyErr_SetString(PyExc_TypeError, "spawn() expects lists of bytes");
      return false;
    }
    keep.push_back(nb::borrow(item));
    out.push_back(PyBytes_AS_STRING(item));
  }
  out.push_back(nullptr);
  return true;
}

// A standard stream argument: None (inherit), subprocess.PIPE (-1), STDOUT (-2), DEVNULL
// (-3), or a descriptor.
bool as_child_stream(PyObject* value, child_stream& out) {
  if (value == Py_None) return true;
  const long v = PyLong_AsLong(value);
  if (v == -1 && PyErr_Occurred()) return false;
  switch (v) {
    case -1:
      out.how = child_stream::kind::pipe;
      return true;
    case -2:
      out.how = child_stream::kind::same_as_stdout;
      return true;
    case -3:
      out.how = child_stream::kind::devnull;
      return true;
    default:
      if (v < 0 || v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "invalid standard stream %ld", v);
        return false;
      }
      out.how = child_stream::kind::descriptor;
      out.fd = static_cast<int>(v);
      return true;
  }
}

nb::object descriptor_or_none(int fd) {
  return fd < 0 ? nb::none() : nb::steal(PyLong_FromLong(fd));
}

// spawn(argv, executables, env, cwd, stdin, stdout, stderr, close_fds, pass_fds,
//       start_new_session, restore_signals, error_filename, error_cwd)
//   -> (pid, stdin_fd, stdout_fd, stderr_fd)
// argv, executables and env (or None) are lists of bytes; cwd is bytes or None; pass_fds a
// sorted list of ints. Failure raises what Popen raises: the OSError subclass of the errno,
// naming error_filename, or error_cwd when changing directory failed.
PyObject* spawn_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 13) {
    PyErr_SetString(PyExc_TypeError, "spawn() takes 13 arguments");
    return nullptr;
  }
  std::vector<nb::object> keep;
  std::vector<const char*> argv, executables, envp;
  spawn_request request;
  if (!c_strings(args[0], keep, argv) || !c_strings(args[1], keep, executables)) return nullptr;
  request.argv = argv.data();
  request.executables = executables.data();
  if (args[2] != Py_None) {
    if (!c_strings(args[2], keep, envp)) return nullptr;
    request.envp = envp.data();
  }
  if (args[3] != Py_None) {
    if (!PyBytes_Check(args[3])) {
      PyErr_SetString(PyExc_TypeError, "spawn() expects cwd as bytes");
      return nullptr;
    }
    request.cwd = PyBytes_AS_STRING(args[3]);
  }
  for (int i = 0; i < 3; ++i) {
    if (!as_child_stream(args[4 + i], request.stdio[i])) return nullptr;
  }
  const int close_fds = PyObject_IsTrue(args[7]);
  if (close_fds < 0) return nullptr;
  request.close_fds = close_fds != 0;
  std::vector<int> pass_fds;
  if (!PyList_Check(args[8])) {
    PyErr_SetString(PyExc_TypeError, "spawn() expects pass_fds as a list");
    return nullptr;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[8]); ++i) {
    const long fd = PyLong_AsLong(PyList_GET_ITEM(args[8], i));
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    if (fd < 0 || fd > INT_MAX) {
      PyErr_SetString(PyExc_ValueError, "bad value(s) in fds_to_keep");
      return nullptr;
    }
    pass_fds.push_back(static_cast<int>(fd));
  }
  request.pass_fds = pass_fds.data();
  request.pass_fd_count = pass_fds.size();
  const int new_session = PyObject_IsTrue(args[9]);
  const int restore = PyObject_IsTrue(args[10]);
  if (new_session < 0 || restore < 0) return nullptr;
  request.start_new_session = new_session != 0;
  request.restore_signals = restore != 0;

  spawn_result result;
  Py_BEGIN_ALLOW_THREADS  // the parent waits until the child has exec'd
  result = spawn_process(request);
  Py_END_ALLOW_THREADS
  if (result.error != 0) {
    errno = result.error;
    return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, result.in_chdir ? args[12] : args[11]);
  }
  nb::object pid = nb::steal(PyLong_FromLong(result.pid));
  return PyTuple_Pack(4, pid.ptr(), descriptor_or_none(result.parent_fds[0]).ptr(),
                      descriptor_or_none(result.parent_fds[1]).ptr(),
                      descriptor_or_none(result.parent_fds[2]).ptr());
}

PyMethodDef spawn_def = {
    "spawn", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<spawn_fn>::call)),
    METH_FASTCALL,
    "spawn(argv, executables, env, cwd, stdin, stdout, stderr, close_fds, pass_fds, "
    "start_new_session, restore_signals, error_filename, error_cwd)\n--\n\n"
    "Start a child with posix_spawn as subprocess.Popen would; (pid, stdin, stdout, stderr)."};

PyObject* fast_spawn_fn(PyObject*, PyObject*) { return PyBool_FromLong(fast_spawn_available()); }

PyMethodDef fast_spawn_def = {
    "fast_spawn_available", fast_spawn_fn, METH_NOARGS,
    "fast_spawn_available()\n--\n\nTrue where spawn() honours every argument (glibc 2.34 or "
    "later); elsewhere subprocess.Popen starts the children."};

PyMethodDef watch_child_def = {
    "watch_child", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<watch_child_fn>::call)),
    METH_FASTCALL,
    "watch_child(loop, pid, callback)\n--\n\nCall callback(pid, returncode) once the child "
    "has ended (returncode None if someone else reaped it)."};

}  // namespace

const native_watch_kind child_watch_kind{&child_watch::watch_ops, traverse_child_watch};

void export_subprocess(nb::module_& m) {
  for (PyMethodDef* def : {&spawn_def, &watch_child_def, &fast_spawn_def}) {
    nb::object fn = nb::steal(PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr()));
    if (!fn.is_valid()) throw nb::python_error();
    m.attr(def->ml_name) = fn;
  }
}

}  // namespace pyloop::bindings
