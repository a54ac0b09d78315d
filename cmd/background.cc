#include "cmd/background.h"

namespace bg::cmd {

void Background::Stop() {
  stop = true;
  if (controller) controller->Stop();  // joins the workers: no processor write is in flight
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
  stop_election = true;
  if (election.joinable()) election.join();  // gives the Lease up for a fast takeover
}

}  // namespace bg::cmd
