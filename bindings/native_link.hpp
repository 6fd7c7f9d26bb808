// bindings/native_link.hpp — what bind_native_bridge.cpp and bind_native_future.cpp share: the link of a
// native bridge future (the opaque db_pyloop_link of c_api.h) and the NativeFuture type.
#pragma once

#include <Python.h>

#include <cstdint>
#include <memory>

#include "data_bridge/pyloop/c_api.h"
#include "loop_object.hpp"
#include "pyloop/completion_link.hpp"

namespace pyloop::bindings {

// The opaque db_pyloop_link of c_api.h is the core's completion_link (never defined as a
// type of its own: the link deletes itself as a completion_link). Its owner() is the
// loop_object that keeps the future.
inline completion_link* core_of(db_pyloop_link* link) noexcept {
  return reinterpret_cast<completion_link*>(link);
}
inline const completion_link* core_of(const db_pyloop_link* link) noexcept {
  return reinterpret_cast<const completion_link*>(link);
}
inline db_pyloop_link* as_c_link(completion_link* link) noexcept {
  return reinterpret_cast<db_pyloop_link*>(link);
}
inline loop_object* loop_of(db_pyloop_link* link) noexcept {
  return static_cast<loop_object*>(core_of(link)->owner());
}

// A new NativeFuture of loop (an asyncio.Future subclass whose cancel() tells link); it takes
// one reference to link. Null with an exception set.
PyObject* new_native_future(PyObject* loop, db_pyloop_link* link) noexcept;

// Takes the future filed under id off the loop; null (no exception) if it is gone.
PyObject* take_native_future(loop_object* loop, std::uint64_t id) noexcept;

void export_native_future(nb::module_& m);

}  // namespace pyloop::bindings
