#include "processor/workqueue.h"

#include <algorithm>

namespace bg::processor {

namespace {
double Seconds(kube::Clock::Duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

WorkQueue::WorkQueue(std::chrono::milliseconds base_delay, std::chrono::milliseconds max_delay,
                     const kube::Clock* clock)
    : base_delay_(base_delay),
      max_delay_(max_delay),
      clock_(clock != nullptr ? clock : kube::Clock::Real()),
      delay_thread_([this] { DelayLoop(); }) {}

WorkQueue::~WorkQueue() {
  ShutDown();
  delay_thread_.join();
}

void WorkQueue::AddLocked(const std::string& key) {
  if (shutting_down_ || dirty_.count(key) > 0) return;
  dirty_.insert(key);
  if (observer_ != nullptr) observer_->Added();
  if (processing_.count(key) > 0) return;  // queued again by Done()
  queue_.push_back(key);
  queued_at_[key] = clock_->Now();
  ready_cv_.notify_one();
}

void WorkQueue::Add(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(key);
}

void WorkQueue::AddAfter(const std::string& key, std::chrono::milliseconds delay) {
  if (delay.count() <= 0) return Add(key);
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return;
  delayed_.emplace(clock_->Now() + delay, key);
  delay_cv_.notify_one();
}

void WorkQueue::AddRateLimited(const std::string& key) {
  std::chrono::milliseconds delay;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int retries = retries_[key]++;
    if (observer_ != nullptr) observer_->Retried();
    // Cap the exponent first so the shift cannot overflow.
    const int exponent = std::min(retries, 30);
    const auto grown = std::chrono::milliseconds(base_delay_.count() * (1LL << exponent));
    delay = std::min(max_delay_, grown);
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  retries_.erase(key);
}

int WorkQueue::Retries(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = retries_.find(key);
  return it == retries_.end() ? 0 : it->second;
}

bool WorkQueue::Get(std::string* key) {
  std::unique_lock<std::mutex> lock(mu_);
  ready_cv_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
  if (shutting_down_) return false;
  *key = queue_.front();
  queue_.pop_front();
  dirty_.erase(*key);
  const auto now = clock_->Now();
  if (auto it = queued_at_.find(*key); it != queued_at_.end()) {
    if (observer_ != nullptr) observer_->Waited(Seconds(now - it->second));
    queued_at_.erase(it);
  }
  processing_[*key] = now;
  return true;
}

void WorkQueue::Done(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = clock_->Now();
  if (auto it = processing_.find(key); it != processing_.end()) {
    if (observer_ != nullptr) observer_->Worked(Seconds(now - it->second));
    processing_.erase(it);
  }
  if (dirty_.count(key) > 0 && !shutting_down_) {
    queue_.push_back(key);
    queued_at_[key] = now;
    ready_cv_.notify_one();
  }
}

void WorkQueue::ShutDown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutting_down_ = true;
  ready_cv_.notify_all();
  delay_cv_.notify_all();
}

void WorkQueue::Unfinished(double* total_seconds, double* longest_seconds) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = clock_->Now();
  *total_seconds = 0;
  *longest_seconds = 0;
  for (const auto& [key, since] : processing_) {
    const double held = Seconds(now - since);
    *total_seconds += held;
    *longest_seconds = std::max(*longest_seconds, held);
  }
}

std::size_t WorkQueue::Depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void WorkQueue::DelayLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutting_down_) {
    if (delayed_.empty()) {
      delay_cv_.wait(lock);
      continue;
    }
    const auto next = delayed_.begin()->first;
    if (clock_->Now() < next) {
      clock_->WaitUntil(delay_cv_, lock, next);
      continue;
    }
    while (!delayed_.empty() && delayed_.begin()->first <= clock_->Now()) {
      AddLocked(delayed_.begin()->second);
      delayed_.erase(delayed_.begin());
    }
  }
}

}  // namespace bg::processor
