// tests/cpp/tls_session_test.cpp — the TLS data phase over memory BIOs, between two SSL objects.
#include "pyloop/tls_session.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

namespace {

using pyloop::tls_result;
using pyloop::tls_session;
using pyloop::tls_status;

// A self-signed certificate for "localhost" with a fresh P-256 key, made for each test run.
struct test_identity {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  test_identity() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
  ~test_identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
};

// A client and a server SSL object over memory BIOs, as Python's SSLObject sets them up,
// shuttled by hand through the handshake.
class tls_pair : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ctx = SSL_CTX_new(TLS_server_method());
    client_ctx = SSL_CTX_new(TLS_client_method());
    ASSERT_EQ(SSL_CTX_use_certificate(server_ctx, id.cert), 1);
    ASSERT_EQ(SSL_CTX_use_PrivateKey(server_ctx, id.key), 1);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), id.cert);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, nullptr);
    server = make(server_ctx, true);
    client = make(client_ctx, false);
    SSL_set1_host(client, "localhost");
    handshake();
  }
  void TearDown() override {
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
  }

  static SSL* make(SSL_CTX* ctx, bool server_side) {
    SSL* ssl = SSL_new(ctx);
    BIO* in = BIO_new(BIO_s_mem());
    BIO* out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in, -1);  // an empty read BIO means "want read", as in _ssl
    BIO_set_mem_eof_return(out, -1);
    SSL_set_bio(ssl, in, out);
    if (server_side) {
      SSL_set_accept_state(ssl);
    } else {
      SSL_set_connect_state(ssl);
    }
    return ssl;
  }

  // Moves what `from` wrote to `to`'s read BIO; true when something moved.
  static bool shuttle(SSL* from, SSL* to) {
    char buf[16384];
    bool moved = false;
    int n;
    while ((n = BIO_read(SSL_get_wbio(from), buf, sizeof buf)) > 0) {
      BIO_write(SSL_get_rbio(to), buf, n);
      moved = true;
    }
    return moved;
  }

  void handshake() {
    for (int round = 0; round < 10; ++round) {
      const int c = SSL_do_handshake(client);
      const int s = SSL_do_handshake(server);
      const bool moved = shuttle(client, server) | shuttle(server, client);
      if (c == 1 && s == 1 && !moved) return;
    }
    FAIL() << "handshake did not finish";
  }

  // Sends `text` from `from` through tls_session::write and the BIOs; returns what `to` read.
  std::string send(SSL* from, SSL* to, const std::string& text) {
    tls_session writer(from), reader(to);
    tls_result w = writer.write(text.data(), text.size());
    EXPECT_EQ(w.status, tls_status::ok);
    EXPECT_EQ(w.size, text.size());
    std::vector<char> wire(writer.output_pending());
    EXPECT_EQ(writer.take_output(wire.data(), wire.size()), wire.size());
    EXPECT_TRUE(reader.feed(wire.data(), wire.size()));
    std::string got;
    std::vector<char> out(64 * 1024);
    for (;;) {
      tls_result r = reader.read(out.data(), out.size());
      got.append(out.data(), r.size);
      if (r.status != tls_status::ok) {
        EXPECT_EQ(r.status, tls_status::want_read);
        break;
      }
    }
    return got;
  }

  test_identity id;
  SSL_CTX* server_ctx = nullptr;
  SSL_CTX* client_ctx = nullptr;
  SSL* server = nullptr;
  SSL* client = nullptr;
};

TEST_F(tls_pair, small_message_both_ways) {
  EXPECT_EQ(send(client, server, "hello"), "hello");
  EXPECT_EQ(send(server, client, "world"), "world");
}

TEST_F(tls_pair, large_message_spans_many_records) {
  std::string big(300 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  EXPECT_EQ(send(client, server, big), big);
}

TEST_F(tls_pair, read_stops_when_the_buffer_is_full) {
  tls_session writer(client), reader(server);
  writer.write("0123456789", 10);
  std::vector<char> wire(writer.output_pending());
  writer.take_output(wire.data(), wire.size());
  reader.feed(wire.data(), wire.size());
  char out[4];
  tls_result r = reader.read(out, sizeof out);
  EXPECT_EQ(r.status, tls_status::ok);
  EXPECT_EQ(r.size, 4u);
  EXPECT_EQ(reader.plaintext_pending(), 6u);
  char rest[16];
  r = reader.read(rest, sizeof rest);
  EXPECT_EQ(r.status, tls_status::want_read);
  EXPECT_EQ(std::string(rest, r.size), "456789");
}

TEST_F(tls_pair, partial_record_wants_more) {
  tls_session writer(client), reader(server);
  writer.write("abcdef", 6);
  std::vector<char> wire(writer.output_pending());
  writer.take_output(wire.data(), wire.size());
  reader.feed(wire.data(), wire.size() - 1);
  char out[16];
  tls_result r = reader.read(out, sizeof out);
  EXPECT_EQ(r.status, tls_status::want_read);
  EXPECT_EQ(r.size, 0u);
  // OpenSSL may have taken the partial record into its own buffer already.
  EXPECT_LE(reader.input_pending(), wire.size() - 1);
  reader.feed(wire.data() + wire.size() - 1, 1);
  r = reader.read(out, sizeof out);
  EXPECT_EQ(std::string(out, r.size), "abcdef");
}

TEST_F(tls_pair, close_notify_reads_as_closed_and_stays_so) {
  ASSERT_EQ(SSL_shutdown(client), 0);  // sends close_notify
  shuttle(client, server);
  tls_session reader(server);
  char out[16];
  EXPECT_EQ(reader.read(out, sizeof out).status, tls_status::closed);
  EXPECT_EQ(reader.read(out, sizeof out).status, tls_status::closed);
}

TEST_F(tls_pair, corrupt_record_fails_with_the_library_error) {
  tls_session writer(client), reader(server);
  writer.write("secret", 6);
  std::vector<char> wire(writer.output_pending());
  writer.take_output(wire.data(), wire.size());
  wire.back() ^= 1;  // breaks the record's authentication tag
  reader.feed(wire.data(), wire.size());
  char out[16];
  tls_result r = reader.read(out, sizeof out);
  EXPECT_EQ(r.status, tls_status::failed);
  EXPECT_EQ(r.ssl_error, SSL_ERROR_SSL);
  EXPECT_EQ(ERR_GET_LIB(r.error), ERR_LIB_SSL);
  EXPECT_NE(ERR_GET_REASON(r.error), 0);
  EXPECT_GT(reader.output_pending(), 0u);  // the fatal alert for the peer
}

TEST_F(tls_pair, write_to_and_read_from_skip_the_bios) {
  tls_session writer(client), reader(server);
  std::vector<char> wire;
  std::string text(40000, 'q');
  tls_result w = writer.write_to(text.data(), text.size(), wire);
  EXPECT_EQ(w.status, tls_status::ok);
  EXPECT_EQ(w.size, text.size());
  EXPECT_EQ(writer.output_pending(), 0u);  // the records went to `wire`, not the BIO
  ASSERT_GT(wire.size(), text.size());
  // Half of the records now, straight from the buffer; the SSL object's BIOs stay in place.
  BIO* rbio = SSL_get_rbio(server);
  std::vector<char> out(64 * 1024);
  std::size_t consumed = 0;
  const std::size_t half = wire.size() / 2;
  tls_result r = reader.read_from(wire.data(), half, out.data(), out.size(), consumed);
  EXPECT_EQ(SSL_get_rbio(server), rbio);
  EXPECT_EQ(r.status, tls_status::want_read);
  EXPECT_LE(consumed, half);
  std::string got(out.data(), r.size);
  // The rest through the BIO, as a caller feeds what read_from did not take.
  reader.feed(wire.data() + consumed, wire.size() - consumed);
  r = reader.read(out.data(), out.size());
  got.append(out.data(), r.size);
  EXPECT_EQ(r.status, tls_status::want_read);
  EXPECT_EQ(got, text);
  // And the BIOs still work both ways afterwards.
  EXPECT_EQ(send(server, client, "after"), "after");
  EXPECT_EQ(send(client, server, "again"), "again");
}

TEST_F(tls_pair, read_from_stops_when_the_buffer_is_full) {
  tls_session writer(client), reader(server);
  std::vector<char> wire;
  writer.write_to("0123456789", 10, wire);
  writer.write_to("abcdefghij", 10, wire);
  char out[4];
  std::size_t consumed = 0;
  tls_result r = reader.read_from(wire.data(), wire.size(), out, sizeof out, consumed);
  EXPECT_EQ(r.status, tls_status::ok);
  EXPECT_EQ(std::string(out, 4), "0123");
  reader.feed(wire.data() + consumed, wire.size() - consumed);
  char rest[32];
  r = reader.read(rest, sizeof rest);
  EXPECT_EQ(std::string(rest, r.size), "456789abcdefghij");
}

TEST_F(tls_pair, session_checks_recognize_their_owner) {
  int marker = 0;
  SSL_set_app_data(server, &marker);
  EXPECT_TRUE(tls_session::is_session_of(server, server_ctx, &marker));
  EXPECT_FALSE(tls_session::is_session_of(server, client_ctx, &marker));
  EXPECT_FALSE(tls_session::is_session_of(server, server_ctx, nullptr));
  EXPECT_FALSE(tls_session::is_session_of(nullptr, server_ctx, &marker));
}

TEST(tls_library, version_and_sharing) {
  EXPECT_EQ(tls_session::library_version(), OpenSSL_version_num());
  // Nothing is loaded under this name: never "shared".
  EXPECT_FALSE(tls_session::shares_library_with("/nonexistent/_ssl.so"));
}

}  // namespace
