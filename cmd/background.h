// Background: the loops `serve` runs beside the admission server, and the order they stop in.
//
// Fencing (issue 14, suspect 4): the Lease holder must not be emptied while a write made under
// it is still in flight, or a successor starts while that write lands. So Stop() first stops
// everything that writes under the Lease (the processor's workers, the certificate loop), each
// finishing or abandoning the write it is in, and only then stops the elector, which gives the
// Lease up. Until then the elector keeps renewing, so those last writes are still the leader's.
//
// Thread-safety: Stop() from one thread (the destructor calls it too).
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "kube/leader_election.h"
#include "processor/controller.h"

namespace bg::cmd {

struct Background {
  Background() = default;
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() { Stop(); }

  void Stop();

  std::atomic<bool> stop{false};           // the loops in `threads`
  std::atomic<bool> stop_election{false};  // the elector's Run(); set last
  std::vector<std::thread> threads;
  std::unique_ptr<kube::LeaderElector> elector;
  std::thread election;
  std::unique_ptr<processor::Controller> controller;
};

}  // namespace bg::cmd
