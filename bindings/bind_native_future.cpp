// bindings/bind_native_future.cpp — NativeFuture: the asyncio future of a native bridge promise.
//
// A subclass of the C asyncio.Future that adds one field, the native link, and overrides
// cancel(): a successful cancel (the awaiting task was cancelled, wait_for timed out, someone
// called cancel()) marks the link cancelled at once, which runs the extension's hook. Any
// other behaviour is the base class's. A subclass, rather than a done callback on a plain
// future: no callable per future, and no extra loop callback per completion.
#include <Python.h>

#include <nanobind/nanobind.h>

#include <utility>

#include "module_state.hpp"
#include "native_link.hpp"

namespace pyloop::bindings {
namespace {

// Facts about asyncio.Future read once at import (plain values, not Python objects).
Py_ssize_t link_offset = 0;        // where the link pointer lives in an instance
destructor base_dealloc = nullptr;  // asyncio.Future's tp_dealloc
bool base_releases_type = false;    // that dealloc drops the type reference (a heap type's does)
traverseproc base_traverse = nullptr;  // asyncio.Future's tp_traverse

db_pyloop_link*& link_of(PyObject* self) noexcept {
  return *reinterpret_cast<db_pyloop_link**>(reinterpret_cast<char*>(self) + link_offset);
}

// asyncio.Future's dealloc runs the finalizer (the "exception was never retrieved" report)
// only for exact futures, leaving it to subtype_dealloc otherwise: run it here first.
void native_future_dealloc(PyObject* self) noexcept {
  if (PyObject_CallFinalizerFromDealloc(self) < 0) return;  // resurrected
  PyTypeObject* type = Py_TYPE(self);
  if (db_pyloop_link* link = std::exchange(link_of(self), nullptr)) core_of(link)->release();
  base_dealloc(self);
  if (!base_releases_type) Py_DECREF(type);
}

// An instance holds a reference to its (heap) type, which the collector must see once: the
// base's traverse reports it when the base is itself a heap type (3.12+).
int native_future_traverse(PyObject* self, visitproc visit, void* arg) noexcept {
  if (!base_releases_type) Py_VISIT(Py_TYPE(self));
  return base_traverse(self, visit, arg);
}

PyObject* native_future_cancel(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                               PyObject* kwnames) noexcept {
  // asyncio.Future.cancel(self, msg=None), called unbound with the same arguments.
  const Py_ssize_t total = nargs + (kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0);
  PyObject* stack[4];
  if (total > 2) {
    PyErr_SetString(PyExc_TypeError, "cancel() takes at most 1 argument");
    return nullptr;
  }
  stack[1] = self;
  for (Py_ssize_t i = 0; i < total; ++i) stack[2 + i] = args[i];
  PyObject* result = PyObject_Vectorcall(state().future_cancel.ptr(), stack + 1,
                                         (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
  if (result == Py_True) {
    if (db_pyloop_link* link = link_of(self)) {
      // The loop stops keeping the future (no result can matter now), then the native side
      // learns of the cancellation.
      PyObject* kept = take_native_future(loop_of(link), core_of(link)->id());
      Py_XDECREF(kept);
      core_of(link)->mark_cancelled();
    }
  }
  return result;
}

PyMethodDef native_future_methods[] = {
    {"cancel", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(native_future_cancel)),
     METH_FASTCALL | METH_KEYWORDS,
     "cancel(msg=None)\n--\n\nCancel the future, as asyncio.Future.cancel(), and tell the native side."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyObject* new_native_future(PyObject* loop, db_pyloop_link* link) noexcept {
  module_state& s = state();
  PyObject* argv[] = {loop};
  PyObject* future = PyObject_Vectorcall(reinterpret_cast<PyObject*>(s.native_future_type), argv, 0,
                                         s.kwnames_loop.ptr());
  if (future == nullptr) return nullptr;
  core_of(link)->retain();
  link_of(future) = link;
  return future;
}

PyObject* take_native_future(loop_object* loop, std::uint64_t id) noexcept {
  if (loop->pending_queries == nullptr) return nullptr;
  auto found = loop->pending_queries->find(id);
  if (found == loop->pending_queries->end()) return nullptr;
  PyObject* future = found->second.release().ptr();
  loop->pending_queries->erase(found);
  return future;
}

void export_native_future(nb::module_& m) {
  auto* base = reinterpret_cast<PyTypeObject*>(state().future_type.ptr());
  link_offset = base->tp_basicsize;
  base_dealloc = base->tp_dealloc;
  // asyncio.Future is a static type up to 3.11 and a heap type from 3.12, whose dealloc then
  // releases the instance's type itself.
  base_releases_type = PyType_HasFeature(base, Py_TPFLAGS_HEAPTYPE);
  base_traverse = base->tp_traverse;
  PyType_Slot slots[] = {
      {Py_tp_dealloc, reinterpret_cast<void*>(native_future_dealloc)},
      {Py_tp_traverse, reinterpret_cast<void*>(native_future_traverse)},
      {Py_tp_methods, native_future_methods},
      {Py_tp_doc, const_cast<char*>("The asyncio future of a native bridge promise.")},
      {0, nullptr},
  };
  PyType_Spec spec{"data_bridge.pyloop._pyloop.NativeFuture",
                   static_cast<int>(base->tp_basicsize + sizeof(db_pyloop_link*)), 0,
                   static_cast<unsigned>(Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC), slots};
  nb::object bases = nb::make_tuple(state().future_type);
  PyObject* type = PyType_FromSpecWithBases(&spec, bases.ptr());
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.native_future_type = reinterpret_cast<PyTypeObject*>(type);
  s.future_cancel = s.future_type.attr("cancel");
  m.attr("NativeFuture") = nb::borrow(type);
}

}  // namespace pyloop::bindings
