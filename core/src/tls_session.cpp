// core/src/tls_session.cpp — SSL_read/SSL_write over an SSL object's memory BIOs.
#include "pyloop/tls_session.hpp"

#include <dlfcn.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <climits>

namespace pyloop {
namespace {

// OpenSSL's int lengths: larger requests are made in several calls.
constexpr std::size_t max_call = INT_MAX;

int clamp(std::size_t size) noexcept { return static_cast<int>(size < max_call ? size : max_call); }

}  // namespace

bool tls_session::feed(const char* data, std::size_t size) noexcept {
  BIO* in = SSL_get_rbio(ssl_);
  while (size > 0) {
    const int n = BIO_write(in, data, clamp(size));
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

tls_result tls_session::failure(int ret) noexcept {
  tls_result r;
  r.ssl_error = SSL_get_error(ssl_, ret);
  switch (r.ssl_error) {
    case SSL_ERROR_WANT_READ:
      r.status = tls_status::want_read;
      break;
    case SSL_ERROR_ZERO_RETURN:
      r.status = tls_status::closed;
      break;
    default:
      // As Python's ssl module reports a failure: by the queue's latest error. The queue is
      // then emptied, so that no later call on this thread mistakes it for its own.
      r.status = tls_status::failed;
      r.error = ERR_peek_last_error();
      break;
  }
  ERR_clear_error();
  return r;
}

tls_result tls_session::read(char* out, std::size_t capacity) noexcept {
  std::size_t done = 0;
  while (done < capacity) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, out + done, clamp(capacity - done));
    if (n <= 0) {
      tls_result r = failure(n);
      r.size = done;
      return r;
    }
    done += static_cast<std::size_t>(n);
  }
  return tls_result{done, tls_status::ok, 0, 0};
}

tls_result tls_session::write(const char* data, std::size_t size) noexcept {
  std::size_t done = 0;
  while (done < size) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, data + done, clamp(size - done));
    if (n <= 0) {
      tls_result r = failure(n);
      r.size = done;
      return r;
    }
    done += static_cast<std::size_t>(n);
  }
  return tls_result{done, tls_status::ok, 0, 0};
}

std::size_t tls_session::output_pending() const noexcept {
  return BIO_ctrl_pending(SSL_get_wbio(ssl_));
}

std::size_t tls_session::take_output(char* out, std::size_t capacity) noexcept {
  const int n = BIO_read(SSL_get_wbio(ssl_), out, clamp(capacity));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::size_t tls_session::input_pending() const noexcept {
  return BIO_ctrl_pending(SSL_get_rbio(ssl_));
}

std::size_t tls_session::plaintext_pending() const noexcept {
  const int n = SSL_pending(ssl_);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

const char* tls_session::reason_text(unsigned long error) noexcept {
  const char* text = ERR_reason_error_string(error);
  return text != nullptr ? text : "";
}

unsigned long tls_session::library_version() noexcept { return OpenSSL_version_num(); }

bool tls_session::shares_library_with(const char* module_path) noexcept {
  // RTLD_NOLOAD: only a module already loaded is looked at, nothing new is mapped. dlsym on
  // its handle searches the module, then its dependencies: a module linked with its own copy
  // of OpenSSL (statically, or to another libssl) finds a different SSL_read, or none.
  void* module = dlopen(module_path, RTLD_LAZY | RTLD_NOLOAD);
  if (module == nullptr) return false;
  void* theirs = dlsym(module, "SSL_read");
  dlclose(module);
  return theirs != nullptr && theirs == reinterpret_cast<void*>(&SSL_read);
}

bool tls_session::is_session_of(ssl_st* ssl, const void* ctx, const void* app_data) noexcept {
  return ssl != nullptr && SSL_get_SSL_CTX(ssl) == ctx && SSL_get_app_data(ssl) == app_data &&
         SSL_get_rbio(ssl) != nullptr && SSL_get_wbio(ssl) != nullptr;
}

}  // namespace pyloop
