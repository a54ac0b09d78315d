#include "processor/parallel.h"

#include <algorithm>
#include <atomic>

#include "common/worker_pool.h"

namespace bg::processor {

void ParallelFor(size_t n, int workers, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  std::atomic<size_t> next{0};
  auto work = [&] {
    while (true) {
      const size_t i = next.fetch_add(1);
      if (i >= n) return;
      fn(i);
    }
  };
  const size_t threads = std::min<size_t>(n, static_cast<size_t>(std::max(1, workers)));
  WorkerPool pool(threads - 1);  // the calling thread is the last worker
  for (size_t t = 1; t < threads; ++t) pool.Submit(work);
  work();
  pool.Join();
}

}  // namespace bg::processor
