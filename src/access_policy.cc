#include "tokend/access_policy.h"

#include <unistd.h>

#include <algorithm>

namespace tokend {

bool PeerAccess::MayRead(std::string_view tenant) const {
  if (!client) return false;
  if (denied_tenants.empty()) return true;
  return !std::binary_search(denied_tenants.begin(), denied_tenants.end(), tenant,
                             [](std::string_view a, std::string_view b) { return a < b; });
}

AccessPolicy::AccessPolicy(uid_t self_uid) : self_uid_(self_uid) {}

AccessPolicy::AccessPolicy(const Config& config, uid_t self_uid, const AccountDirectory& accounts)
    : self_uid_(self_uid),
      accounts_(&accounts),
      clients_(config.access.clients),
      admins_(config.access.admins) {
  for (const TenantConfig& tenant : config.tenants) {
    if (!tenant.client_entries.empty()) restricted_.emplace_back(tenant.id, tenant.client_entries);
  }
  std::sort(restricted_.begin(), restricted_.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  auto has_group = [](const std::vector<AccessEntry>& entries) {
    return std::any_of(entries.begin(), entries.end(),
                       [](const AccessEntry& e) { return e.kind == AccessEntry::Kind::kGid; });
  };
  needs_groups_ = has_group(clients_) || has_group(admins_) ||
                  std::any_of(restricted_.begin(), restricted_.end(),
                              [&](const auto& r) { return has_group(r.second); });
}

std::shared_ptr<const AccessPolicy> AccessPolicy::FromConfig(const Config& config) {
  return std::make_shared<const AccessPolicy>(config, geteuid(), SystemAccounts::Instance());
}

PeerAccess AccessPolicy::Evaluate(const Peer& peer) const {
  PeerAccess access;
  if (peer.uid == 0 || peer.uid == self_uid_) {
    access.client = access.admin = true;
    return access;
  }
  if (peer.uid == static_cast<uid_t>(-1)) return access;  // credentials unknown
  const std::vector<gid_t> groups = needs_groups_ ? GroupsOf(peer.uid) : std::vector<gid_t>();
  access.admin = Matches(admins_, peer, groups);
  access.client = access.admin || Matches(clients_, peer, groups);
  if (!access.client) return access;
  for (const auto& [tenant, entries] : restricted_) {
    if (!Matches(entries, peer, groups)) access.denied_tenants.push_back(tenant);
  }
  return access;  // restricted_ is sorted, so denied_tenants is too
}

bool AccessPolicy::Matches(const std::vector<AccessEntry>& entries, const Peer& peer,
                           const std::vector<gid_t>& groups) const {
  for (const AccessEntry& entry : entries) {
    if (entry.kind == AccessEntry::Kind::kUid) {
      if (entry.id == peer.uid) return true;
    } else if (entry.id == peer.gid ||
               std::find(groups.begin(), groups.end(), entry.id) != groups.end()) {
      return true;
    }
  }
  return false;
}

std::vector<gid_t> AccessPolicy::GroupsOf(uid_t uid) const {
  if (accounts_ == nullptr) return {};
  {
    std::lock_guard lock(cache_mutex_);
    auto it = group_cache_.find(uid);
    if (it != group_cache_.end()) return it->second;
  }
  // Outside the lock: NSS may be slow, and two lookups of one uid are harmless.
  std::vector<gid_t> groups = accounts_->GroupsOfUid(uid);
  std::lock_guard lock(cache_mutex_);
  if (group_cache_.size() >= kMaxCachedUids) group_cache_.clear();
  group_cache_.emplace(uid, groups);
  return groups;
}

DenialThrottle::DenialThrottle(int per_window, Millis window, size_t max_uids)
    : per_window_(per_window), window_(window), max_uids_(std::max<size_t>(1, max_uids)) {}

bool DenialThrottle::Admit(uid_t uid, MonoTime now) {
  Expire(now);
  auto it = windows_.find(uid);
  if (it == windows_.end()) {
    if (windows_.size() >= max_uids_) uid = static_cast<uid_t>(-1);  // the shared overflow window
    it = windows_.try_emplace(uid, Window{now, 0, 0}).first;
    const MonoTime end = it->second.start + window_;
    if (!next_expiry_ || end < *next_expiry_) next_expiry_ = end;
  }
  Window& w = it->second;
  if (w.logged < per_window_) {
    ++w.logged;
    return true;
  }
  ++w.suppressed;
  return false;
}

std::vector<DenialThrottle::Suppressed> DenialThrottle::Expire(MonoTime now) {
  std::vector<Suppressed> out;
  if (!next_expiry_ || now < *next_expiry_) return out;
  next_expiry_.reset();
  for (auto it = windows_.begin(); it != windows_.end();) {
    const MonoTime end = it->second.start + window_;
    if (now >= end) {
      if (it->second.suppressed > 0) out.push_back({it->first, it->second.suppressed});
      it = windows_.erase(it);
      continue;
    }
    if (!next_expiry_ || end < *next_expiry_) next_expiry_ = end;
    ++it;
  }
  return out;
}

}  // namespace tokend
