// bindings/peer_addresses.hpp — the address objects of a datagram transport's peers, reused.
#pragma once

#include <Python.h>

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include <nanobind/nanobind.h>

namespace pyloop::bindings {

namespace nb = nanobind;

// What a datagram transport knows of the addresses it receives from and sends to, so that a
// datagram from a peer seen recently costs no new address object, and sendto() to the
// address object a datagram just came with converts nothing:
// - the latest address received and its sockaddr, and apart from it the latest sendto()
//   destination converted and its sockaddr, both recognised by identity in sendto(); apart,
//   because the caller's object is not handed to datagram_received as a sender's address
//   (a caller's ("::1", port) is not the socket module's four-field form);
// - the addresses of recent senders (up to `capacity`, in a table made when a second sender
//   appears), so a server talking to many peers at once builds each peer's tuple once;
// - the latest IPv4/IPv6 host string, shared by the tuples of the same host.
// The objects are the socket module's forms (bindings/socket_address.cpp): tuples of str and
// int, str or bytes paths, None; immutable, so sharing one between datagrams changes nothing
// but identity, which asyncio does not promise either way.
// Thread safety: the loop's thread, GIL held.
class peer_addresses {
 public:
  static constexpr std::size_t capacity = 64;  // senders remembered; the table is cleared when full

  peer_addresses() noexcept = default;
  peer_addresses(const peer_addresses&) = delete;
  peer_addresses& operator=(const peer_addresses&) = delete;
  ~peer_addresses() { clear(); }

  // The address object of a received sockaddr (None when length is 0), made or reused; it
  // becomes the latest. Null with an exception set on failure.
  nb::object received(const sockaddr* from, socklen_t length) noexcept;

  // The sockaddr of `address` if it is the latest address received or the latest sendto()
  // destination (identity), else null.
  const sockaddr* latest_sockaddr(PyObject* address, socklen_t& length) const noexcept {
    if (address == latest_.ptr() && latest_length_ != 0) {
      length = latest_length_;
      return reinterpret_cast<const sockaddr*>(&latest_sockaddr_);
    }
    if (address == sent_.ptr() && sent_length_ != 0) {
      length = sent_length_;
      return reinterpret_cast<const sockaddr*>(&sent_sockaddr_);
    }
    return nullptr;
  }
  // `address`, a sendto() destination converted to `sockaddr`, becomes the latest sent.
  void set_sent(PyObject* address, const sockaddr* converted, socklen_t length) noexcept;

  void clear() noexcept;  // lets go of every object (detach, tp_clear)
  int traverse(visitproc visit, void* arg) const;

  std::size_t remembered() const noexcept { return used_; }  // table entries (tests)

 private:
  static constexpr std::size_t slots = 2 * capacity;  // open addressing, at most half full
  static constexpr std::size_t key_words = 4;         // a sockaddr of up to 32 bytes (IPv6: 28)
  struct entry {
    std::uint64_t key[key_words];  // the sockaddr, zero-padded
    socklen_t length;              // its length; 0: the slot is free
    PyObject* address;             // strong reference
  };

  nb::object make(const sockaddr* from, socklen_t length) noexcept;
  void set_latest(PyObject* address, const sockaddr* converted, socklen_t length) noexcept;
  nb::object host(int family, const void* raw) noexcept;
  entry* find(const std::uint64_t (&key)[key_words], socklen_t length, bool& found) noexcept;
  void clear_table() noexcept;

  nb::object latest_;                  // the latest address object, or empty
  sockaddr_storage latest_sockaddr_;   // ... and its sockaddr
  socklen_t latest_length_ = 0;        // its length (0: none)
  nb::object sent_;                    // the latest sendto() destination converted, or empty
  sockaddr_storage sent_sockaddr_;     // ... and its sockaddr
  socklen_t sent_length_ = 0;          // its length (0: none)
  std::unique_ptr<entry[]> table_;     // recent senders, made when a second one appears
  std::size_t used_ = 0;               // occupied slots of table_
  nb::object host_;                    // the latest host string made
  int host_family_ = 0;                // its family (0: none)
  unsigned char host_raw_[16] = {};    // its in_addr / in6_addr
};

}  // namespace pyloop::bindings
