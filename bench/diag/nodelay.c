// LD_PRELOAD shim for a diagnostic A/B: sets TCP_NODELAY on every TCP socket the process connects,
// to test whether Nagle's algorithm (a request written as headers, then body, waiting for the
// server's delayed ACK) sets the round-trip time of a client that does not set it itself.
// Build: cc -shared -fPIC -O2 -o nodelay.so nodelay.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real_connect)(int, const struct sockaddr *, socklen_t);
  if (!real_connect) real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
  if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  return real_connect(fd, addr, len);
}
