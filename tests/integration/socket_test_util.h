#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tokend/clock.h"
#include "tokend/control.h"
#include "tokend/event_log.h"
#include "tokend/socket_server.h"
#include "tokend/token_store.h"
#include "scoped_temp_dir.h"

namespace tokend::testing_util {

// A fresh directory under /tmp (short, so socket paths fit sun_path), removed
// with everything in it.
// Records what the socket side asked; tests may hook refresh and invalidate
// (the hooks run on the server's loop thread).
class FakeRefreshControl final : public RefreshControl {
 public:
  LimitSnapshot Limit() const override { return {4, 3, 1, 2}; }
  void RequestRefresh(const std::string& tenant) override {
    {
      std::lock_guard lock(mutex);
      refreshed.push_back(tenant);
    }
    if (on_refresh) on_refresh(tenant);
  }
  void Invalidate(const std::string& tenant, const std::string& token) override {
    {
      std::lock_guard lock(mutex);
      invalidated.emplace_back(tenant, token);
    }
    if (on_invalidate) on_invalidate(tenant);
  }
  ReloadOutcome Reload() override { return reload; }
  std::optional<ReloadOutcome> LastReload() const override { return last_reload; }
  std::string MetricsText() override { return "tokend_build_info{version=\"test\"} 1\n"; }

  std::function<void(const std::string&)> on_refresh;     // set before the server starts
  std::function<void(const std::string&)> on_invalidate;  // set before the server starts
  ReloadOutcome reload{true, 2, {}};
  std::optional<ReloadOutcome> last_reload;                      // set before the server starts
  std::mutex mutex;
  std::vector<std::string> refreshed;                            // GUARDED_BY(mutex)
  std::vector<std::pair<std::string, std::string>> invalidated;  // GUARDED_BY(mutex)
};

// A blocking-with-deadlines test client on one connection.
class TestClient {
 public:
  explicit TestClient(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~TestClient() { Close(); }
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends all of `data`; false if the server is gone.
  bool Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // The next line (without '\n'), or nullopt on timeout or EOF.
  std::optional<std::string> ReadLine(Millis timeout = Millis(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      if (!Fill(deadline)) return std::nullopt;
    }
  }

  // True once the server closed the connection (EOF or reset) within `timeout`;
  // data still arriving is discarded.
  bool WaitClosed(Millis timeout = Millis(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (Fill(deadline)) buffer_.clear();
    return eof_;
  }

 private:
  // Reads some bytes; false on EOF, error or deadline.
  bool Fill(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int n = poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      char buf[65536];
      ssize_t r = recv(fd_, buf, sizeof buf, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        eof_ = true;
        return false;
      }
      buffer_.append(buf, static_cast<size_t>(r));
      return true;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string buffer_;
};

// Polls `condition` until it holds or `timeout` passes.
template <typename Condition>
bool WaitFor(Condition condition, Millis timeout = Millis(5000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Millis(2));
  }
  return true;
}

// A server on a temp socket with a real clock, a real store and a log in memory.
class ServerFixture : public ::testing::Test {
 protected:
  ServerFixture()
      : store_(Millis(60000)),
        log_sink_(std::make_shared<spdlog::logger>(
            "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_stream_))),
        log_(log_sink_, clock_, LoggingOptions{}) {
    store_.SetTenants({"org-a", "org-b"});
    options_.path = dir_.path() + "/tokend.sock";
    options_.mode = 0660;
  }

  std::unique_ptr<SocketServer> MakeServer() {
    return std::make_unique<SocketServer>(options_, store_, control_, clock_, log_);
  }

  void StartServer() {
    server_ = MakeServer();
    std::string error = server_->Start();
    ASSERT_EQ(error, "");
  }

  void PublishToken(const std::string& tenant, const std::string& access,
                    Millis left = Millis(3600 * 1000)) {
    auto token = std::make_shared<Token>();
    token->access_token = access;
    token->token_type = "Bearer";
    token->obtained = clock_.Now();
    token->expires = clock_.Now() + left;
    token->expires_at_unix = UnixSeconds(clock_.SystemNow() + left);
    TenantView view;
    view.tenant = tenant;
    view.state = TenantState::kFresh;
    view.token = std::move(token);
    view.next_refresh = clock_.Now() + left / 2;
    store_.Publish(std::move(view));
  }

  std::string Logs() const { return log_stream_.str(); }

  ScopedTempDir dir_;
  RealClock clock_;
  TokenStore store_;
  FakeRefreshControl control_;
  std::ostringstream log_stream_;
  std::shared_ptr<spdlog::logger> log_sink_;
  EventLog log_;
  SocketOptions options_;
  std::unique_ptr<SocketServer> server_;
};

}  // namespace tokend::testing_util
