#include "common/nonblocking.h"

namespace bg {
namespace {
thread_local bool must_not_block = false;
}  // namespace

NonBlockingScope::NonBlockingScope() : previous_(must_not_block) { must_not_block = true; }

NonBlockingScope::~NonBlockingScope() { must_not_block = previous_; }

bool MustNotBlock() { return must_not_block; }

}  // namespace bg
