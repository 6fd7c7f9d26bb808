// bindings/bind_native_buffer.cpp — NativeBuffer: native memory lent to Python through the buffer
// protocol, without a copy (the native bridge's buffer_new).
//
// The object holds a pointer, a size and the owner's release function. A memoryview (or any
// buffer consumer) takes a reference to the NativeBuffer, so the memory outlives every view;
// release(owner) runs when the last of them is gone.
#include <Python.h>

#include <nanobind/nanobind.h>

#include "loop_object.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

// Layout of NativeBuffer instances.
// Thread safety: GIL held (the memory itself belongs to its owner).
struct native_buffer_object {
  PyObject_HEAD
  void* data;                    // the owner's bytes
  Py_ssize_t size;               // their length
  bool writable;                 // views may write
  void (*release)(void* owner);  // frees owner; run once, at deallocation
  void* owner;                   // what release frees
};

native_buffer_object* as_buffer(PyObject* o) noexcept {
  return reinterpret_cast<native_buffer_object*>(o);
}

int buffer_get(PyObject* self, Py_buffer* view, int flags) noexcept {
  native_buffer_object* b = as_buffer(self);
  return PyBuffer_FillInfo(view, self, b->data, b->size, b->writable ? 0 : 1, flags);
}

Py_ssize_t buffer_length(PyObject* self) noexcept { return as_buffer(self)->size; }

void buffer_dealloc(PyObject* self) noexcept {
  native_buffer_object* b = as_buffer(self);
  if (b->release != nullptr) b->release(b->owner);
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyObject* buffer_repr(PyObject* self) noexcept {
  native_buffer_object* b = as_buffer(self);
  return PyUnicode_FromFormat("<NativeBuffer %zd bytes%s>", b->size, b->writable ? "" : " read-only");
}

PyType_Slot buffer_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(buffer_get)},
    {Py_sq_length, reinterpret_cast<void*>(buffer_length)},
    {Py_tp_dealloc, reinterpret_cast<void*>(buffer_dealloc)},
    {Py_tp_repr, reinterpret_cast<void*>(buffer_repr)},
    {Py_tp_doc, const_cast<char*>("Native memory exposed through the buffer protocol (no copy).")},
    {0, nullptr},
};

PyType_Spec buffer_spec{"data_bridge.pyloop._pyloop.NativeBuffer",
                        static_cast<int>(sizeof(native_buffer_object)), 0, Py_TPFLAGS_DEFAULT,
                        buffer_slots};

}  // namespace

PyObject* new_native_buffer(void* data, Py_ssize_t size, int writable, void (*release)(void*),
                            void* owner) noexcept {
  PyTypeObject* type = state().native_buffer_type;
  PyObject* self = size < 0 ? nullptr : type->tp_alloc(type, 0);
  if (self == nullptr) {
    if (release != nullptr) release(owner);
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative buffer size");
    return nullptr;
  }
  native_buffer_object* b = as_buffer(self);
  b->data = data;
  b->size = size;
  b->writable = writable != 0;
  b->release = release;
  b->owner = owner;
  return self;
}

void export_native_buffer(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&buffer_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.native_buffer_type = reinterpret_cast<PyTypeObject*>(type);
  m.attr("NativeBuffer") = nb::borrow(type);
}

}  // namespace pyloop::bindings
