// bindings/bind_handle.cpp — the Handle and TimerHandle types and how the loop runs them.
//
// These are plain CPython heap types rather than nanobind classes: a handle is created for
// every call_soon, and nanobind's instance registry and dispatcher would cost more than the
// rest of that call (docs/architecture.md, "Handles").
#include "handle_object.hpp"

#include <new>

#include <structmember.h>

#include "loop_object.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

handle_freelist& freelist_for(PyTypeObject* type) noexcept {
  module_state& s = state();
  return type == s.timer_handle_type ? s.free_timer_handles : s.free_handles;
}

handle_object* allocate(PyTypeObject* type) noexcept {
  handle_freelist& list = freelist_for(type);
  handle_object* h;
  if (list.count > 0) {
    h = list.items[--list.count];
    PyObject_Init(reinterpret_cast<PyObject*>(h), type);
  } else {
    h = PyObject_GC_New(handle_object, type);
    if (h == nullptr) return nullptr;
  }
  new (&h->loop) nb::object();
  new (&h->callback) nb::object();
  new (&h->args) nb::object();
  new (&h->context) nb::object();
  new (&h->source_traceback) nb::object();
  new (&h->repr) nb::object();
  h->weakrefs = nullptr;
  h->when = 0.0;
  h->cancelled = false;
  h->scheduled = false;
  h->is_timer = false;
  return h;
}

handle_object* make_handle(PyTypeObject* type, PyObject* loop, PyObject* callback,
                           PyObject* const* args, Py_ssize_t nargs, PyObject* context) {
  nb::object captured;
  if (context == nullptr || context == Py_None) {
    captured = nb::steal(PyContext_CopyCurrent());
    if (!captured.is_valid()) return nullptr;
  } else {
    captured = nb::borrow(context);
  }
  nb::object arg_tuple = nb::steal(PyTuple_New(nargs));
  if (!arg_tuple.is_valid()) return nullptr;
  for (Py_ssize_t i = 0; i < nargs; ++i) PyTuple_SET_ITEM(arg_tuple.ptr(), i, Py_NewRef(args[i]));

  handle_object* h = allocate(type);
  if (h == nullptr) return nullptr;
  h->loop = nb::borrow(loop);
  h->callback = nb::borrow(callback);
  h->args = std::move(arg_tuple);
  h->context = std::move(captured);
  h->is_timer = type == state().timer_handle_type;
  // Not tracked by the garbage collector yet: see release_from_queue().

  if (as_loop(loop)->debug) {
    // Debug mode records where the handle was created, as asyncio's Handle.__init__ does.
    nb::object stack = nb::steal(PyObject_CallNoArgs(state().extract_stack.ptr()));
    if (!stack.is_valid()) {
      nb::object discarded = nb::steal(reinterpret_cast<PyObject*>(h));
      return nullptr;
    }
    h->source_traceback = std::move(stack);
  }
  return h;
}

void clear_fields(handle_object* h) noexcept {
  clear_ref(h->loop);
  clear_ref(h->callback);
  clear_ref(h->args);
  clear_ref(h->context);
  clear_ref(h->source_traceback);
  clear_ref(h->repr);
}

void handle_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  handle_object* h = as_handle(self);
  if (h->weakrefs != nullptr) PyObject_ClearWeakRefs(self);
  clear_fields(h);
  PyTypeObject* type = Py_TYPE(self);
  module_state* s = state_if_alive();  // null when the handle outlives the module
  const bool exact = s != nullptr && (type == s->handle_type || type == s->timer_handle_type);
  handle_freelist* list = exact ? &freelist_for(type) : nullptr;
  if (list != nullptr && list->count < handle_freelist::capacity) {
    list->items[list->count++] = h;
  } else {
    type->tp_free(self);
  }
  Py_DECREF(type);
}

int handle_traverse(PyObject* self, visitproc visit, void* arg) {
  handle_object* h = as_handle(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(h->loop.ptr());
  Py_VISIT(h->callback.ptr());
  Py_VISIT(h->args.ptr());
  Py_VISIT(h->context.ptr());
  Py_VISIT(h->source_traceback.ptr());
  Py_VISIT(h->repr.ptr());
  return 0;
}

int handle_clear(PyObject* self) {
  clear_fields(as_handle(self));
  return 0;
}

PyObject* handle_repr(PyObject* self) {
  handle_object* h = as_handle(self);
  if (h->repr.is_valid()) return Py_NewRef(h->repr.ptr());
  module_state* s = state_if_alive();
  if (s == nullptr || !s->handle_repr.is_valid()) {
    return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(self)->tp_name, self);
  }
  return PyObject_CallOneArg(s->handle_repr.ptr(), self);
}

PyObject* handle_cancel(PyObject* self, PyObject*) {
  handle_object* h = as_handle(self);
  if (h->cancelled) Py_RETURN_NONE;
  h->cancelled = true;
  loop_object* loop = as_loop(h->loop.ptr());
  if (h->is_timer && h->scheduled && loop->driver != nullptr) loop->driver->timer_cancelled();
  if (loop->debug) {
    // Keep the repr with the callback in it: the callback is released just below.
    nb::object saved = nb::steal(PyObject_Repr(self));
    if (!saved.is_valid()) return nullptr;
    h->repr = std::move(saved);
  }
  clear_ref(h->callback);
  clear_ref(h->args);
  Py_RETURN_NONE;
}

PyObject* handle_cancelled(PyObject* self, PyObject*) {
  return PyBool_FromLong(as_handle(self)->cancelled);
}

PyObject* handle_get_context(PyObject* self, PyObject*) {
  return Py_NewRef(as_handle(self)->context.ptr());
}

PyObject* handle_run_method(PyObject* self, PyObject*) {
  nb::object keep_alive = nb::borrow(self);
  if (run_handle(as_handle(self)) == callback_status::abort) return nullptr;
  Py_RETURN_NONE;
}

PyObject* timer_when(PyObject* self, PyObject*) { return PyFloat_FromDouble(as_handle(self)->when); }

PyObject* field_or_none(const nb::object& field) {
  return Py_NewRef(field.is_valid() ? field.ptr() : Py_None);
}

PyObject* get_loop(PyObject* self, void*) { return field_or_none(as_handle(self)->loop); }
PyObject* get_callback(PyObject* self, void*) { return field_or_none(as_handle(self)->callback); }
PyObject* get_args(PyObject* self, void*) { return field_or_none(as_handle(self)->args); }
PyObject* get_context(PyObject* self, void*) { return field_or_none(as_handle(self)->context); }
PyObject* get_source_traceback(PyObject* self, void*) {
  return field_or_none(as_handle(self)->source_traceback);
}
PyObject* get_saved_repr(PyObject* self, void*) { return field_or_none(as_handle(self)->repr); }
PyObject* get_cancelled(PyObject* self, void*) { return PyBool_FromLong(as_handle(self)->cancelled); }
PyObject* get_when(PyObject* self, void*) { return PyFloat_FromDouble(as_handle(self)->when); }
PyObject* get_scheduled(PyObject* self, void*) { return PyBool_FromLong(as_handle(self)->scheduled); }

// TimerHandle equality as asyncio defines it: same deadline, callback, arguments and state.
int timers_equal(handle_object* a, handle_object* b) {
  if (a->when != b->when || a->cancelled != b->cancelled) return 0;
  int same = PyObject_RichCompareBool(a->callback.is_valid() ? a->callback.ptr() : Py_None,
                                      b->callback.is_valid() ? b->callback.ptr() : Py_None, Py_EQ);
  if (same <= 0) return same;
  return PyObject_RichCompareBool(a->args.is_valid() ? a->args.ptr() : Py_None,
                                  b->args.is_valid() ? b->args.ptr() : Py_None, Py_EQ);
}

PyObject* timer_richcompare(PyObject* self, PyObject* other, int op) {
  if (!PyObject_TypeCheck(other, state().timer_handle_type)) Py_RETURN_NOTIMPLEMENTED;
  handle_object* a = as_handle(self);
  handle_object* b = as_handle(other);
  int result;
  switch (op) {
    case Py_LT: result = a->when < b->when; break;
    case Py_GT: result = a->when > b->when; break;
    case Py_LE: result = a->when < b->when ? 1 : timers_equal(a, b); break;
    case Py_GE: result = a->when > b->when ? 1 : timers_equal(a, b); break;
    case Py_EQ: result = timers_equal(a, b); break;
    case Py_NE: result = timers_equal(a, b); if (result >= 0) result = !result; break;
    default: Py_RETURN_NOTIMPLEMENTED;
  }
  if (result < 0) return nullptr;
  return PyBool_FromLong(result);
}

Py_hash_t timer_hash(PyObject* self) {
  nb::object when = nb::steal(PyFloat_FromDouble(as_handle(self)->when));
  return when.is_valid() ? PyObject_Hash(when.ptr()) : -1;
}

PyMethodDef handle_methods[] = {
    {"cancel", handle_cancel, METH_NOARGS, "Cancel the call; a cancelled callback never runs."},
    {"cancelled", handle_cancelled, METH_NOARGS, "Return True if the call was cancelled."},
    {"get_context", handle_get_context, METH_NOARGS, "Return the contextvars.Context the callback runs in."},
    {"_run", handle_run_method, METH_NOARGS, "Run the callback now, reporting its errors as the loop does."},
    {nullptr, nullptr, 0, nullptr},
};

PyMethodDef timer_methods[] = {
    {"when", timer_when, METH_NOARGS, "Return the scheduled time as a float, in loop.time() seconds."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef handle_getset[] = {
    {"_loop", get_loop, nullptr, nullptr, nullptr},
    {"_callback", get_callback, nullptr, nullptr, nullptr},
    {"_args", get_args, nullptr, nullptr, nullptr},
    {"_context", get_context, nullptr, nullptr, nullptr},
    {"_source_traceback", get_source_traceback, nullptr, nullptr, nullptr},
    {"_repr", get_saved_repr, nullptr, nullptr, nullptr},
    {"_cancelled", get_cancelled, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyGetSetDef timer_getset[] = {
    {"_when", get_when, nullptr, nullptr, nullptr},
    {"_scheduled", get_scheduled, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef handle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(handle_object, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot handle_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(handle_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(handle_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(handle_repr)},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_tp_members, handle_members},
    {Py_tp_doc, const_cast<char*>("Object returned by call_soon(): a callback scheduled on a PyLoop.")},
    {0, nullptr},
};

PyType_Slot timer_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(handle_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(handle_clear)},
    {Py_tp_richcompare, reinterpret_cast<void*>(timer_richcompare)},
    {Py_tp_hash, reinterpret_cast<void*>(timer_hash)},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_doc, const_cast<char*>("Object returned by call_later() and call_at().")},
    {0, nullptr},
};

constexpr unsigned handle_flags =
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION;

PyType_Spec handle_spec = {"data_bridge.pyloop._pyloop.Handle", sizeof(handle_object), 0,
                           handle_flags, handle_slots};
PyType_Spec timer_spec = {"data_bridge.pyloop._pyloop.TimerHandle", sizeof(handle_object), 0,
                          handle_flags, timer_slots};

// Handles are born untracked by the garbage collector and stay so while a queue owns them.
// A queued handle is alive by definition (the loop will run or discard it), and the loop's
// tp_traverse reports the edges through it, so tracking it would only make every young
// collection traverse every queued handle: in a call_soon fan-out that was half the run time
// (docs/architecture.md, "Handles and the garbage collector"). When the queue lets go of a
// handle that someone else still holds, it starts being tracked like any other object, so
// cycles through it (obj -> handle -> bound method -> obj) stay collectable.
}  // namespace

nb::object release_from_queue(void* payload) noexcept {
  PyObject* self = static_cast<PyObject*>(payload);
  if (Py_REFCNT(self) > 1 && !PyObject_GC_IsTracked(self)) PyObject_GC_Track(self);
  return nb::steal(self);
}

namespace {

// callback_ops for queued handles. Each entry owns one reference to its handle.
callback_status invoke_queued(void* payload) noexcept {
  handle_object* h = as_handle(payload);
  nb::object owned = release_from_queue(payload);
  if (h->cancelled) return callback_status::done;
  loop_object* loop = as_loop(h->loop.ptr());
  if (!loop->debug) return run_handle(h);
  // Debug mode times the callback and warns when it is slow: clearer in Python, and debug
  // mode is allowed to be slow (asyncio's is).
  PyObject* call_args[] = {h->loop.ptr(), static_cast<PyObject*>(payload)};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      state().str_run_handle_debug.ptr(), call_args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (done.is_valid()) return callback_status::done;
  if (exiting_exception_pending()) return callback_status::abort;
  PyErr_WriteUnraisable(h->loop.ptr());
  return callback_status::done;
}

void discard_queued(void* payload) noexcept {
  handle_object* h = as_handle(payload);
  h->scheduled = false;
  nb::object owned = release_from_queue(payload);
}

bool queued_cancelled(const void* payload) noexcept {
  return static_cast<const handle_object*>(payload)->cancelled;
}

void timer_unscheduled(void* payload) noexcept { as_handle(payload)->scheduled = false; }

// Readiness callbacks run the same handle many times; each run consumes a retained reference.
void retain_queued(void* payload) noexcept { nb::handle(static_cast<PyObject*>(payload)).inc_ref(); }

}  // namespace

const callback_ops handle_callback_ops = {invoke_queued, discard_queued, queued_cancelled, nullptr,
                                          retain_queued};
const callback_ops timer_callback_ops = {invoke_queued, discard_queued, queued_cancelled,
                                         timer_unscheduled, retain_queued};

handle_object* new_handle(PyObject* loop, PyObject* callback, PyObject* const* args,
                          Py_ssize_t nargs, PyObject* context) {
  return make_handle(state().handle_type, loop, callback, args, nargs, context);
}

handle_object* new_timer_handle(double when, PyObject* loop, PyObject* callback,
                                PyObject* const* args, Py_ssize_t nargs, PyObject* context) {
  handle_object* h = make_handle(state().timer_handle_type, loop, callback, args, nargs, context);
  if (h != nullptr) h->when = when;
  return h;
}

int traverse_queued_handle(void* payload, visitproc visit, void* arg) {
  PyObject* self = static_cast<PyObject*>(payload);
  if (PyObject_GC_IsTracked(self)) {
    Py_VISIT(self);
    return 0;
  }
  handle_object* h = as_handle(payload);
  if (Py_REFCNT(self) == 1) {
    // The queue is the only owner, so the handle's references are, in effect, the loop's.
    return handle_traverse(self, visit, arg);
  }
  // Held elsewhere too: only the reference back to the loop can be attributed to the loop.
  Py_VISIT(h->loop.ptr());
  return 0;
}

callback_status run_handle(handle_object* h) noexcept {
  // Own what the call needs: the callback may cancel its own handle, which drops them.
  nb::object callback = h->callback;
  if (!callback.is_valid()) return callback_status::done;
  nb::object args = h->args;
  nb::object context = h->context;
  nb::object result;
  if (PyContext_Enter(context.ptr()) == 0) {
    auto* tuple = reinterpret_cast<PyTupleObject*>(args.ptr());
    result = nb::steal(PyObject_Vectorcall(callback.ptr(), tuple->ob_item,
                                           static_cast<size_t>(Py_SIZE(tuple)), nullptr));
    if (PyContext_Exit(context.ptr()) < 0) result.reset();
  }
  if (result.is_valid()) return callback_status::done;
  if (exiting_exception_pending()) return callback_status::abort;

  nb::object exc = take_exception();
  PyObject* report_args[] = {reinterpret_cast<PyObject*>(h), exc.ptr()};
  nb::object reported = nb::steal(
      PyObject_Vectorcall(state().report_handle_exception.ptr(), report_args, 2, nullptr));
  if (reported.is_valid()) return callback_status::done;
  if (exiting_exception_pending()) return callback_status::abort;
  PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(h));
  return callback_status::done;
}

void export_handle(nb::module_& m) {
  module_state& s = state();
  nb::object handle_type = nb::steal(PyType_FromSpec(&handle_spec));
  if (!handle_type.is_valid()) throw nb::python_error();
  nb::object timer_type = nb::steal(PyType_FromSpecWithBases(&timer_spec, handle_type.ptr()));
  if (!timer_type.is_valid()) throw nb::python_error();
  s.owned_types.push_back(handle_type);
  s.owned_types.push_back(timer_type);
  m.attr("Handle") = handle_type;
  m.attr("TimerHandle") = timer_type;
  s.handle_type = reinterpret_cast<PyTypeObject*>(handle_type.ptr());
  s.timer_handle_type = reinterpret_cast<PyTypeObject*>(timer_type.ptr());
}

}  // namespace pyloop::bindings
