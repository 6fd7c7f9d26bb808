// bindings/peer_addresses.cpp — the address objects of a datagram transport's peers, reused.
#include "peer_addresses.hpp"

#include <netinet/in.h>

#include <cstring>
#include <new>
#include <utility>

#include "socket_address.hpp"

namespace pyloop::bindings {
namespace {

constexpr std::size_t key_bytes = 32;

std::size_t slot_of(const std::uint64_t* key, std::size_t slots) noexcept {
  auto rotate = [](std::uint64_t v, int bits) { return (v << bits) | (v >> (64 - bits)); };
  const std::uint64_t h = key[0] ^ rotate(key[1], 17) ^ rotate(key[2], 31) ^ rotate(key[3], 47);
  return static_cast<std::size_t>((h * 0x9E3779B97F4A7C15ULL) >> 40) & (slots - 1);
}

}  // namespace

nb::object peer_addresses::received(const sockaddr* from, socklen_t length) noexcept {
  if (length == 0) return nb::borrow(Py_None);
  const bool keyed = length <= static_cast<socklen_t>(key_bytes);
  std::uint64_t key[key_words] = {};
  bool remember = false;
  if (keyed && table_) {  // several senders: the table knows the latest one too
    std::memcpy(key, from, length);
    bool found = false;
    entry* slot = find(key, length, found);
    if (found) {
      if (slot->address != latest_.ptr()) {
        std::memcpy(&latest_sockaddr_, key, key_bytes);  // the sockaddr, zero-padded
        latest_length_ = length;
        latest_ = nb::borrow(slot->address);
      }
      return latest_;
    }
    remember = true;
  } else if (length == latest_length_ && latest_.is_valid() &&
             std::memcmp(&latest_sockaddr_, from, length) == 0) {
    return latest_;
  } else if (keyed && latest_length_ != 0) {  // a second sender: from now on, remember them
    table_.reset(new (std::nothrow) entry[slots]());
    std::memcpy(key, from, length);
    remember = true;
  }
  nb::object address = make(from, length);
  if (!address.is_valid()) return address;
  // Making it may have run a collection whose finalizers closed the transport (the table
  // gone): the slot is looked up again, not kept across.
  if (remember && table_) {
    if (used_ >= capacity) clear_table();  // full: start again (at most half the slots used)
    bool found = false;
    entry* slot = find(key, length, found);
    if (!found) {
      std::memcpy(slot->key, key, sizeof key);
      slot->length = length;
      slot->address = Py_NewRef(address.ptr());
      ++used_;
    }
  }
  if (length <= static_cast<socklen_t>(sizeof latest_sockaddr_)) set_latest(address.ptr(), from, length);
  return address;
}

void peer_addresses::set_latest(PyObject* address, const sockaddr* converted, socklen_t length) noexcept {
  std::memcpy(&latest_sockaddr_, converted, length);
  latest_length_ = length;
  latest_ = nb::borrow(address);
}

void peer_addresses::set_sent(PyObject* address, const sockaddr* converted, socklen_t length) noexcept {
  std::memcpy(&sent_sockaddr_, converted, length);
  sent_length_ = length;
  sent_ = nb::borrow(address);
}

// Linear probing from the key's slot: the matching entry (found), or the free slot to fill.
peer_addresses::entry* peer_addresses::find(const std::uint64_t (&key)[key_words], socklen_t length,
                                            bool& found) noexcept {
  for (std::size_t i = slot_of(key, slots);; i = (i + 1) & (slots - 1)) {
    entry& e = table_[i];
    if (e.length == 0) {
      found = false;
      return &e;
    }
    if (e.length == length && e.key[0] == key[0] && e.key[1] == key[1] && e.key[2] == key[2] &&
        e.key[3] == key[3]) {
      found = true;
      return &e;
    }
  }
}

nb::object peer_addresses::make(const sockaddr* from, socklen_t length) noexcept {
  const void* raw;
  if (from->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    raw = &reinterpret_cast<const sockaddr_in*>(from)->sin_addr;
  } else if (from->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    raw = &reinterpret_cast<const sockaddr_in6*>(from)->sin6_addr;
  } else {
    return address_to_python(from, length);
  }
  nb::object text = host(from->sa_family, raw);
  if (!text.is_valid()) return text;
  return ip_address_to_python(from, text.ptr());
}

// The host string of an address: the previous one when the host is the same (the peers of a
// server on one machine, behind one NAT, or many sockets of one client).
nb::object peer_addresses::host(int family, const void* raw) noexcept {
  const std::size_t size = family == AF_INET ? 4 : 16;
  if (family == host_family_ && host_.is_valid() && std::memcmp(host_raw_, raw, size) == 0) {
    return host_;
  }
  nb::object text = host_to_python(family, raw);
  if (text.is_valid()) {
    host_ = text;
    host_family_ = family;
    std::memcpy(host_raw_, raw, size);
  }
  return text;
}

void peer_addresses::clear_table() noexcept {
  if (!table_) return;
  for (std::size_t i = 0; i < slots; ++i) {
    entry& e = table_[i];
    if (e.length == 0) continue;
    e.length = 0;
    Py_CLEAR(e.address);  // a tuple of str and int, or a str/bytes: no code runs
  }
  used_ = 0;
}

void peer_addresses::clear() noexcept {
  clear_table();
  table_.reset();
  latest_length_ = 0;
  sent_length_ = 0;
  host_family_ = 0;
  // Empty before the decrefs.
  nb::object latest = std::move(latest_), host = std::move(host_), sent = std::move(sent_);
}

int peer_addresses::traverse(visitproc visit, void* arg) const {
  Py_VISIT(latest_.ptr());
  Py_VISIT(sent_.ptr());
  Py_VISIT(host_.ptr());
  if (table_) {
    for (std::size_t i = 0; i < slots; ++i) Py_VISIT(table_[i].address);
  }
  return 0;
}

}  // namespace pyloop::bindings
