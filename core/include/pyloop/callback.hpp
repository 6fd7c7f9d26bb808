// core/include/pyloop/callback.hpp — the type-erased callback slot through which the core runs foreign work.
#pragma once

namespace pyloop {

// What running a callback asks of the loop driver.
enum class callback_status : unsigned char {
  done,   // the callback ran (or failed and reported its own error); keep going
  abort,  // leave the current iteration at once, as asyncio lets SystemExit and
          // KeyboardInterrupt escape _run_once; the rest of the queue stays
};

// The operations the core needs on a payload it does not understand. The binding layer
// supplies one static table per payload kind (a Python handle, a native completion...), so
// an entry is two words and dispatch is one indirect call, no virtual base class.
struct callback_ops {
  // Runs the payload and releases it; the payload is consumed whatever the status.
  callback_status (*invoke)(void* payload) noexcept;
  // Releases the payload without running it (queues cleared on close, cancelled timers).
  void (*discard)(void* payload) noexcept;
  // True when the payload was cancelled while queued: timers are dropped lazily on this.
  // Asked only of timers; may be null for payloads never scheduled as timers.
  bool (*cancelled)(const void* payload) noexcept;
  // Called when a timer leaves the heap for the ready queue, so the payload can stop counting
  // itself as scheduled (a later cancel must not be counted against the heap). May be null.
  void (*unscheduled)(void* payload) noexcept;
  // Takes one more reference to the payload, for callbacks that stay installed and run many
  // times (readiness callbacks): each run is an invoke() of a retained reference. Called only
  // where invoke() may be (the loop's thread, in the callback phase). May be null.
  void (*retain)(void* payload) noexcept;
};

// One queued unit of work: a payload and the table that knows what it is.
// Thread safety: a plain value; whoever holds it owns the payload's reference.
struct callback {
  const callback_ops* ops;  // how to run, drop and inspect payload
  void* payload;            // owned reference to the foreign object

  callback_status invoke() const noexcept { return ops->invoke(payload); }
  void discard() const noexcept { ops->discard(payload); }
  bool cancelled() const noexcept { return ops->cancelled(payload); }
};

}  // namespace pyloop
