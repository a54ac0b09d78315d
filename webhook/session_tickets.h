// TLS session resumption with stateless tickets whose keys live only in memory and rotate.
//
// A client that kept a ticket from an earlier connection skips the certificate exchange and the
// signature on its next one (TLS 1.3 PSK with a fresh ECDHE share, or a TLS 1.2 abbreviated
// handshake). The server stores nothing per session: the ticket is the session, encrypted
// (AES-256-CBC) and authenticated (HMAC-SHA256) with a key only this process holds.
//
// Keys: a new random key every `rotation`; tickets are issued with the current key and accepted
// with the current or the previous one (a ticket under the previous key is renewed), so a ticket
// resumes for at most two rotations and a key that leaks opens at most that window of sessions.
// Keys are never written anywhere; a restart, or another replica, makes a full handshake.
//
// Thread-safety: the callback runs on whatever thread drives a handshake; the keys are guarded
// by a mutex. The object must outlive every SSL_CTX it is installed on.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace bg::webhook {

class SessionTickets {
 public:
  using Clock = std::chrono::steady_clock;
  // One hour: a kube-apiserver reconnecting after an idle timeout or a restart of ours within
  // the hour resumes; an attacker who reads process memory opens at most two hours of sessions.
  static constexpr std::chrono::seconds kDefaultRotation{3600};

  // `now` is the clock (injected by tests).
  explicit SessionTickets(std::chrono::seconds rotation = kDefaultRotation,
                          std::function<Clock::time_point()> now = Clock::now);
  SessionTickets(const SessionTickets&) = delete;
  SessionTickets& operator=(const SessionTickets&) = delete;

  // Turns tickets on for `ctx` with these keys: one ticket per full handshake (TLS 1.3 would
  // send two), a session lifetime of two rotations, no server-side session cache. Sets the
  // session id context, without which OpenSSL refuses to resume on a context that asks for
  // client certificates.
  void InstallOn(SSL_CTX* ctx);

  // How many keys were made so far (the first one included).
  std::uint64_t keys_made() const;

  // The name (first 16 bytes of every ticket) of the key tickets are issued with now.
  static constexpr std::size_t kNameBytes = 16;
  using KeyName = std::array<unsigned char, kNameBytes>;
  KeyName current_name();

 private:
  struct Key {
    KeyName name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
  };
  enum class Use { kNone, kCurrent, kPrevious };

  static int Callback(SSL* ssl, unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                      EVP_MAC_CTX* mac, int encrypt);
  // The key to issue a ticket with, rotated first when due. Requires mu_.
  const Key& CurrentLocked();
  // The key a ticket names, if it is still accepted. Requires mu_.
  const Key* FindLocked(const unsigned char* name, Use* use);
  static Key NewKey();

  const std::chrono::seconds rotation_;
  const std::function<Clock::time_point()> now_;
  mutable std::mutex mu_;
  Key current_;
  Key previous_;
  bool has_previous_ = false;
  Clock::time_point rotate_at_;
  std::uint64_t keys_made_ = 0;
};

}  // namespace bg::webhook
