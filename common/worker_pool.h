// WorkerPool: a fixed set of threads that run submitted tasks in order of submission. The
// listener answers requests on one (webhook/tls_listener.cc) and the uninstall's parallel writer
// runs on one (processor/parallel.h).
//
// Thread-safety: Submit() may be called from any thread, also from a task. Join() and Detach()
// from one thread, once; after either, Submit() queues tasks nobody runs.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bg {

class WorkerPool {
 public:
  explicit WorkerPool(std::size_t threads);
  // Joins: the tasks queued so far run first.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task);

  // The threads finish the tasks queued so far, then end; returns when they have.
  void Join();
  // As Join, without waiting: threads stuck in a task are left to the exiting process. They
  // still use the pool and whatever their tasks use, so the caller keeps both alive (or exits).
  void Detach();

 private:
  void Stop(bool wait);
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bg
