// Fuzzes the socket protocol: Dispatcher::Handle on arbitrary request lines (the
// input split at '\n', as the socket server splits it), against a TokenStore
// holding a fresh, a pending and an expired tenant, with a fake RefreshControl.
//
// Every answer must be one JSON object on one line with a boolean "ok"; an
// error answer carries a known code; a token appears only in an ok answer for a
// tenant that holds one; a pending `get` resolves once its deadline passes.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <optional>
#include <string>
#include <string_view>

#include "tokend/protocol.h"
#include "tokend/token_store.h"

namespace {

using tokend::Millis;
using tokend::MonoTime;

constexpr char kToken[] = "fuzz-token-5be0d6a2";
constexpr char kExpiredToken[] = "fuzz-expired-token-91c3";

void Require(bool condition) {
  if (!condition) std::abort();
}

class SteppingClock final : public tokend::Clock {
 public:
  MonoTime Now() const override { return mono_; }
  tokend::SysTime SystemNow() const override { return system_ + (mono_ - MonoTime()); }
  void Set(MonoTime t) { mono_ = t; }
  void Advance(Millis d) { mono_ += d; }

 private:
  MonoTime mono_{};
  tokend::SysTime system_ = tokend::SysTime() + std::chrono::seconds(1'800'000'000);
};

class FakeControl final : public tokend::RefreshControl {
 public:
  tokend::LimitSnapshot Limit() const override { return {4, 2, 1, 0}; }
  void RequestRefresh(const std::string&) override {}
  void Invalidate(const std::string&, const std::string&) override {}
  tokend::ReloadOutcome Reload() override { return {true, 3, {}}; }
  std::optional<tokend::ReloadOutcome> LastReload() const override {
    return tokend::ReloadOutcome{false, 3, {"tokend.yaml:1:1: fuzz"}, 1800000000};
  }
  std::string MetricsText() override { return "tokend_build_info{version=\"fuzz\"} 1\n"; }
};

struct World {
  SteppingClock clock;
  const MonoTime start = MonoTime() + std::chrono::hours(1000);
  tokend::TokenStore store{Millis(60000)};
  FakeControl control;
  std::unique_ptr<tokend::Dispatcher> dispatcher;

  World() {
    clock.Set(start);
    store.SetTenants({"fresh", "pending", "expired"});
    store.Publish(View("fresh", tokend::TenantState::kFresh, kToken, std::chrono::hours(1)));
    store.Publish(View("expired", tokend::TenantState::kExpired, kExpiredToken, Millis(30000)));
    tokend::TenantView pending;
    pending.tenant = "pending";
    pending.next_refresh = start + Millis(1500);
    tokend::LastError error;
    error.http_status = 504;
    error.message = "HTTP 504 \xff\xfe not utf-8";
    pending.last_error = error;
    store.Publish(pending);
    dispatcher = std::make_unique<tokend::Dispatcher>(store, control, clock, start);
  }

  tokend::TenantView View(const std::string& tenant, tokend::TenantState state, const char* token,
                          Millis lifetime) {
    auto t = std::make_shared<tokend::Token>();
    t->access_token = token;
    t->token_type = "Bearer";
    t->obtained = start;
    t->expires = start + lifetime;  // "expired": inside the expiry margin already
    t->expires_at_unix = 1'800'000'000 + lifetime.count() / 1000;
    tokend::TenantView view;
    view.tenant = tenant;
    view.state = state;
    view.token = t;
    return view;
  }
};

void CheckAnswer(std::string_view line) {
  static const std::set<std::string> kCodes = {"bad_request", "unknown_op", "unknown_tenant",
                                               "forbidden",   "unavailable", "too_large",
                                               "busy",        "internal"};
  Require(!line.empty() && line.find('\n') == std::string_view::npos);
  nlohmann::json answer = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  Require(answer.is_object());
  Require(answer.contains("ok") && answer["ok"].is_boolean());
  // (A request may quote a token anywhere, e.g. as an op name; only the
  // access_token field is what we serve.)
  if (answer["ok"].get<bool>()) {
    if (answer.contains("access_token")) {
      Require(answer["access_token"] == kToken);  // never the expired one
      Require(answer["tenant"] == "fresh");
    }
    return;
  }
  Require(!answer.contains("access_token"));
  Require(answer.contains("error") && answer["error"].is_string());
  Require(kCodes.count(answer["error"].get<std::string>()) == 1);
  // `internal` means a handler threw: a bug, whatever the request.
  Require(answer["error"] != "internal");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();
  world->clock.Set(world->start);
  // tokend's own uid is always a client and an admin, so every op is reached
  // (a stranger would only ever be answered `forbidden`).
  static const tokend::Peer peer{::getuid(), ::getgid(), 42};
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);

    std::string out;
    tokend::Outcome outcome = world->dispatcher->Handle(line, peer, out);
    if (outcome.pending) {
      Require(out.empty());
      // Nothing changes in the store: only the deadline can end the wait.
      Require(outcome.pending->deadline <= world->clock.Now() + Millis(30000));
      world->clock.Set(outcome.pending->deadline);
      tokend::Outcome resumed = world->dispatcher->Resume(*outcome.pending, out);
      Require(!resumed.pending);
      world->clock.Set(world->start);
    }
    CheckAnswer(out);
  }
  return 0;
}
