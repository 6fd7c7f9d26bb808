// tests/cpp/resolver_test.cpp — getaddrinfo and getnameinfo on the native runtime, delivered
// through the mailbox.
#include "pyloop/resolver.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <cstring>
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

// getnameinfo: the query goes to the worker and comes back with the names in it.
std::atomic<int> names_delivered{0};
std::unique_ptr<name_query> named;  // the last delivered query, kept for the assertions

callback_status on_named(void* payload) noexcept {
  named.reset(static_cast<name_query*>(payload));
  ++names_delivered;
  return callback_status::done;
}
void on_name_dropped(void* payload) noexcept { delete static_cast<name_query*>(payload); }
const callback_ops name_ops{on_named, on_name_dropped, never, nullptr, nullptr};

std::unique_ptr<name_query> ipv4_name_query(const char* host, int port, int flags) {
  auto q = std::make_unique<name_query>();
  sockaddr_in in;
  std::memset(&in, 0, sizeof in);
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<std::uint16_t>(port));
  EXPECT_EQ(::inet_pton(AF_INET, host, &in.sin_addr), 1);
  std::memcpy(&q->address, &in, sizeof in);
  q->address_length = sizeof in;
  q->flags = flags;
  return q;
}

void run_until_named(loop_driver& loop) {
  while (names_delivered == 0) loop.run_once();
}

TEST(Resolver, NameQueryGivesNumericHostAndService) {
  loop_driver loop;
  names_delivered = 0;
  resolve_name_async(loop.mailbox(),
                     ipv4_name_query("127.0.0.1", 80, NI_NUMERICHOST | NI_NUMERICSERV), &name_ops);
  run_until_named(loop);
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->status, 0);
  EXPECT_EQ(named->host, "127.0.0.1");
  EXPECT_EQ(named->service, "80");
}

TEST(Resolver, NameQueryReportsGetnameinfoErrors) {
  loop_driver loop;
  names_delivered = 0;
  // A name is required but numeric hosts are asked for: glibc refuses the pair outright.
  resolve_name_async(loop.mailbox(),
                     ipv4_name_query("127.0.0.1", 80, NI_NUMERICHOST | NI_NAMEREQD), &name_ops);
  run_until_named(loop);
  ASSERT_NE(named, nullptr);
  EXPECT_EQ(named->status, EAI_NONAME);
  EXPECT_TRUE(named->host.empty());
}

TEST(Resolver, NameQueryForAGoneLoopIsFreedOnTheWorker) {
  names_delivered = 0;
  std::shared_ptr<loop_mailbox> mailbox;
  {
    loop_driver loop;
    mailbox = loop.mailbox();
  }
  for (int i = 0; i < 20; ++i) {
    resolve_name_async(mailbox, ipv4_name_query("127.0.0.1", 80, NI_NUMERICHOST), &name_ops);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(names_delivered, 0);
}

TEST(Resolver, NumericAddressParsesIPv4AndIPv6) {
  numeric_address v4 = parse_numeric_address("127.0.0.1", "8080");
  ASSERT_EQ(v4.status, 0);
  EXPECT_EQ(v4.count, 1);
  ASSERT_EQ(v4.address.ss_family, AF_INET);
  EXPECT_EQ(v4.length, sizeof(sockaddr_in));
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in*>(&v4.address)->sin_port), 8080);

  numeric_address v6 = parse_numeric_address("::1", "443");
  ASSERT_EQ(v6.status, 0);
  EXPECT_EQ(v6.count, 1);
  ASSERT_EQ(v6.address.ss_family, AF_INET6);
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in6*>(&v6.address)->sin6_port), 443);
}

TEST(Resolver, NumericAddressRefusesNames) {
  // Never looked up: a name is an error, as socket.getnameinfo reports it.
  EXPECT_EQ(parse_numeric_address("localhost", "80").status, EAI_NONAME);
  EXPECT_EQ(parse_numeric_address("not an ip", "80").status, EAI_NONAME);
}

}  // namespace
}  // namespace pyloop
