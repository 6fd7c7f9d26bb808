// bindings/bind_stream_sender.cpp — the native write path of stream transports.
//
// A StreamSender is the write half of one SocketTransport (python/.../_transport.py). The
// transport's write() and writelines() are this file's C functions, installed on the class
// as method descriptors, so a write costs no Python frame. Written data is not sent at once:
// it is queued as a list of chunks (bytes objects are kept by reference, other buffers are
// copied because the caller may change them), and at the end of the loop turn (the driver's
// end_of_turn hook, phase 7) each transport written to sends everything with one system call.
// A response written as header then body therefore costs one system call, not two. Two
// things send earlier: loop.create_future() (the writer is about to wait), and a transport
// that has been writing once per turn sends inside write() (see note_write).
//
// Observable behaviour stays asyncio's: a write outside a running loop is sent at once; when
// the queue passes the high-water mark the data is sent at once and, if the kernel does not
// take it, pause_writing() is called inside write() as asyncio does; get_write_buffer_size(),
// close(), abort() and write_eof() send what is queued first, so they see and do what they
// would have after asyncio's immediate send. What the kernel does not take waits for
// writability on a native watch (no Python handle); the Python transport is called only on
// the slow paths: errors, flow control and the end of a drain.
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <climits>
#include <vector>

#include "loop_object.hpp"
#include "module_state.hpp"

#include <structmember.h>  // after Python.h (loop_object.hpp)

namespace pyloop::bindings {
namespace {

// One queued piece of output: an owned bytes object and how much of it is already sent.
struct chunk {
  PyObject* data;
  Py_ssize_t sent;
};

// Layout of data_bridge.pyloop._pyloop.StreamSender.
// Thread safety: the loop's thread, GIL held.
struct stream_sender {
  PyObject_HEAD
  PyObject* transport;         // strong until detach(): the slow paths call it
  PyObject* loop;              // strong: the loop_object whose watches and turn it uses
  std::vector<chunk>* chunks;  // queued output, oldest first, from index head
  std::size_t head;            // first unsent chunk
  Py_ssize_t size;             // unsent bytes in total
  Py_ssize_t high_water;       // the transport's high-water mark (asyncio's _high_water)
  int fd;                      // the transport's socket (not owned)
  int lost;                    // writes after the connection was lost (asyncio's _conn_lost)
  char eof;                    // write_eof() was called: writes are refused
  char blocked;                // a sendfile is in progress: writes are refused
  bool flush_queued;           // in the loop's end-of-turn list
  bool watching;               // a writability watch is installed
  // The transport's write pattern (see note_write): the turn of its latest write, how many
  // writes that turn had so far (counted up to 2), and how many turns in a row with writes
  // had exactly one (counted up to single_write_turns_to_send_at_once).
  std::uint64_t write_turn;
  std::uint8_t writes_in_turn;
  std::uint8_t single_write_turns;
};

inline stream_sender* as_sender(PyObject* o) noexcept { return reinterpret_cast<stream_sender*>(o); }

// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;
// Chunks handed to one sendmsg() call (the kernel's IOV_MAX is 1024).
constexpr std::size_t max_iov = 64;

PyTypeObject* sender_type = nullptr;  // set by export_stream_sender
Py_ssize_t sender_slot_offset = -1;   // offset of the transport class's `_sender` slot

void drop_chunks(stream_sender* s) noexcept {
  if (s->chunks == nullptr) return;
  for (std::size_t i = s->head; i < s->chunks->size(); ++i) Py_DECREF((*s->chunks)[i].data);
  s->chunks->clear();
  s->head = 0;
  s->size = 0;
}

// Calls transport.<name>(*args) for a slow path. Returns false with the exception set.
bool call_transport(stream_sender* s, const char* name, PyObject* arg = nullptr) {
  if (s->transport == nullptr) return true;  // detached: the transport is gone
  nb::object keep = nb::borrow(s->transport);
  nb::object result = nb::steal(arg == nullptr
                                    ? PyObject_CallMethod(keep.ptr(), name, nullptr)
                                    : PyObject_CallMethod(keep.ptr(), name, "O", arg));
  return result.is_valid();
}

// -- the writability watch ----------------------------------------------------------------

callback_status on_writable(void* payload) noexcept;

// The watch's reference goes: removed by stop_watching(), replaced or removed by someone
// else, or dropped with the loop. Either way the sender is no longer watching.
void release_watch(void* payload) noexcept {
  as_sender(static_cast<PyObject*>(payload))->watching = false;
  Py_DECREF(static_cast<PyObject*>(payload));
}

bool start_watching(stream_sender* s) {
  loop_object* loop = as_loop(s->loop);
  if (loop->closed || loop->driver == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return false;
  }
  callback replaced;
  std::error_code ec = loop->driver->watch(s->fd, io_watch::direction::write,
                                           callback{&stream_sender_kind.ops, Py_NewRef(s)}, replaced);
  if (ec) {
    Py_DECREF(s);
    errno = ec.value();
    PyErr_SetFromErrno(PyExc_OSError);
    return false;
  }
  s->watching = true;
  return dispose_watch_callback(replaced);
}

void stop_watching(stream_sender* s) noexcept {
  if (!s->watching) return;
  s->watching = false;
  loop_object* loop = as_loop(s->loop);
  if (loop->driver == nullptr) return;  // the closed loop released its watches already
  callback removed = loop->driver->unwatch(s->fd, io_watch::direction::write);
  if (!dispose_watch_callback(removed)) PyErr_WriteUnraisable(s->loop);
}

// -- sending ------------------------------------------------------------------------------

// A peer that has gone must give EPIPE, not kill the process with SIGPIPE.
#ifdef MSG_NOSIGNAL
constexpr int send_flags = MSG_NOSIGNAL;
#else
constexpr int send_flags = 0;
#endif

// Outcome of one attempt to hand the queue to the kernel.
enum class send_result { drained, blocked, failed };

// Sends queued chunks until the queue is empty or the kernel would block. On failure the
// queue is dropped and errno is left set.
send_result send_queued(stream_sender* s) noexcept {
  while (s->size > 0) {
    iovec iov[max_iov];
    std::size_t count = 0;
    for (std::size_t i = s->head; i < s->chunks->size() && count < max_iov; ++i, ++count) {
      const chunk& c = (*s->chunks)[i];
      iov[count].iov_base = PyBytes_AS_STRING(c.data) + c.sent;
      iov[count].iov_len = static_cast<std::size_t>(PyBytes_GET_SIZE(c.data) - c.sent);
    }
    // One chunk goes through send(): the kernel's sendmsg() path first copies in and
    // checks the message header and the iovec array, which a single buffer does not need.
    ssize_t sent;
    if (count == 1) {
      sent = ::send(s->fd, iov[0].iov_base, iov[0].iov_len, send_flags);
    } else {
      msghdr message{};
      message.msg_iov = iov;
      message.msg_iovlen = count;
      sent = ::sendmsg(s->fd, &message, send_flags);
    }
    ++as_loop(s->loop)->sends;
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return send_result::blocked;
      int saved = errno;
      drop_chunks(s);
      errno = saved;
      return send_result::failed;
    }
    s->size -= sent;
    while (sent > 0) {
      chunk& c = (*s->chunks)[s->head];
      Py_ssize_t left = PyBytes_GET_SIZE(c.data) - c.sent;
      if (sent < left) {
        c.sent += sent;
        break;
      }
      sent -= left;
      Py_DECREF(c.data);
      ++s->head;
    }
    if (s->head == s->chunks->size()) {
      s->chunks->clear();
      s->head = 0;
    }
  }
  return send_result::drained;
}

// Reports a failed send to the transport, as asyncio's write path does: the write watch
// goes, then the transport's _on_write_error(exc) closes it (connection_lost gets exc).
bool report_send_error(stream_sender* s, int error) {
  stop_watching(s);
  errno = error;
  PyErr_SetFromErrno(PyExc_OSError);
  nb::object exc = take_exception();
  return call_transport(s, "_on_write_error", exc.ptr());
}

// Sends what is queued now; what the kernel does not take waits for writability.
bool flush(stream_sender* s) {
  if (s->size == 0 || s->watching) return true;
  switch (send_queued(s)) {
    case send_result::drained:
      return true;
    case send_result::blocked:
      return start_watching(s);
    case send_result::failed:
      return report_send_error(s, errno);
  }
  return true;
}

// The watch fired: send more; tell the transport when the protocol may resume and when the
// queue is empty (it then finishes a close or write_eof, or wakes a sendfile).
bool drain_on_writable(stream_sender* s) {
  if (!s->watching) return true;  // stopped after this dispatch was queued
  send_result result = send_queued(s);
  if (result == send_result::failed) return report_send_error(s, errno);
  if (s->transport != nullptr) {
    nb::object paused = nb::steal(PyObject_GetAttrString(s->transport, "_protocol_paused"));
    if (!paused.is_valid()) return false;
    if (paused.ptr() == Py_True && !call_transport(s, "_maybe_resume_protocol")) return false;
  }
  // resume_writing() may have written more: only an empty queue ends the watch.
  if (s->size == 0 && s->watching) {
    stop_watching(s);
    return call_transport(s, "_on_drained");
  }
  return true;
}

callback_status on_writable(void* payload) noexcept {
  stream_sender* s = as_sender(static_cast<PyObject*>(payload));
  callback_status status = callback_status::done;
  if (!drain_on_writable(s)) {
    if (exiting_exception_pending()) {
      status = callback_status::abort;
    } else {
      PyErr_WriteUnraisable(s->transport != nullptr ? s->transport : static_cast<PyObject*>(payload));
    }
  }
  Py_DECREF(s);
  return status;
}

// -- queueing -----------------------------------------------------------------------------

// Queues one bytes-like object; false with TypeError (asyncio's message) if it is not one.
bool queue_data(stream_sender* s, PyObject* data, const char* what, Py_ssize_t index) {
  PyObject* owned;
  if (PyBytes_CheckExact(data)) {
    owned = Py_NewRef(data);  // immutable: kept by reference, never copied
  } else if (PyByteArray_Check(data) || PyMemoryView_Check(data) || PyBytes_Check(data) ||
             (index >= 0 && PyObject_CheckBuffer(data))) {
    // The caller may change a mutable buffer after write() returns: copy it now, as
    // asyncio's buffer does. (writelines, like b"".join, takes any bytes-like object.)
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return false;
    owned = PyBytes_FromStringAndSize(static_cast<const char*>(view.buf), view.len);
    PyBuffer_Release(&view);
    if (owned == nullptr) return false;
  } else if (index >= 0) {
    PyErr_Format(PyExc_TypeError, "sequence item %zd: expected a bytes-like object, %.80s found",
                 index, Py_TYPE(data)->tp_name);
    return false;
  } else {
    PyErr_Format(PyExc_TypeError, "%s argument must be a bytes-like object, not '%.80s'", what,
                 Py_TYPE(data)->tp_name);
    return false;
  }
  Py_ssize_t length = PyBytes_GET_SIZE(owned);
  if (length == 0) {
    Py_DECREF(owned);
    return true;
  }
  s->chunks->push_back(chunk{owned, 0});
  s->size += length;
  return true;
}

// A large mutable buffer written to an idle transport goes to the kernel at once: copying it
// to send at the end of the turn would cost more than the system call that coalescing saves
// (a memcpy of 16 KiB is about one small sendmsg).
constexpr Py_ssize_t send_now_threshold = 16 * 1024;

// Sends a write to an idle transport straight from the caller's buffer (a large buffer, or
// any write note_write says goes at once): nothing is queued or copied unless the kernel
// does not take it all, and then only the rest is. Returns 1 when all was sent (or the error
// went to the transport, as asyncio's write reports it), 0 when the rest is queued, -1 with
// an exception.
int send_now(stream_sender* s, PyObject* data) {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return -1;
  ssize_t sent;
  do {
    sent = ::send(s->fd, view.buf, static_cast<std::size_t>(view.len), send_flags);
  } while (sent < 0 && errno == EINTR);
  ++as_loop(s->loop)->sends;
  if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    int error = errno;
    PyBuffer_Release(&view);
    return report_send_error(s, error) ? 1 : -1;
  }
  if (sent < 0) sent = 0;
  int result = 1;
  if (sent < view.len) {
    PyObject* rest = PyBytes_FromStringAndSize(static_cast<const char*>(view.buf) + sent,
                                               view.len - sent);
    if (rest == nullptr) {
      result = -1;
    } else {
      s->chunks->push_back(chunk{rest, 0});
      s->size += view.len - sent;
      result = 0;
    }
  }
  PyBuffer_Release(&view);
  return result;
}

// asyncio's warning for writes that keep coming after the connection was lost.
bool warn_lost_write() {
  nb::object logging = nb::steal(PyImport_ImportModule("logging"));
  if (!logging.is_valid()) return false;
  nb::object logger = nb::steal(PyObject_CallMethod(logging.ptr(), "getLogger", "s", "asyncio"));
  if (!logger.is_valid()) return false;
  nb::object done = nb::steal(
      PyObject_CallMethod(logger.ptr(), "warning", "s", "socket.send() raised exception."));
  return done.is_valid();
}

// Checks that a write may proceed, in asyncio's order: write_eof, sendfile, empty data, then
// a lost connection. Returns 1 to queue, 0 when the write is dropped, -1 with an exception.
int admit_write(stream_sender* s, bool empty) {
  if (s->eof) {
    PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
    return -1;
  }
  if (s->blocked) {
    PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
    return -1;
  }
  if (empty) return 0;
  if (s->lost) {
    if (s->lost >= log_threshold_for_connlost_writes && !warn_lost_write()) return -1;
    ++s->lost;
    return 0;
  }
  return 1;
}

// -- when to send -------------------------------------------------------------------------

// Coalescing pays when a callback writes several times (a header, then a body): one system
// call instead of several. A transport that writes once per turn (an echo, a request/response
// exchange) gains nothing from it, and waiting for the end of the callback delays its answer
// by whatever the callback does after writing. So a transport whose last turns with writes
// each had a single write sends the first write of a turn inside write(), as asyncio always
// does; a second write in the same turn is queued (the rest of the burst shares one send) and
// puts the transport back to coalescing until it has again written once per turn this often.
// A fresh transport starts coalescing, so a burst never costs more than one extra send, and
// only when it follows such a run of single writes.
constexpr std::uint8_t single_write_turns_to_send_at_once = 2;

// Counts one write (write() or writelines() with data) in the transport's pattern. True when
// it should go to the kernel at once.
bool note_write(stream_sender* s) noexcept {
  const std::uint64_t turn = as_loop(s->loop)->turn;
  if (s->write_turn != turn) {
    if (s->writes_in_turn == 1 && s->single_write_turns < single_write_turns_to_send_at_once) {
      ++s->single_write_turns;
    }
    s->write_turn = turn;
    s->writes_in_turn = 0;
  }
  if (s->writes_in_turn < 2) ++s->writes_in_turn;
  if (s->writes_in_turn > 1) {
    s->single_write_turns = 0;
    return false;
  }
  return s->single_write_turns >= single_write_turns_to_send_at_once;
}

// After data joined the queue: send at the end of the turn; at once when note_write said so,
// when the loop is not running, or when the queue passed the high-water mark (then pause the
// protocol as asyncio would).
bool after_queued(stream_sender* s, Py_ssize_t size_before, bool send_at_once) {
  if (s->size == size_before || s->watching) {
    // Nothing new, or data is already waiting for writability: the watch sends it.
    if (s->watching && s->size > s->high_water) return call_transport(s, "_maybe_pause_protocol");
    return true;
  }
  loop_object* loop = as_loop(s->loop);
  if (send_at_once || s->size > s->high_water || !loop->running || loop->driver == nullptr) {
    if (!flush(s)) return false;
    if (s->size > s->high_water) return call_transport(s, "_maybe_pause_protocol");
    return true;
  }
  if (!s->flush_queued) {
    if (loop->flush_list == nullptr) loop->flush_list = new std::vector<PyObject*>();
    loop->flush_list->push_back(Py_NewRef(s));
    s->flush_queued = true;
  }
  return true;
}

stream_sender* sender_of(PyObject* transport) {
  PyObject* sender = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(transport) +
                                                  sender_slot_offset);
  if (sender == nullptr || !PyObject_TypeCheck(sender, sender_type)) {
    PyErr_SetString(PyExc_RuntimeError, "transport is not initialized");
    return nullptr;
  }
  return as_sender(sender);
}

// SocketTransport.write(data)
PyObject* transport_write(PyObject* transport, PyObject* data) {
  stream_sender* s = sender_of(transport);
  if (s == nullptr) return nullptr;
  if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
    PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.80s'",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  Py_ssize_t length = PyObject_Length(data);
  if (length < 0) return nullptr;
  int admitted = admit_write(s, length == 0);
  if (admitted < 0) return nullptr;
  if (admitted == 0) Py_RETURN_NONE;
  const bool send_at_once = note_write(s);
  Py_ssize_t before = s->size;
  if (s->size == 0 && !s->watching &&
      (send_at_once || (length >= send_now_threshold && !PyBytes_CheckExact(data)))) {
    int sent_all = send_now(s, data);
    if (sent_all < 0) return nullptr;
    if (sent_all > 0) Py_RETURN_NONE;
    // The kernel took part of it: it will not take more before the socket is writable.
    if (!start_watching(s)) return nullptr;
  } else if (!queue_data(s, data, "data", -1)) {
    return nullptr;
  }
  if (!after_queued(s, before, send_at_once)) return nullptr;
  Py_RETURN_NONE;
}

// SocketTransport.writelines(list_of_data): every piece joins the queue; one send for all.
PyObject* transport_writelines(PyObject* transport, PyObject* list_of_data) {
  stream_sender* s = sender_of(transport);
  if (s == nullptr) return nullptr;
  nb::object items = nb::steal(PySequence_Fast(list_of_data, "can only join an iterable"));
  if (!items.is_valid()) return nullptr;
  Py_ssize_t count = PySequence_Fast_GET_SIZE(items.ptr());
  PyObject** item = PySequence_Fast_ITEMS(items.ptr());
  // Validate everything before queueing anything, as b"".join would fail before writing.
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (!PyObject_CheckBuffer(item[i])) {
      PyErr_Format(PyExc_TypeError,
                   "sequence item %zd: expected a bytes-like object, %.80s found", i,
                   Py_TYPE(item[i])->tp_name);
      return nullptr;
    }
  }
  int admitted = admit_write(s, count == 0);
  if (admitted < 0) return nullptr;
  if (admitted == 0) Py_RETURN_NONE;
  const bool send_at_once = note_write(s);
  Py_ssize_t before = s->size;
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (!queue_data(s, item[i], "data", i)) return nullptr;
  }
  if (!after_queued(s, before, send_at_once)) return nullptr;
  Py_RETURN_NONE;
}

PyMethodDef transport_write_def = {
    "write", transport_write, METH_O,
    "write(data)\n--\n\nQueue data for the peer; it is sent at the end of the loop turn."};
PyMethodDef transport_writelines_def = {
    "writelines", transport_writelines, METH_O,
    "writelines(list_of_data)\n--\n\nQueue every piece; one system call sends them all."};

// -- the StreamSender type ----------------------------------------------------------------

PyObject* sender_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *loop, *transport;
  int fd;
  static const char* keywords[] = {"loop", "fd", "transport", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiO:StreamSender",
                                   const_cast<char**>(keywords), &loop, &fd, &transport)) {
    return nullptr;
  }
  if (!PyObject_TypeCheck(loop, state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "StreamSender() needs a PyLoop");
    return nullptr;
  }
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  stream_sender* s = as_sender(self);
  s->chunks = new (std::nothrow) std::vector<chunk>();
  if (s->chunks == nullptr) {
    Py_DECREF(self);
    return PyErr_NoMemory();
  }
  s->loop = Py_NewRef(loop);
  s->transport = Py_NewRef(transport);
  s->fd = fd;
  s->high_water = 64 * 1024;
  return self;
}

int sender_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(as_sender(self)->transport);
  Py_VISIT(as_sender(self)->loop);
  return 0;
}

// Drops the queue and the watch; keeps loop and transport.
void discard_output(stream_sender* s) noexcept {
  stop_watching(s);
  drop_chunks(s);
}

int sender_clear(PyObject* self) {
  stream_sender* s = as_sender(self);
  if (s->loop != nullptr) discard_output(s);
  Py_CLEAR(s->transport);
  return 0;
}

void sender_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  stream_sender* s = as_sender(self);
  sender_clear(self);
  delete s->chunks;
  Py_CLEAR(s->loop);
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

PyObject* sender_flush(PyObject* self, PyObject*) {
  if (!flush(as_sender(self))) return nullptr;
  Py_RETURN_NONE;
}

// buffer_size(): what asyncio's get_write_buffer_size() reports: queued bytes are offered to
// the kernel first, as asyncio's write() would already have done.
PyObject* sender_buffer_size(PyObject* self, PyObject*) {
  if (!flush(as_sender(self))) return nullptr;
  return PyLong_FromSsize_t(as_sender(self)->size);
}

// discard(send_first): drops the queue and the watch (abort, fatal errors). With send_first,
// what the kernel takes now is sent first: asyncio would have sent it at write() time.
PyObject* sender_discard(PyObject* self, PyObject* send_first) {
  stream_sender* s = as_sender(self);
  int send = PyObject_IsTrue(send_first);
  if (send < 0) return nullptr;
  if (send && !s->watching && s->size > 0) send_queued(s);  // errors: the close follows anyway
  discard_output(s);
  Py_RETURN_NONE;
}

// detach(): the transport is finished: drop everything, and the reference to it.
PyObject* sender_detach(PyObject* self, PyObject*) {
  stream_sender* s = as_sender(self);
  discard_output(s);
  Py_CLEAR(s->transport);
  Py_RETURN_NONE;
}

PyObject* get_pending(PyObject* self, void*) { return PyLong_FromSsize_t(as_sender(self)->size); }
PyObject* get_waiting(PyObject* self, void*) { return PyBool_FromLong(as_sender(self)->watching); }

PyMethodDef sender_methods[] = {
    {"flush", sender_flush, METH_NOARGS, "Send what is queued now; the rest waits for writability."},
    {"buffer_size", sender_buffer_size, METH_NOARGS, "Bytes not yet taken by the kernel, after a flush."},
    {"discard", sender_discard, METH_O, "discard(send_first): drop the queue and stop watching."},
    {"detach", sender_detach, METH_NOARGS, "Drop the queue, the watch and the transport."},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef sender_members[] = {
    {"lost", T_INT, offsetof(stream_sender, lost), 0, "Writes after the connection was lost."},
    {"eof", T_BOOL, offsetof(stream_sender, eof), 0, "write_eof() was called."},
    {"blocked", T_BOOL, offsetof(stream_sender, blocked), 0, "A sendfile is in progress."},
    {"high_water", T_PYSSIZET, offsetof(stream_sender, high_water), 0, "The high-water mark."},
    {"fd", T_INT, offsetof(stream_sender, fd), READONLY, "The socket's descriptor."},
    {nullptr, 0, 0, 0, nullptr},
};

PyGetSetDef sender_getset[] = {
    {"pending", get_pending, nullptr, "Queued bytes (no flush).", nullptr},
    {"waiting", get_waiting, nullptr, "True while data waits for writability.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot sender_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(sender_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(sender_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(sender_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(sender_clear)},
    {Py_tp_methods, sender_methods},
    {Py_tp_members, sender_members},
    {Py_tp_getset, sender_getset},
    {Py_tp_doc, const_cast<char*>("StreamSender(loop, fd, transport): a stream transport's write half.")},
    {0, nullptr},
};

PyType_Spec sender_spec = {"data_bridge.pyloop._pyloop.StreamSender", sizeof(stream_sender), 0,
                           Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, sender_slots};

// install_stream_methods(cls): makes cls.write and cls.writelines this file's functions. cls
// must declare a `_sender` slot holding its StreamSender.
void install_stream_methods(nb::handle cls) {
  if (!PyType_Check(cls.ptr())) throw nb::type_error("install_stream_methods() needs a class");
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  nb::object slot = nb::steal(PyObject_GetAttrString(cls.ptr(), "_sender"));
  if (!slot.is_valid()) throw nb::python_error();
  if (Py_TYPE(slot.ptr()) != &PyMemberDescr_Type) {
    throw nb::type_error("install_stream_methods(): `_sender` must be a __slots__ entry");
  }
  PyMemberDef* member = reinterpret_cast<PyMemberDescrObject*>(slot.ptr())->d_member;
  sender_slot_offset = member->offset;
  for (PyMethodDef* def : {&transport_write_def, &transport_writelines_def}) {
    nb::object descriptor = nb::steal(PyDescr_NewMethod(type, def));
    if (!descriptor.is_valid() || PyObject_SetAttrString(cls.ptr(), def->ml_name, descriptor.ptr()) < 0) {
      throw nb::python_error();
    }
  }
}

}  // namespace

const native_watch_kind stream_sender_kind{
    {on_writable, release_watch, never_cancelled, nullptr, retain_object_payload},
    traverse_object_payload};

bool flush_stream_senders(void* loop_ptr) noexcept {
  loop_object* loop = as_loop(static_cast<PyObject*>(loop_ptr));
  if (loop->flush_list == nullptr || loop->flush_list->empty()) return true;
  // A callback that aborted left its exception set: keep it through the flush.
  nb::object pending;
  if (PyErr_Occurred()) pending = take_exception();
  // Writes made during the flush (an error handler writing) queue for the next turn.
  std::vector<PyObject*> due;
  due.swap(*loop->flush_list);
  bool aborting = false;
  for (PyObject* sender : due) {
    stream_sender* s = as_sender(sender);
    s->flush_queued = false;
    if (!flush(s)) {
      if (exiting_exception_pending() && !pending.is_valid()) {
        pending = take_exception();  // leaves the loop once every transport is flushed
        aborting = true;
      } else {
        PyErr_WriteUnraisable(s->transport != nullptr ? s->transport : sender);
      }
    }
    Py_DECREF(sender);
  }
  if (pending.is_valid()) restore_exception(std::move(pending));
  return !aborting;
}

bool end_stream_turn(void* loop_ptr) noexcept {
  ++as_loop(static_cast<PyObject*>(loop_ptr))->turn;
  return flush_stream_senders(loop_ptr);
}

void drop_stream_senders(loop_object* loop) noexcept {
  if (loop->flush_list == nullptr) return;
  std::vector<PyObject*> due;
  due.swap(*loop->flush_list);
  for (PyObject* s : due) {
    as_sender(s)->flush_queued = false;
    Py_DECREF(s);
  }
}

void export_stream_sender(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&sender_spec);
  if (type == nullptr) throw nb::python_error();
  state().owned_types.push_back(nb::steal(type));
  sender_type = reinterpret_cast<PyTypeObject*>(type);
  m.attr("StreamSender") = nb::borrow(type);
  m.def("install_stream_methods", &install_stream_methods, nb::arg("cls"),
        "Install the native write() and writelines() on a transport class with a `_sender` slot.");
}

}  // namespace pyloop::bindings
