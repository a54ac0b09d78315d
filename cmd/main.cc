// backup-guard: the thin entry point. Each subcommand lives in its own file.
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "cmd/commands.h"

namespace {
void Usage() {
  std::fprintf(stderr,
               "usage: backup-guard <command> [flags]\n"
               "commands:\n"
               "  serve            run the admission webhook server and the finalizer processor\n"
               "  uninstall        delete the storage engine's custom resources in order\n"
               "  diagnose         what holds every deletion, and the webhooks, CRDs and names "
               "that can\n"
               "                   hold an uninstall (needs only a kubeconfig)\n"
               "  verify           after a reinstall, which backups of an uninstall receipt "
               "are back\n"
               "  manifests        print the webhook rules and RBAC lists the chart must state\n"
               "  certs generate   write ca.crt, tls.crt and tls.key for local use\n"
               "  sleep DURATION   wait, then exit 0 (a preStop hook in images without a shell)\n"
               "  version          print the version\n"
               "`backup-guard <command> --help` lists a command's flags and their defaults.\n");
}
}  // namespace

int main(int argc, char** argv) {
  // glibc gives each allocating thread an arena of its own (up to 8 per core), and every arena
  // keeps what was freed in it. The server's workers and the uninstall's writers mostly wait on
  // the network, so two arenas cost no measurable contention and keep the resident set small.
  mallopt(M_ARENA_MAX, 2);
  if (argc < 2) {
    Usage();
    return 2;
  }
  const std::string command = argv[1];
  if (command == "serve") return bg::cmd::Serve(argc, argv);
  if (command == "uninstall") return bg::cmd::Uninstall(argc, argv);
  if (command == "diagnose") return bg::cmd::Diagnose(argc, argv);
  if (command == "verify") return bg::cmd::Verify(argc, argv);
  if (command == "sleep") return bg::cmd::Sleep(argc, argv);
  if (command == "manifests") return bg::cmd::Manifests(argc, argv);
  if (command == "version" || command == "--version") {
    std::printf("backup-guard %s\n", bg::cmd::kVersion);
    return 0;
  }
  if (command == "certs" && argc >= 3 && std::strcmp(argv[2], "generate") == 0) {
    return bg::cmd::CertsGenerate(argc, argv);
  }
  if (command == "help" || command == "--help" || command == "-h") {
    Usage();  // to stderr, as on errors; also the answer to a request for help
    return 0;
  }
  std::fprintf(stderr, "backup-guard: unknown command \"%s\"\n", command.c_str());
  Usage();
  return 2;
}
