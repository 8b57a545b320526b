#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <thread>
#include <vector>

#include "tokend/clock.h"
#include "tokend/config.h"
#include "tokend/control.h"
#include "tokend/curl_token_client.h"
#include "tokend/event_log.h"
#include "tokend/refresh_scheduler.h"
#include "tokend/state_file.h"
#include "tokend/token_store.h"

namespace tokend {

// Runs the RefreshScheduler and the CurlTokenClient on one owned thread: a loop
// of "run what is due, then wait for the network, the next timer or a command".
// Other threads talk to it only through the thread-safe methods below, which
// post commands and wake the loop.
class RefreshEngine final {
 public:
  RefreshEngine(const Config& config, TokenStore& store, EventLog& log, const Clock& clock);
  ~RefreshEngine();
  RefreshEngine(const RefreshEngine&) = delete;
  RefreshEngine& operator=(const RefreshEngine&) = delete;

  // Starts the thread; the config's tenants get their first attempts.
  void Start();
  // Aborts attempts in flight and joins the thread. Idempotent; returns promptly
  // even when token endpoints hang.
  void Stop();

  // Applies a reloaded config (tenants, refresh, backoff, http). Thread-safe.
  void ApplyConfig(const Config& config);

  LimitSnapshot Limit() const;
  void RequestRefresh(const std::string& tenant);
  // Drops `access_token` if it is still the tenant's token and refreshes (at most
  // one such forced refresh per tenant per 10 s).
  void Invalidate(const std::string& tenant, const std::string& access_token);

  // Counters of attempts (for metrics).
  const RefreshMetrics& metrics() const { return metrics_; }

  // Test hook: makes the loop sleep for `d` once (to show a watchdog firing).
  void StallForTesting(Millis d);

  // When the loop last went round (for the watchdog).
  MonoTime LastProgress() const { return MonoTime(MonoTime::duration(last_progress_.load())); }

 private:
  void Run();
  void SaveState(bool force);
  void Post(std::function<void()> command);
  static SchedulerOptions OptionsOf(const Config& config);

  const Clock& clock_;
  EventLog& log_;
  std::vector<TenantConfig> initial_tenants_;
  RealRandom random_;
  RefreshMetrics metrics_;
  CurlTokenClient client_;
  RefreshScheduler scheduler_;
  std::optional<StateFile> state_file_;  // when state.file is set
  uint64_t saved_token_version_ = 0;
  MonoTime last_save_;

  std::mutex mutex_;
  std::vector<std::function<void()>> commands_;  // GUARDED_BY(mutex_)
  std::atomic<bool> stopping_{false};
  std::atomic<MonoTime::rep> last_progress_{0};
  std::thread thread_;
};

}  // namespace tokend
