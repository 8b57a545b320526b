// CurlTokenClient against the real fake token endpoint (tests/fake_token_endpoint.py)
// on loopback: every answer class, TLS, timeouts, cancellation.

#include "tokend/curl_token_client.h"
#include "scoped_temp_dir.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tokend {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

const std::string kSourceDir = TOKEND_SOURCE_DIR;
const std::string kPython = TOKEND_PYTHON;

// A directory under /tmp, removed with everything in it.
// Runs a command with posix_spawn, stdout to /dev/null; returns its pid or -1.
pid_t Spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Blocking HTTP call for the endpoint's control API.
std::optional<json> ControlCall(const std::string& url, const std::string& ca_file,
                                const std::optional<json>& body) {
  CURL* easy = curl_easy_init();
  std::string out;
  std::string payload = body ? body->dump() : "";
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  if (!ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file.c_str());
  if (body) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  curl_easy_setopt(
      easy, CURLOPT_WRITEFUNCTION, +[](char* data, size_t size, size_t count, void* sink) {
        static_cast<std::string*>(sink)->append(data, size * count);
        return size * count;
      });
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &out);
  CURLcode code = curl_easy_perform(easy);
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  if (code != CURLE_OK) return std::nullopt;
  json parsed = json::parse(out, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

// tests/fake_token_endpoint.py in a child process; stopped (SIGTERM, then SIGKILL)
// when this object goes away.
class FakeEndpoint {
 public:
  struct Tls {
    std::string cert, key, ca;
  };

  explicit FakeEndpoint(std::vector<std::string> extra_args, std::optional<Tls> tls = {})
      : tls_(std::move(tls)) {
    std::string port_file = dir_.path() + "/port";
    std::vector<std::string> argv = {kPython, kSourceDir + "/tests/fake_token_endpoint.py",
                                     "--port-file", port_file, "--quiet"};
    if (tls_) argv.insert(argv.end(), {"--tls-cert", tls_->cert, "--tls-key", tls_->key});
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    pid_ = Spawn(argv);
    auto deadline = steady_clock::now() + std::chrono::seconds(10);
    while (pid_ > 0 && steady_clock::now() < deadline) {
      std::ifstream in(port_file);
      if (in >> port_) return;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    port_ = 0;
  }

  ~FakeEndpoint() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    auto deadline = steady_clock::now() + std::chrono::seconds(3);
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
  }

  bool running() const { return port_ > 0; }
  int port() const { return port_; }
  std::string base_url() const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
  }
  std::string token_url() const { return base_url() + "/oauth/token"; }

  json Post(const std::string& path, const json& body) const {
    return ControlCall(base_url() + path, tls_ ? tls_->ca : "", body).value_or(json());
  }
  json Stats() const {
    return ControlCall(base_url() + "/_control/stats", tls_ ? tls_->ca : "", std::nullopt)
        .value_or(json());
  }
  void Script(const std::string& client_id, const json& actions,
              const json& always = nullptr) const {
    Post("/_control/script", {{"client_id", client_id}, {"actions", actions}, {"always", always}});
  }

 private:
  ScopedTempDir dir_;
  std::optional<Tls> tls_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Test CAs made once per run with the same helper the pytest tests use.
const std::string& CaDir() {
  static ScopedTempDir dir;
  static const bool made = [] {
    bool ok = true;
    for (const char* name : {"test", "other"}) {
      std::string command = "'" + kPython + "' '" + kSourceDir +
                            "/tests/integration/fake_endpoint.py' make-ca '" + dir.path() + "' " +
                            name + " > /dev/null";
      ok = ok && std::system(command.c_str()) == 0;
    }
    return ok;
  }();
  if (!made) ADD_FAILURE() << "could not make the test CAs";
  return dir.path();
}

FakeEndpoint::Tls TestTls() {
  const std::string& dir = CaDir();
  return {dir + "/test-server.pem", dir + "/test-server.key", dir + "/test-ca.pem"};
}

std::shared_ptr<const TenantConfig> Tenant(
    const std::string& url, const std::string& client_id, const std::string& secret,
    AuthMethod method = AuthMethod::kBasic, std::vector<std::string> scopes = {},
    std::vector<std::pair<std::string, std::string>> params = {}) {
  auto t = std::make_shared<TenantConfig>();
  t->id = "tenant-" + client_id;
  t->client_id = client_id;
  t->client_secret = secret;
  t->token_url = url;
  t->auth_method = method;
  t->scopes = std::move(scopes);
  t->params = std::move(params);
  return t;
}

// A port on loopback where nothing listens (bound, never listening: connects get RST).
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { close(fd_); }
  int fd() const { return fd_; }
  int port() const { return port_; }

 protected:
  int fd_ = -1;
  int port_ = 0;
};

// A listening socket that never accepts; tells whether anyone connected.
class SilentListener : public ClosedPort {
 public:
  SilentListener() { listen(fd_, 8); }
  bool WasContacted(int wait_ms) const {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, wait_ms) > 0;
  }
};

class CurlTokenClientTest : public ::testing::Test {
 protected:
  // Starts one attempt and polls until its callback runs (bounded).
  std::optional<TokenResult> RunOne(CurlTokenClient& client, TokenRequest request,
                                    milliseconds bound = milliseconds(5000)) {
    std::optional<TokenResult> got;
    client.Start(std::move(request), [&got](TokenResult r) { got = std::move(r); });
    auto deadline = steady_clock::now() + bound;
    while (!got && steady_clock::now() < deadline) client.Poll(milliseconds(50));
    return got;
  }

  std::optional<TokenResult> RunOne(TokenRequest request, milliseconds bound = milliseconds(5000)) {
    CurlTokenClient client(options_, clock_);
    return RunOne(client, std::move(request), bound);
  }

  RealClock clock_;
  HttpOptions options_;
};

TEST_F(CurlTokenClientTest, BasicAuthSuccess) {
  // Given a client whose id and secret need form encoding.
  FakeEndpoint ep({});
  ASSERT_TRUE(ep.running());
  const std::string id = "org:parent é";
  const std::string secret = "s3cr+t/with:colon&amp=%";
  ep.Post("/_control/clients", {{"client_id", id}, {"secret", secret}, {"lifetime", 86400}});

  auto r = RunOne({"t1",
                   Tenant(ep.token_url(), id, secret, AuthMethod::kBasic,
                          {"admin:organization:read", "admin:queue:read"}, {{"audience", "a b"}}),
                   "11111111-2222-4333-8444-555555555555"});

  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->message;
  EXPECT_EQ(r->http_status, 200);
  EXPECT_EQ(r->token_type, "Bearer");
  EXPECT_EQ(r->expires_in_s, 86400);
  EXPECT_EQ(r->request_id, "11111111-2222-4333-8444-555555555555");
  EXPECT_EQ(r->correlation_id.size(), 36u);
  EXPECT_GE(r->latency.count(), 0);
  json stats = ep.Stats()["clients"][id];
  EXPECT_EQ(stats["auth_methods"], json::array({"basic"}));
  EXPECT_EQ(stats["scopes"], json::array({"admin:organization:read admin:queue:read"}));
  EXPECT_EQ(stats["params"], json::parse(R"([{"audience":"a b"}])"));
  EXPECT_EQ(stats["request_ids"], json::array({"11111111-2222-4333-8444-555555555555"}));
  EXPECT_EQ(stats["tokens"], json::array({r->access_token}));
}

TEST_F(CurlTokenClientTest, PostAuthSuccessWithoutRequestId) {
  FakeEndpoint ep({"--client", "c1:s&e=c r+t", "--lifetime", "300"});
  ASSERT_TRUE(ep.running());

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s&e=c r+t", AuthMethod::kPost), ""});

  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok()) << r->message;
  EXPECT_EQ(r->expires_in_s, 300);
  json stats = ep.Stats()["clients"]["c1"];
  EXPECT_EQ(stats["auth_methods"], json::array({"post"}));
  EXPECT_EQ(stats["scopes"], json::array({nullptr}));
  EXPECT_EQ(stats["request_ids"], json::array({nullptr}));
}

TEST_F(CurlTokenClientTest, RequestIdHeaderNameComesFromOptions) {
  FakeEndpoint ep({"--any-client", "--request-id-header", "X-Trace"});
  ASSERT_TRUE(ep.running());
  options_.request_id_header = "X-Trace";

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), "rid-7"});

  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_EQ(ep.Stats()["clients"]["c1"]["request_ids"], json::array({"rid-7"}));
}

TEST_F(CurlTokenClientTest, WrongSecretIsInvalidClient) {
  FakeEndpoint ep({"--client", "c1:right"});
  ASSERT_TRUE(ep.running());

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "wrong-secret-value"), "rid"});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kHttp4xx);
  EXPECT_EQ(r->http_status, 401);
  EXPECT_EQ(r->oauth_error, "invalid_client");
  EXPECT_EQ(r->Class(), AttemptClass::kPermanent);
  EXPECT_EQ(r->message.find("wrong-secret-value"), std::string::npos) << r->message;
  EXPECT_FALSE(r->correlation_id.empty());
}

TEST_F(CurlTokenClientTest, GatewayTimeoutIsRetryable5xx) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"status", 504}}}));

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kHttp5xx);
  EXPECT_EQ(r->http_status, 504);
  EXPECT_EQ(r->Class(), AttemptClass::kRetryable);
  EXPECT_EQ(r->message, "HTTP 504");
}

TEST_F(CurlTokenClientTest, RateLimitedCarriesRetryAfter) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"status", 429}, {"retry_after", "2"}}}));

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kHttp429);
  ASSERT_TRUE(r->retry_after.has_value());
  EXPECT_EQ(*r->retry_after, milliseconds(2000));
}

TEST_F(CurlTokenClientTest, GarbageBodyIsBadResponse) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"status", 200}, {"body", "not json"}},
                               {{"status", 200}, {"json", {{"access_token", "x"}}}}}));
  CurlTokenClient client(options_, clock_);

  auto garbage = RunOne(client, {"t1", Tenant(ep.token_url(), "c1", "s1"), ""});
  auto no_expiry = RunOne(client, {"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(garbage.has_value() && no_expiry.has_value());
  EXPECT_EQ(garbage->kind, AttemptKind::kBadResponse);
  EXPECT_EQ(garbage->Class(), AttemptClass::kRetryable);
  EXPECT_EQ(no_expiry->kind, AttemptKind::kBadResponse);
  EXPECT_EQ(no_expiry->message, "answer has no expires_in");
}

TEST_F(CurlTokenClientTest, OversizedBodyIsBadResponse) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"status", 200}, {"big_body", 100000}}}));
  options_.max_response_bytes = 1000;

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kBadResponse);
  EXPECT_EQ(r->message, "answer larger than 1000 bytes");
  EXPECT_TRUE(r->access_token.empty());
}

TEST_F(CurlTokenClientTest, HangingServerTimesOut) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"hang", 30}}}));
  options_.timeout = milliseconds(500);

  auto started = steady_clock::now();
  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});
  auto took = steady_clock::now() - started;

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kTimeout);
  EXPECT_EQ(r->Class(), AttemptClass::kRetryable);
  EXPECT_EQ(r->message, "no answer within 500 ms");
  EXPECT_GE(took, milliseconds(450));
  EXPECT_LT(took, milliseconds(2000));
}

TEST_F(CurlTokenClientTest, ConnectionRefusedIsNetwork) {
  ClosedPort closed;

  auto r = RunOne(
      {"t1",
       Tenant("http://127.0.0.1:" + std::to_string(closed.port()) + "/oauth/token", "c1", "s1"),
       ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kNetwork);
  EXPECT_EQ(r->http_status, 0);
  EXPECT_EQ(r->message.rfind("connect failed:", 0), 0u) << r->message;
}

TEST_F(CurlTokenClientTest, ResetIsNetwork) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"reset", true}}, {{"reset_mid_body", true}}}));

  auto reset = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});
  auto mid_body = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(reset.has_value() && mid_body.has_value());
  EXPECT_EQ(reset->kind, AttemptKind::kNetwork) << reset->message;
  EXPECT_EQ(reset->Class(), AttemptClass::kRetryable);
  EXPECT_EQ(mid_body->kind, AttemptKind::kNetwork) << mid_body->message;
  EXPECT_EQ(ep.Stats()["total_requests"], 2);
}

TEST_F(CurlTokenClientTest, RedirectIsNotFollowed) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  SilentListener target;
  std::string location = "http://127.0.0.1:" + std::to_string(target.port()) + "/x";
  ep.Script("c1", json::array({{{"status", 302}, {"location", location}}}));

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->http_status, 302);
  EXPECT_EQ(r->kind, AttemptKind::kNetwork);
  EXPECT_NE(r->Class(), AttemptClass::kSuccess);
  EXPECT_EQ(r->message, "redirect not followed (HTTP 302)");
  EXPECT_FALSE(target.WasContacted(100));
}

TEST_F(CurlTokenClientTest, HttpsWithTheTestCaInCaFile) {
  FakeEndpoint ep({"--any-client"}, TestTls());
  ASSERT_TRUE(ep.running());
  options_.ca_file = TestTls().ca;

  auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->ok()) << r->message;
  EXPECT_EQ(ep.token_url().rfind("https://", 0), 0u);
}

TEST_F(CurlTokenClientTest, HttpsWithAnUntrustedCaFailsWithTlsMessage) {
  FakeEndpoint ep({"--any-client"}, TestTls());
  ASSERT_TRUE(ep.running());

  for (std::string ca : {CaDir() + "/other-ca.pem", std::string()}) {
    options_.ca_file = ca;
    auto r = RunOne({"t1", Tenant(ep.token_url(), "c1", "s1"), ""});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->kind, AttemptKind::kNetwork);
    EXPECT_EQ(r->http_status, 0);
    EXPECT_EQ(r->message.rfind("TLS: certificate verify failed", 0), 0u) << r->message;
  }
  EXPECT_EQ(ep.Stats()["total_requests"], 0);
}

TEST_F(CurlTokenClientTest, PlainHttpToATlsServerNeverSucceeds) {
  FakeEndpoint ep({"--any-client"}, TestTls());
  ASSERT_TRUE(ep.running());
  options_.timeout = milliseconds(1000);

  auto r = RunOne(
      {"t1", Tenant("http://127.0.0.1:" + std::to_string(ep.port()) + "/oauth/token", "c1", "s1"),
       ""});

  ASSERT_TRUE(r.has_value());
  EXPECT_NE(r->Class(), AttemptClass::kSuccess);
}

TEST_F(CurlTokenClientTest, CancelAllDuringHangIsPromptAndSilent) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"hang", 30}}, {{"hang", 30}}}));
  CurlTokenClient client(options_, clock_);
  int callbacks = 0;
  client.Start({"t1", Tenant(ep.token_url(), "c1", "s1"), ""}, [&](TokenResult) { ++callbacks; });
  client.Start({"t2", Tenant(ep.token_url(), "c1", "s1"), ""}, [&](TokenResult) { ++callbacks; });
  auto deadline = steady_clock::now() + std::chrono::seconds(3);
  while (ep.Stats()["in_flight"] != 2 && steady_clock::now() < deadline) {
    client.Poll(milliseconds(20));
  }
  ASSERT_EQ(ep.Stats()["in_flight"], 2);
  EXPECT_EQ(client.in_flight(), 2u);

  auto started = steady_clock::now();
  client.CancelAll();
  EXPECT_LT(steady_clock::now() - started, milliseconds(200));

  EXPECT_EQ(client.in_flight(), 0u);
  for (int i = 0; i < 5; ++i) client.Poll(milliseconds(20));
  EXPECT_EQ(callbacks, 0);
}

TEST_F(CurlTokenClientTest, DestructorDuringHangIsPrompt) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"hang", 30}}}));
  auto started = steady_clock::now();
  {
    CurlTokenClient client(options_, clock_);
    client.Start({"t1", Tenant(ep.token_url(), "c1", "s1"), ""},
                 [](TokenResult) { ADD_FAILURE() << "callback after destruction"; });
    for (int i = 0; i < 10; ++i) client.Poll(milliseconds(10));
  }
  EXPECT_LT(steady_clock::now() - started, milliseconds(1000));
}

TEST_F(CurlTokenClientTest, CallbacksMayStartAgain) {
  FakeEndpoint ep({"--any-client"});
  ASSERT_TRUE(ep.running());
  ep.Script("c1", json::array({{{"status", 503}}}));
  CurlTokenClient client(options_, clock_);
  std::vector<TokenResult> results;
  auto tenant = Tenant(ep.token_url(), "c1", "s1");
  client.Start({"t1", tenant, "first"}, [&](TokenResult r) {
    results.push_back(std::move(r));
    client.Start({"t1", tenant, "second"}, [&](TokenResult r2) { results.push_back(r2); });
  });
  auto deadline = steady_clock::now() + std::chrono::seconds(5);
  while (results.size() < 2 && steady_clock::now() < deadline) client.Poll(milliseconds(50));

  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].http_status, 503);
  EXPECT_EQ(results[0].request_id, "first");
  EXPECT_TRUE(results[1].ok()) << results[1].message;
  EXPECT_EQ(results[1].request_id, "second");
}

TEST_F(CurlTokenClientTest, BadTenantFailsOnTheNextPoll) {
  CurlTokenClient client(options_, clock_);
  std::optional<TokenResult> got;
  client.Start({"t1", Tenant("", "c1", "s1"), "rid"}, [&](TokenResult r) { got = r; });
  EXPECT_FALSE(got.has_value());  // never from inside Start()
  EXPECT_EQ(client.in_flight(), 1u);
  client.Poll(milliseconds(1000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->kind, AttemptKind::kNetwork);
  EXPECT_EQ(got->request_id, "rid");

  auto r = RunOne(client, {"t1", Tenant("ftp://127.0.0.1/x", "c1", "s1"), ""});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, AttemptKind::kNetwork);
}

TEST_F(CurlTokenClientTest, WakeupFromAnotherThreadEndsPoll) {
  CurlTokenClient client(options_, clock_);
  std::thread waker([&client] {
    std::this_thread::sleep_for(milliseconds(50));
    client.Wakeup();
  });
  auto started = steady_clock::now();
  client.Poll(milliseconds(5000));
  waker.join();
  EXPECT_LT(steady_clock::now() - started, milliseconds(2000));
}

TEST_F(CurlTokenClientTest, ManyConcurrentAttemptsOnOneThread) {
  FakeEndpoint ep({"--any-client", "--service-time", "0.3"});
  ASSERT_TRUE(ep.running());
  CurlTokenClient client(options_, clock_);
  constexpr int kAttempts = 100;
  std::vector<std::string> tokens;
  for (int i = 0; i < kAttempts; ++i) {
    client.Start({"t", Tenant(ep.token_url(), "c" + std::to_string(i), "s"), ""},
                 [&tokens](TokenResult r) {
                   EXPECT_TRUE(r.ok()) << r.message;
                   tokens.push_back(r.access_token);
                 });
  }
  auto deadline = steady_clock::now() + std::chrono::seconds(10);
  while (tokens.size() < kAttempts && steady_clock::now() < deadline) {
    client.Poll(milliseconds(50));
  }

  ASSERT_EQ(tokens.size(), static_cast<size_t>(kAttempts));
  std::sort(tokens.begin(), tokens.end());
  EXPECT_EQ(std::unique(tokens.begin(), tokens.end()), tokens.end());
  EXPECT_GT(ep.Stats()["max_in_flight"].get<int>(), kAttempts / 2);
}

}  // namespace
}  // namespace tokend
