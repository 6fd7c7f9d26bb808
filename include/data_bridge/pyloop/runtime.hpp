// include/data_bridge/pyloop/runtime.hpp — native work on the process-wide pool, awaited from Python.
//
//   PyObject* hash(PyObject* loop, buffer_view data) {           // GIL, loop's thread
//     return run_on_pool(loop, [d = std::move(data)] { return checksum(d.bytes()); }).release();
//   }
//
// The pool is PyLoop's native runtime: one thread per core, created once, shared by every
// loop of the process; its threads never hold the GIL unless the work takes it (gil_guard).
// The work's result becomes the future's (through to_python); an exception it throws becomes
// the future's exception (see promise::set_exception).
#pragma once

#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <variant>
#include <type_traits>
#include <utility>

#include "data_bridge/pyloop/future.hpp"

namespace data_bridge::pyloop {

// Passed to work that accepts it: tells whether the awaiting Python side gave up.
// Thread safety: any thread.
class cancel_token {
 public:
  explicit cancel_token(const db_pyloop_link* link) noexcept : link_(link) {}
  bool cancelled() const noexcept { return api().link_cancelled(link_) == 1; }

 private:
  const db_pyloop_link* link_;  // the future's link (kept alive by the running job's promise)
};

namespace detail {

template <class Work>
struct pool_job {
  static constexpr bool wants_token = std::is_invocable_v<Work&, const cancel_token&>;
  using result_type =
      std::conditional_t<wants_token, std::invoke_result<Work&, const cancel_token&>, std::invoke_result<Work&>>::type;

  std::optional<Work> work;                            // the callable, run once on a pool thread
  data_bridge::pyloop::promise<result_type> promise;  // completes the Python future
  db_pyloop_link* link;                                // for the cancel token (owned by promise)

  // The work (and what it captured: buffer views, Python references) is destroyed before the
  // future completes, so Python never sees the result while the work still holds its inputs.
  static void run(void* self) noexcept {
    std::unique_ptr<pool_job> job(static_cast<pool_job*>(self));
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<result_type>, std::monostate, result_type>> value;
    try {
      cancel_token token(job->link);
      if constexpr (std::is_void_v<result_type>) {
        if constexpr (wants_token) (*job->work)(token); else (*job->work)();
        value.emplace();
      } else if constexpr (wants_token) {
        value.emplace((*job->work)(token));
      } else {
        value.emplace((*job->work)());
      }
    } catch (...) {
      error = std::current_exception();
    }
    job->work.reset();
    if (error) {
      job->promise.set_exception(std::move(error));
    } else if constexpr (std::is_void_v<result_type>) {
      job->promise.set_value();
    } else {
      job->promise.set_value(std::move(*value));
    }
  }
};

}  // namespace detail

// GIL. Runs work() (or work(const cancel_token&)) on the native pool and returns a new
// reference to an asyncio future of loop for its result. Throws python_error (loop not a
// PyLoop, or closed) and std::bad_alloc.
template <class Work>
py_object run_on_pool(PyObject* loop, Work work) {
  using job_type = detail::pool_job<Work>;
  auto [future, promise] = make_future<typename job_type::result_type>(loop);
  // The job's promise owns the link; the token only borrows it.
  auto job = std::unique_ptr<job_type>(new job_type{std::optional<Work>(std::move(work)), std::move(promise), nullptr});
  job->link = job->promise.link();
  if (api().run_on_pool(&job_type::run, job.get()) != 0) throw std::bad_alloc();
  job.release();
  return std::move(future);
}

// The pool's thread count (the most CPU work that runs at once).
inline unsigned pool_size() noexcept { return api().pool_size(); }

}  // namespace data_bridge::pyloop
