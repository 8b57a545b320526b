#include "tokend/metrics.h"

#include <algorithm>
#include <cstdio>

#include "tokend/version.h"

namespace tokend {

void RefreshMetrics::RecordAttempt(const std::string& tenant, AttemptKind kind, Millis latency) {
  double seconds = static_cast<double>(latency.count()) / 1000.0;
  std::lock_guard lock(mutex_);
  ++data_.attempts[{tenant, kind}];
  auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds);
  if (bucket != kBuckets.end()) ++data_.bucket_counts[static_cast<size_t>(bucket - kBuckets.begin())];
  ++data_.count;
  data_.sum_seconds += seconds;
}

void RefreshMetrics::Retain(const std::vector<std::string>& tenants) {
  std::lock_guard lock(mutex_);
  std::erase_if(data_.attempts, [&tenants](const auto& entry) {
    return std::find(tenants.begin(), tenants.end(), entry.first.first) == tenants.end();
  });
}

RefreshMetrics::Snapshot RefreshMetrics::Take() const {
  std::lock_guard lock(mutex_);
  return data_;
}

namespace {

// Label values escape backslash, double quote and newline (exposition format).
std::string Label(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string BucketBound(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

}  // namespace

std::string RenderMetrics(const MetricsSources& s) {
  std::string out;
  out.reserve(4096);

  Header(out, "tokend_build_info", "gauge", "tokend's version; always 1.");
  out += "tokend_build_info{version=\"" + Label(kVersion) + "\"} 1\n";

  if (s.refresh) {
    RefreshMetrics::Snapshot r = s.refresh->Take();
    Header(out, "tokend_refresh_attempts_total", "counter",
           "Token request attempts by tenant and outcome.");
    for (const auto& [key, count] : r.attempts) {
      out += "tokend_refresh_attempts_total{tenant=\"" + Label(key.first) + "\",outcome=\"" +
             ToString(key.second) + "\"} " + std::to_string(count) + "\n";
    }
    Header(out, "tokend_refresh_duration_seconds", "histogram",
           "Duration of token request attempts.");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < RefreshMetrics::kBuckets.size(); ++i) {
      cumulative += r.bucket_counts[i];
      out += "tokend_refresh_duration_seconds_bucket{le=\"" + BucketBound(RefreshMetrics::kBuckets[i]) +
             "\"} " + std::to_string(cumulative) + "\n";
    }
    out += "tokend_refresh_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(r.count) + "\n";
    out += "tokend_refresh_duration_seconds_sum " + Number(r.sum_seconds) + "\n";
    out += "tokend_refresh_duration_seconds_count " + std::to_string(r.count) + "\n";
  }

  if (s.store) {
    std::vector<TenantView> views = s.store->Snapshot();
    Header(out, "tokend_token_valid", "gauge", "1 if the tenant holds a token that may be served.");
    for (const auto& v : views) {
      bool valid = v.token && s.store->Servable(*v.token, s.now);
      out += "tokend_token_valid{tenant=\"" + Label(v.tenant) + "\"} " + (valid ? "1" : "0") + "\n";
    }
    Header(out, "tokend_token_expiry_timestamp_seconds", "gauge",
           "Unix time at which the tenant's current token expires.");
    for (const auto& v : views) {
      if (!v.token) continue;
      out += "tokend_token_expiry_timestamp_seconds{tenant=\"" + Label(v.tenant) + "\"} " +
             std::to_string(v.token->expires_at_unix) + "\n";
    }
  }

  Header(out, "tokend_concurrency_limit", "gauge", "Effective limit on token requests in flight.");
  out += "tokend_concurrency_limit " + std::to_string(s.limit.effective) + "\n";
  Header(out, "tokend_concurrency_limit_configured", "gauge", "Configured refresh.max_concurrent.");
  out += "tokend_concurrency_limit_configured " + std::to_string(s.limit.configured) + "\n";
  Header(out, "tokend_refresh_in_flight", "gauge", "Token requests in flight.");
  out += "tokend_refresh_in_flight " + std::to_string(s.limit.in_flight) + "\n";
  Header(out, "tokend_refresh_waiting", "gauge", "Tenants due for a refresh, waiting for a slot.");
  out += "tokend_refresh_waiting " + std::to_string(s.limit.waiting) + "\n";

  if (s.socket) {
    Header(out, "tokend_socket_connections", "gauge", "Open client connections.");
    out += "tokend_socket_connections " + std::to_string(s.socket->connections_open) + "\n";
    Header(out, "tokend_socket_connections_accepted_total", "counter",
           "Connections accepted, including those turned away busy.");
    out += "tokend_socket_connections_accepted_total " +
           std::to_string(s.socket->connections_accepted) + "\n";
    Header(out, "tokend_socket_requests_total", "counter", "Socket requests by op and result.");
    for (const auto& r : s.socket->requests) {
      out += "tokend_socket_requests_total{op=\"" + Label(r.op) + "\",result=\"" +
             Label(r.result) + "\"} " + std::to_string(r.count) + "\n";
    }
  }
  return out;
}

}  // namespace tokend
