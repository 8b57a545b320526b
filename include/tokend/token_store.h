#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokend/clock.h"
#include "tokend/token_client.h"

namespace tokend {

// SPEC §4 tenant states.
enum class TenantState { kPending, kFresh, kStale, kExpired, kFailed };
const char* ToString(TenantState state);

// A token as handed to clients. Immutable once published.
struct Token {
  std::string access_token;
  std::string token_type;
  MonoTime obtained;      // when its request was sent
  MonoTime expires;       // obtained + expires_in
  int64_t expires_at_unix = 0;
  int64_t obtained_unix_ms = 0;  // wall-clock twins of obtained/expires, for state.file
  int64_t expires_unix_ms = 0;
};

struct LastError {
  AttemptKind kind = AttemptKind::kNetwork;
  int http_status = 0;  // 0 = none
  std::string message;
  int64_t at_unix = 0;
};

// What the socket side may know of one tenant. Published by the scheduler.
struct TenantView {
  std::string tenant;
  TenantState state = TenantState::kPending;
  std::shared_ptr<const Token> token;  // may be past its serving window; check Servable()
  int consecutive_failures = 0;
  std::optional<int64_t> last_success_unix;
  std::optional<LastError> last_error;
  std::optional<MonoTime> next_refresh;  // next attempt, if scheduled
};

// The state shared between the refresh side (one writer) and the socket side
// (many readers): every tenant's current token and status.
//
// Thread-safe. Readers take a shared lock just long enough to copy a shared_ptr.
// Change listeners run on the writer's thread, outside the lock; they must be
// quick (e.g. write to an eventfd).
class TokenStore {
 public:
  explicit TokenStore(Millis expiry_margin) : expiry_margin_ms_(expiry_margin.count()) {}

  // Replaces the set of known tenants: unknown ids are added as pending, ids not
  // in `tenants` are forgotten (with their tokens). Notifies listeners.
  void SetTenants(const std::vector<std::string>& tenants);

  // Publishes a tenant's new view. Ignored for an unknown tenant. Notifies listeners.
  void Publish(TenantView view);

  // The tenant's view, or nullopt if the tenant is unknown.
  std::optional<TenantView> Find(const std::string& tenant) const;

  // Every tenant's view, sorted by tenant id.
  std::vector<TenantView> Snapshot() const;

  bool Known(const std::string& tenant) const;

  // The token if the tenant holds one that may be served at `now`: more than
  // expiry_margin before its expiry. Never returns an expired token.
  std::shared_ptr<const Token> Servable(const std::string& tenant, MonoTime now) const;
  bool Servable(const Token& token, MonoTime now) const {
    return now + Millis(expiry_margin_ms_.load()) < token.expires;
  }

  // A client reports `access_token` as rejected upstream. If it is the tenant's
  // current token and no forced refresh was granted for this tenant within
  // `min_interval`, the token is dropped at once (and never published again) and
  // true is returned: the caller then asks for a refresh.
  bool Invalidate(const std::string& tenant, const std::string& access_token, MonoTime now,
                  Millis min_interval);

  void SetExpiryMargin(Millis margin);
  Millis expiry_margin() const;

  // Number of tenants and of tenants holding a servable token at `now`.
  std::pair<size_t, size_t> CountValid(MonoTime now) const;

  // Registers a listener called with the tenant id after every change (""
  // after SetTenants). Returns an id for RemoveListener.
  using Listener = std::function<void(const std::string& tenant)>;
  int AddListener(Listener listener);
  void RemoveListener(int id);

 private:
  void Notify(const std::string& tenant);

  struct Invalidation {
    std::string access_token;  // the last token reported as rejected
    MonoTime at;
  };

  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, TenantView> tenants_;       // GUARDED_BY(mutex_)
  std::unordered_map<std::string, Invalidation> invalidated_;  // GUARDED_BY(mutex_)
  std::atomic<int64_t> expiry_margin_ms_;

  std::mutex listeners_mutex_;
  std::vector<std::pair<int, Listener>> listeners_;  // GUARDED_BY(listeners_mutex_)
  int next_listener_id_ = 1;                         // GUARDED_BY(listeners_mutex_)
};

}  // namespace tokend
