// Marks a thread that must not wait on the network: the admission listener's event thread while
// it answers a request itself (webhook/tls_listener.cc). Code about to make a network call checks
// MustNotBlock() and throws WouldBlock instead; the listener catches it and hands the request to a
// worker, which answers it from the start. So an answer that needs no network call costs no
// hand-off between threads, and one that does never stalls the event thread.
//
// WouldBlock is deliberately not a std::exception: a handler's `catch (const std::exception&)`
// lets it through. A `catch (...)` on the way must rethrow it (Server::Admission does).
#pragma once

namespace bg {

struct WouldBlock {};

// While one is alive, MustNotBlock() is true on the thread that made it. Scopes nest.
class NonBlockingScope {
 public:
  NonBlockingScope();
  ~NonBlockingScope();
  NonBlockingScope(const NonBlockingScope&) = delete;
  NonBlockingScope& operator=(const NonBlockingScope&) = delete;

 private:
  bool previous_;
};

bool MustNotBlock();

// Throws WouldBlock on a thread that must not block; call it before waiting on the network.
inline void ThrowIfMustNotBlock() {
  if (MustNotBlock()) throw WouldBlock{};
}

}  // namespace bg
