#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "tokend/clock.h"
#include "tokend/control.h"
#include "tokend/socket_server.h"
#include "tokend/token_client.h"
#include "tokend/token_store.h"

namespace tokend {

// Counters of token request attempts (SPEC §7), recorded by the refresh side.
// Thread-safe: recorded on the refresh thread, rendered on the socket thread.
class RefreshMetrics {
 public:
  // Upper bounds (seconds) of tokend_refresh_duration_seconds' buckets.
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};

  void RecordAttempt(const std::string& tenant, AttemptKind kind, Millis latency);
  // Forgets tenants not in `tenants` (reload).
  void Retain(const std::vector<std::string>& tenants);

  struct Snapshot {
    std::map<std::pair<std::string, AttemptKind>, uint64_t> attempts;
    std::array<uint64_t, kBuckets.size()> bucket_counts{};  // non-cumulative
    uint64_t count = 0;
    double sum_seconds = 0;
  };
  Snapshot Take() const;

 private:
  mutable std::mutex mutex_;
  Snapshot data_;  // GUARDED_BY(mutex_)
};

// Everything SPEC §7 names, rendered as Prometheus text exposition format 0.0.4.
struct MetricsSources {
  const RefreshMetrics* refresh = nullptr;
  const SocketCounters* socket = nullptr;
  const TokenStore* store = nullptr;
  LimitSnapshot limit;
  MonoTime now;
};
std::string RenderMetrics(const MetricsSources& sources);

}  // namespace tokend
