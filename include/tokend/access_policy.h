#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokend/accounts.h"
#include "tokend/clock.h"
#include "tokend/config.h"

namespace tokend {

// Who is at the other end of a connection, read with SO_PEERCRED at accept.
struct Peer {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
};

// What one peer may do under one AccessPolicy. Computed once per connection
// (and again when the policy is replaced), so that checking a request costs a
// few compares.
struct PeerAccess {
  uint64_t generation = 0;  // of the policy it was computed under (Dispatcher's count)
  bool client = false;      // may use every op but the admin-only ones
  bool admin = false;       // may also use `refresh` and `reload`; implies client
  std::vector<std::string> denied_tenants;  // sorted: tenants whose own `clients` exclude the peer

  // True when the peer may read `tenant`'s token (get, watch, invalidate, refresh).
  bool MayRead(std::string_view tenant) const;
};

// SPEC §5 access control: who may use the socket, who may administer, and who
// may read which tenant.
//
//  - root and tokend's own uid are always clients and admins, of every tenant;
//  - access.clients and access.admins add peers (an admin is a client too);
//  - a tenant with its own `clients` is readable only by the clients (of
//    access.clients or access.admins) that also match one of those entries;
//  - "user:"/"uid:" entries match the peer's uid; "group:"/"gid:" entries match
//    the peer's primary gid (SO_PEERCRED) or any group of the peer uid's user
//    (getgrouplist), looked up once per uid and cached for the life of the
//    policy (a reload makes a new policy, hence a fresh cache).
//
// Immutable but for that cache; thread-safe.
class AccessPolicy {
 public:
  // The policy of an empty `access` section: root and `self_uid` only.
  explicit AccessPolicy(uid_t self_uid);
  // `accounts` must outlive the policy.
  AccessPolicy(const Config& config, uid_t self_uid, const AccountDirectory& accounts);

  // From a loaded config, with tokend's effective uid and the system's accounts.
  static std::shared_ptr<const AccessPolicy> FromConfig(const Config& config);

  // What `peer` may do. May call the account directory (first sight of a uid
  // when the policy has group entries).
  PeerAccess Evaluate(const Peer& peer) const;

  // Bound of the per-uid group cache; past it the cache starts over.
  static constexpr size_t kMaxCachedUids = 4096;

 private:
  bool Matches(const std::vector<AccessEntry>& entries, const Peer& peer,
               const std::vector<gid_t>& groups) const;
  std::vector<gid_t> GroupsOf(uid_t uid) const;

  const uid_t self_uid_;
  const AccountDirectory* accounts_ = nullptr;  // null: no group lookups
  std::vector<AccessEntry> clients_;
  std::vector<AccessEntry> admins_;
  std::vector<std::pair<std::string, std::vector<AccessEntry>>> restricted_;  // sorted by tenant
  bool needs_groups_ = false;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<uid_t, std::vector<gid_t>> group_cache_;  // GUARDED_BY(cache_mutex_)
};

// Rate limit for `client_denied` log lines, so that a hostile peer cannot flood
// the log: at most `per_window` lines per uid per `window`. Further denials are
// counted, and reported once (Expire) when the uid's window ends. At most
// `max_uids` windows are kept; denials of further uids share one window under
// uid (uid_t)-1.
//
// Not thread-safe: the socket loop owns it.
class DenialThrottle {
 public:
  explicit DenialThrottle(int per_window = 5, Millis window = Millis(60000),
                          size_t max_uids = 1024);

  // Whether this denial should be logged.
  bool Admit(uid_t uid, MonoTime now);

  struct Suppressed {
    uid_t uid;
    uint64_t count;  // denials not logged in the window
  };
  // Ends the windows that are over at `now`; returns those that suppressed some.
  std::vector<Suppressed> Expire(MonoTime now);

  Millis window() const { return window_; }

 private:
  struct Window {
    MonoTime start;
    int logged = 0;
    uint64_t suppressed = 0;
  };

  const int per_window_;
  const Millis window_;
  const size_t max_uids_;
  std::unordered_map<uid_t, Window> windows_;
  std::optional<MonoTime> next_expiry_;
};

}  // namespace tokend
