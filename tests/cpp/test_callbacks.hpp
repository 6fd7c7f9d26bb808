// tests/cpp/test_callbacks.hpp — a payload kind for tests that records what the core did with it.
#pragma once

#include <functional>
#include <set>
#include <vector>

#include "pyloop/callback.hpp"

namespace pyloop {

// Hands out callbacks whose payloads report back here when run, discarded or unscheduled.
// Payloads are reference-counted like the bindings' Python handles: invoke() and discard()
// each consume one reference, retain() adds one. live counts references not yet consumed,
// so a test can check nothing leaks.
struct recorder {
  struct payload {
    recorder* owner;
    int id;
    int refs;
  };

  std::vector<int> ran;                 // ids in the order they ran
  std::vector<int> discarded;           // ids dropped without running
  std::vector<int> unscheduled;         // ids that left the timer heap for the ready queue
  std::set<int> cancelled;              // ids to report as cancelled
  std::set<int> abort_on;               // ids whose run asks the loop to abort
  std::function<void(int)> on_run;      // extra action while running
  std::function<void(int)> on_discard;  // extra action while discarding
  int live = 0;

  callback make(int id) {
    ++live;
    return callback{&ops, new payload{this, id, 1}};
  }

  static void release(payload* pl) {
    --pl->owner->live;
    if (--pl->refs == 0) delete pl;
  }

  static callback_status invoke(void* p) noexcept {
    auto* pl = static_cast<payload*>(p);
    recorder* r = pl->owner;
    const int id = pl->id;
    release(pl);
    r->ran.push_back(id);
    if (r->on_run) r->on_run(id);
    return r->abort_on.count(id) ? callback_status::abort : callback_status::done;
  }
  static void discard(void* p) noexcept {
    auto* pl = static_cast<payload*>(p);
    recorder* r = pl->owner;
    const int id = pl->id;
    release(pl);
    r->discarded.push_back(id);
    if (r->on_discard) r->on_discard(id);
  }
  static bool is_cancelled(const void* p) noexcept {
    auto* pl = static_cast<const payload*>(p);
    return pl->owner->cancelled.count(pl->id) != 0;
  }
  static void leave_heap(void* p) noexcept {
    auto* pl = static_cast<payload*>(p);
    pl->owner->unscheduled.push_back(pl->id);
  }
  static void retain(void* p) noexcept {
    auto* pl = static_cast<payload*>(p);
    ++pl->refs;
    ++pl->owner->live;
  }

  static constexpr callback_ops ops{invoke, discard, is_cancelled, leave_heap, retain};
};

}  // namespace pyloop
