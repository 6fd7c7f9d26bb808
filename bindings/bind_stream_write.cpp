// bindings/bind_stream_write.cpp — write() and writelines() of stream transports, and the
// write events.
//
// The queue, the sending policy (coalescing per loop turn, the write pattern, large buffers
// sent at once), the water marks and the writability watch are the core's stream_writer
// (core/src/stream_writer.cpp). This file adapts Python to it: write() and writelines() are C
// functions installed on the transport class as method descriptors (no Python frame per
// write), a `bytes` is queued by reference (a chunk owner: one reference, released when the
// chunk is sent or dropped) and any other buffer is handed over for the length of the call
// (the core copies what must wait, as asyncio copies a bytearray). The writer's events call
// the Python transport only on its slow paths: errors, flow control, the end of a drain.
#include "module_state.hpp"
#include "stream_io_object.hpp"
#include "tls_session_object.hpp"

#include <structmember.h>  // after Python.h: PyMemberDef of the `_io` slot

namespace pyloop::bindings {
namespace {

// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;

// -- events --------------------------------------------------------------------------------

void retain_chunk(void* kept) noexcept { nb::handle(static_cast<PyObject*>(kept)).inc_ref(); }
void release_chunk(void* kept) noexcept { nb::handle(static_cast<PyObject*>(kept)).dec_ref(); }

// A send failed: as asyncio's write path reports it, the transport's _on_write_error(exc)
// closes it (connection_lost gets exc).
bool on_write_failed(void* owner, int error) noexcept {
  set_os_error(error);
  nb::object exc = take_exception();
  return call_transport(as_stream_io(owner), state().str_on_write_error.ptr(), exc.ptr());
}

bool on_above_high_water(void* owner) noexcept {
  return call_transport(as_stream_io(owner), state().str_maybe_pause_protocol.ptr());
}

// asyncio's _maybe_resume_protocol checks both the pause and the low-water mark itself; it is
// called only when the protocol was paused.
bool on_at_low_water(void* owner) noexcept {
  stream_io_object* io = as_stream_io(owner);
  if (!io->transport.is_valid()) return true;
  module_state& s = state();
  nb::object paused = nb::steal(PyObject_GetAttr(io->transport.ptr(), s.str_protocol_paused.ptr()));
  if (!paused.is_valid()) return false;
  if (paused.ptr() != Py_True) return true;
  return call_transport(io, s.str_maybe_resume_protocol.ptr());
}

bool on_drained(void* owner) noexcept {
  return call_transport(as_stream_io(owner), state().str_on_drained.ptr());
}

// -- write() and writelines() ----------------------------------------------------------------

stream_io_object* stream_io_of(PyObject* transport) {
  module_state& s = state();
  PyObject* io = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(transport) +
                                               s.stream_io_slot_offset);
  if (io == nullptr || !PyObject_TypeCheck(io, s.stream_io_type)) {
    PyErr_SetString(PyExc_RuntimeError, "transport is not initialized");
    return nullptr;
  }
  return as_stream_io(io);
}

// asyncio's warning for writes that keep coming after the connection was lost (or, on a
// pipe, after close()), in the words of its socket or pipe transport.
bool warn_lost_write(const stream_io_object* io) {
  const char* text = io->kind == descriptor_kind::socket
                         ? "socket.send() raised exception."
                         : "pipe closed by peer or os.write(pipe, data) raised exception.";
  nb::object logging = nb::steal(PyImport_ImportModule("logging"));
  if (!logging.is_valid()) return false;
  nb::object logger = nb::steal(PyObject_CallMethod(logging.ptr(), "getLogger", "s", "asyncio"));
  if (!logger.is_valid()) return false;
  nb::object done = nb::steal(
      PyObject_CallMethod(logger.ptr(), "warning", "s", text));
  return done.is_valid();
}

// Checks that a write may proceed, in asyncio's order: write_eof, sendfile, empty data, then
// a lost connection or a closing pipe (asyncio's pipe transport drops writes once close() or
// write_eof() was called). Returns 1 to write, 0 when the write is dropped, -1 with an
// exception.
int admit_unusual_write(stream_io_object* io, bool empty) {
  if (io->eof) {
    PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
    return -1;
  }
  if (io->blocked) {
    PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
    return -1;
  }
  if (empty) return 0;
  if (io->lost >= log_threshold_for_connlost_writes && !warn_lost_write(io)) return -1;
  ++io->lost;
  return 0;
}

// The common case in a few instructions: data to write on a healthy transport.
inline int admit_write(stream_io_object* io, bool empty) {
  if (!empty && !io->eof && !io->blocked && !io->closing && io->lost == 0) return 1;
  return admit_unusual_write(io, empty);
}

// len(data) == 0 for the three types write() takes, without a call (a memoryview's length
// counts items, its buffer's bytes: either is 0 only when the other is).
bool empty_data(PyObject* data) noexcept {
  if (PyBytes_Check(data)) return PyBytes_GET_SIZE(data) == 0;
  if (PyByteArray_Check(data)) return PyByteArray_GET_SIZE(data) == 0;
  return PyMemoryView_GET_BUFFER(data)->len == 0;
}

// Borrowed bytes of a bytes-like object, for the length of one call. An exact `bytes` is
// also the chunk owner: immutable, it is queued by reference instead of copied.
class borrowed_bytes {
 public:
  bool open(PyObject* data) noexcept {
    if (PyBytes_CheckExact(data)) {
      data_ = PyBytes_AS_STRING(data);
      size_ = static_cast<std::size_t>(PyBytes_GET_SIZE(data));
      keep_ = data;
      return true;
    }
    if (PyObject_GetBuffer(data, &view_, PyBUF_SIMPLE) < 0) return false;
    exported_ = true;
    data_ = static_cast<const char*>(view_.buf);
    size_ = static_cast<std::size_t>(view_.len);
    return true;
  }
  ~borrowed_bytes() {
    if (exported_) PyBuffer_Release(&view_);
  }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  void* keep() const noexcept { return keep_; }

 private:
  Py_buffer view_;  // the export of a non-bytes buffer, valid when exported_
  bool exported_ = false;
  const char* data_ = nullptr;
  std::size_t size_ = 0;
  PyObject* keep_ = nullptr;  // the bytes object when the data may be queued by reference
};

// SocketTransport.write(data)
PyObject* transport_write(PyObject* transport, PyObject* data) {
  stream_io_object* io = stream_io_of(transport);
  if (io == nullptr) return nullptr;
  if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
    PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.80s'",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  const int admitted = admit_write(io, empty_data(data));
  if (admitted <= 0) return admitted < 0 ? nullptr : Py_NewRef(Py_None);
  // io stays alive whatever the events do: the transport, alive for this call, holds it.
  borrowed_bytes bytes;
  if (!bytes.open(data)) return nullptr;
  return write_result(io, io->writer.write(bytes.data(), bytes.size(), bytes.keep()));
}

// True when obj hands out a simple buffer at this moment. A refusal leaves its exception set;
// an object with no buffer interface at all sets none.
bool exports_buffer(PyObject* obj) noexcept {
  if (!PyObject_CheckBuffer(obj)) return false;
  Py_buffer view;
  if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) return false;
  PyBuffer_Release(&view);
  return true;
}

// SocketTransport.writelines(list_of_data): every piece joins the queue; one send for all.
PyObject* transport_writelines(PyObject* transport, PyObject* list_of_data) {
  stream_io_object* io = stream_io_of(transport);
  if (io == nullptr) return nullptr;
  nb::object items = nb::steal(PySequence_Fast(list_of_data, "can only join an iterable"));
  if (!items.is_valid()) return nullptr;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(items.ptr());
  PyObject** item = PySequence_Fast_ITEMS(items.ptr());
  // Validate everything before queueing anything, as asyncio does: an item must export a
  // buffer now (a released memoryview does not). b"".join reports any refusal as TypeError;
  // 3.12+ socket transports take memoryview(item) instead, whose own error (ValueError for a
  // released memoryview) reaches the caller. Pipe transports join on every version.
  const bool memoryview_errors = PY_VERSION_HEX >= 0x030C0000 && io->kind == descriptor_kind::socket;
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (PyBytes_CheckExact(item[i]) || exports_buffer(item[i])) continue;
    if (memoryview_errors && PyErr_Occurred()) return nullptr;
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "sequence item %zd: expected a bytes-like object, %.80s found", i,
                 Py_TYPE(item[i])->tp_name);
    return nullptr;
  }
  const int admitted = admit_write(io, count == 0);
  if (admitted <= 0) return admitted < 0 ? nullptr : Py_NewRef(Py_None);
  const bool send_at_once = io->writer.begin_writes();
  const std::size_t before = io->writer.size();
  for (Py_ssize_t i = 0; i < count; ++i) {
    borrowed_bytes bytes;
    if (!bytes.open(item[i])) return nullptr;
    io->writer.queue(bytes.data(), bytes.size(), bytes.keep());
  }
  return write_result(io, io->writer.finish_writes(before, send_at_once));
}

}  // namespace

PyObject* stream_io_write(stream_io_object* io, PyObject* data) noexcept {
  try {
    const int admitted = admit_write(io, empty_data(data));
    if (admitted <= 0) return admitted < 0 ? nullptr : Py_NewRef(Py_None);
    borrowed_bytes bytes;
    if (!bytes.open(data)) return nullptr;
    return write_result(io, io->writer.write(bytes.data(), bytes.size(), bytes.keep()));
  } catch (...) {
    set_error_from_current_exception();
    return nullptr;
  }
}

PyObject* stream_io_write_raw(stream_io_object* io, const char* data, std::size_t size) noexcept {
  try {
    const int admitted = admit_write(io, size == 0);
    if (admitted <= 0) return admitted < 0 ? nullptr : Py_NewRef(Py_None);
    return write_result(io, io->writer.write(data, size, nullptr));
  } catch (...) {
    set_error_from_current_exception();
    return nullptr;
  }
}

namespace {

PyMethodDef transport_write_def = {
    "write", guarded<transport_write>::call, METH_O,
    "write(data)\n--\n\nQueue data for the peer; it is sent at the end of the loop turn."};
PyMethodDef transport_writelines_def = {
    "writelines", guarded<transport_writelines>::call, METH_O,
    "writelines(list_of_data)\n--\n\nQueue every piece; one system call sends them all."};

}  // namespace

const stream_writer_events stream_io_writer_events{
    release_chunk, retain_chunk, on_write_failed, on_above_high_water, on_at_low_water,
    on_drained, io_callback_failed, retain_io, release_io};

// install_stream_methods(cls): makes cls.write and cls.writelines this file's functions. cls
// must declare an `_io` slot holding its StreamIO.
void install_stream_methods(nb::handle cls) {
  if (!PyType_Check(cls.ptr())) throw nb::type_error("install_stream_methods() needs a class");
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  nb::object slot = nb::steal(PyObject_GetAttrString(cls.ptr(), "_io"));
  if (!slot.is_valid()) throw nb::python_error();
  if (Py_TYPE(slot.ptr()) != &PyMemberDescr_Type) {
    throw nb::type_error("install_stream_methods(): `_io` must be a __slots__ entry");
  }
  // One offset for every class: the native write() reads it from module state.
  const Py_ssize_t offset = reinterpret_cast<PyMemberDescrObject*>(slot.ptr())->d_member->offset;
  module_state& s = state();
  if (s.stream_io_slot_offset != 0 && s.stream_io_slot_offset != offset) {
    throw nb::type_error("install_stream_methods(): `_io` must be at the offset of the other "
                         "transport classes' slot");
  }
  s.stream_io_slot_offset = offset;
  for (PyMethodDef* def : {&transport_write_def, &transport_writelines_def}) {
    nb::object descriptor = nb::steal(PyDescr_NewMethod(type, def));
    if (!descriptor.is_valid() || PyObject_SetAttrString(cls.ptr(), def->ml_name, descriptor.ptr()) < 0) {
      throw nb::python_error();
    }
  }
}

}  // namespace pyloop::bindings
