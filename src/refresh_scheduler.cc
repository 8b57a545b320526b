#include "tokend/refresh_scheduler.h"

#include <algorithm>
#include <cmath>

#include "tokend/backoff.h"

namespace tokend {

struct RefreshScheduler::Tenant {
  std::shared_ptr<const TenantConfig> config;
  uint64_t generation = 0;

  TenantState state = TenantState::kPending;
  std::shared_ptr<const Token> token;
  int consecutive_failures = 0;
  int attempt = 0;          // attempts since the last success, the current one included
  Millis last_delay{0};     // previous backoff wait (decorrelated jitter)
  std::optional<int64_t> last_success_unix;
  std::optional<LastError> last_error;

  std::optional<MonoTime> next_attempt;  // due time of the next attempt
  bool queued = false;                   // waiting for a slot of the limit
  bool in_flight = false;
  bool restart_after_flight = false;  // endpoint changed while an attempt was in flight
  MonoTime sent;                      // when the in-flight attempt was sent
  SysTime sent_system;

  std::optional<MonoTime> timer;  // the key of this tenant's entry in timers_

  // Repeated identical failures are logged sparingly (see LogFailure).
  std::string failure_signature;
  int failure_repeats = 0;     // consecutive failures with that signature
  int failures_suppressed = 0;  // not logged since the last line
};

namespace {

int64_t ToMillis(Millis d) { return d.count(); }

// An identical failure (same kind, status and OAuth error, same state) is logged
// the first kLogFirstRepeats times in a row, then every kLogEveryRepeats-th time
// with the count of lines left out; a change of state is always logged.
constexpr int kLogFirstRepeats = 3;
constexpr int kLogEveryRepeats = 10;

Millis Between(MonoTime from, MonoTime to) {
  return std::chrono::duration_cast<Millis>(to - from);
}

}  // namespace

RefreshScheduler::RefreshScheduler(const Clock& clock, Random& random, TokenClient& client,
                                   TokenStore& store, EventLog& log, SchedulerOptions options)
    : clock_(clock),
      random_(random),
      client_(client),
      store_(store),
      log_(log),
      options_(std::move(options)),
      limit_(options_.refresh.max_concurrent) {
  store_.SetExpiryMargin(options_.refresh.expiry_margin);
  if (options_.refresh.adaptive) {
    adaptive_.emplace(options_.refresh.max_concurrent);
    limit_.SetEffective(adaptive_->limit());
  }
}

void RefreshScheduler::ApplyLimitChange(const std::optional<AdaptiveLimit::Change>& change) {
  if (!change) return;
  limit_.SetEffective(change->to);
  log_.Info("limit_changed", "concurrency limit changed",
            {{"from", change->from}, {"to", change->to}, {"reason", change->reason},
             {"in_flight", limit_.in_flight()}});
}

RefreshScheduler::~RefreshScheduler() = default;

void RefreshScheduler::SetOptions(SchedulerOptions options) {
  options_ = std::move(options);
  int before = limit_.effective();
  limit_.SetConfigured(options_.refresh.max_concurrent);
  if (!options_.refresh.adaptive) {
    adaptive_.reset();
    limit_.SetEffective(options_.refresh.max_concurrent);
  } else if (!adaptive_) {
    adaptive_.emplace(options_.refresh.max_concurrent);
    limit_.SetEffective(adaptive_->limit());
  } else {
    adaptive_->SetMaximum(options_.refresh.max_concurrent);
    limit_.SetEffective(adaptive_->limit());
  }
  if (limit_.effective() != before) {
    log_.Info("limit_changed", "concurrency limit changed",
              {{"from", before}, {"to", limit_.effective()}, {"reason", "configured"},
               {"in_flight", limit_.in_flight()}});
  }
  store_.SetExpiryMargin(options_.refresh.expiry_margin);
}

void RefreshScheduler::SetTenants(const std::vector<TenantConfig>& configs) {
  MonoTime now = clock_.Now();
  std::map<std::string, std::unique_ptr<Tenant>> next;
  std::vector<std::string> ids;
  ids.reserve(configs.size());
  for (const auto& config : configs) {
    ids.push_back(config.id);
    auto it = tenants_.find(config.id);
    if (it != tenants_.end()) {
      std::unique_ptr<Tenant> t = std::move(it->second);
      tenants_.erase(it);
      bool changed = !t->config->SameEndpoint(config);
      t->config = std::make_shared<const TenantConfig>(config);
      if (changed) {
        // A token of the old client is not this tenant's any more.
        t->generation = next_generation_++;
        if (t->token) ++token_version_;
        t->token.reset();
        t->state = TenantState::kPending;
        t->consecutive_failures = 0;
        t->attempt = 0;
        t->last_delay = Millis(0);
        t->last_error.reset();
        if (t->in_flight) {
          t->restart_after_flight = true;
          t->next_attempt.reset();
        } else {
          t->next_attempt = now;
        }
        Schedule(*t);
      }
      next.emplace(config.id, std::move(t));
      continue;
    }
    auto t = std::make_unique<Tenant>();
    t->config = std::make_shared<const TenantConfig>(config);
    t->generation = next_generation_++;
    if (!AdoptRestored(*t, now)) t->next_attempt = Spread(now);
    Schedule(*t);
    next.emplace(config.id, std::move(t));
  }
  // What is left was removed from the config.
  for (auto& [id, t] : tenants_) {
    if (t->token) ++token_version_;
    Unschedule(*t);
    if (t->queued) std::erase(waiting_, t.get());
  }
  limit_.SetWaiting(static_cast<int>(waiting_.size()));
  tenants_ = std::move(next);
  restored_.clear();
  store_.SetTenants(ids);
  if (metrics_) metrics_->Retain(ids);
  for (const auto& [id, t] : tenants_) Publish(*t);
}

MonoTime RefreshScheduler::Spread(MonoTime now) {
  double spread = static_cast<double>(options_.refresh.startup_spread.count());
  return now + Millis(static_cast<Millis::rep>(random_.Uniform() * spread));
}

void RefreshScheduler::Restore(std::vector<PersistedToken> tokens) {
  restored_.clear();
  for (auto& token : tokens) {
    std::string tenant = token.tenant;
    restored_[tenant] = std::move(token);
  }
}

bool RefreshScheduler::AdoptRestored(Tenant& t, MonoTime now) {
  auto it = restored_.find(t.config->id);
  if (it == restored_.end()) return false;
  PersistedToken stored = std::move(it->second);
  restored_.erase(it);
  if (stored.fingerprint != EndpointFingerprint(*t.config) || stored.access_token.empty()) {
    log_.Info("state_token_dropped", "stored token was issued for other credentials",
              {{"tenant", t.config->id}});
    return false;
  }
  // Wall-clock instants of the stored token, mapped onto the monotonic clock.
  int64_t now_unix_ms =
      std::chrono::duration_cast<Millis>(clock_.SystemNow().time_since_epoch()).count();
  auto token = std::make_shared<Token>();
  token->access_token = std::move(stored.access_token);
  token->token_type = stored.token_type.empty() ? "Bearer" : std::move(stored.token_type);
  token->obtained = now + Millis(stored.obtained_unix_ms - now_unix_ms);
  token->expires = now + Millis(stored.expires_unix_ms - now_unix_ms);
  token->expires_at_unix = stored.expires_unix_ms / 1000;
  token->obtained_unix_ms = stored.obtained_unix_ms;
  token->expires_unix_ms = stored.expires_unix_ms;
  if (!store_.Servable(*token, now) || token->expires <= token->obtained) return false;

  MonoTime due = token->obtained +
                 RefreshDelay(std::chrono::duration_cast<Millis>(token->expires - token->obtained));
  due = std::min(due, token->expires - options_.refresh.expiry_margin);
  t.next_attempt = due > now ? due : Spread(now);
  t.token = std::move(token);
  t.state = TenantState::kFresh;
  ++token_version_;
  log_.Info("state_token_restored", "token restored from the state file",
            {{"tenant", t.config->id},
             {"expires_in", std::chrono::duration_cast<std::chrono::seconds>(t.token->expires - now).count()},
             {"next_refresh_in_ms", std::chrono::duration_cast<Millis>(*t.next_attempt - now).count()}});
  return true;
}

std::vector<PersistedToken> RefreshScheduler::PersistableTokens() const {
  std::vector<PersistedToken> out;
  for (const auto& [id, t] : tenants_) {
    if (!t->token) continue;
    PersistedToken p;
    p.tenant = id;
    p.access_token = t->token->access_token;
    p.token_type = t->token->token_type;
    p.obtained_unix_ms = t->token->obtained_unix_ms;
    p.expires_unix_ms = t->token->expires_unix_ms;
    p.fingerprint = EndpointFingerprint(*t->config);
    out.push_back(std::move(p));
  }
  return out;
}

void RefreshScheduler::Schedule(Tenant& t) {
  Unschedule(t);
  std::optional<MonoTime> when = t.next_attempt;
  if (t.queued || t.in_flight) when.reset();
  if (t.token) {
    MonoTime withdraw = t.token->expires - options_.refresh.expiry_margin;
    if (!when || withdraw < *when) when = withdraw;
  }
  if (!when) return;
  t.timer = *when;
  timers_.emplace(*when, &t);
}

void RefreshScheduler::Unschedule(Tenant& t) {
  if (!t.timer) return;
  timers_.erase({*t.timer, &t});
  t.timer.reset();
}

MonoTime RefreshScheduler::RunDue() {
  MonoTime now = clock_.Now();
  if (adaptive_) ApplyLimitChange(adaptive_->OnTimer(now));
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Tenant& t = *timers_.begin()->second;
    Unschedule(t);
    if (t.token && !store_.Servable(*t.token, now)) Withdraw(t);
    if (t.next_attempt && *t.next_attempt <= now && !t.in_flight && !t.queued) {
      Enqueue(t);
    }
    Schedule(t);
  }
  StartWaiting(/*may_probe=*/true);
  MonoTime next = timers_.empty() ? MonoTime::max() : timers_.begin()->first;
  if (adaptive_) next = std::min(next, adaptive_->VerdictDue().value_or(MonoTime::max()));
  return next;
}

bool RefreshScheduler::RefreshNow(const std::string& tenant) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) return false;
  Tenant& t = *it->second;
  if (t.in_flight || t.queued) return true;
  t.next_attempt = clock_.Now();
  Schedule(t);
  return true;
}

void RefreshScheduler::Invalidate(const std::string& tenant, const std::string& access_token) {
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) return;
  Tenant& t = *it->second;
  if (!t.token || t.token->access_token != access_token) return;
  t.token.reset();
  ++token_version_;
  if (t.state == TenantState::kFresh || t.state == TenantState::kStale) {
    t.state = TenantState::kExpired;
  }
  log_.Warn("token_invalidated", "a client reported the token as rejected; refreshing",
            {{"tenant", tenant}});
  if (!t.in_flight && !t.queued) t.next_attempt = clock_.Now();
  Schedule(t);
  Publish(t);
}

void RefreshScheduler::CancelAll() {
  client_.CancelAll();
  if (adaptive_) adaptive_->OnCancelAll();
  for (auto& [id, t] : tenants_) {
    if (t->in_flight) {
      t->in_flight = false;
      limit_.Release();
    }
  }
}

void RefreshScheduler::Enqueue(Tenant& t) {
  t.queued = true;
  waiting_.push_back(&t);
  limit_.SetWaiting(static_cast<int>(waiting_.size()));
}

void RefreshScheduler::StartWaiting(bool may_probe) {
  while (!waiting_.empty()) {
    bool probe = false;
    if (!limit_.TryAcquire()) {
      // Full, and more wait: that is the load a probe for more needs.
      if (!may_probe || !adaptive_ || limit_.in_flight() != limit_.effective() ||
          !adaptive_->MayProbe(clock_.Now())) {
        break;
      }
      adaptive_->OnProbeSent(clock_.Now());
      limit_.AcquireProbe();
      probe = true;
    }
    Tenant* t = waiting_.front();
    waiting_.pop_front();
    t->queued = false;
    StartAttempt(*t, probe);
  }
  limit_.SetWaiting(static_cast<int>(waiting_.size()));
}

void RefreshScheduler::StartAttempt(Tenant& t, bool probe) {
  t.in_flight = true;
  t.next_attempt.reset();
  t.attempt += 1;
  t.sent = clock_.Now();
  t.sent_system = clock_.SystemNow();
  Schedule(t);  // keeps only the token-withdrawal timer
  Publish(t);

  TokenRequest request;
  request.tenant = t.config->id;
  request.tenant_config = t.config;
  if (options_.send_request_id) request.request_id = NewUuidV4(random_);
  const AdaptiveLimit::Attempt sent{limit_.in_flight(), probe, t.sent};
  if (adaptive_) adaptive_->OnSent(t.sent);
  log_.Debug("refresh_started", "token request sent",
             {{"tenant", t.config->id},
              {"attempt", t.attempt},
              {"request_id", request.request_id},
              {"concurrency", sent.concurrency},
              {"probe", probe}});
  client_.Start(std::move(request), [this, id = t.config->id, generation = t.generation,
                                     sent](TokenResult result) {
    OnResult(id, generation, sent, std::move(result));
  });
}

void RefreshScheduler::OnResult(const std::string& id, uint64_t generation,
                                const AdaptiveLimit::Attempt& attempt, TokenResult result) {
  limit_.Release();
  if (adaptive_) ApplyLimitChange(adaptive_->OnResult(id, result, attempt, clock_.Now()));
  if (metrics_) metrics_->RecordAttempt(id, result.kind, result.latency);
  MonoTime now = clock_.Now();
  auto it = tenants_.find(id);
  if (it != tenants_.end() && it->second->in_flight) {
    Tenant& t = *it->second;
    t.in_flight = false;
    if (t.generation != generation || t.restart_after_flight) {
      // The answer is for credentials this tenant no longer has.
      t.restart_after_flight = false;
      t.next_attempt = now;
      Schedule(t);
    } else if (result.ok()) {
      OnSuccess(t, result, now);
    } else {
      OnFailure(t, result, now);
    }
  }
  // No probe from here: other answers of the same batch may not have been
  // delivered yet, and their slots are already free at the endpoint, so a
  // probe sent now could run at the limit and prove nothing. RunDue() probes
  // once the batch is done.
  StartWaiting(/*may_probe=*/false);
}

Millis RefreshScheduler::RefreshDelay(Millis lifetime) {
  double fraction =
      options_.refresh.at + options_.refresh.jitter * (2.0 * random_.Uniform() - 1.0);
  fraction = std::clamp(fraction, 0.0, 1.0);
  return Millis(static_cast<Millis::rep>(std::llround(static_cast<double>(lifetime.count()) * fraction)));
}

void RefreshScheduler::OnSuccess(Tenant& t, TokenResult& result, MonoTime now) {
  Millis lifetime = std::chrono::seconds(result.expires_in_s);
  if (lifetime <= options_.refresh.expiry_margin) {
    // Such a token could never be served; retrying with backoff is all we can do.
    result.kind = AttemptKind::kBadResponse;
    result.message = "token lifetime " + std::to_string(result.expires_in_s) +
                     "s is not longer than refresh.expiry_margin";
    result.access_token.clear();
    OnFailure(t, result, now);
    return;
  }
  auto token = std::make_shared<Token>();
  token->access_token = std::move(result.access_token);
  token->token_type = result.token_type.empty() ? "Bearer" : std::move(result.token_type);
  token->obtained = t.sent;
  token->expires = t.sent + lifetime;
  token->expires_at_unix = UnixSeconds(t.sent_system) + result.expires_in_s;
  token->obtained_unix_ms =
      std::chrono::duration_cast<Millis>(t.sent_system.time_since_epoch()).count();
  token->expires_unix_ms = token->obtained_unix_ms + lifetime.count();

  MonoTime last_servable = token->expires - options_.refresh.expiry_margin;
  MonoTime next = std::min(t.sent + RefreshDelay(lifetime), last_servable);
  if (next < now) next = now;

  int attempt = t.attempt;
  t.failure_signature.clear();
  t.failure_repeats = 0;
  t.failures_suppressed = 0;
  t.token = std::move(token);
  ++token_version_;
  t.state = TenantState::kFresh;
  t.consecutive_failures = 0;
  t.attempt = 0;
  t.last_delay = Millis(0);
  t.last_success_unix = UnixSeconds(clock_.SystemNow());
  t.next_attempt = next;
  Schedule(t);
  Publish(t);

  log_.Info("refresh_ok", "token refreshed",
            {{"tenant", t.config->id},
             {"attempt", attempt},
             {"http_status", result.http_status},
             {"latency_ms", ToMillis(result.latency)},
             {"request_id", result.request_id},
             {"correlation_id", result.correlation_id},
             {"expires_in", result.expires_in_s},
             {"next_refresh_in_ms", ToMillis(Between(now, next))}});
}

void RefreshScheduler::OnFailure(Tenant& t, const TokenResult& result, MonoTime now) {
  t.consecutive_failures += 1;
  LastError error;
  error.kind = result.kind;
  error.http_status = result.http_status;
  error.message = result.message;
  error.at_unix = UnixSeconds(clock_.SystemNow());
  t.last_error = error;

  bool has_token = t.token && store_.Servable(*t.token, now);
  TenantState previous = t.state;
  Millis delay;
  Millis bound;
  if (result.Class() == AttemptClass::kPermanent) {
    t.state = TenantState::kFailed;
    delay = options_.backoff.permanent_error_retry;
    bound = delay;
  } else {
    if (has_token) {
      t.state = TenantState::kStale;
    } else if (previous == TenantState::kPending) {
      t.state = TenantState::kPending;
    } else {
      t.state = TenantState::kExpired;
    }
    bound = BackoffCap(options_.backoff, t.consecutive_failures, t.last_delay);
    delay = BackoffDelay(options_.backoff, t.consecutive_failures, t.last_delay, random_);
    t.last_delay = delay;
    if (result.retry_after && *result.retry_after > delay) delay = *result.retry_after;
  }
  t.next_attempt = now + delay;
  Schedule(t);
  Publish(t);

  Fields fields = {{"tenant", t.config->id},
                   {"attempt", t.attempt},
                   {"kind", ToString(result.kind)},
                   {"http_status", result.http_status == 0 ? Fields() : Fields(result.http_status)},
                   {"oauth_error", result.oauth_error.empty() ? Fields() : Fields(result.oauth_error)},
                   {"latency_ms", ToMillis(result.latency)},
                   {"request_id", result.request_id},
                   {"correlation_id", result.correlation_id},
                   {"retry_in_ms", ToMillis(delay)},
                   {"backoff_bound_ms", ToMillis(bound)},
                   {"consecutive_failures", t.consecutive_failures},
                   {"state", ToString(t.state)},
                   {"error", result.message}};
  if (result.retry_after) fields["retry_after_ms"] = ToMillis(*result.retry_after);

  std::string signature = std::string(ToString(result.kind)) + "|" +
                          std::to_string(result.http_status) + "|" + result.oauth_error + "|" +
                          ToString(t.state);
  if (signature == t.failure_signature && previous == t.state) {
    t.failure_repeats += 1;
  } else {
    t.failure_signature = std::move(signature);
    t.failure_repeats = 1;
  }
  if (t.failure_repeats <= kLogFirstRepeats || t.failure_repeats % kLogEveryRepeats == 0) {
    if (t.failure_repeats > 1) fields["repeats"] = t.failure_repeats;
    if (t.failures_suppressed > 0) fields["suppressed"] = t.failures_suppressed;
    t.failures_suppressed = 0;
    log_.Warn("refresh_failed", "token request failed", fields);
  } else {
    t.failures_suppressed += 1;
  }
  if (t.state == TenantState::kFailed && previous != TenantState::kFailed) {
    log_.Error("tenant_failed", "token endpoint refused the client; retrying after permanent_error_retry",
               {{"tenant", t.config->id},
                {"kind", ToString(result.kind)},
                {"http_status", result.http_status},
                {"oauth_error", result.oauth_error},
                {"error", result.message},
                {"retry_in_ms", ToMillis(delay)}});
  }
}

void RefreshScheduler::Withdraw(Tenant& t) {
  int64_t expires_at = t.token->expires_at_unix;
  t.token.reset();
  ++token_version_;
  if (t.state == TenantState::kFresh || t.state == TenantState::kStale) {
    t.state = TenantState::kExpired;
  }
  Publish(t);
  log_.Warn("token_expired", "token reached its expiry margin and is no longer served",
            {{"tenant", t.config->id},
             {"expires_at", expires_at},
             {"state", ToString(t.state)},
             {"consecutive_failures", t.consecutive_failures}});
}

void RefreshScheduler::Publish(const Tenant& t) {
  TenantView view;
  view.tenant = t.config->id;
  view.state = t.state;
  view.token = t.token;
  view.consecutive_failures = t.consecutive_failures;
  view.last_success_unix = t.last_success_unix;
  view.last_error = t.last_error;
  if (!t.in_flight) view.next_refresh = t.next_attempt;
  store_.Publish(std::move(view));
}

}  // namespace tokend
