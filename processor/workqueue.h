// WorkQueue: keys waiting to be reconciled, in the manner of client-go's workqueue.
//  - A key is queued at most once; a key added while it is being processed is queued again when
//    Done() is called, so no two workers ever hold the same key.
//  - AddRateLimited() delays a key by an exponential backoff of its own (base * 2^retries, capped);
//    Forget() resets it after a success.
//  - AddAfter() delays a key by a fixed time (periodic resync, waiting out a grace period).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace bg::processor {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  WorkQueue(std::chrono::milliseconds base_delay, std::chrono::milliseconds max_delay);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Add(const std::string& key);
  void AddAfter(const std::string& key, std::chrono::milliseconds delay);
  void AddRateLimited(const std::string& key);
  void Forget(const std::string& key);
  int Retries(const std::string& key) const;

  // Blocks for the next key; false once ShutDown() has been called.
  bool Get(std::string* key);
  void Done(const std::string& key);

  void ShutDown();
  // Keys ready to be handed out (not counting delayed ones).
  std::size_t Depth() const;

 private:
  void AddLocked(const std::string& key);
  void DelayLoop();

  const std::chrono::milliseconds base_delay_;
  const std::chrono::milliseconds max_delay_;

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;
  std::condition_variable delay_cv_;
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;       // queued or to be re-queued
  std::set<std::string> processing_;  // held by a worker
  std::multimap<Clock::time_point, std::string> delayed_;
  std::map<std::string, int> retries_;
  bool shutting_down_ = false;
  std::thread delay_thread_;
};

}  // namespace bg::processor
