#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tokend/adaptive_limit.h"
#include "tokend/clock.h"
#include "tokend/concurrency_limit.h"
#include "tokend/config.h"
#include "tokend/event_log.h"
#include "tokend/metrics.h"
#include "tokend/state_file.h"
#include "tokend/token_client.h"
#include "tokend/token_store.h"

namespace tokend {

struct SchedulerOptions {
  RefreshOptions refresh;
  BackoffOptions backoff;
  bool send_request_id = true;  // false when http.request_id_header is ""
};

// The refresh worker of every tenant: one state machine and one timer per tenant,
// all driven by one thread, behind one global ConcurrencyLimit.
//
// - A tenant's first attempt is spread uniformly over refresh.startup_spread.
// - After a success the next attempt is due at `at` ± `jitter` of the lifetime,
//   counted from when the request was sent, and never later than the token's
//   last servable moment.
// - Retryable failures wait BackoffDelay() (at least a 429's Retry-After);
//   permanent ones wait backoff.permanent_error_retry.
// - At most one attempt per tenant is in flight; due tenants queue FIFO for a
//   slot of the global limit.
// - With refresh.adaptive, an AdaptiveLimit moves the effective limit; while
//   the limit is full and tenants wait, it may let one probe go beyond it.
// - A token is published to the TokenStore while servable and withdrawn when it
//   comes within refresh.expiry_margin of its expiry.
//
// Not thread-safe: every method, and the TokenClient callbacks, run on one
// thread (the refresh engine's).
class RefreshScheduler {
 public:
  RefreshScheduler(const Clock& clock, Random& random, TokenClient& client, TokenStore& store,
                   EventLog& log, SchedulerOptions options);
  ~RefreshScheduler();
  RefreshScheduler(const RefreshScheduler&) = delete;
  RefreshScheduler& operator=(const RefreshScheduler&) = delete;

  // Installs the tenant set (start-up and reload). New tenants get their first
  // attempt within startup_spread; tenants whose endpoint (SameEndpoint) changed
  // lose their token and are refreshed at once; unchanged tenants keep their
  // token and schedule; tenants not listed are forgotten.
  void SetTenants(const std::vector<TenantConfig>& tenants);

  // Offers tokens from the persisted cache to the next SetTenants(): a tenant it
  // adds whose stored token matches its EndpointFingerprint() and is still
  // servable starts with that token and no request; its refresh is scheduled as
  // if the token had just been obtained (overdue ones spread over
  // startup_spread). Tokens of other tenants are dropped.
  void Restore(std::vector<PersistedToken> tokens);

  // Every token currently held, for the persisted cache.
  std::vector<PersistedToken> PersistableTokens() const;

  // Moves whenever a held token changes (obtained, withdrawn, dropped).
  uint64_t token_version() const { return token_version_; }

  // New refresh/backoff options (reload); schedules already set stay.
  void SetOptions(SchedulerOptions options);

  // Does what is due at clock.Now(): withdraws tokens at the end of their serving
  // window and starts due attempts within the limit. Returns when it next has
  // something to do (MonoTime::max() if nothing is scheduled).
  MonoTime RunDue();

  // Makes `tenant` due now (no-op while an attempt is in flight or queued).
  // Returns false for an unknown tenant.
  bool RefreshNow(const std::string& tenant);

  // Drops the tenant's token if it is `access_token` and makes the tenant due
  // now (the rate limit of forced refreshes is TokenStore::Invalidate's).
  void Invalidate(const std::string& tenant, const std::string& access_token);

  // Aborts every attempt in flight (stop). Their slots are released.
  void CancelAll();

  // Where attempts are counted (optional; not owned).
  void SetMetrics(RefreshMetrics* metrics) { metrics_ = metrics; }

  LimitSnapshot Limit() const { return limit_.Snapshot(); }
  ConcurrencyLimit& limit() { return limit_; }
  size_t tenant_count() const { return tenants_.size(); }

 private:
  struct Tenant;

  void Schedule(Tenant& t);
  void Unschedule(Tenant& t);
  void Enqueue(Tenant& t);
  // Starts waiting tenants within the limit; `may_probe`: and the adaptive
  // limit's probe beyond it, if due.
  void StartWaiting(bool may_probe);
  // `probe`: sent beyond the limit as the adaptive limit's probe.
  void StartAttempt(Tenant& t, bool probe);
  void OnResult(const std::string& id, uint64_t generation, const AdaptiveLimit::Attempt& attempt,
                TokenResult result);
  void ApplyLimitChange(const std::optional<AdaptiveLimit::Change>& change);
  void OnSuccess(Tenant& t, TokenResult& result, MonoTime now);
  void OnFailure(Tenant& t, const TokenResult& result, MonoTime now);
  void Withdraw(Tenant& t);
  void Publish(const Tenant& t);
  Millis RefreshDelay(Millis lifetime);
  bool AdoptRestored(Tenant& t, MonoTime now);
  MonoTime Spread(MonoTime now);

  const Clock& clock_;
  Random& random_;
  TokenClient& client_;
  TokenStore& store_;
  EventLog& log_;
  SchedulerOptions options_;
  ConcurrencyLimit limit_;
  std::optional<AdaptiveLimit> adaptive_;  // when refresh.adaptive
  RefreshMetrics* metrics_ = nullptr;

  std::map<std::string, std::unique_ptr<Tenant>> tenants_;
  std::set<std::pair<MonoTime, Tenant*>> timers_;
  std::deque<Tenant*> waiting_;
  uint64_t next_generation_ = 1;
  uint64_t token_version_ = 0;
  std::map<std::string, PersistedToken> restored_;
};

}  // namespace tokend
