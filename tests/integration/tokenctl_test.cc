#include "tokenctl.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "socket_test_util.h"
#include "tokend/version.h"

namespace tokend {
namespace {

using nlohmann::json;
using testing_util::ServerFixture;

struct CtlRun {
  int code = -1;
  std::string out;
  std::string err;
};

class TokenctlTest : public ServerFixture {
 protected:
  void SetUp() override { unsetenv("TOKEND_SOCKET"); }
  void TearDown() override { unsetenv("TOKEND_SOCKET"); }

  // Runs tokenctl with `args`, pointed at the test socket unless told otherwise.
  CtlRun Tokenctl(std::vector<std::string> args, bool with_socket = true,
                  const std::string& stdin_text = "") {
    if (with_socket) args.insert(args.begin(), {"--socket", options_.path});
    args.insert(args.begin(), "tokenctl");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::istringstream in(stdin_text);
    std::ostringstream out, err;
    CtlRun run;
    run.code = RunTokenctl(static_cast<int>(args.size()), argv.data(), in, out, err);
    run.out = out.str();
    run.err = err.str();
    return run;
  }
};

TEST_F(TokenctlTest, GetPrintsBareToken) {
  PublishToken("org-a", "tok-abc");
  StartServer();
  CtlRun run = Tokenctl({"get", "org-a"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "tok-abc\n");
  EXPECT_EQ(run.err, "");
}

TEST_F(TokenctlTest, GetJsonPrintsTheWholeAnswer) {
  PublishToken("org-a", "tok-abc");
  StartServer();
  CtlRun run = Tokenctl({"get", "org-a", "--json"});
  EXPECT_EQ(run.code, 0) << run.err;
  json answer = json::parse(run.out);
  EXPECT_EQ(answer["access_token"], "tok-abc");
  EXPECT_EQ(answer["tenant"], "org-a");
  EXPECT_EQ(answer["token_type"], "Bearer");
}

TEST_F(TokenctlTest, GetWaitsForAToken) {
  StartServer();
  std::thread publisher([this] {
    // Publish once the daemon holds the waiting get.
    testing_util::WaitFor([&] { return server_->Counters().connections_open == 1; });
    PublishToken("org-a", "waited-for");
  });
  CtlRun run = Tokenctl({"--timeout", "2s", "get", "org-a", "--wait", "10s"});
  publisher.join();
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "waited-for\n");
}

TEST_F(TokenctlTest, SocketFromEnvironment) {
  PublishToken("org-a", "tok-env");
  StartServer();
  setenv("TOKEND_SOCKET", options_.path.c_str(), 1);
  CtlRun run = Tokenctl({"get", "org-a"}, /*with_socket=*/false);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "tok-env\n");
}

TEST_F(TokenctlTest, DaemonErrorExitsOne) {
  StartServer();
  CtlRun run = Tokenctl({"get", "org-zz"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err.rfind("error: unknown_tenant: ", 0), 0u) << run.err;

  run = Tokenctl({"get", "org-a"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err.rfind("error: unavailable: ", 0), 0u) << run.err;
}

TEST_F(TokenctlTest, BadUsageExitsTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{{},
                                                                {"frobnicate"},
                                                                {"watch", "--bogus"},
                                                                {"invalidate"},
                                                                {"invalidate", "org-a"},
                                                                {"refresh"},
                                                                {"refresh", "a", "--wait", "1m"},
                                                                {"reload", "x"},
                                                                {"metrics", "x"},
                                                                {"get"},
                                                                {"get", "a", "b"},
                                                                {"get", "a", "--wait", "forever"},
                                                                {"get", "a", "--wait", "31s"},
                                                                {"get", "a", "--bogus"},
                                                                {"status", "extra"},
                                                                {"ping", "x"},
                                                                {"--timeout", "soon", "ping"},
                                                                {"--timeout"},
                                                                {"--bogus", "ping"}}) {
    CtlRun run = Tokenctl(args, /*with_socket=*/false);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(run.code, 2) << joined;
    EXPECT_NE(run.err.find("usage: tokenctl"), std::string::npos) << joined;
    EXPECT_EQ(run.out, "") << joined;
  }
}

TEST_F(TokenctlTest, HelpAndVersion) {
  CtlRun run = Tokenctl({"--help"}, false);
  EXPECT_EQ(run.code, 0);
  EXPECT_NE(run.out.find("usage: tokenctl"), std::string::npos);
  run = Tokenctl({"--version"}, false);
  EXPECT_EQ(run.code, 0);
  EXPECT_EQ(run.out, std::string("tokenctl ") + kVersion + "\n");
}

TEST_F(TokenctlTest, UnreachableDaemonExitsThree) {
  CtlRun run = Tokenctl({"ping"});  // nothing listens
  EXPECT_EQ(run.code, 3);
  EXPECT_NE(run.err.find(options_.path), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("No such file or directory"), std::string::npos) << run.err;
}

TEST_F(TokenctlTest, SilentDaemonTimesOutWithThree) {
  // Listens (the kernel accepts into the backlog) but never answers.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, options_.path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  auto start = std::chrono::steady_clock::now();
  CtlRun run = Tokenctl({"--timeout", "200ms", "ping"});
  auto elapsed = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(run.code, 3);
  EXPECT_NE(run.err.find("no answer"), std::string::npos) << run.err;
  EXPECT_GE(elapsed, Millis(200));
  EXPECT_LT(elapsed, Millis(3000));
}

TEST_F(TokenctlTest, Ping) {
  StartServer();
  CtlRun run = Tokenctl({"ping"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, std::string("ok tokend ") + kVersion + "\n");
}

TEST_F(TokenctlTest, StatusTable) {
  PublishToken("org-a", "SECRET-TOKEN", Millis(3600 * 1000));
  TenantView failing;
  failing.tenant = "org-b";
  failing.state = TenantState::kFailed;
  failing.consecutive_failures = 3;
  failing.last_error = LastError{AttemptKind::kHttp4xx, 401, "invalid_client", 1800000000};
  store_.Publish(failing);
  StartServer();

  CtlRun run = Tokenctl({"status"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out.find("SECRET-TOKEN"), std::string::npos);
  std::istringstream lines(run.out);
  std::string header, row_a, row_b, limit;
  std::getline(lines, header);
  std::getline(lines, row_a);
  std::getline(lines, row_b);
  std::getline(lines, limit);
  EXPECT_EQ(header.rfind("TENANT", 0), 0u) << run.out;
  for (const char* column : {"STATE", "EXPIRES_IN", "NEXT_REFRESH", "FAILURES", "LAST_ERROR"}) {
    EXPECT_NE(header.find(column), std::string::npos) << column;
  }
  EXPECT_EQ(row_a.rfind("org-a", 0), 0u) << run.out;
  EXPECT_NE(row_a.find("fresh"), std::string::npos) << row_a;
  EXPECT_NE(row_a.find("59m"), std::string::npos) << row_a;  // 59m59s or so, human form
  EXPECT_EQ(row_b.rfind("org-b", 0), 0u) << run.out;
  EXPECT_NE(row_b.find("failed"), std::string::npos) << row_b;
  EXPECT_NE(row_b.find(" 3 "), std::string::npos) << row_b;
  EXPECT_NE(row_b.find("http_4xx 401: invalid_client"), std::string::npos) << row_b;
  EXPECT_EQ(limit, "concurrency: limit 3 (configured 4), in flight 1, waiting 2");

  run = Tokenctl({"status", "--json"});
  EXPECT_EQ(run.code, 0);
  json answer = json::parse(run.out);
  EXPECT_EQ(answer["tenants"].size(), 2u);
  EXPECT_EQ(run.out.find("SECRET-TOKEN"), std::string::npos);
}

// An ostream buffer that another thread may read while tokenctl writes to it
// (recursive: the base xsputn may call overflow).
class SharedOutput : public std::stringbuf {
 public:
  std::string Text() {
    std::lock_guard lock(mutex_);
    return str();
  }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::xsputn(s, n);
  }
  int_type overflow(int_type c) override {
    std::lock_guard lock(mutex_);
    return std::stringbuf::overflow(c);
  }

 private:
  std::recursive_mutex mutex_;
};

TEST_F(TokenctlTest, WatchPrintsEachEventUntilTheDaemonGoesAway) {
  PublishToken("org-a", "first");
  StartServer();
  SharedOutput out_buf;
  std::ostream out(&out_buf);
  std::ostringstream err;
  int code = -1;
  std::thread watcher([&] {
    std::string socket = options_.path;
    std::vector<std::string> args = {"tokenctl", "--socket", socket, "watch", "org-a"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    std::istringstream in;
    code = RunTokenctl(static_cast<int>(args.size()), argv.data(), in, out, err);
  });
  ASSERT_TRUE(
      testing_util::WaitFor([&] { return out_buf.Text().find("first") != std::string::npos; }));
  PublishToken("org-a", "second");
  ASSERT_TRUE(
      testing_util::WaitFor([&] { return out_buf.Text().find("second") != std::string::npos; }));
  server_->Stop();
  watcher.join();
  EXPECT_EQ(code, 3);
  EXPECT_NE(err.str().find("closed"), std::string::npos) << err.str();
  std::istringstream lines(out_buf.Text());
  std::string line;
  std::vector<json> events;
  while (std::getline(lines, line)) events.push_back(json::parse(line));
  ASSERT_EQ(events.size(), 2u) << out_buf.Text();
  EXPECT_EQ(events[0]["event"], "token");
  EXPECT_EQ(events[0]["access_token"], "first");
  EXPECT_EQ(events[1]["access_token"], "second");
  EXPECT_EQ(events[1]["tenant"], "org-a");
}

TEST_F(TokenctlTest, WatchOfUnknownTenantExitsOne) {
  StartServer();
  CtlRun run = Tokenctl({"watch", "org-a", "org-zz"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err.rfind("error: unknown_tenant: ", 0), 0u) << run.err;
}

TEST_F(TokenctlTest, InvalidateSendsTheTokenFromStdinAndPrintsTheNewOne) {
  PublishToken("org-a", "rejected");
  control_.on_invalidate = [this](const std::string& tenant) { PublishToken(tenant, "renewed"); };
  StartServer();
  CtlRun run = Tokenctl({"invalidate", "org-a"}, true, "  rejected \n");
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "renewed\n");
  std::lock_guard lock(control_.mutex);
  ASSERT_EQ(control_.invalidated.size(), 1u);
  EXPECT_EQ(control_.invalidated[0].second, "rejected");
}

TEST_F(TokenctlTest, RefreshPrintsTheTokenObtainedAfterIt) {
  PublishToken("org-a", "before");
  StartServer();
  std::thread refresher([this] {
    // The answer waits for the token obtained after the request.
    testing_util::WaitFor([&] {
      std::lock_guard lock(control_.mutex);
      return !control_.refreshed.empty();
    });
    std::this_thread::sleep_for(Millis(50));
    PublishToken("org-a", "after");
  });
  CtlRun run = Tokenctl({"refresh", "org-a", "--json"});
  refresher.join();
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["access_token"], "after");
}

TEST_F(TokenctlTest, ReloadAndMetrics) {
  StartServer();
  CtlRun run = Tokenctl({"reload"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "reloaded: 2 tenants\n");
  run = Tokenctl({"metrics"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "tokend_build_info{version=\"test\"} 1\n");
}

TEST_F(TokenctlTest, FailedReloadPrintsEveryErrorAndExitsOne) {
  control_.reload = ReloadOutcome{false, 2, {"t.yaml:1:1: one", "t.yaml:2:1: two"}};
  StartServer();
  CtlRun run = Tokenctl({"reload"});
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err.rfind("error: bad_request: ", 0), 0u) << run.err;
  EXPECT_NE(run.err.find("  t.yaml:1:1: one\n  t.yaml:2:1: two\n"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace tokend
