// ParallelFor: the uninstall's parallel writer. Runs fn(i) for every i in [0, n) on up to
// `workers` threads (the calling thread is one of them) and returns when all have run. A call
// that fails does not stop the others: fn records its own failures (one failed write never ends an
// uninstall pass). Items are handed out in order, one at a time, so a slow write holds only its
// own thread. The threads are a WorkerPool (common/worker_pool.h), the listener's kind.
#pragma once

#include <cstddef>
#include <functional>

namespace bg::processor {

void ParallelFor(size_t n, int workers, const std::function<void(size_t)>& fn);

}  // namespace bg::processor
