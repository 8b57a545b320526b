#include "tokend/token_store.h"

#include <algorithm>

namespace tokend {

const char* ToString(TenantState state) {
  switch (state) {
    case TenantState::kPending: return "pending";
    case TenantState::kFresh: return "fresh";
    case TenantState::kStale: return "stale";
    case TenantState::kExpired: return "expired";
    case TenantState::kFailed: return "failed";
  }
  return "unknown";
}

void TokenStore::SetTenants(const std::vector<std::string>& tenants) {
  {
    std::unique_lock lock(mutex_);
    std::unordered_map<std::string, TenantView> next;
    next.reserve(tenants.size());
    for (const auto& id : tenants) {
      auto it = tenants_.find(id);
      if (it != tenants_.end()) {
        next.emplace(id, std::move(it->second));
      } else {
        TenantView view;
        view.tenant = id;
        next.emplace(id, std::move(view));
      }
    }
    tenants_ = std::move(next);
    std::erase_if(invalidated_, [this](const auto& e) { return !tenants_.count(e.first); });
  }
  Notify("");
}

void TokenStore::Publish(TenantView view) {
  std::string tenant = view.tenant;
  {
    std::unique_lock lock(mutex_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) return;
    auto bad = invalidated_.find(tenant);
    if (view.token && bad != invalidated_.end() &&
        view.token->access_token == bad->second.access_token) {
      view.token.reset();  // the refresh side has not yet heard it was rejected
    }
    it->second = std::move(view);
  }
  Notify(tenant);
}

std::optional<TenantView> TokenStore::Find(const std::string& tenant) const {
  std::shared_lock lock(mutex_);
  auto it = tenants_.find(tenant);
  if (it == tenants_.end()) return std::nullopt;
  return it->second;
}

std::vector<TenantView> TokenStore::Snapshot() const {
  std::vector<TenantView> views;
  {
    std::shared_lock lock(mutex_);
    views.reserve(tenants_.size());
    for (const auto& [id, view] : tenants_) views.push_back(view);
  }
  std::sort(views.begin(), views.end(),
            [](const TenantView& a, const TenantView& b) { return a.tenant < b.tenant; });
  return views;
}

bool TokenStore::Known(const std::string& tenant) const {
  std::shared_lock lock(mutex_);
  return tenants_.count(tenant) > 0;
}

std::shared_ptr<const Token> TokenStore::Servable(const std::string& tenant,
                                                  MonoTime now) const {
  std::shared_ptr<const Token> token;
  {
    std::shared_lock lock(mutex_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end()) return nullptr;
    token = it->second.token;
  }
  if (token && Servable(*token, now)) return token;
  return nullptr;
}

bool TokenStore::Invalidate(const std::string& tenant, const std::string& access_token,
                            MonoTime now, Millis min_interval) {
  {
    std::unique_lock lock(mutex_);
    auto it = tenants_.find(tenant);
    if (it == tenants_.end() || !it->second.token ||
        it->second.token->access_token != access_token) {
      return false;
    }
    auto previous = invalidated_.find(tenant);
    if (previous != invalidated_.end() && now - previous->second.at < min_interval) return false;
    invalidated_[tenant] = {access_token, now};
    it->second.token.reset();
  }
  Notify(tenant);
  return true;
}

void TokenStore::SetExpiryMargin(Millis margin) { expiry_margin_ms_.store(margin.count()); }

Millis TokenStore::expiry_margin() const { return Millis(expiry_margin_ms_.load()); }

std::pair<size_t, size_t> TokenStore::CountValid(MonoTime now) const {
  std::shared_lock lock(mutex_);
  size_t valid = 0;
  for (const auto& [id, view] : tenants_) {
    if (view.token && Servable(*view.token, now)) ++valid;
  }
  return {tenants_.size(), valid};
}

int TokenStore::AddListener(Listener listener) {
  std::lock_guard lock(listeners_mutex_);
  int id = next_listener_id_++;
  listeners_.emplace_back(id, std::move(listener));
  return id;
}

void TokenStore::RemoveListener(int id) {
  std::lock_guard lock(listeners_mutex_);
  std::erase_if(listeners_, [id](const auto& entry) { return entry.first == id; });
}

void TokenStore::Notify(const std::string& tenant) {
  std::lock_guard lock(listeners_mutex_);
  for (const auto& [id, listener] : listeners_) listener(tenant);
}

}  // namespace tokend
