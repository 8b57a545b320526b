#include "tokend/protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "simulated_clock.h"
#include "tokend/version.h"

namespace tokend {
namespace {

using nlohmann::json;

class FakeRefreshControl final : public RefreshControl {
 public:
  LimitSnapshot Limit() const override { return limit; }
  void RequestRefresh(const std::string& tenant) override { requested.push_back(tenant); }
  void Invalidate(const std::string& tenant, const std::string& token) override {
    invalidated.emplace_back(tenant, token);
  }
  ReloadOutcome Reload() override { return reload; }
  std::optional<ReloadOutcome> LastReload() const override { return last_reload; }
  std::string MetricsText() override { return metrics; }

  ReloadOutcome reload{true, 2, {}};
  std::optional<ReloadOutcome> last_reload;
  std::string metrics = "tokend_build_info{version=\"test\"} 1\n";
  std::vector<std::pair<std::string, std::string>> invalidated;

  LimitSnapshot limit{4, 3, 1, 2};
  std::vector<std::string> requested;
};

// Peers of the fixture's policy.
constexpr Peer kClient{1000, 1000, 42};
constexpr Peer kAdmin{1001, 1001, 43};
constexpr Peer kStranger{2000, 2000, 44};
constexpr Peer kRoot{0, 0, 45};

AccessEntry Uid(uint32_t uid) {
  return {AccessEntry::Kind::kUid, uid, "uid:" + std::to_string(uid)};
}

class NoAccounts final : public AccountDirectory {
 public:
  std::optional<uid_t> UserId(const std::string&) const override { return std::nullopt; }
  std::optional<gid_t> GroupId(const std::string&) const override { return std::nullopt; }
  std::vector<gid_t> GroupsOfUid(uid_t) const override { return {}; }
};

class ProtocolTest : public testing::Test {
 protected:
  ProtocolTest() : store_(Millis(60000)), dispatcher_(store_, control_, clock_, clock_.Now()) {
    store_.SetTenants({"org-b", "org-a"});
    Config config;
    config.access.clients = {Uid(1000)};
    config.access.admins = {Uid(1001)};
    dispatcher_.SetAccessPolicy(std::make_shared<const AccessPolicy>(config, 999, accounts_));
  }

  // Publishes a token for `tenant` that expires `left` from now.
  void PublishToken(const std::string& tenant, Millis left, std::string access = "tok-123") {
    auto token = std::make_shared<Token>();
    token->access_token = std::move(access);
    token->token_type = "bearer";
    token->obtained = clock_.Now();
    token->expires = clock_.Now() + left;
    token->expires_at_unix = UnixSeconds(clock_.SystemNow() + left);
    TenantView view;
    view.tenant = tenant;
    view.state = TenantState::kFresh;
    view.token = std::move(token);
    view.last_success_unix = UnixSeconds(clock_.SystemNow());
    view.next_refresh = clock_.Now() + left / 2;
    store_.Publish(std::move(view));
  }

  // Given a request line, then its answer as JSON (and the outcome).
  json Answer(std::string_view line, Outcome* outcome_out = nullptr, const Peer& peer = kClient) {
    std::string out;
    Outcome outcome = dispatcher_.Handle(line, peer, out);
    EXPECT_FALSE(outcome.pending) << line;
    EXPECT_EQ(out.find('\n'), std::string::npos);
    if (outcome_out != nullptr) *outcome_out = outcome;
    json answer = json::parse(out, nullptr, false);
    EXPECT_TRUE(answer.is_object()) << out;
    return answer;
  }

  void ExpectError(std::string_view line, const char* code, std::string_view message_part) {
    json answer = Answer(line);
    EXPECT_EQ(answer["ok"], false) << line;
    EXPECT_EQ(answer["error"], code) << line;
    ASSERT_TRUE(answer["message"].is_string()) << line;
    EXPECT_NE(answer["message"].get<std::string>().find(message_part), std::string::npos)
        << line << " -> " << answer.dump();
  }

  SimulatedClock clock_;
  TokenStore store_;
  FakeRefreshControl control_;
  NoAccounts accounts_;
  Dispatcher dispatcher_;
};

TEST_F(ProtocolTest, GetAnswersServableToken) {
  PublishToken("org-a", Millis(3600 * 1000), "abc.def-ghi");
  clock_.Advance(Millis(1500));
  json answer = Answer(R"({"op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer, (json{{"ok", true},
                          {"tenant", "org-a"},
                          {"access_token", "abc.def-ghi"},
                          {"token_type", "Bearer"},
                          {"expires_at", 1800000000 + 3600},
                          {"expires_in", 3598}}));
}

TEST_F(ProtocolTest, GetEscapesTokenAndIdIsCopied) {
  std::string nasty =
      "a\"b\\c\nd\x01"
      "e/\xc3\xa9";
  PublishToken("org-a", Millis(3600 * 1000), nasty);
  json answer = Answer(R"({"id":"req \"7\"","op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer["access_token"], nasty);
  EXPECT_EQ(answer["id"], "req \"7\"");
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a","id":17})")["id"], 17);
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a","id":-2.5})")["id"], -2.5);
  EXPECT_EQ(Answer(R"({"op":"ping","id":"p"})")["id"], "p");
  // Errors carry the id too.
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"nope","id":9})")["id"], 9);
  EXPECT_EQ(Answer(R"({"op":"nope","id":"x"})")["id"], "x");
  EXPECT_FALSE(Answer(R"({"op":"ping"})").contains("id"));
}

TEST_F(ProtocolTest, GetUnknownTenant) {
  ExpectError(R"({"op":"get","tenant":"org-z"})", "unknown_tenant", "org-z");
}

TEST_F(ProtocolTest, GetWithoutTokenIsUnavailableWithState) {
  json answer = Answer(R"({"op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer["error"], "unavailable");
  EXPECT_EQ(answer["state"], "pending");
  EXPECT_FALSE(answer.contains("retry_after_ms"));  // unknown
  EXPECT_FALSE(answer.contains("last_error"));
}

TEST_F(ProtocolTest, UnavailableCarriesRetryAfterAndLastError) {
  TenantView view;
  view.tenant = "org-a";
  view.state = TenantState::kExpired;
  view.consecutive_failures = 3;
  view.next_refresh = clock_.Now() + Millis(1500);
  view.last_error = LastError{AttemptKind::kHttp5xx, 504, "gateway timeout", 1799999990};
  store_.Publish(view);
  json answer = Answer(R"({"op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["error"], "unavailable");
  EXPECT_EQ(answer["state"], "expired");
  EXPECT_EQ(answer["retry_after_ms"], 1500);
  EXPECT_EQ(answer["last_error"], (json{{"kind", "http_5xx"},
                                        {"http_status", 504},
                                        {"message", "gateway timeout"},
                                        {"at", 1799999990}}));

  // A network error has no HTTP status; an overdue attempt is 0 ms away.
  view.last_error = LastError{AttemptKind::kNetwork, 0, "connection refused", 1799999991};
  store_.Publish(view);
  clock_.Advance(Millis(2000));
  answer = Answer(R"({"op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer["retry_after_ms"], 0);
  EXPECT_TRUE(answer["last_error"]["http_status"].is_null());
}

TEST_F(ProtocolTest, NeverServesWithinExpiryMargin) {
  PublishToken("org-a", Millis(61000));
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})")["ok"], true);
  clock_.Advance(Millis(1000));  // exactly the margin left
  json answer = Answer(R"({"op":"get","tenant":"org-a"})");
  EXPECT_EQ(answer["error"], "unavailable");
  EXPECT_EQ(answer.dump().find("tok-123"), std::string::npos);
  clock_.Advance(Millis(120000));  // past expiry
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})")["error"], "unavailable");
}

TEST_F(ProtocolTest, WrongFieldTypesAreBadRequestsNamingTheField) {
  ExpectError(R"({"op":7})", "bad_request", "op");
  ExpectError(R"({"op":null})", "bad_request", "op");
  ExpectError(R"({"tenant":"org-a"})", "bad_request", "op");
  ExpectError(R"({"op":"get"})", "bad_request", "tenant");
  ExpectError(R"({"op":"get","tenant":5})", "bad_request", "tenant");
  ExpectError(R"({"op":"get","tenant":["org-a"]})", "bad_request", "tenant");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":"100"})", "bad_request", "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":-1})", "bad_request", "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":30001})", "bad_request", "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":1.5})", "bad_request", "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":true})", "bad_request", "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","wait_ms":18446744073709551615})", "bad_request",
              "wait_ms");
  ExpectError(R"({"op":"get","tenant":"org-a","tenants":"org-a"})", "bad_request", "tenants");
  ExpectError(R"({"op":"get","tenant":"org-a","access_token":1})", "bad_request", "access_token");
  for (const char* id : {"true", "null", "[1]", R"({"a":1})"}) {
    std::string line = std::string(R"({"op":"ping","id":)") + id + "}";
    ExpectError(line, "bad_request", "id");
    EXPECT_FALSE(Answer(line).contains("id")) << line;
  }
  // Bounds are inclusive.
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a","wait_ms":0})")["error"], "unavailable");
}

TEST_F(ProtocolTest, NonObjectAndInvalidJson) {
  for (const char* line : {"[1,2]", "\"get\"", "3", "null", "true"}) {
    ExpectError(line, "bad_request", "object");
  }
  for (const char* line :
       {"", "{", "{\"op\":\"ping\"", "op=ping", "{\"op\":\"ping\"}}", "{\"op\":\"\xff\"}"}) {
    ExpectError(line, "bad_request", "invalid JSON");
  }
  Outcome outcome;
  Answer("{", &outcome);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "invalid");
  EXPECT_EQ(outcome.error, ErrorCode::kBadRequest);
}

TEST_F(ProtocolTest, UnknownOp) {
  Outcome outcome;
  json answer = Answer(R"({"op":"frobnicate"})", &outcome);
  EXPECT_EQ(answer["error"], "unknown_op");
  EXPECT_NE(answer["message"].get<std::string>().find("frobnicate"), std::string::npos);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "unknown");
  for (const auto& op : Dispatcher::Ops()) EXPECT_NE(op.handler, nullptr) << op.name;
}

TEST_F(ProtocolTest, RegistryHasEveryOpOnce) {
  std::vector<std::string> names;
  for (const auto& op : Dispatcher::Ops()) names.emplace_back(op.name);
  EXPECT_EQ(names, (std::vector<std::string>{"get", "status", "ping", "watch", "invalidate",
                                             "refresh", "reload", "metrics"}));
  EXPECT_TRUE(Dispatcher::FindOp("refresh")->admin_only);
  EXPECT_TRUE(Dispatcher::FindOp("reload")->admin_only);
  EXPECT_FALSE(Dispatcher::FindOp("get")->admin_only);
  EXPECT_EQ(Dispatcher::NumOpLabels(), 10);
  EXPECT_EQ(Dispatcher::OpSlot(Dispatcher::kOpInvalid), 8);
  EXPECT_EQ(Dispatcher::OpSlot(Dispatcher::kOpUnknown), 9);
}

TEST_F(ProtocolTest, StatusHasSpecShapeAndNoToken) {
  PublishToken("org-b", Millis(7200 * 1000), "SECRET-TOKEN");
  TenantView failing;
  failing.tenant = "org-a";
  failing.state = TenantState::kFailed;
  failing.consecutive_failures = 2;
  failing.last_error = LastError{AttemptKind::kHttp4xx, 401, "invalid_client", 1799999000};
  failing.next_refresh = clock_.Now() + Millis(599500);
  store_.Publish(failing);
  clock_.Advance(Millis(10500));

  json answer = Answer(R"({"op":"status","id":1})");
  EXPECT_EQ(answer.dump().find("SECRET-TOKEN"), std::string::npos);
  json expected = {
      {"id", 1},
      {"ok", true},
      {"version", kVersion},
      {"uptime_s", 10},
      {"limit", {{"configured", 4}, {"effective", 3}, {"in_flight", 1}, {"waiting", 2}}},
      {"tenants",
       {{{"tenant", "org-a"},
         {"state", "failed"},
         {"expires_in", nullptr},
         {"next_refresh_in", 589},
         {"consecutive_failures", 2},
         {"last_success", nullptr},
         {"last_error",
          {{"kind", "http_4xx"},
           {"http_status", 401},
           {"message", "invalid_client"},
           {"at", 1799999000}}}},
        {{"tenant", "org-b"},
         {"state", "fresh"},
         {"expires_in", 7189},
         {"next_refresh_in", 3590},
         {"consecutive_failures", 0},
         {"last_success", 1800000000},
         {"last_error", nullptr}}}}};
  EXPECT_EQ(answer, expected) << answer.dump(2);
}

TEST_F(ProtocolTest, StatusShowsAFailedReload) {
  EXPECT_FALSE(Answer(R"({"op":"status"})").contains("last_reload"));
  control_.last_reload = ReloadOutcome{false, 3, {"tokend.yaml:4:3: refresh.at: bad"}, 1800000100};
  json answer = Answer(R"({"op":"status"})");
  EXPECT_EQ(answer["last_reload"],
            (json{{"ok", false}, {"at", 1800000100}, {"errors", {"tokend.yaml:4:3: refresh.at: bad"}}}));
}

TEST_F(ProtocolTest, Ping) {
  EXPECT_EQ(Answer(R"({"op":"ping"})"), (json{{"ok", true}, {"version", kVersion}}));
}

TEST_F(ProtocolTest, GetWithWaitParksThenResolves) {
  std::string out;
  Outcome outcome =
      dispatcher_.Handle(R"({"op":"get","tenant":"org-a","wait_ms":500,"id":3})", kClient, out);
  ASSERT_TRUE(outcome.pending);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(outcome.pending->tenant, "org-a");
  EXPECT_EQ(outcome.pending->id_json, "3");
  EXPECT_EQ(outcome.pending->deadline, clock_.Now() + Millis(500));

  PendingGet pending = std::move(*outcome.pending);
  clock_.Advance(Millis(100));
  outcome = dispatcher_.Resume(pending, out);
  ASSERT_TRUE(outcome.pending);  // still nothing to serve
  EXPECT_TRUE(out.empty());

  pending = std::move(*outcome.pending);
  PublishToken("org-a", Millis(3600 * 1000));
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_FALSE(outcome.pending);
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "get");
  json answer = json::parse(out);
  EXPECT_EQ(answer["id"], 3);
  EXPECT_EQ(answer["access_token"], "tok-123");
}

TEST_F(ProtocolTest, GetWithWaitTimesOutUnavailable) {
  std::string out;
  Outcome outcome =
      dispatcher_.Handle(R"({"op":"get","tenant":"org-a","wait_ms":500})", kClient, out);
  ASSERT_TRUE(outcome.pending);
  PendingGet pending = std::move(*outcome.pending);
  clock_.Advance(Millis(500));
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_FALSE(outcome.pending);
  EXPECT_EQ(outcome.error, ErrorCode::kUnavailable);
  EXPECT_EQ(json::parse(out)["state"], "pending");
}

TEST_F(ProtocolTest, ParkedGetForForgottenTenantIsUnknownTenant) {
  std::string out;
  Outcome outcome =
      dispatcher_.Handle(R"({"op":"get","tenant":"org-a","wait_ms":500})", kClient, out);
  ASSERT_TRUE(outcome.pending);
  PendingGet pending = std::move(*outcome.pending);
  store_.SetTenants({"org-b"});
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_EQ(outcome.error, ErrorCode::kUnknownTenant);
}

TEST_F(ProtocolTest, GetWithWaitAnswersAtOnceWhenTokenIsThere) {
  PublishToken("org-a", Millis(3600 * 1000));
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a","wait_ms":30000})")["ok"], true);
  ExpectError(R"({"op":"get","tenant":"org-z","wait_ms":100})", "unknown_tenant", "org-z");
}

TEST_F(ProtocolTest, ErrorLineHasNoId) {
  json answer = json::parse(Dispatcher::ErrorLine(ErrorCode::kBusy, "too many connections"));
  EXPECT_EQ(answer, (json{{"ok", false}, {"error", "busy"}, {"message", "too many connections"}}));
}

// --- Access control ---

TEST_F(ProtocolTest, StrangerIsForbiddenEverythingButPing) {
  PublishToken("org-a", Millis(3600 * 1000), "SECRET-TOKEN");
  for (const char* line :
       {R"({"op":"get","tenant":"org-a"})", R"({"op":"status"})", R"({"op":"watch"})",
        R"({"op":"invalidate","tenant":"org-a","access_token":"x"})", R"({"op":"metrics"})",
        R"({"op":"refresh","tenant":"org-a"})", R"({"op":"reload"})", R"({"op":"frobnicate"})"}) {
    Outcome outcome;
    json answer = Answer(line, &outcome, kStranger);
    EXPECT_EQ(answer["error"], "forbidden") << line;
    EXPECT_NE(answer["message"].get<std::string>().find("uid 2000"), std::string::npos) << line;
    EXPECT_EQ(answer.dump().find("SECRET-TOKEN"), std::string::npos);
    ASSERT_TRUE(outcome.denied) << line;
    EXPECT_EQ(outcome.denied->tenant, "");
  }
  EXPECT_TRUE(control_.requested.empty());
  Outcome outcome;
  EXPECT_EQ(Answer(R"({"op":"ping","id":1})", &outcome, kStranger)["ok"], true);
  EXPECT_FALSE(outcome.denied);
  // Unknown credentials are a stranger too.
  EXPECT_EQ(Answer(R"({"op":"status"})", nullptr, Peer{})["error"], "forbidden");
}

TEST_F(ProtocolTest, AdminOnlyOpsNeedAnAdmin) {
  PublishToken("org-a", Millis(3600 * 1000));
  Outcome outcome;
  json answer = Answer(R"({"op":"refresh","tenant":"org-a"})", &outcome, kClient);
  EXPECT_EQ(answer["error"], "forbidden");
  EXPECT_NE(answer["message"].get<std::string>().find("admins"), std::string::npos);
  EXPECT_TRUE(outcome.denied);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "refresh");
  EXPECT_EQ(Answer(R"({"op":"reload"})", nullptr, kClient)["error"], "forbidden");
  EXPECT_TRUE(control_.requested.empty());

  // An admin is a client too; root and tokend's own uid are both.
  for (const Peer& peer : {kAdmin, kRoot, Peer{999, 5, 6}}) {
    EXPECT_EQ(Answer(R"({"op":"reload"})", nullptr, peer)["ok"], true);
    EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})", nullptr, peer)["ok"], true);
  }
}

TEST_F(ProtocolTest, TenantClientsRestrictReading) {
  Config config;
  config.access.clients = {Uid(1000), Uid(1002)};
  config.tenants.resize(2);
  config.tenants[0].id = "org-a";
  config.tenants[0].client_entries = {Uid(1002)};
  config.tenants[1].id = "org-b";
  dispatcher_.SetAccessPolicy(std::make_shared<const AccessPolicy>(config, 999, accounts_));
  PublishToken("org-a", Millis(3600 * 1000), "tok-a");
  PublishToken("org-b", Millis(3600 * 1000), "tok-b");

  Outcome outcome;
  json answer = Answer(R"({"op":"get","tenant":"org-a"})", &outcome, kClient);
  EXPECT_EQ(answer["error"], "forbidden");
  ASSERT_TRUE(outcome.denied);
  EXPECT_EQ(outcome.denied->tenant, "org-a");
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-b"})", nullptr, kClient)["access_token"], "tok-b");
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})", nullptr, Peer{1002, 1, 1})["access_token"],
            "tok-a");
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})", nullptr, kRoot)["access_token"], "tok-a");
  // Unknown tenants stay unknown_tenant, not forbidden.
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-z"})", nullptr, kClient)["error"],
            "unknown_tenant");
  EXPECT_EQ(Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"tok-a"})", nullptr,
                   kClient)["error"],
            "forbidden");
  EXPECT_TRUE(control_.invalidated.empty());
  EXPECT_EQ(Answer(R"({"op":"watch","tenants":["org-a"]})", nullptr, kClient)["error"],
            "forbidden");
  // Watching "everything" means everything the peer may read.
  EXPECT_EQ(Answer(R"({"op":"watch"})", nullptr, kClient)["watching"], json::array({"org-b"}));
  // A uid in a tenant's clients but not in access.clients reads nothing.
  config.access.clients = {Uid(1000)};
  dispatcher_.SetAccessPolicy(std::make_shared<const AccessPolicy>(config, 999, accounts_));
  EXPECT_EQ(Answer(R"({"op":"get","tenant":"org-a"})", nullptr, Peer{1002, 1, 1})["error"],
            "forbidden");
}

TEST_F(ProtocolTest, SetAccessPolicyBumpsTheGeneration) {
  const uint64_t before = dispatcher_.AccessGeneration();
  PeerAccess access = dispatcher_.Evaluate(kClient);
  EXPECT_EQ(access.generation, before);
  EXPECT_TRUE(access.client);
  dispatcher_.SetAccessPolicy(std::make_shared<const AccessPolicy>(999));
  EXPECT_GT(dispatcher_.AccessGeneration(), before);
  EXPECT_FALSE(dispatcher_.Evaluate(kClient).client);
}

// --- watch ---

TEST_F(ProtocolTest, WatchAnswersWatchingAndAsksTheServerToPush) {
  Outcome outcome;
  json answer = Answer(R"({"op":"watch","id":"w"})", &outcome);
  EXPECT_EQ(answer, (json{{"id", "w"}, {"ok", true}, {"watching", {"org-a", "org-b"}}}));
  ASSERT_TRUE(outcome.watch);
  EXPECT_TRUE(outcome.watch->all);

  answer = Answer(R"({"op":"watch","tenants":["org-b","org-b"]})", &outcome);
  EXPECT_EQ(answer, (json{{"ok", true}, {"watching", {"org-b"}}}));
  ASSERT_TRUE(outcome.watch);
  EXPECT_FALSE(outcome.watch->all);
  EXPECT_EQ(outcome.watch->tenants, std::vector<std::string>{"org-b"});

  answer = Answer(R"({"op":"watch","tenants":["org-b","org-z"]})", &outcome);
  EXPECT_EQ(answer["error"], "unknown_tenant");
  EXPECT_FALSE(outcome.watch);
  ExpectError(R"({"op":"watch","tenants":[]})", "bad_request", "tenants");
  ExpectError(R"({"op":"watch","tenants":"org-a"})", "bad_request", "tenants");
}

TEST_F(ProtocolTest, WatchingSessionOnlyAnswersPing) {
  PublishToken("org-a", Millis(3600 * 1000));
  Session session{kClient, dispatcher_.Evaluate(kClient), true};
  std::string out;
  Outcome outcome = dispatcher_.Handle(R"({"op":"get","tenant":"org-a"})", session, out);
  EXPECT_EQ(outcome.error, ErrorCode::kBadRequest);
  EXPECT_NE(out.find("watches"), std::string::npos);
  out.clear();
  outcome = dispatcher_.Handle(R"({"op":"watch"})", session, out);
  EXPECT_EQ(outcome.error, ErrorCode::kBadRequest);
  EXPECT_FALSE(outcome.watch);
  out.clear();
  outcome = dispatcher_.Handle(R"({"op":"ping"})", session, out);
  EXPECT_FALSE(outcome.error);
}

TEST_F(ProtocolTest, WatchEventLines) {
  Token token;
  token.access_token = "t\"1";
  token.token_type = "bearer";
  token.expires = clock_.Now() + Millis(120500);
  token.expires_at_unix = 1800000120;
  std::string out;
  Dispatcher::AppendTokenEvent(out, "org-a", token, clock_.Now());
  EXPECT_EQ(json::parse(out), (json{{"event", "token"},
                                    {"tenant", "org-a"},
                                    {"access_token", "t\"1"},
                                    {"token_type", "Bearer"},
                                    {"expires_at", 1800000120},
                                    {"expires_in", 120}}));
  out.clear();
  Dispatcher::AppendExpiredEvent(out, "org-a");
  EXPECT_EQ(out, R"({"event":"expired","tenant":"org-a"})");
}

// --- invalidate ---

TEST_F(ProtocolTest, InvalidateCurrentTokenDropsItAndStartsOneRefresh) {
  PublishToken("org-a", Millis(3600 * 1000), "bad-token");
  json answer = Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"bad-token","id":1})");
  EXPECT_EQ(answer["error"], "unavailable");  // dropped, nothing new yet, no wait
  EXPECT_EQ(answer["id"], 1);
  ASSERT_EQ(control_.invalidated.size(), 1u);
  EXPECT_EQ(control_.invalidated[0], (std::pair<std::string, std::string>{"org-a", "bad-token"}));
  EXPECT_FALSE(store_.Servable("org-a", clock_.Now()));

  // More reports of the same token start nothing more.
  Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"bad-token"})");
  EXPECT_EQ(control_.invalidated.size(), 1u);

  // A report of a token that is no longer current changes nothing and gets the current one.
  PublishToken("org-a", Millis(3600 * 1000), "new-token");
  answer = Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"bad-token"})");
  EXPECT_EQ(answer["access_token"], "new-token");
  EXPECT_EQ(control_.invalidated.size(), 1u);
}

TEST_F(ProtocolTest, InvalidateAtMostOncePerTenantPerTenSeconds) {
  PublishToken("org-a", Millis(3600 * 1000), "one");
  Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"one"})");
  PublishToken("org-a", Millis(3600 * 1000), "two");
  clock_.Advance(Millis(9000));
  json answer = Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"two"})");
  EXPECT_EQ(answer["access_token"], "two");  // kept: too soon
  EXPECT_EQ(control_.invalidated.size(), 1u);
  clock_.Advance(Millis(1000));
  Answer(R"({"op":"invalidate","tenant":"org-a","access_token":"two"})");
  EXPECT_EQ(control_.invalidated.size(), 2u);
}

TEST_F(ProtocolTest, InvalidateWithWaitParksForTheNewToken) {
  PublishToken("org-a", Millis(3600 * 1000), "bad-token");
  std::string out;
  Outcome outcome = dispatcher_.Handle(
      R"({"op":"invalidate","tenant":"org-a","access_token":"bad-token","wait_ms":2000})", kClient,
      out);
  ASSERT_TRUE(outcome.pending);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.pending->op), "invalidate");
  PendingGet pending = std::move(*outcome.pending);
  PublishToken("org-a", Millis(3600 * 1000), "fresh-token");
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_FALSE(outcome.pending);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "invalidate");
  EXPECT_EQ(json::parse(out)["access_token"], "fresh-token");
  ExpectError(R"({"op":"invalidate","tenant":"org-a"})", "bad_request", "access_token");
}

// --- refresh ---

TEST_F(ProtocolTest, RefreshAnswersWithTheTokenObtainedAfterIt) {
  PublishToken("org-a", Millis(3600 * 1000), "old-token");
  std::string out;
  Outcome outcome =
      dispatcher_.Handle(R"({"op":"refresh","tenant":"org-a","wait_ms":5000,"id":2})", kAdmin, out);
  EXPECT_EQ(control_.requested, std::vector<std::string>{"org-a"});
  ASSERT_TRUE(outcome.pending);  // the old token does not answer it
  EXPECT_TRUE(out.empty());
  PendingGet pending = std::move(*outcome.pending);

  // A republished view with the same token is no answer either.
  std::optional<TenantView> view = store_.Find("org-a");
  view->state = TenantState::kStale;
  store_.Publish(*view);
  outcome = dispatcher_.Resume(pending, out);
  ASSERT_TRUE(outcome.pending);
  pending = std::move(*outcome.pending);

  PublishToken("org-a", Millis(3600 * 1000), "new-token");
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_FALSE(outcome.pending);
  EXPECT_EQ(Dispatcher::OpLabel(outcome.op), "refresh");
  json answer = json::parse(out);
  EXPECT_EQ(answer["access_token"], "new-token");
  EXPECT_EQ(answer["id"], 2);
}

TEST_F(ProtocolTest, RefreshThatGetsNothingNewAnswersWhatIsServableAtTheDeadline) {
  PublishToken("org-a", Millis(3600 * 1000), "old-token");
  std::string out;
  Outcome outcome =
      dispatcher_.Handle(R"({"op":"refresh","tenant":"org-a","wait_ms":1000})", kAdmin, out);
  ASSERT_TRUE(outcome.pending);
  PendingGet pending = std::move(*outcome.pending);
  clock_.Advance(Millis(1000));
  outcome = dispatcher_.Resume(pending, out);
  EXPECT_FALSE(outcome.pending);
  EXPECT_EQ(json::parse(out)["access_token"], "old-token");

  // Without wait_ms: at once, with what there is.
  EXPECT_EQ(Answer(R"({"op":"refresh","tenant":"org-b"})", nullptr, kAdmin)["error"],
            "unavailable");
  EXPECT_EQ(control_.requested, (std::vector<std::string>{"org-a", "org-b"}));
  EXPECT_EQ(Answer(R"({"op":"refresh","tenant":"org-z"})", nullptr, kAdmin)["error"],
            "unknown_tenant");
  EXPECT_EQ(control_.requested.size(), 2u);
}

// --- reload, metrics ---

TEST_F(ProtocolTest, ReloadAnswersTenantsOrTheErrors) {
  control_.reload = ReloadOutcome{true, 3, {}};
  EXPECT_EQ(Answer(R"({"op":"reload","id":5})", nullptr, kAdmin),
            (json{{"id", 5}, {"ok", true}, {"tenants", 3}}));
  control_.reload = ReloadOutcome{false, 2, {"tokend.yaml:3:5: refresh.at: bad", "second"}};
  Outcome outcome;
  json answer = Answer(R"({"op":"reload"})", &outcome, kAdmin);
  EXPECT_EQ(answer["ok"], false);
  EXPECT_EQ(answer["error"], "bad_request");
  EXPECT_EQ(answer["errors"], json::array({"tokend.yaml:3:5: refresh.at: bad", "second"}));
  EXPECT_TRUE(answer["message"].is_string());
  EXPECT_EQ(outcome.error, ErrorCode::kBadRequest);
}

TEST_F(ProtocolTest, MetricsCarriesTheText) {
  EXPECT_EQ(Answer(R"({"op":"metrics","id":"m"})"),
            (json{{"id", "m"}, {"ok", true}, {"text", control_.metrics}}));
}


// Plain `get` lines are read without a JSON document; their answers (bytes,
// outcome, pending state) must be exactly those of the general path, which the
// same request takes when its op is spelled with an escape ("g\u0065t").
TEST_F(ProtocolTest, PlainGetIsAnsweredExactlyAsTheGeneralPath) {
  PublishToken("org-a", Millis(3600 * 1000), std::string(600, 'x'));
  const std::vector<std::string> lines = {
      R"({"op":"get","tenant":"org-a"})",
      R"({"tenant":"org-a","op":"get"})",
      R"( { "op" : "get" , "tenant" : "org-a" , "id" : "r-1" } )",
      "{\t\"op\":\"get\",\r\"tenant\":\"org-a\",\"id\":7}",
      R"({"op":"get","tenant":"org-a","id":-42,"wait_ms":0})",
      R"({"op":"get","tenant":"org-a","id":0,"wait_ms":30000})",
      R"({"op":"get","tenant":"org-a","id":123456789012345})",
      R"({"op":"get","tenant":"org-b"})",            // pending: unavailable
      R"({"op":"get","tenant":"org-b","wait_ms":5})",  // pending: waits
      R"({"op":"get","tenant":"org-z","id":"x"})",   // unknown tenant
      R"({"op":"get","tenant":""})",
      R"({"op":"get","tenant":"org-a","id":""})",
      // Not plain (the general path decides): duplicates, other keys, other
      // number forms, escapes, out-of-range or wrongly typed fields.
      R"({"op":"get","tenant":"org-b","tenant":"org-a"})",
      R"({"op":"get","tenant":"org-a","extra":1})",
      R"({"op":"get","tenant":"org-a","id":-0})",
      R"({"op":"get","tenant":"org-a","id":1.0})",
      R"({"op":"get","tenant":"org-a","id":01})",
      R"({"op":"get","tenant":"org-a","id":1e3})",
      R"({"op":"get","tenant":"org-a","wait_ms":30001})",
      R"({"op":"get","tenant":"org-a","wait_ms":-1})",
      R"({"op":"get","tenant":"org-a","wait_ms":"5"})",
      R"({"op":"get","tenant":"org\u002da"})",
      R"({"op":"get","tenant":"org-a"} x)",
      R"({"op":"get","tenant":"org-a",})",
      R"({"op":"get","tenant":7})",
      R"({"op":"get"})",
  };
  for (const std::string& line : lines) {
    std::string general = line;
    size_t at = general.find("\"get\"");
    ASSERT_NE(at, std::string::npos) << line;
    general.replace(at, 5, R"("g\u0065t")");
    std::string fast_out, general_out;
    Outcome fast = dispatcher_.Handle(line, Peer{1000, 1000, 42}, fast_out);
    Outcome slow = dispatcher_.Handle(general, Peer{1000, 1000, 42}, general_out);
    EXPECT_EQ(fast_out, general_out) << line;
    EXPECT_EQ(fast.op, slow.op) << line;
    EXPECT_EQ(fast.error, slow.error) << line;
    ASSERT_EQ(fast.pending.has_value(), slow.pending.has_value()) << line;
    if (fast.pending) {
      EXPECT_EQ(fast.pending->tenant, slow.pending->tenant) << line;
      EXPECT_EQ(fast.pending->id_json, slow.pending->id_json) << line;
      EXPECT_EQ(fast.pending->deadline, slow.pending->deadline) << line;
    }
  }
}

TEST(AppendJsonStringTest, EscapesWhatJsonRequires) {
  std::string out;
  const std::string raw("q\"b\\n\n\t\x1f\x7f\0", 10);  // ends with a NUL
  AppendJsonString(out, raw);
  EXPECT_EQ(out, "\"q\\\"b\\\\n\\n\\t\\u001f\x7f\\u0000\"");
  EXPECT_EQ(json::parse(out), raw);
}

TEST(AppendJsonStringTest, FindsAnEscapeAtAnyOffsetOfALongString) {
  // Long strings are scanned eight bytes at a time; every offset and every
  // kind of byte that needs an escape must still be found.
  for (char special : {'"', '\\', '\n', '\x01', '\x1f', '\0'}) {
    for (size_t at = 0; at < 41; ++at) {
      std::string raw(41, 'a');
      raw[at] = special;
      if (40 - at / 2 != at) raw[40 - at / 2] = '\x7f';  // not escaped
      std::string out;
      AppendJsonString(out, raw);
      ASSERT_EQ(json::parse(out), raw) << at;
      ASSERT_EQ(out, json(raw).dump()) << at;
    }
  }
  std::string utf8 = "t\xc3\xa9st-token-\xe2\x82\xac-0123456789";
  std::string out;
  AppendJsonString(out, utf8);
  EXPECT_EQ(out, "\"" + utf8 + "\"");
}

}  // namespace
}  // namespace tokend
