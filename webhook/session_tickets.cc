#include "webhook/session_tickets.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace bg::webhook {
namespace {

// Where an SSL_CTX keeps its SessionTickets, for the callback.
int TicketsIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// What the callback returns (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)).
constexpr int kTicketError = -1;
constexpr int kTicketUnknown = 0;  // a full handshake instead
constexpr int kTicketOk = 1;
constexpr int kTicketRenew = 2;  // accepted; issue a new ticket under the current key

bool SetMacKey(EVP_MAC_CTX* mac, const std::array<unsigned char, 32>& key) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key.data()),
                                        key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

SessionTickets::SessionTickets(std::chrono::seconds rotation,
                               std::function<Clock::time_point()> now)
    : rotation_(rotation), now_(std::move(now)) {
  current_ = NewKey();
  keys_made_ = 1;
  rotate_at_ = now_() + rotation_;
}

SessionTickets::Key SessionTickets::NewKey() {
  Key key;
  if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
      RAND_bytes(key.aes.data(), static_cast<int>(key.aes.size())) != 1 ||
      RAND_bytes(key.hmac.data(), static_cast<int>(key.hmac.size())) != 1) {
    // Without randomness no key is safe, and nothing else in TLS is either.
    log::Error("the random number generator failed: cannot make a session ticket key", {});
    std::abort();
  }
  return key;
}

void SessionTickets::InstallOn(SSL_CTX* ctx) {
  static const unsigned char kSessionContext[] = "backup-guard";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  SSL_CTX_set_ex_data(ctx, TicketsIndex(), this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, Callback);
  SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
  // Tickets carry the session: nothing is kept per client on our side.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_timeout(ctx, static_cast<long>(2 * rotation_.count()));
}

std::uint64_t SessionTickets::keys_made() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_made_;
}

SessionTickets::KeyName SessionTickets::current_name() {
  std::lock_guard<std::mutex> lock(mu_);
  return CurrentLocked().name;
}

const SessionTickets::Key& SessionTickets::CurrentLocked() {
  const auto now = now_();
  if (now >= rotate_at_) {
    // A key current for more than one whole rotation past its time is too old to keep.
    has_previous_ = now < rotate_at_ + rotation_;
    previous_ = current_;
    current_ = NewKey();
    ++keys_made_;
    rotate_at_ = now + rotation_;
  }
  return current_;
}

const SessionTickets::Key* SessionTickets::FindLocked(const unsigned char* name, Use* use) {
  const Key& current = CurrentLocked();
  if (std::memcmp(name, current.name.data(), kNameBytes) == 0) {
    *use = Use::kCurrent;
    return &current;
  }
  if (has_previous_ && std::memcmp(name, previous_.name.data(), kNameBytes) == 0) {
    *use = Use::kPrevious;
    return &previous_;
  }
  *use = Use::kNone;
  return nullptr;
}

int SessionTickets::Callback(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                             EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  auto* self =
      static_cast<SessionTickets*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), TicketsIndex()));
  if (self == nullptr) return kTicketUnknown;
  std::lock_guard<std::mutex> lock(self->mu_);
  if (encrypt == 1) {
    const Key& key = self->CurrentLocked();
    const int iv_length = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
    if (RAND_bytes(iv, iv_length) != 1) return kTicketError;
    std::memcpy(key_name, key.name.data(), kNameBytes);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1 ||
        !SetMacKey(mac, key.hmac)) {
      return kTicketError;
    }
    return kTicketOk;
  }
  Use use = Use::kNone;
  const Key* key = self->FindLocked(key_name, &use);
  if (key == nullptr) return kTicketUnknown;
  if (!SetMacKey(mac, key->hmac) ||
      EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key->aes.data(), iv) != 1) {
    return kTicketError;
  }
  return use == Use::kPrevious ? kTicketRenew : kTicketOk;
}

}  // namespace bg::webhook
