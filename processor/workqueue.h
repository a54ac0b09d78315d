// WorkQueue: keys waiting to be reconciled, in the manner of client-go's workqueue.
//  - A key is queued at most once; a key added while it is being processed is queued again when
//    Done() is called, so no two workers ever hold the same key.
//  - AddRateLimited() delays a key by an exponential backoff of its own (base * 2^retries, capped);
//    Forget() resets it after a success.
//  - AddAfter() delays a key by a fixed time (periodic resync, waiting out a grace period).
//  - Delays and the times reported to the observer are measured on the queue's Clock, so a test
//    moves them with a ManualClock.
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

#include "kube/clock.h"

namespace bg::processor {

// What a queue reports as it works: client-go's workqueue metrics. Called with the queue's lock
// held, so implementations must be quick and must not call back into the queue.
class QueueObserver {
 public:
  virtual ~QueueObserver() = default;
  virtual void Added() = 0;                 // a key became queued
  virtual void Waited(double seconds) = 0;  // from queued to handed to a worker
  virtual void Worked(double seconds) = 0;  // from handed out to Done()
  virtual void Retried() = 0;               // AddRateLimited
};

class WorkQueue {
 public:
  // `clock` must outlive the queue; null: kube::Clock::Real().
  WorkQueue(std::chrono::milliseconds base_delay, std::chrono::milliseconds max_delay,
            const kube::Clock* clock = nullptr);
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

  // Set before the queue is used; not owned.
  void SetObserver(QueueObserver* observer) { observer_ = observer; }
  // Seconds the keys held by workers have been held: their sum and the longest (client-go's
  // unfinished work and longest running processor).
  void Unfinished(double* total_seconds, double* longest_seconds) const;

 private:
  void AddLocked(const std::string& key);
  void DelayLoop();

  using TimePoint = kube::Clock::TimePoint;

  const std::chrono::milliseconds base_delay_;
  const std::chrono::milliseconds max_delay_;
  const kube::Clock* const clock_;

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;
  std::condition_variable delay_cv_;
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;                  // queued or to be re-queued
  std::map<std::string, TimePoint> processing_;  // held by a worker, since
  std::map<std::string, TimePoint> queued_at_;   // in queue_, since
  std::multimap<TimePoint, std::string> delayed_;
  std::map<std::string, int> retries_;
  bool shutting_down_ = false;
  QueueObserver* observer_ = nullptr;
  std::thread delay_thread_;
};

}  // namespace bg::processor
