#include "tokend/refresh_engine.h"

#include <algorithm>

namespace tokend {

namespace {

// The loop wakes at least this often, so LastProgress() stays current when idle.
constexpr Millis kMaxIdleWait{1000};
// Token changes are written to state.file at most this often (a refresh storm
// makes one write a second, not one per tenant).
constexpr Millis kStateSaveInterval{1000};

}  // namespace

SchedulerOptions RefreshEngine::OptionsOf(const Config& config) {
  SchedulerOptions options;
  options.refresh = config.refresh;
  options.backoff = config.backoff;
  options.send_request_id = !config.http.request_id_header.empty();
  return options;
}

RefreshEngine::RefreshEngine(const Config& config, TokenStore& store, EventLog& log,
                             const Clock& clock)
    : clock_(clock),
      log_(log),
      initial_tenants_(config.tenants),
      client_(config.http, clock),
      scheduler_(clock, random_, client_, store, log, OptionsOf(config)) {
  scheduler_.SetMetrics(&metrics_);
  store.SetExpiryMargin(config.refresh.expiry_margin);
  if (!config.state.file.empty()) state_file_.emplace(config.state.file);
  last_progress_.store(clock_.Now().time_since_epoch().count());
}

RefreshEngine::~RefreshEngine() { Stop(); }

void RefreshEngine::Start() {
  if (thread_.joinable()) return;
  if (state_file_) {
    StateLoadResult loaded = state_file_->Load();
    if (!loaded.error.empty()) {
      log_.Warn("state_load_failed", "persisted tokens not used; every tenant refreshes",
                {{"file", state_file_->path()}, {"error", loaded.error}, {"set_aside", loaded.set_aside}});
    } else {
      log_.Info("state_loaded", "persisted tokens read",
                {{"file", state_file_->path()}, {"tokens", loaded.tokens.size()}});
    }
    scheduler_.Restore(std::move(loaded.tokens));
  }
  scheduler_.SetTenants(initial_tenants_);
  initial_tenants_.clear();
  saved_token_version_ = scheduler_.token_version();
  last_save_ = clock_.Now();
  thread_ = std::thread([this] { Run(); });
}

void RefreshEngine::Stop() {
  stopping_.store(true);
  client_.Wakeup();
  if (thread_.joinable()) thread_.join();
}

void RefreshEngine::ApplyConfig(const Config& config) {
  Post([this, config] {
    client_.SetOptions(config.http);
    scheduler_.SetOptions(OptionsOf(config));
    scheduler_.SetTenants(config.tenants);
  });
}

LimitSnapshot RefreshEngine::Limit() const { return scheduler_.Limit(); }

void RefreshEngine::RequestRefresh(const std::string& tenant) {
  Post([this, tenant] { scheduler_.RefreshNow(tenant); });
}

void RefreshEngine::Invalidate(const std::string& tenant, const std::string& access_token) {
  Post([this, tenant, access_token] { scheduler_.Invalidate(tenant, access_token); });
}

void RefreshEngine::StallForTesting(Millis d) {
  Post([d] { std::this_thread::sleep_for(d); });
}

void RefreshEngine::Post(std::function<void()> command) {
  {
    std::lock_guard lock(mutex_);
    commands_.push_back(std::move(command));
  }
  client_.Wakeup();
}

void RefreshEngine::Run() {
  std::vector<std::function<void()>> commands;
  while (!stopping_.load()) {
    {
      std::lock_guard lock(mutex_);
      commands.swap(commands_);
    }
    for (auto& command : commands) command();
    commands.clear();

    MonoTime next = scheduler_.RunDue();
    SaveState(false);
    MonoTime now = clock_.Now();
    last_progress_.store(now.time_since_epoch().count());
    Millis wait = kMaxIdleWait;
    if (next != MonoTime::max()) {
      wait = std::clamp(std::chrono::ceil<Millis>(next - now), Millis(0), kMaxIdleWait);
    }
    if (state_file_ && scheduler_.token_version() != saved_token_version_) {
      wait = std::min(wait, std::chrono::ceil<Millis>(last_save_ + kStateSaveInterval - now));
      wait = std::max(wait, Millis(0));
    }
    {
      std::lock_guard lock(mutex_);
      if (!commands_.empty()) wait = Millis(0);
    }
    if (stopping_.load()) break;
    client_.Poll(wait);
  }
  scheduler_.CancelAll();
  SaveState(true);
}

void RefreshEngine::SaveState(bool force) {
  if (!state_file_ || scheduler_.token_version() == saved_token_version_) return;
  MonoTime now = clock_.Now();
  if (!force && now - last_save_ < kStateSaveInterval) return;
  last_save_ = now;
  saved_token_version_ = scheduler_.token_version();
  std::string error = state_file_->Save(scheduler_.PersistableTokens());
  if (!error.empty()) {
    log_.Error("state_save_failed", "cannot write the state file",
               {{"file", state_file_->path()}, {"error", error}});
  }
}

}  // namespace tokend
