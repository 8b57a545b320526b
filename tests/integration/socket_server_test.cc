#include "tokend/socket_server.h"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "socket_test_util.h"
#include "tokend/version.h"

namespace tokend {
namespace {

using nlohmann::json;
using testing_util::ServerFixture;
using testing_util::TestClient;
using testing_util::WaitFor;
using Steady = std::chrono::steady_clock;

json Parse(const std::optional<std::string>& line) {
  EXPECT_TRUE(line.has_value());
  return line ? json::parse(*line, nullptr, false) : json();
}

// A listening socket at `path` that never accepts (another daemon, hung).
int ListenRaw(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  return fd;
}

class SocketServerTest : public ServerFixture {};

TEST_F(SocketServerTest, GetIsAnsweredAndStartLogsListening) {
  PublishToken("org-a", "tok-a");
  StartServer();
  EXPECT_NE(Logs().find("\"event\":\"listening\""), std::string::npos) << Logs();
  EXPECT_NE(Logs().find("\"activated\":false"), std::string::npos) << Logs();
  EXPECT_NE(Logs().find(options_.path), std::string::npos) << Logs();

  TestClient client(options_.path);
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("{\"op\":\"get\",\"tenant\":\"org-a\",\"id\":\"a\"}\n"));
  json answer = Parse(client.ReadLine());
  EXPECT_EQ(answer["ok"], true);
  EXPECT_EQ(answer["id"], "a");
  EXPECT_EQ(answer["access_token"], "tok-a");
  EXPECT_EQ(answer["token_type"], "Bearer");
}

TEST_F(SocketServerTest, InvalidJsonThenValidRequestOnSameConnection) {
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{not json\r\n"));
  json bad = Parse(client.ReadLine());
  EXPECT_EQ(bad["error"], "bad_request");
  ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\r\n"));  // CRLF tolerated
  json ping = Parse(client.ReadLine());
  EXPECT_EQ(ping["ok"], true);
  EXPECT_EQ(ping["version"], kVersion);
}

TEST_F(SocketServerTest, PipelinedBurstIsAnsweredInOrder) {
  PublishToken("org-a", "tok-a");
  StartServer();
  TestClient client(options_.path);
  std::string burst;
  const char* kinds[] = {R"("op":"get","tenant":"org-a")", R"("op":"ping")", R"("op":"status")",
                         R"("op":"get","tenant":"nope")", R"("op":"frobnicate")"};
  for (int i = 0; i < 100; ++i) {
    burst += "{\"id\":" + std::to_string(i) + "," + kinds[i % 5] + "}\n";
  }
  ASSERT_TRUE(client.Send(burst));
  for (int i = 0; i < 100; ++i) {
    json answer = Parse(client.ReadLine());
    ASSERT_EQ(answer["id"], i) << answer.dump();
    EXPECT_EQ(answer["ok"], i % 5 < 3) << answer.dump();
  }
  SocketCounters counters = server_->Counters();
  EXPECT_EQ(counters.connections_open, 1);
  uint64_t get_ok = 0, unknown_tenant = 0;
  for (const auto& r : counters.requests) {
    if (r.op == "get" && r.result == "ok") get_ok = r.count;
    if (r.op == "get" && r.result == "unknown_tenant") unknown_tenant = r.count;
  }
  EXPECT_EQ(get_ok, 20u);
  EXPECT_EQ(unknown_tenant, 20u);
}

TEST_F(SocketServerTest, WaitingGetResolvesWhenTokenIsPublishedAndHoldsLaterAnswers) {
  StartServer();
  TestClient client(options_.path);
  TestClient other(options_.path);
  Steady::time_point start = Steady::now();
  ASSERT_TRUE(client.Send(R"({"op":"get","tenant":"org-a","wait_ms":10000,"id":1})"
                          "\n"
                          R"({"op":"ping","id":2})"
                          "\n"));
  // Other connections are not held up.
  ASSERT_TRUE(other.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(other.ReadLine())["ok"], true);
  // Nothing yet on the waiting connection: the ping waits behind the get.
  EXPECT_FALSE(client.ReadLine(Millis(100)).has_value());

  std::thread publisher([this] { PublishToken("org-a", "late-token"); });
  publisher.join();
  json first = Parse(client.ReadLine());
  EXPECT_EQ(first["id"], 1);
  EXPECT_EQ(first["access_token"], "late-token");
  EXPECT_EQ(Parse(client.ReadLine())["id"], 2);
  EXPECT_LT(Steady::now() - start, std::chrono::seconds(5));
}

TEST_F(SocketServerTest, WaitingGetTimesOutUnavailable) {
  StartServer();
  TestClient client(options_.path);
  Steady::time_point start = Steady::now();
  ASSERT_TRUE(client.Send(R"({"op":"get","tenant":"org-a","wait_ms":200})"
                          "\n"));
  json answer = Parse(client.ReadLine(Millis(5000)));
  auto elapsed = Steady::now() - start;
  EXPECT_EQ(answer["error"], "unavailable");
  EXPECT_EQ(answer["state"], "pending");
  EXPECT_GE(elapsed, Millis(200));
  EXPECT_LT(elapsed, Millis(3000));
}

TEST_F(SocketServerTest, TooLargeLineGetsAnErrorAndIsClosed) {
  options_.max_request_bytes = 100;
  StartServer();
  {
    TestClient client(options_.path);
    ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\n" + std::string(300, 'x')));  // no newline yet
    EXPECT_EQ(Parse(client.ReadLine())["ok"], true);
    json answer = Parse(client.ReadLine());
    EXPECT_EQ(answer["error"], "too_large");
    EXPECT_TRUE(client.WaitClosed());
  }
  {
    TestClient client(options_.path);
    std::string line = "{\"op\":\"ping\",\"pad\":\"" + std::string(100, 'p') + "\"}\n";
    ASSERT_TRUE(client.Send(line));
    EXPECT_EQ(Parse(client.ReadLine())["error"], "too_large");
    EXPECT_TRUE(client.WaitClosed());
  }
  {
    // Exactly the limit is fine.
    TestClient client(options_.path);
    std::string body = "{\"op\":\"ping\",\"pad\":\"\"}";
    body.insert(body.size() - 2, std::string(100 - body.size(), 'p'));
    ASSERT_EQ(body.size(), 100u);
    ASSERT_TRUE(client.Send(body + "\r\n"));
    EXPECT_EQ(Parse(client.ReadLine())["ok"], true);
  }
}

TEST_F(SocketServerTest, OneConnectionTooManyIsToldBusy) {
  options_.max_connections = 2;
  StartServer();
  TestClient a(options_.path), b(options_.path);
  for (TestClient* c : {&a, &b}) {
    ASSERT_TRUE(c->Send("{\"op\":\"ping\"}\n"));
    ASSERT_TRUE(c->ReadLine().has_value());
  }
  TestClient third(options_.path);
  json answer = Parse(third.ReadLine());
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["error"], "busy");
  EXPECT_TRUE(third.WaitClosed());
  EXPECT_TRUE(WaitFor([&] { return server_->Counters().connections_busy == 1u; }));

  // A freed slot is usable again.
  a.Close();
  ASSERT_TRUE(WaitFor([&] { return server_->Counters().connections_open == 1; }));
  TestClient fourth(options_.path);
  ASSERT_TRUE(fourth.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(fourth.ReadLine())["ok"], true);
}

TEST_F(SocketServerTest, IdleConnectionIsClosed) {
  options_.idle_timeout = Millis(200);
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\n"));
  ASSERT_TRUE(client.ReadLine().has_value());
  Steady::time_point answered = Steady::now();
  EXPECT_TRUE(client.WaitClosed(Millis(3000)));
  EXPECT_GE(Steady::now() - answered, Millis(150));
  EXPECT_TRUE(WaitFor([&] { return server_->Counters().connections_open == 0; }));
}

TEST_F(SocketServerTest, WaitingGetIsNotIdle) {
  options_.idle_timeout = Millis(100);
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send(R"({"op":"get","tenant":"org-a","wait_ms":400})"
                          "\n"));
  EXPECT_EQ(Parse(client.ReadLine())["error"], "unavailable");
}

TEST_F(SocketServerTest, ClientVanishingMidAnswerDoesNotHurtOthers) {
  for (int i = 0; i < 50; ++i) PublishToken(i % 2 ? "org-a" : "org-b", std::string(2000, 't'));
  StartServer();
  {
    TestClient vanishing(options_.path);
    std::string burst;
    for (int i = 0; i < 2000; ++i) burst += "{\"op\":\"get\",\"tenant\":\"org-a\"}\n";
    ASSERT_TRUE(vanishing.Send(burst));
    // Gone without reading: the server meets EPIPE/ECONNRESET, never SIGPIPE.
  }
  TestClient other(options_.path);
  ASSERT_TRUE(other.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(other.ReadLine())["ok"], true);
  EXPECT_TRUE(WaitFor([&] { return server_->Counters().connections_open == 1; }));
}

TEST_F(SocketServerTest, SlowReaderGetsEveryAnswerInOrder) {
  PublishToken("org-a", std::string(1000, 'k'));
  StartServer();
  TestClient client(options_.path);
  constexpr int kRequests = 3000;  // ~3 MB of answers: far more than the socket buffers
  std::thread writer([&] {
    std::string burst;
    for (int i = 0; i < kRequests; ++i) {
      burst += "{\"op\":\"get\",\"tenant\":\"org-a\",\"id\":" + std::to_string(i) + "}\n";
    }
    client.Send(burst);
  });
  int next = 0;
  for (; next < kRequests; ++next) {
    auto line = client.ReadLine();
    if (!line) break;
    json answer = json::parse(*line, nullptr, false);
    if (answer["id"] != next) break;
  }
  writer.join();
  EXPECT_EQ(next, kRequests);
}

TEST_F(SocketServerTest, StopJoinsQuicklyAndRemovesSocketFile) {
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send(R"({"op":"get","tenant":"org-a","wait_ms":30000})"
                          "\n"));
  ASSERT_TRUE(WaitFor([&] { return server_->Counters().connections_open == 1; }));
  Steady::time_point start = Steady::now();
  server_->Stop();
  EXPECT_LT(Steady::now() - start, Millis(1000));
  EXPECT_FALSE(std::filesystem::exists(options_.path));
  EXPECT_TRUE(client.WaitClosed());
  server_->Stop();  // idempotent
}

TEST_F(SocketServerTest, StaleSocketFileIsReplaced) {
  ::close(ListenRaw(options_.path));  // leaves a socket file nobody answers on
  ASSERT_TRUE(std::filesystem::exists(options_.path));
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(client.ReadLine())["ok"], true);
}

TEST_F(SocketServerTest, LiveSocketMakesStartFail) {
  StartServer();
  auto second = MakeServer();
  std::string error = second->Start();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find("another process is listening"), std::string::npos) << error;
  second.reset();
  // The first server's socket is untouched.
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(client.ReadLine())["ok"], true);
}

TEST_F(SocketServerTest, RegularFileAtPathIsNotRemoved) {
  { std::ofstream(options_.path) << "data"; }
  auto server = MakeServer();
  std::string error = server->Start();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
  EXPECT_TRUE(std::filesystem::exists(options_.path));
}

TEST_F(SocketServerTest, SocketFileHasConfiguredMode) {
  for (unsigned mode : {0600u, 0660u, 0666u}) {
    options_.mode = mode;
    StartServer();
    struct stat st {};
    ASSERT_EQ(lstat(options_.path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, mode);
    server_.reset();
    EXPECT_FALSE(std::filesystem::exists(options_.path));
  }
}

TEST_F(SocketServerTest, BadPathsFailClearly) {
  options_.path = "/tmp/" + std::string(200, 'x') + ".sock";
  std::string error = MakeServer()->Start();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find("too long"), std::string::npos) << error;

  options_.path = dir_.path() + "/missing-dir/tokend.sock";
  error = MakeServer()->Start();
  EXPECT_NE(error, "");
  EXPECT_NE(error.find("cannot bind"), std::string::npos) << error;
}

TEST_F(SocketServerTest, InheritedSocketIsServedAndItsFileKept) {
  int fd = ListenRaw(options_.path);
  server_ = MakeServer();
  std::string error = server_->Start(fd);
  ASSERT_EQ(error, "");
  EXPECT_NE(Logs().find("\"activated\":true"), std::string::npos) << Logs();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{\"op\":\"ping\"}\n"));
  EXPECT_EQ(Parse(client.ReadLine())["ok"], true);
  server_->Stop();
  EXPECT_TRUE(std::filesystem::exists(options_.path));
}

TEST_F(SocketServerTest, HalfClosedClientStillGetsItsAnswers) {
  StartServer();
  TestClient client(options_.path);
  ASSERT_TRUE(client.Send("{\"op\":\"ping\",\"id\":1}\n{\"op\":\"ping\",\"id\":2}"));
  shutdown(client.fd(), SHUT_WR);  // the last request has no newline
  EXPECT_EQ(Parse(client.ReadLine())["id"], 1);
  EXPECT_EQ(Parse(client.ReadLine())["id"], 2);
  EXPECT_TRUE(client.WaitClosed());
}

// --- watch ---

TEST_F(SocketServerTest, WatcherGetsCurrentTokensAtOnceThenEachNewOne) {
  PublishToken("org-a", "a1");
  StartServer();
  TestClient watcher(options_.path);
  ASSERT_TRUE(watcher.Send("{\"op\":\"watch\",\"id\":1}\n"));
  json answer = Parse(watcher.ReadLine());
  EXPECT_EQ(answer, (json{{"id", 1}, {"ok", true}, {"watching", {"org-a", "org-b"}}}));
  json first = Parse(watcher.ReadLine());
  EXPECT_EQ(first["event"], "token");
  EXPECT_EQ(first["tenant"], "org-a");
  EXPECT_EQ(first["access_token"], "a1");
  EXPECT_EQ(first["token_type"], "Bearer");
  EXPECT_GT(first["expires_in"], 3500);
  EXPECT_FALSE(watcher.ReadLine(Millis(100)).has_value());  // org-b has none yet

  Steady::time_point published = Steady::now();
  PublishToken("org-b", "b1");
  json next = Parse(watcher.ReadLine());
  EXPECT_LT(Steady::now() - published, Millis(100));
  EXPECT_EQ(next["tenant"], "org-b");
  EXPECT_EQ(next["access_token"], "b1");

  // A republished view with the same token pushes nothing.
  std::optional<TenantView> view = store_.Find("org-b");
  view->state = TenantState::kStale;
  store_.Publish(*view);
  PublishToken("org-a", "a2");
  EXPECT_EQ(Parse(watcher.ReadLine())["access_token"], "a2");
}

TEST_F(SocketServerTest, WatcherOfNamedTenantsOnlyHearsOfThose) {
  StartServer();
  TestClient watcher(options_.path);
  ASSERT_TRUE(watcher.Send("{\"op\":\"watch\",\"tenants\":[\"org-b\"]}\n"));
  EXPECT_EQ(Parse(watcher.ReadLine())["watching"], json::array({"org-b"}));
  PublishToken("org-a", "a1");
  PublishToken("org-b", "b1");
  json event = Parse(watcher.ReadLine());
  EXPECT_EQ(event["tenant"], "org-b");
  EXPECT_FALSE(watcher.ReadLine(Millis(100)).has_value());
}

TEST_F(SocketServerTest, WatcherHearsWhenATenantLosesItsToken) {
  PublishToken("org-a", "a1");
  PublishToken("org-b", "b1", Millis(60300));  // servable for 300 ms (margin 60 s)
  StartServer();
  TestClient watcher(options_.path);
  ASSERT_TRUE(watcher.Send("{\"op\":\"watch\"}\n"));
  Parse(watcher.ReadLine());
  std::set<std::string> tokens;
  for (int i = 0; i < 2; ++i) tokens.insert(Parse(watcher.ReadLine())["access_token"]);
  EXPECT_EQ(tokens, (std::set<std::string>{"a1", "b1"}));

  // Expiry, timed by the server (the store is not told).
  Steady::time_point start = Steady::now();
  json expired = Parse(watcher.ReadLine(Millis(3000)));
  EXPECT_EQ(expired, (json{{"event", "expired"}, {"tenant", "org-b"}}));
  EXPECT_GE(Steady::now() - start, Millis(150));

  // Invalidation.
  ASSERT_TRUE(store_.Invalidate("org-a", "a1", clock_.Now(), Millis(10000)));
  EXPECT_EQ(Parse(watcher.ReadLine()), (json{{"event", "expired"}, {"tenant", "org-a"}}));

  // Removal by a reload, and a new token after re-adding.
  PublishToken("org-a", "a2");
  EXPECT_EQ(Parse(watcher.ReadLine())["access_token"], "a2");
  store_.SetTenants({"org-b"});
  EXPECT_EQ(Parse(watcher.ReadLine()), (json{{"event", "expired"}, {"tenant", "org-a"}}));
  EXPECT_FALSE(watcher.ReadLine(Millis(100)).has_value());
}

TEST_F(SocketServerTest, WatchingConnectionAnswersPingOnlyAndIsNeverIdle) {
  options_.idle_timeout = Millis(200);
  StartServer();
  TestClient watcher(options_.path);
  ASSERT_TRUE(watcher.Send("{\"op\":\"watch\"}\n"));
  Parse(watcher.ReadLine());
  std::this_thread::sleep_for(Millis(500));
  ASSERT_TRUE(
      watcher.Send("{\"op\":\"get\",\"tenant\":\"org-a\",\"id\":1}\n"
                   "{\"op\":\"ping\",\"id\":2}\n"));
  json refused = Parse(watcher.ReadLine());
  EXPECT_EQ(refused["id"], 1);
  EXPECT_EQ(refused["error"], "bad_request");
  EXPECT_EQ(Parse(watcher.ReadLine())["id"], 2);
  // Half-closed: it still hears.
  shutdown(watcher.fd(), SHUT_WR);
  std::this_thread::sleep_for(Millis(300));
  PublishToken("org-a", "a1");
  EXPECT_EQ(Parse(watcher.ReadLine())["access_token"], "a1");
}

TEST_F(SocketServerTest, StuckWatcherIsDroppedWithoutHoldingUpOthers) {
  StartServer();
  TestClient stuck(options_.path);  // never reads
  ASSERT_TRUE(stuck.Send("{\"op\":\"watch\"}\n"));
  TestClient reader(options_.path);
  ASSERT_TRUE(reader.Send("{\"op\":\"watch\"}\n"));
  Parse(reader.ReadLine());
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& r : server_->Counters().requests) {
      if (r.op == "watch" && r.result == "ok" && r.count == 2) return true;
    }
    return false;
  }));

  // ~3 MiB of events: far past the bound plus what the socket buffers hold.
  constexpr int kTokens = 48;
  const std::string pad(64 * 1024, 'x');
  for (int i = 0; i < kTokens; ++i) {
    PublishToken(i % 2 ? "org-a" : "org-b", std::to_string(i) + pad);
    json event = Parse(reader.ReadLine());
    ASSERT_EQ(event["access_token"], std::to_string(i) + pad) << i;
  }
  EXPECT_TRUE(WaitFor([&] { return Logs().find("\"watcher_dropped\"") != std::string::npos; }));
  EXPECT_NE(Logs().find("\"reason\":\"backlog\""), std::string::npos) << Logs().substr(0, 2000);
  EXPECT_TRUE(stuck.WaitClosed());
  EXPECT_EQ(server_->Counters().connections_open, 1);
  PublishToken("org-a", "after");
  EXPECT_EQ(Parse(reader.ReadLine())["access_token"], "after");
}

TEST_F(SocketServerTest, SocketIsNeverWiderThanItsModeEvenWithUmaskZero) {
  // The file must not exist for a moment with a wider mode: watch its
  // directory and stat it as soon as it appears.
  options_.mode = 0600;
  const mode_t old_mask = umask(0);
  int inotify = inotify_init1(IN_CLOEXEC);
  ASSERT_GE(inotify, 0);
  ASSERT_GE(inotify_add_watch(inotify, dir_.path().c_str(), IN_CREATE), 0);
  std::atomic<unsigned> seen_mode{0};
  std::thread observer([&] {
    // The server binds under a temporary name and renames it into place: stat
    // whatever file was created, by the name in the event (or, if it was
    // renamed already, the final path).
    alignas(inotify_event) char buf[4096];
    if (read(inotify, buf, sizeof buf) > 0) {
      const auto* event = reinterpret_cast<const inotify_event*>(buf);
      struct stat st {};
      std::string created = dir_.path() + "/" + (event->len > 0 ? event->name : "");
      if ((event->len > 0 && lstat(created.c_str(), &st) == 0) ||
          lstat(options_.path.c_str(), &st) == 0) {
        seen_mode = st.st_mode & 07777;
      }
    }
  });
  StartServer();
  observer.join();
  ::close(inotify);
  EXPECT_EQ(umask(old_mask), 0u);  // Start() put the process umask back
  EXPECT_EQ(seen_mode.load(), 0600u);
  struct stat st {};
  ASSERT_EQ(lstat(options_.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

}  // namespace
}  // namespace tokend
