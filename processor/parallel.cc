#include "processor/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

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
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
}

}  // namespace bg::processor
