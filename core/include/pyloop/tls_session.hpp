// core/include/pyloop/tls_session.hpp — the data phase of one TLS connection over memory BIOs.
#pragma once

#include <cstddef>
#include <vector>

struct ssl_st;  // OpenSSL's SSL (openssl/ssl.h); only tls_session.cpp includes OpenSSL

namespace pyloop {

// How a tls_session call ended.
enum class tls_status : unsigned char {
  ok,         // done: everything asked for was done (write), or the buffer is full (read)
  want_read,  // no more plaintext until more ciphertext is fed (read)
  closed,     // the peer's close_notify was read (SSL_ERROR_ZERO_RETURN)
  failed,     // a protocol or library error: see `ssl_error` and `error`
};

struct tls_result {
  std::size_t size = 0;         // plaintext bytes read, or written
  tls_status status = tls_status::ok;
  int ssl_error = 0;            // SSL_get_error() when failed
  unsigned long error = 0;      // the latest error of OpenSSL's queue when failed (the queue is cleared)
};

// Drives an established TLS connection (an SSL object whose read and write BIOs are memory
// BIOs) without any socket: ciphertext received is fed in, plaintext comes out of read();
// plaintext written comes out as ciphertext through take_output(), for the transport to send.
// The handshake and the shutdown are someone else's (in PyLoop, Python's ssl.SSLObject):
// the SSL object is borrowed, never owned or freed here, and whoever owns it keeps it alive
// for as long as the session exists.
//
// Every call starts with a clear error queue, so a failure reports its own error.
// Thread safety: one thread at a time (the loop's); OpenSSL's error queue is per thread.
class tls_session {
 public:
  explicit tls_session(ssl_st* ssl) noexcept : ssl_(ssl) {}

  // Appends ciphertext to the read BIO. False only when the BIO cannot grow (no memory).
  bool feed(const char* data, std::size_t size) noexcept;
  // Decrypts into `out` until it is full or no whole record is left (want_read), or the peer
  // closed (closed), or an error (failed). `size` counts what was read before the end.
  tls_result read(char* out, std::size_t capacity) noexcept;
  // Encrypts all of `data` into the write BIO (a memory BIO never refuses).
  tls_result write(const char* data, std::size_t size) noexcept;

  // The same two without the BIOs' memory, for the common case where nothing waits in them
  // (input_pending() == 0, output_pending() == 0; otherwise use feed/read, write/take_output):
  // read_from decrypts straight from `data` (a read-only view put in place of the read BIO
  // for the call) and says in `consumed` how much of it the SSL object took; the caller
  // feeds the rest. write_to appends the records to `out` (a sink put in place of the write
  // BIO for the call). A memory BIO write clears, then copies, every byte, and its read
  // copies it again: these save two or three passes over each byte.
  tls_result read_from(const char* data, std::size_t size, char* out, std::size_t capacity,
                       std::size_t& consumed) noexcept;
  tls_result write_to(const char* data, std::size_t size, std::vector<char>& out) noexcept;

  // Ciphertext waiting in the write BIO, and moving it out (returns the bytes moved).
  std::size_t output_pending() const noexcept;
  std::size_t take_output(char* out, std::size_t capacity) noexcept;
  // Ciphertext fed but not yet decrypted.
  std::size_t input_pending() const noexcept;
  // Plaintext already decrypted and buffered inside OpenSSL (SSL_pending).
  std::size_t plaintext_pending() const noexcept;

  ssl_st* ssl() const noexcept { return ssl_; }

  // OpenSSL's text for an error code's reason ("decryption failed or bad record mac").
  static const char* reason_text(unsigned long error) noexcept;

  // The checks that make it safe to drive an SSL object made by another module:
  // - which OpenSSL this library uses (OpenSSL_version_num());
  // - whether the shared object at `module_path`, already loaded, resolves SSL_read to the
  //   very function this library calls (the same libssl, not a second copy);
  // - whether `ssl` belongs to the SSL_CTX `ctx` and carries `app_data` (SSL_get_app_data).
  static unsigned long library_version() noexcept;
  static bool shares_library_with(const char* module_path) noexcept;
  static bool is_session_of(ssl_st* ssl, const void* ctx, const void* app_data) noexcept;

 private:
  tls_result failure(int ret) noexcept;
  template <typename Call>
  tls_result transfer(std::size_t size, Call call) noexcept;

  ssl_st* ssl_;  // the connection (borrowed: its owner frees it, never this class)
};

}  // namespace pyloop
