#include "tokend/refresh_engine.h"

#include <algorithm>

namespace tokend {

namespace {

// The loop wakes at least this often, so LastProgress() stays current when idle.
constexpr Millis kMaxIdleWait{1000};

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
  store.SetExpiryMargin(config.refresh.expiry_margin);
  last_progress_.store(clock_.Now().time_since_epoch().count());
}

RefreshEngine::~RefreshEngine() { Stop(); }

void RefreshEngine::Start() {
  if (thread_.joinable()) return;
  Post([this, tenants = std::move(initial_tenants_)] { scheduler_.SetTenants(tenants); });
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
    MonoTime now = clock_.Now();
    last_progress_.store(now.time_since_epoch().count());
    Millis wait = kMaxIdleWait;
    if (next != MonoTime::max()) {
      wait = std::clamp(std::chrono::ceil<Millis>(next - now), Millis(0), kMaxIdleWait);
    }
    {
      std::lock_guard lock(mutex_);
      if (!commands_.empty()) wait = Millis(0);
    }
    if (stopping_.load()) break;
    client_.Poll(wait);
  }
  scheduler_.CancelAll();
}

}  // namespace tokend
