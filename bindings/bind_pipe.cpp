// bindings/bind_pipe.cpp — prepare_pipe(fd): the core's check of a pipe transport's descriptor.
//
// The pipe transports (python/.../_pipes.py) ask the core what their descriptor is and have it
// made non-blocking (core/src/pipe_descriptor.cpp); this file only converts the answer.
#include <Python.h>

#include <nanobind/nanobind.h>

#include "errors.hpp"
#include "loop_object.hpp"
#include "pyloop/pipe_descriptor.hpp"

namespace pyloop::bindings {
namespace {

// prepare_pipe(fd) -> "fifo" | "socket" | "character" | None: None for a file no pipe
// transport takes (left untouched); OSError when the descriptor cannot be examined.
PyObject* prepare_pipe_fn(PyObject*, PyObject* arg) {
  const int fd = PyObject_AsFileDescriptor(arg);
  if (fd < 0) return nullptr;
  pipe_file kind = pipe_file::other;
  if (std::error_code ec = prepare_pipe(fd, kind)) return set_os_error(ec);
  switch (kind) {
    case pipe_file::fifo:
      return PyUnicode_FromString("fifo");
    case pipe_file::socket:
      return PyUnicode_FromString("socket");
    case pipe_file::character:
      return PyUnicode_FromString("character");
    case pipe_file::other:
      break;
  }
  Py_RETURN_NONE;
}

PyMethodDef prepare_pipe_def = {
    "prepare_pipe", guarded<prepare_pipe_fn>::call, METH_O,
    "prepare_pipe(fd)\n--\n\nThe kind of file fd is (\"fifo\", \"socket\", \"character\"), made "
    "non-blocking; None, untouched, for any other kind."};

}  // namespace

void export_pipe(nb::module_& m) {
  nb::object fn = nb::steal(PyCFunction_NewEx(&prepare_pipe_def, nullptr, m.attr("__name__").ptr()));
  if (!fn.is_valid()) throw nb::python_error();
  m.attr("prepare_pipe") = fn;
}

}  // namespace pyloop::bindings
