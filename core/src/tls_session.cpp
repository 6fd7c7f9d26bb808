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

// The write sink: a BIO whose writes append to the std::vector<char> in its data pointer.
int sink_write(BIO* bio, const char* data, int size) {
  auto* out = static_cast<std::vector<char>*>(BIO_get_data(bio));
  try {
    out->insert(out->end(), data, data + size);
  } catch (...) {
    return -1;  // no memory: SSL_write fails with SSL_ERROR_SYSCALL
  }
  return size;
}

long sink_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // nothing is buffered; every other request: no
}

const BIO_METHOD* sink_method() noexcept {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pyloop sink");
    if (m != nullptr) {
      BIO_meth_set_write(m, sink_write);
      BIO_meth_set_ctrl(m, sink_ctrl);
    }
    return m;
  }();
  return method;
}

// Puts `temporary` in place of the SSL object's read or write BIO for one scope, and the
// original back at its end. The original's reference count is raised first, as
// SSL_set0_rbio/wbio release the BIO they replace; putting it back hands that reference to
// the SSL object again and frees the temporary one.
class bio_swap {
 public:
  bio_swap(SSL* ssl, BIO* temporary, bool read) noexcept
      : ssl_(ssl), read_(read), original_(read ? SSL_get_rbio(ssl) : SSL_get_wbio(ssl)) {
    BIO_up_ref(original_);
    set(temporary);
  }
  ~bio_swap() { set(original_); }
  bio_swap(const bio_swap&) = delete;
  bio_swap& operator=(const bio_swap&) = delete;

 private:
  void set(BIO* bio) noexcept {
    if (read_) {
      SSL_set0_rbio(ssl_, bio);
    } else {
      SSL_set0_wbio(ssl_, bio);
    }
  }
  SSL* ssl_;
  bool read_;
  BIO* original_;
};

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

// SSL_read or SSL_write until `size` bytes are through or OpenSSL stops (want_read, closed,
// failed): the result carries what was done before it stopped.
template <typename Call>
tls_result tls_session::transfer(std::size_t size, Call call) noexcept {
  std::size_t done = 0;
  while (done < size) {
    ERR_clear_error();
    const int n = call(done, clamp(size - done));
    if (n <= 0) {
      tls_result r = failure(n);
      r.size = done;
      return r;
    }
    done += static_cast<std::size_t>(n);
  }
  return tls_result{done, tls_status::ok, 0, 0};
}

tls_result tls_session::read(char* out, std::size_t capacity) noexcept {
  return transfer(capacity, [&](std::size_t done, int n) { return SSL_read(ssl_, out + done, n); });
}

tls_result tls_session::write(const char* data, std::size_t size) noexcept {
  return transfer(size, [&](std::size_t done, int n) { return SSL_write(ssl_, data + done, n); });
}

tls_result tls_session::read_from(const char* data, std::size_t size, char* out,
                                  std::size_t capacity, std::size_t& consumed) noexcept {
  consumed = 0;
  BIO* view = BIO_new_mem_buf(data, clamp(size));
  if (view == nullptr) {
    if (!feed(data, size)) return tls_result{0, tls_status::failed, SSL_ERROR_SYSCALL, 0};
    consumed = size;
    return read(out, capacity);
  }
  BIO_set_mem_eof_return(view, -1);  // empty means "want read", as in the real read BIO
  tls_result r;
  {
    bio_swap swap(ssl_, view, true);
    r = read(out, capacity);
    consumed = size - BIO_ctrl_pending(view);
  }  // the view is freed here: it only borrowed `data`
  return r;
}

tls_result tls_session::write_to(const char* data, std::size_t size, std::vector<char>& out) noexcept {
  const BIO_METHOD* method = sink_method();
  BIO* sink = method != nullptr ? BIO_new(method) : nullptr;
  if (sink == nullptr) return write(data, size);  // the write BIO then holds the records
  BIO_set_data(sink, &out);
  BIO_set_init(sink, 1);
  bio_swap swap(ssl_, sink, false);
  return write(data, size);
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
