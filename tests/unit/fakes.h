#pragma once

#include <deque>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "simulated_clock.h"
#include "tokend/event_log.h"
#include "tokend/token_client.h"

namespace tokend {

// Randomness that answers from a script (then repeats its last value), so jitter
// can be pinned to its extremes.
class ScriptedRandom final : public Random {
 public:
  explicit ScriptedRandom(std::vector<double> values = {0.5}) : values_(std::move(values)) {}
  double Uniform() override {
    double v = values_[std::min(next_, values_.size() - 1)];
    if (next_ < values_.size()) ++next_;
    return v;
  }
  uint64_t Next64() override { return ++counter_ * 0x9E3779B97F4A7C15ULL; }
  void Set(std::vector<double> values) {
    values_ = std::move(values);
    next_ = 0;
  }

 private:
  std::vector<double> values_;
  size_t next_ = 0;
  uint64_t counter_ = 0;
};

// A TokenClient that records what it was asked and answers only when the test
// says so.
class FakeTokenClient final : public TokenClient {
 public:
  struct Pending {
    TokenRequest request;
    Callback done;
    MonoTime started;
  };

  explicit FakeTokenClient(const Clock& clock) : clock_(clock) {}

  void Start(TokenRequest request, Callback done) override {
    started.push_back(request);
    in_flight.push_back({std::move(request), std::move(done), clock_.Now()});
    max_in_flight = std::max(max_in_flight, in_flight.size());
  }
  void CancelAll() override {
    cancelled += in_flight.size();
    in_flight.clear();
  }

  // Answers the oldest request in flight for `tenant` (any tenant if empty).
  bool Complete(TokenResult result, const std::string& tenant = "") {
    for (auto it = in_flight.begin(); it != in_flight.end(); ++it) {
      if (!tenant.empty() && it->request.tenant != tenant) continue;
      Pending p = std::move(*it);
      in_flight.erase(it);
      result.request_id = p.request.request_id;
      result.latency = std::chrono::duration_cast<Millis>(clock_.Now() - p.started);
      p.done(std::move(result));
      return true;
    }
    return false;
  }
  size_t InFlightFor(const std::string& tenant) const {
    size_t n = 0;
    for (const auto& p : in_flight) n += p.request.tenant == tenant;
    return n;
  }
  size_t StartedFor(const std::string& tenant) const {
    size_t n = 0;
    for (const auto& r : started) n += r.tenant == tenant;
    return n;
  }

  std::vector<TokenRequest> started;
  std::deque<Pending> in_flight;
  size_t max_in_flight = 0;
  size_t cancelled = 0;

 private:
  const Clock& clock_;
};

inline TokenResult OkResult(const std::string& token, int64_t expires_in_s) {
  TokenResult r;
  r.kind = AttemptKind::kOk;
  r.http_status = 200;
  r.access_token = token;
  r.token_type = "Bearer";
  r.expires_in_s = expires_in_s;
  return r;
}

inline TokenResult HttpFailure(int status, AttemptKind kind, std::string oauth_error = "") {
  TokenResult r;
  r.kind = kind;
  r.http_status = status;
  r.oauth_error = std::move(oauth_error);
  r.message = "HTTP " + std::to_string(status);
  return r;
}

// An EventLog that writes JSON lines into memory.
class CapturedLog {
 public:
  explicit CapturedLog(const Clock& clock, LogLevel level = LogLevel::kTrace)
      : logger_(std::make_shared<spdlog::logger>(
            "test", std::make_shared<spdlog::sinks::ostream_sink_st>(stream_))),
        log(logger_, clock, LoggingOptions{LogFormat::kJson, level}) {}

  std::vector<nlohmann::json> Events(const std::string& name = "") const {
    std::vector<nlohmann::json> out;
    std::istringstream in(stream_.str());
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (name.empty() || j["event"] == name) out.push_back(j);
    }
    return out;
  }
  std::string Text() const { return stream_.str(); }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::logger> logger_;

 public:
  EventLog log;
};

}  // namespace tokend
