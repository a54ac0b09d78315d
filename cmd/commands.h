#pragma once

namespace bg::cmd {

#ifndef BACKUP_GUARD_VERSION
#define BACKUP_GUARD_VERSION "0.0.0-dev"
#endif
inline constexpr const char* kVersion = BACKUP_GUARD_VERSION;

// Each takes the full argv; flags start at argv[2] (argv[3] for two-word commands).
int Serve(int argc, char** argv);
int CertsGenerate(int argc, char** argv);
int Uninstall(int argc, char** argv);
// Exit status 0: nothing stuck; 1: something is (see processor/diagnose.h); 2: the cluster could
// not be read.
int Diagnose(int argc, char** argv);
int Sleep(int argc, char** argv);
// Exit status 0: every backup of the receipt is back; 1: some are missing; 2: a bad receipt or an
// unreadable cluster (see processor/receipt.h).
int Verify(int argc, char** argv);
// Prints the webhook rules and RBAC lists the chart must state (cmd/manifests.h).
int Manifests(int argc, char** argv);

}  // namespace bg::cmd
