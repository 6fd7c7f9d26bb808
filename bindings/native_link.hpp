// bindings/native_link.hpp — what bind_native_bridge.cpp and bind_native_future.cpp share: the link of a
// native bridge future (the opaque db_pyloop_link of c_api.h) and the NativeFuture type.
#pragma once

#include <Python.h>

#include <cstdint>
#include <memory>

#include "data_bridge/pyloop/c_api.h"
#include "loop_object.hpp"
#include "pyloop/completion_link.hpp"

// The opaque link of c_api.h: the core's link and the loop that keeps the future.
// Thread safety: as completion_link; loop is dereferenced only on the loop's thread.
struct db_pyloop_link {
  db_pyloop_link(std::shared_ptr<pyloop::loop_mailbox> mailbox, std::uint64_t id,
                 pyloop::cancel_hook hook, pyloop::bindings::loop_object* owner) noexcept
      : core(std::move(mailbox), id, hook), loop(owner) {}
  pyloop::completion_link core;           // completion and cancellation state
  pyloop::bindings::loop_object* loop;    // the future's loop (alive while its future is)
};

namespace pyloop::bindings {

// A new NativeFuture of loop (an asyncio.Future subclass whose cancel() tells link); it takes
// one reference to link. Null with an exception set.
PyObject* new_native_future(PyObject* loop, db_pyloop_link* link) noexcept;

// Takes the future filed under id off the loop; null (no exception) if it is gone.
PyObject* take_native_future(loop_object* loop, std::uint64_t id) noexcept;

void export_native_future(nb::module_& m);

}  // namespace pyloop::bindings
