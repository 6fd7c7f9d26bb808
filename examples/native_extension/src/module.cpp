// examples/native_extension/src/module.cpp — pyloop_native_example: each point of the native bridge,
// exported to Python with nanobind (tests/python/test_native_bridge*.py, docs/native.md).
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <asio/post.hpp>

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <time.h>
#include <vector>

#include "coroutines.hpp"
#include "data_bridge/pyloop/pyloop.hpp"
#include "hashing.hpp"

namespace nb = nanobind;
namespace dp = data_bridge::pyloop;

namespace example {
namespace {

nb::object to_nb(dp::py_object o) { return nb::steal(o.release()); }

// -- the loop's executor ---------------------------------------------------------------------

// Posts n handlers to the loop's executor; the last one completes the returned future (on the
// loop's thread) with the thread ids it saw, to show they all ran there.
nb::object count_on_loop(nb::handle loop, int n) {
  if (n <= 0) throw std::invalid_argument("n must be positive");
  dp::loop_executor executor = dp::get_executor(loop.ptr());
  auto made = dp::make_future<int>(loop.ptr());
  struct counter {
    int seen = 0;                    // handlers run so far
    dp::promise<int> done;           // completed by the last one
  };
  auto state = std::make_shared<counter>(counter{0, std::move(made.promise)});
  for (int i = 0; i < n; ++i) {
    asio::post(executor, [state, n] {
      if (++state->seen == n) state->done.set_value(n);
    });
  }
  return to_nb(std::move(made.future));
}

// -- native futures completed from other threads --------------------------------------------

// Completes a new future from a plain std::thread (no GIL there) with a value of each kind.
nb::object complete_from_thread(nb::handle loop, const std::string& kind) {
  auto launch = [&](auto made, auto complete) {
    std::thread([p = std::move(made.promise), complete]() mutable { complete(p); }).detach();
    return to_nb(std::move(made.future));
  };
  PyObject* l = loop.ptr();
  if (kind == "int") return launch(dp::make_future<std::int64_t>(l), [](auto& p) { p.set_value(-42); });
  if (kind == "uint") return launch(dp::make_future<std::uint64_t>(l), [](auto& p) { p.set_value(~0ull); });
  if (kind == "float") return launch(dp::make_future<double>(l), [](auto& p) { p.set_value(2.5); });
  if (kind == "bool") return launch(dp::make_future<bool>(l), [](auto& p) { p.set_value(true); });
  if (kind == "none") return launch(dp::make_future<void>(l), [](auto& p) { p.set_value(); });
  if (kind == "str") return launch(dp::make_future<std::string>(l), [](auto& p) { p.set_value("h\u00e9llo"); });
  if (kind == "bytes") {
    return launch(dp::make_future<dp::bytes>(l), [](auto& p) { p.set_value(dp::bytes{std::string("a\0b", 3)}); });
  }
  if (kind == "tuple") {
    return launch(dp::make_future<std::tuple<int, std::string, std::vector<double>>>(l),
                  [](auto& p) { p.set_value(std::make_tuple(1, std::string("two"), std::vector<double>{3.0})); });
  }
  if (kind == "buffer") {
    return launch(dp::make_future<dp::native_buffer>(l),
                  [](auto& p) { p.set_value(dp::native_buffer(std::vector<char>(1 << 20, 'x'))); });
  }
  if (kind == "object") {
    // An owned Python object made on the thread (which then needs the GIL to make it).
    return launch(dp::make_future<dp::py_object>(l), [](auto& p) {
      dp::py_object made;
      {
        dp::gil_guard gil;
        made = dp::py_object::steal(Py_BuildValue("{s:i}", "answer", 42));
      }
      p.set_value(std::move(made));
    });
  }
  if (kind == "runtime_error") {
    return launch(dp::make_future<int>(l), [](auto& p) {
      p.set_exception(std::make_exception_ptr(std::runtime_error("native failure")));
    });
  }
  if (kind == "python_error") {
    return launch(dp::make_future<int>(l), [](auto& p) {
      std::exception_ptr error;
      {
        dp::gil_guard gil;
        PyErr_SetString(PyExc_ValueError, "raised in native code");
        error = std::make_exception_ptr(dp::python_error());
      }
      p.set_exception(error);
    });
  }
  if (kind == "cancel") return launch(dp::make_future<int>(l), [](auto& p) { p.cancel(); });
  if (kind == "broken") return launch(dp::make_future<int>(l), [](auto& p) { auto gone = std::move(p); });
  throw std::invalid_argument("unknown kind " + kind);
}

// A promise kept on the Python side, to drive the fault cases (loop closed first...).
// Thread safety: GIL held (its methods release it around native work).
class pending_promise {
 public:
  explicit pending_promise(dp::promise<std::int64_t> p) : promise_(std::move(p)) {}
  // Completes from a new thread and waits for it; True if the loop took the completion.
  bool set_value_from_thread(std::int64_t value) {
    bool delivered = false;
    nb::gil_scoped_release unlocked;
    std::thread([&] { delivered = promise_.set_value(value); }).join();
    return delivered;
  }
  bool cancelled() const { return promise_.cancelled(); }
  void drop() { promise_ = dp::promise<std::int64_t>(); }

 private:
  dp::promise<std::int64_t> promise_;  // the future's native side
};

// The future and its promise; the cancellation callback counts in native_cancellations.
nb::tuple make_pending(nb::handle loop) {
  auto made = dp::make_future<std::int64_t>(loop.ptr(), [] { ++native_cancellations; });
  nb::object holder = nb::cast(pending_promise(std::move(made.promise)));
  return nb::make_tuple(to_nb(std::move(made.future)), holder);
}

// -- work on the native pool ------------------------------------------------------------------

// Hashes data (any buffer: bytes, bytearray, memoryview...) on a pool thread, in place.
nb::object hash_on_pool(nb::handle loop, nb::handle data) {
  dp::buffer_view view(data.ptr());
  return to_nb(dp::run_on_pool(loop.ptr(), [v = std::move(view)] { return hash64(v.bytes()); }));
}

// The same hash on the calling thread, with the GIL released (for run_in_executor).
std::uint64_t hash_sync(nb::handle data) {
  dp::buffer_view view(data.ptr());
  nb::gil_scoped_release unlocked;
  return hash64(view.bytes());
}

// Pool work that throws: "runtime", "bad_alloc", "python" (a ValueError), "other" (an int).
nb::object fail_on_pool(nb::handle loop, const std::string& kind) {
  return to_nb(dp::run_on_pool(loop.ptr(), [kind]() -> int {
    if (kind == "runtime") throw std::runtime_error("failed on the pool");
    if (kind == "bad_alloc") throw std::bad_alloc();
    if (kind == "python") {
      dp::gil_guard gil;
      PyErr_SetString(PyExc_ValueError, "Python error from the pool");
      throw dp::python_error();
    }
    throw 42;
  }));
}

// Pool work that runs until Python cancels its future (or 10 s pass), polling the token.
nb::object wait_for_cancel(nb::handle loop) {
  return to_nb(dp::run_on_pool(loop.ptr(), [](const dp::cancel_token& token) {
    for (int i = 0; i < 10000 && !token.cancelled(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (token.cancelled()) ++native_cancellations;
    return token.cancelled();
  }));
}

// Pool work that sleeps, then returns seconds (the loop may close meanwhile).
nb::object sleep_on_pool(nb::handle loop, double seconds) {
  return to_nb(dp::run_on_pool(loop.ptr(), [seconds] {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return seconds;
  }));
}

// Sleeps on a pool thread, then completes with the monotonic clock's time (seconds, the
// clock of time.monotonic()) taken just before completing: the one-way wake-up benchmark.
nb::object stamp_after(nb::handle loop, double delay) {
  return to_nb(dp::run_on_pool(loop.ptr(), [delay] {
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
  }));
}

// The machine's floor under the one-way wake-up benchmark, with no loop and no Python: a
// thread sleeps `delay`, stamps the clock and writes a byte to a pipe; this thread, blocked in
// poll() on it, stamps on return. Median microseconds of n wake-ups (GIL released).
double kernel_wake_floor(int n, double delay) {
  if (n <= 0) throw std::invalid_argument("n must be positive");
  int fds[2];
  if (::pipe(fds) < 0) throw std::runtime_error("pipe() failed");
  struct closer {
    int* fds;
    ~closer() {
      ::close(fds[0]);
      ::close(fds[1]);
    }
  } close_both{fds};
  auto now = [] {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
  };
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(n));
  std::atomic<double> stamp{0.0};
  std::atomic<bool> taken{true};  // the waiter read the last stamp: the next may be written
  nb::gil_scoped_release released;
  std::thread waker([&] {
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
      while (!taken.exchange(false)) std::this_thread::yield();
      stamp.store(now());
      const char byte = 1;
      (void)!::write(fds[1], &byte, 1);
    }
  });
  for (int i = 0; i < n; ++i) {
    pollfd readable{fds[0], POLLIN, 0};
    while (::poll(&readable, 1, -1) < 1) {
    }
    const double woke = now();
    char byte;
    (void)!::read(fds[0], &byte, 1);
    samples.push_back((woke - stamp.load()) * 1e6);
    taken.store(true);
  }
  waker.join();
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Completes at once on a pool thread (the cross-thread latency benchmark).
nb::object pool_ping(nb::handle loop) {
  return to_nb(dp::run_on_pool(loop.ptr(), [] {}));
}

// -- zero-copy buffers ---------------------------------------------------------------------

std::atomic<int> live_buffers{0};  // counted_bytes alive (tests check they are freed)

// Bytes whose lifetime tests can watch.
struct counted_bytes {
  explicit counted_bytes(std::size_t n, char fill) : bytes(n, fill) { ++live_buffers; }
  counted_bytes(counted_bytes&& o) noexcept : bytes(std::move(o.bytes)), counted(std::exchange(o.counted, false)) {}
  ~counted_bytes() {
    if (counted) --live_buffers;
  }
  char* data() noexcept { return bytes.data(); }
  std::size_t size() const noexcept { return bytes.size(); }
  std::vector<char> bytes;  // the memory lent to Python
  bool counted = true;      // this object holds the count
};

nb::object make_buffer(std::size_t size, int fill) {
  dp::native_buffer buffer(counted_bytes(size, static_cast<char>(fill)));
  PyObject* o = buffer.release_to_python();
  if (o == nullptr) throw nb::python_error();
  return nb::steal(o);
}

// -- C++ coroutines on the loop ----------------------------------------------------------------

nb::object echo_coroutine(nb::handle loop, double delay, nb::bytes payload) {
  std::string data(payload.c_str(), payload.size());
  return to_nb(dp::spawn(loop.ptr(), timer_then_echo(delay, std::move(data))));
}
nb::object yield_coroutine(nb::handle loop) { return to_nb(dp::spawn(loop.ptr(), yield_once())); }
nb::object sleep_coroutine(nb::handle loop, double delay) {
  return to_nb(dp::spawn(loop.ptr(), native_sleep(delay)));
}
nb::object await_coroutine(nb::handle loop, nb::handle awaitable) {
  return to_nb(dp::spawn(loop.ptr(), call_python(dp::py_object::borrow(awaitable.ptr()))));
}
nb::object catch_coroutine(nb::handle loop, nb::handle awaitable) {
  return to_nb(dp::spawn(loop.ptr(), catch_python(dp::py_object::borrow(awaitable.ptr()))));
}
nb::object watch_coroutine(nb::handle loop, nb::handle awaitable) {
  return to_nb(dp::spawn(loop.ptr(), guarded_python_wait(dp::py_object::borrow(awaitable.ptr()))));
}

// -- the import check ----------------------------------------------------------------------

// Runs the import check against a copy of PyLoop's table with one field changed ("api",
// "asio" or "config"): raises the ImportError import_api() would raise.
void check_mismatch(const std::string& field) {
  db_pyloop_c_api copy = dp::api();
  if (field == "api") copy.api_version += 1;
  else if (field == "asio") copy.asio_version += 1;
  else if (field == "config") copy.asio_config ^= DB_PYLOOP_ASIO_NO_DEPRECATED;
  if (dp::check_api(&copy) < 0) throw nb::python_error();
}

}  // namespace
}  // namespace example

NB_MODULE(pyloop_native_example, m) {
  using namespace example;
  if (dp::import_api() == nullptr) throw nb::python_error();
  // A Python exception carried through C++ leaves as itself.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const dp::python_error& e) {
      e.restore();
    }
  });
  m.doc() = "An extension sharing data_bridge.pyloop's loop (the native bridge's example).";
  m.def("count_on_loop", &count_on_loop, nb::arg("loop"), nb::arg("n"));
  m.def("complete_from_thread", &complete_from_thread, nb::arg("loop"), nb::arg("kind"));
  nb::class_<pending_promise>(m, "PendingPromise")
      .def("set_value_from_thread", &pending_promise::set_value_from_thread)
      .def_prop_ro("cancelled", &pending_promise::cancelled)
      .def("drop", &pending_promise::drop);
  m.def("make_pending", &make_pending, nb::arg("loop"));
  m.def("hash_on_pool", &hash_on_pool, nb::arg("loop"), nb::arg("data"));
  m.def("hash_sync", &hash_sync, nb::arg("data"));
  m.def("fail_on_pool", &fail_on_pool, nb::arg("loop"), nb::arg("kind"));
  m.def("wait_for_cancel", &wait_for_cancel, nb::arg("loop"));
  m.def("sleep_on_pool", &sleep_on_pool, nb::arg("loop"), nb::arg("seconds"));
  m.def("pool_ping", &pool_ping, nb::arg("loop"));
  m.def("kernel_wake_floor", &kernel_wake_floor, nb::arg("n"), nb::arg("delay"));
  m.def("stamp_after", &stamp_after, nb::arg("loop"), nb::arg("delay"));
  m.def("pool_size", [] { return dp::pool_size(); });
  m.def("make_buffer", &make_buffer, nb::arg("size"), nb::arg("fill") = 0);
  m.def("live_buffers", [] { return live_buffers.load(); });
  m.def("echo_coroutine", &echo_coroutine, nb::arg("loop"), nb::arg("delay"), nb::arg("payload"));
  m.def("sleep_coroutine", &sleep_coroutine, nb::arg("loop"), nb::arg("delay"));
  m.def("yield_coroutine", &yield_coroutine, nb::arg("loop"));
  m.def("await_coroutine", &await_coroutine, nb::arg("loop"), nb::arg("awaitable"));
  m.def("catch_coroutine", &catch_coroutine, nb::arg("loop"), nb::arg("awaitable"));
  m.def("watch_coroutine", &watch_coroutine, nb::arg("loop"), nb::arg("awaitable"));
  m.def("native_cancellations", [] { return native_cancellations.load(); });
  m.def("check_mismatch", &check_mismatch, nb::arg("field"));
  m.def("is_pyloop", [](nb::handle loop) { return dp::is_pyloop(loop.ptr()); });
}
