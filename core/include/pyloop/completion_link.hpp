// core/include/pyloop/completion_link.hpp — the native side of a future that native code completes
// from any thread (the native bridge's promise).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "pyloop/callback.hpp"
#include "pyloop/loop_mailbox.hpp"

namespace pyloop {

// What to run when the awaiting side gives up (the Python future was cancelled): cancel(ctx)
// once, on the loop's thread; release(ctx) once when the link lets go of ctx. Either may be
// null.
struct cancel_hook {
  void (*cancel)(void* ctx) = nullptr;   // must not throw
  void (*release)(void* ctx) = nullptr;  // must not throw
  void* ctx = nullptr;
};

// How a completion attempt ended.
enum class link_delivery : unsigned char {
  delivered,          // the loop took the completion callback (it will invoke or discard it)
  loop_closed,        // the loop's mailbox is closed: the caller disposes of the callback
  already_completed,  // an earlier completion won: the caller disposes of the callback
};

// One future's native side, shared by the loop (which keeps the future, filed under id()) and
// the native code that completes it. The first complete() wins; it hands the completion to
// the loop's mailbox, which wakes the loop. Cancellation travels the other way: the loop
// calls mark_cancelled(), native code polls cancelled() or gets the hook.
// Lifetime: reference counted (retain/release); created with one reference.
// Thread safety: complete(), cancelled(), completed(), retain() and release() from any thread;
// mark_cancelled() from the loop's thread.
class completion_link {
 public:
  completion_link(std::shared_ptr<loop_mailbox> mailbox, std::uint64_t id, cancel_hook hook,
                  void* owner = nullptr) noexcept
      : mailbox_(std::move(mailbox)), id_(id), hook_(hook), owner_(owner) {}
  completion_link(const completion_link&) = delete;
  completion_link& operator=(const completion_link&) = delete;
  ~completion_link();

  std::uint64_t id() const noexcept { return id_; }
  // Whatever the creator attached (the bindings: the loop object keeping the future); only
  // the loop's thread may use it.
  void* owner() const noexcept { return owner_; }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Drops one reference; deletes the link with the last one.
  void release() noexcept;

  // Hands cb to the loop unless an earlier call did or the loop is closed (see link_delivery).
  link_delivery complete(callback cb) noexcept;
  bool completed() const noexcept { return completed_.load(std::memory_order_acquire); }

  // The awaiting side cancelled: sets the flag, then runs the hook's cancel once unless the
  // native side had already completed.
  void mark_cancelled() noexcept;
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<loop_mailbox> mailbox_;  // the loop the completion goes to
  std::uint64_t id_;                       // the key the loop keeps the future under
  cancel_hook hook_;                       // native code's cancellation handler
  void* owner_;                            // the creator's context (see owner())
  std::atomic<int> refs_{1};               // references held (loop side, native side, hooks)
  std::atomic<bool> completed_{false};     // complete() was called
  std::atomic<bool> cancelled_{false};     // mark_cancelled() was called
};

}  // namespace pyloop
