// bindings/bind_subprocess.cpp — spawn_async(): the core's process start, for the subprocess
// transport (python/data_bridge/pyloop/_subprocess.py); the exit watch is bind_child_watch.cpp.
//
// spawn_async() converts what the package prepared with Popen's own rules (encoded argv, the
// executables to try, the environment list, the standard streams) into a spawn_job for the
// native runtime, and settles a future with the pipe ends or Popen's OSError.
#include <Python.h>

#include <nanobind/nanobind.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "pyloop/process_spawn.hpp"

namespace pyloop::bindings {
namespace {

// -- the start ----------------------------------------------------------------------------

// Popen's refusal of a string the child would see cut short.
bool no_null_byte(PyObject* bytes) {
  if (std::memchr(PyBytes_AS_STRING(bytes), 0, static_cast<std::size_t>(PyBytes_GET_SIZE(bytes))) == nullptr) {
    return true;
  }
  PyErr_SetString(PyExc_ValueError, "embedded null byte");
  return false;
}

// The strings of a list of bytes.
bool strings_of(PyObject* list, std::vector<std::string>& out) {
  if (!PyList_Check(list)) {
    PyErr_SetString(PyExc_TypeError, "spawn_async() expects lists of bytes");
    return false;
  }
  const Py_ssize_t n = PyList_GET_SIZE(list);
  out.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(list, i);
    if (!PyBytes_Check(item)) {
      PyErr_SetString(PyExc_TypeError, "spawn_async() expects lists of bytes");
      return false;
    }
    if (!no_null_byte(item)) return false;
    out.emplace_back(PyBytes_AS_STRING(item), static_cast<std::size_t>(PyBytes_GET_SIZE(item)));
  }
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

bool read_job(PyObject* const* args, spawn_job& job) {
  if (!strings_of(args[0], job.argv) || !strings_of(args[1], job.executables)) return false;
  if (args[2] != Py_None) {
    job.env.emplace();
    if (!strings_of(args[2], *job.env)) return false;
  }
  if (args[3] != Py_None) {
    if (!PyBytes_Check(args[3])) {
      PyErr_SetString(PyExc_TypeError, "spawn_async() expects cwd as bytes");
      return false;
    }
    if (!no_null_byte(args[3])) return false;
    job.cwd.emplace(PyBytes_AS_STRING(args[3]), static_cast<std::size_t>(PyBytes_GET_SIZE(args[3])));
  }
  for (int i = 0; i < 3; ++i) {
    if (!as_child_stream(args[4 + i], job.stdio[i])) return false;
  }
  if (!PyList_Check(args[8])) {
    PyErr_SetString(PyExc_TypeError, "spawn_async() expects pass_fds as a list");
    return false;
  }
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args[8]); ++i) {
    const long fd = PyLong_AsLong(PyList_GET_ITEM(args[8], i));
    if (fd == -1 && PyErr_Occurred()) return false;
    if (fd < 0 || fd > INT_MAX) {
      PyErr_SetString(PyExc_ValueError, "bad value(s) in fds_to_keep");
      return false;
    }
    job.pass_fds.push_back(static_cast<int>(fd));
  }
  const int close_fds = PyObject_IsTrue(args[7]);
  const int new_session = PyObject_IsTrue(args[9]);
  const int restore = PyObject_IsTrue(args[10]);
  if (close_fds < 0 || new_session < 0 || restore < 0) return false;
  job.close_fds = close_fds != 0;
  job.start_new_session = new_session != 0;
  job.restore_signals = restore != 0;
  return true;
}

nb::object descriptor_or_none(int fd) {
  return fd < 0 ? nb::none() : nb::steal(PyLong_FromLong(fd));
}

// What the completion needs from the pending map: (future, error_filename, error_cwd).
nb::object take_pending(loop_object* loop, std::uint64_t id) {
  if (loop->pending_queries == nullptr) return nb::object();
  auto found = loop->pending_queries->find(id);
  if (found == loop->pending_queries->end()) return nb::object();
  nb::object entry = std::move(found->second);
  loop->pending_queries->erase(found);
  return entry;
}

// The future gets (pid, stdin, stdout, stderr) or Popen's OSError. A future cancelled
// meanwhile leaves the job untaken: deleting it kills and reaps the child.
callback_status spawned(void* payload) noexcept {
  std::unique_ptr<spawn_job> job(static_cast<spawn_job*>(payload));
  nb::object entry = take_pending(static_cast<loop_object*>(job->owner), job->id);
  if (!entry.is_valid()) return callback_status::done;
  PyObject* future = PyTuple_GET_ITEM(entry.ptr(), 0);
  const spawn_result& r = job->result;
  nb::object done = nb::steal(PyObject_CallMethod(future, "done", nullptr));
  if (done.is_valid() && done.ptr() == Py_False) {
    nb::object value;
    const char* method = "set_result";
    if (r.error != 0) {
      PyObject* filename = PyTuple_GET_ITEM(entry.ptr(), r.in_chdir ? 2 : 1);
      value = nb::steal(PyObject_CallFunction(PyExc_OSError, "(isO)", r.error, std::strerror(r.error), filename));
      method = "set_exception";
    } else {
      // Each checked: PyTuple_Pack takes no null item (out of memory, the job keeps the child
      // and the descriptors, and abandons them).
      nb::object items[] = {nb::steal(PyLong_FromLong(r.pid)), descriptor_or_none(r.parent_fds[0]),
                            descriptor_or_none(r.parent_fds[1]), descriptor_or_none(r.parent_fds[2])};
      if (items[0].is_valid() && items[1].is_valid() && items[2].is_valid() && items[3].is_valid()) {
        value = nb::steal(PyTuple_Pack(4, items[0].ptr(), items[1].ptr(), items[2].ptr(), items[3].ptr()));
      }
    }
    if (value.is_valid()) {
      nb::object set = nb::steal(PyObject_CallMethod(future, method, "(O)", value.ptr()));
      job->taken = set.is_valid() && r.error == 0;  // the Python side owns the child now
    }
  }
  if (PyErr_Occurred()) return report_callback_error(future);
  return callback_status::done;
}

// The loop was closed with the completion queued: the job goes, its child abandoned; the
// future stays pending, as the resolver's do.
void spawn_dropped(void* payload) noexcept { delete static_cast<spawn_job*>(payload); }

const callback_ops spawn_ops{spawned, spawn_dropped, nullptr, nullptr, nullptr};

// spawn_async(loop, future, argv, executables, env, cwd, stdin, stdout, stderr, close_fds,
//             pass_fds, start_new_session, restore_signals, error_filename, error_cwd)
// argv, executables and env (or None) are lists of bytes; cwd is bytes or None; pass_fds a
// sorted list of ints. The future gets (pid, stdin_fd, stdout_fd, stderr_fd), or the OSError
// Popen raises, naming error_filename, or error_cwd when changing directory failed.
PyObject* spawn_async_fn(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 15) {
    PyErr_SetString(PyExc_TypeError, "spawn_async() takes 15 arguments");
    return nullptr;
  }
  if (!PyObject_TypeCheck(args[0], state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "spawn_async() expects a PyLoop");
    return nullptr;
  }
  loop_object* loop = as_loop(args[0]);
  if (!require_open(loop)) return nullptr;
  auto job = std::make_unique<spawn_job>();
  if (!read_job(args + 2, *job)) return nullptr;
  nb::object entry = nb::steal(PyTuple_Pack(3, args[1], args[13], args[14]));
  if (!entry.is_valid()) return nullptr;
  if (loop->pending_queries == nullptr) {
    loop->pending_queries = new std::unordered_map<std::uint64_t, nb::object>();
  }
  job->id = ++loop->last_query_id;
  job->owner = loop;
  const std::uint64_t id = job->id;
  loop->pending_queries->emplace(id, std::move(entry));
  try {
    spawn_async(loop->driver->mailbox(), job, &spawn_ops);
  } catch (...) {
    loop->pending_queries->erase(id);
    throw;
  }
  Py_RETURN_NONE;
}

PyMethodDef spawn_def = {
    "spawn_async", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<spawn_async_fn>::call)),
    METH_FASTCALL,
    "spawn_async(loop, future, argv, executables, env, cwd, stdin, stdout, stderr, close_fds, "
    "pass_fds, start_new_session, restore_signals, error_filename, error_cwd)\n--\n\n"
    "Start a child with posix_spawn on the native runtime, as subprocess.Popen would; the future "
    "gets (pid, stdin, stdout, stderr)."};

PyObject* fast_spawn_fn(PyObject*, PyObject*) { return PyBool_FromLong(fast_spawn_available()); }

PyMethodDef fast_spawn_def = {
    "fast_spawn_available", fast_spawn_fn, METH_NOARGS,
    "fast_spawn_available()\n--\n\nTrue where spawn() honours every argument (glibc 2.34 or "
    "later); elsewhere subprocess.Popen starts the children."};


}  // namespace

void export_subprocess(nb::module_& m) {
  for (PyMethodDef* def : {&spawn_def, &fast_spawn_def}) {
    nb::object fn = nb::steal(PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr()));
    if (!fn.is_valid()) throw nb::python_error();
    m.attr(def->ml_name) = fn;
  }
}

}  // namespace pyloop::bindings
