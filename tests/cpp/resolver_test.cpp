// tests/cpp/resolver_test.cpp — getaddrinfo on the native runtime, delivered through the mailbox.
#include "pyloop/resolver.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "pyloop/loop_driver.hpp"

namespace pyloop {
namespace {

std::atomic<int> delivered{0};
std::atomic<int> freed{0};

callback_status on_resolved(void* payload) noexcept {
  std::unique_ptr<address_query> q(static_cast<address_query*>(payload));
  ++delivered;
  auto* out = static_cast<int*>(q->owner);
  *out = q->status == 0 && q->result != nullptr
             ? ntohs(reinterpret_cast<sockaddr_in*>(q->result->ai_addr)->sin_port)
             : -q->status;
  return callback_status::done;
}
void on_dropped(void* payload) noexcept {
  delete static_cast<address_query*>(payload);
  ++freed;
}
bool never(const void*) noexcept { return false; }
const callback_ops ops{on_resolved, on_dropped, never, nullptr, nullptr};

std::unique_ptr<address_query> numeric_query(const char* port, int* out) {
  auto q = std::make_unique<address_query>();
  q->host = "127.0.0.1";
  q->service = port;
  q->family = AF_INET;
  q->type = SOCK_STREAM;
  q->flags = AI_NUMERICHOST | AI_NUMERICSERV;
  q->owner = out;
  return q;
}

TEST(Resolver, ResultArrivesInTheLoopIteration) {
  loop_driver loop;
  int port = 0;
  delivered = 0;
  resolve_async(loop.mailbox(), numeric_query("8080", &port), &ops);
  // No timers, nothing ready: the loop waits until the worker's hand-over wakes it.
  while (delivered == 0) loop.run_once();
  EXPECT_EQ(port, 8080);
}

TEST(Resolver, ErrorsAreReportedAsGetaddrinfoCodes) {
  loop_driver loop;
  int result = 0;
  delivered = 0;
  auto q = numeric_query("80", &result);
  q->host = "not-a-number";  // AI_NUMERICHOST refuses names
  resolve_async(loop.mailbox(), std::move(q), &ops);
  while (delivered == 0) loop.run_once();
  EXPECT_EQ(result, -EAI_NONAME);
}

TEST(Resolver, ResultForAGoneLoopIsFreedOnTheWorker) {
  int port = 0;
  delivered = 0;
  std::shared_ptr<loop_mailbox> mailbox;
  {
    loop_driver loop;
    mailbox = loop.mailbox();
  }  // the driver closes its mailbox on the way out
  for (int i = 0; i < 20; ++i) resolve_async(mailbox, numeric_query("80", &port), &ops);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(delivered, 0);  // nothing was delivered, nothing touched the dead loop
}

TEST(Resolver, QueuedResultsAreDroppedWhenTheLoopClears) {
  int port = 0;
  freed = 0;
  delivered = 0;
  loop_driver loop;
  resolve_async(loop.mailbox(), numeric_query("81", &port), &ops);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // delivered to the inbox
  loop.clear();
  EXPECT_EQ(freed, 1);
  EXPECT_EQ(delivered, 0);
}

}  // namespace
}  // namespace pyloop
