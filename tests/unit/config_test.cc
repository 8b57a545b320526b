#include "tokend/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "tokend/accounts.h"
#include "scoped_temp_dir.h"

namespace tokend {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

// Environment variables as a map, so tests touch no real environment.
class FakeSecretSource final : public SecretSource {
 public:
  std::optional<std::string> GetEnv(const std::string& name) const override {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  }
  std::map<std::string, std::string> vars;
};

// A user and group database in memory.
class FakeAccounts final : public AccountDirectory {
 public:
  std::optional<uid_t> UserId(const std::string& name) const override {
    const auto it = users.find(name);
    if (it == users.end()) return std::nullopt;
    return it->second;
  }
  std::optional<gid_t> GroupId(const std::string& name) const override {
    const auto it = groups.find(name);
    if (it == groups.end()) return std::nullopt;
    return it->second;
  }
  std::vector<gid_t> GroupsOfUid(uid_t) const override { return {}; }

  std::map<std::string, uid_t> users = {{"svc", 1001}, {"app", 1002}};
  std::map<std::string, gid_t> groups = {{"ops", 2001}, {"apps", 2002}};
};

// Every error as "PATH:LINE:COL: message", for readable assertions.
std::vector<std::string> Errors(const ConfigLoadResult& result) {
  std::vector<std::string> out;
  for (const ConfigError& error : result.errors) out.push_back(error.ToString());
  return out;
}

// A valid tenants section to append after the section under test.
constexpr const char* kOneTenant = R"(tenants:
  - id: org-a
    client_id: cid
    client_secret_env: SECRET_A
    region: mypurecloud.com
)";

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() { env_.vars["SECRET_A"] = "env-secret-a"; }

  ConfigLoadResult Load(const std::string& yaml) {
    return LoadConfigString(yaml, "tokend.yaml", env_, accounts_);
  }

  // Loads `yaml`, expects exactly the errors given, in order.
  void ExpectErrors(const std::string& yaml, const std::vector<std::string>& expected) {
    const ConfigLoadResult result = Load(yaml);
    EXPECT_FALSE(result.ok());
    EXPECT_EQ(Errors(result), expected) << yaml;
  }

  FakeSecretSource env_;
  FakeAccounts accounts_;
  ScopedTempDir dir_;
};

TEST_F(ConfigTest, FullValidConfigWithEveryKey) {
  const std::string secret = dir_.Write("parent.secret", "s3cret-parent\n", 0400);
  dir_.Write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  env_.vars["CHILD_SECRET"] = "s3cret-child";
  env_.vars["CREDENTIALS_DIRECTORY"] = dir_.path();
  dir_.Write("org-child-2", "s3cret-cred\r\n", 0400);
  const std::string path = dir_.Write("tokend.yaml", R"(socket:
  path: /run/tokend/t.sock
  mode: "0640"
  max_connections: 64
  max_request_bytes: 4096
  idle_timeout: 90s
refresh:
  max_concurrent: 8
  adaptive: false
  at: 0.6
  jitter: 0.05
  expiry_margin: 0s
  startup_spread: 250ms
backoff:
  initial: 500ms
  max: 1m
  multiplier: 1.5
  jitter: decorrelated
  permanent_error_retry: 15m
http:
  connect_timeout: 2s
  timeout: 10s
  ca_file: ca.pem
  request_id_header: ""
  correlation_header: X-Correlation
  max_response_bytes: 1024
defaults:
  region: mypurecloud.ie
  auth_method: post
  scopes: [a:read]
  params: {audience: api}
  clients: ["group:apps"]
tenants:
  - id: org-parent
    client_id: parent-client
    client_secret_file: )" + secret + R"(
    region: mypurecloud.de
    auth_method: basic
    scopes: [admin:organization:read, admin:queue:read]
    params:
      audience: https://api.example
      resource: 42
    clients: ["user:svc", "uid:1000", "gid:20", "group:ops"]
  - id: org-child-1
    client_id: child-1
    client_secret_env: CHILD_SECRET
    token_url: http://127.0.0.1:8080/oauth/token
  - id: org-child-2
    client_id: child-2
    client_secret_credential: org-child-2
logging:
  format: text
  level: debug
)");
  const ConfigLoadResult result = LoadConfigFile(path, env_, accounts_);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_THAT(result.warnings, IsEmpty());
  const Config& c = result.config;
  EXPECT_EQ(c.source_path, path);
  EXPECT_EQ(c.socket.path, "/run/tokend/t.sock");
  EXPECT_EQ(c.socket.mode, 0640u);
  EXPECT_EQ(c.socket.max_connections, 64);
  EXPECT_EQ(c.socket.max_request_bytes, 4096u);
  EXPECT_EQ(c.socket.idle_timeout, Millis(90000));
  EXPECT_EQ(c.refresh.max_concurrent, 8);
  EXPECT_FALSE(c.refresh.adaptive);
  EXPECT_DOUBLE_EQ(c.refresh.at, 0.6);
  EXPECT_DOUBLE_EQ(c.refresh.jitter, 0.05);
  EXPECT_EQ(c.refresh.expiry_margin, Millis(0));
  EXPECT_EQ(c.refresh.startup_spread, Millis(250));
  EXPECT_EQ(c.backoff.initial, Millis(500));
  EXPECT_EQ(c.backoff.max, Millis(60000));
  EXPECT_DOUBLE_EQ(c.backoff.multiplier, 1.5);
  EXPECT_EQ(c.backoff.jitter, JitterKind::kDecorrelated);
  EXPECT_EQ(c.backoff.permanent_error_retry, Millis(15 * 60000));
  EXPECT_EQ(c.http.connect_timeout, Millis(2000));
  EXPECT_EQ(c.http.timeout, Millis(10000));
  EXPECT_EQ(c.http.ca_file, dir_.path() + "/ca.pem");  // relative to the config's directory
  EXPECT_EQ(c.http.request_id_header, "");
  EXPECT_EQ(c.http.correlation_header, "X-Correlation");
  EXPECT_EQ(c.http.max_response_bytes, 1024u);
  EXPECT_EQ(c.logging.format, LogFormat::kText);
  EXPECT_EQ(c.logging.level, LogLevel::kDebug);

  ASSERT_EQ(c.tenants.size(), 3u);
  const TenantConfig& parent = c.tenants[0];
  EXPECT_EQ(parent.id, "org-parent");
  EXPECT_EQ(parent.client_id, "parent-client");
  EXPECT_EQ(parent.client_secret, "s3cret-parent");
  EXPECT_EQ(parent.token_url, "https://login.mypurecloud.de/oauth/token");
  EXPECT_EQ(parent.auth_method, AuthMethod::kBasic);
  EXPECT_THAT(parent.scopes, ElementsAre("admin:organization:read", "admin:queue:read"));
  EXPECT_THAT(parent.params,
              ElementsAre(Pair("audience", "https://api.example"), Pair("resource", "42")));
  EXPECT_THAT(parent.clients, ElementsAre("user:svc", "uid:1000", "gid:20", "group:ops"));
  using Kind = AccessEntry::Kind;
  EXPECT_THAT(parent.client_entries, ElementsAre(AccessEntry{Kind::kUid, 1001, "user:svc"},
                                                 AccessEntry{Kind::kUid, 1000, "uid:1000"},
                                                 AccessEntry{Kind::kGid, 20, "gid:20"},
                                                 AccessEntry{Kind::kGid, 2001, "group:ops"}));

  const TenantConfig& child1 = c.tenants[1];
  EXPECT_EQ(child1.client_secret, "s3cret-child");
  EXPECT_EQ(child1.token_url, "http://127.0.0.1:8080/oauth/token");
  EXPECT_EQ(child1.auth_method, AuthMethod::kPost);  // from defaults
  EXPECT_THAT(child1.scopes, ElementsAre("a:read"));
  EXPECT_THAT(child1.params, ElementsAre(Pair("audience", "api")));
  EXPECT_THAT(child1.clients, ElementsAre("group:apps"));
  EXPECT_THAT(child1.client_entries, ElementsAre(AccessEntry{Kind::kGid, 2002, "group:apps"}));

  const TenantConfig& child2 = c.tenants[2];
  EXPECT_EQ(child2.client_secret, "s3cret-cred");  // one "\r\n" stripped
  EXPECT_EQ(child2.token_url, "https://login.mypurecloud.ie/oauth/token");
}

TEST_F(ConfigTest, OmittedSectionsKeepTheDefaults) {
  const ConfigLoadResult result = Load(std::string(R"(socket:
refresh:
  # everything commented out
backoff: {}
)") + kOneTenant);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  const Config& c = result.config;
  const Config defaults;
  EXPECT_EQ(c.socket.path, "/run/tokend/tokend.sock");
  EXPECT_EQ(c.socket.mode, 0660u);
  EXPECT_EQ(c.socket.max_connections, 512);
  EXPECT_EQ(c.socket.max_request_bytes, 8192u);
  EXPECT_EQ(c.socket.idle_timeout, Millis(300000));
  EXPECT_EQ(c.refresh.max_concurrent, 4);
  EXPECT_TRUE(c.refresh.adaptive);
  EXPECT_EQ(c.refresh.at, 0.5);
  EXPECT_EQ(c.refresh.jitter, 0.1);
  EXPECT_EQ(c.refresh.expiry_margin, Millis(60000));
  EXPECT_EQ(c.refresh.startup_spread, Millis(5000));
  EXPECT_EQ(c.backoff.initial, Millis(1000));
  EXPECT_EQ(c.backoff.max, Millis(120000));
  EXPECT_EQ(c.backoff.multiplier, 2.0);
  EXPECT_EQ(c.backoff.jitter, JitterKind::kFull);
  EXPECT_EQ(c.backoff.permanent_error_retry, Millis(600000));
  EXPECT_EQ(c.http.connect_timeout, Millis(5000));
  EXPECT_EQ(c.http.timeout, Millis(15000));
  EXPECT_EQ(c.http.ca_file, "");
  EXPECT_EQ(c.http.request_id_header, "X-Request-Id");
  EXPECT_EQ(c.http.correlation_header, "ININ-Correlation-Id");
  EXPECT_EQ(c.http.max_response_bytes, 65536u);
  EXPECT_EQ(c.logging.format, LogFormat::kJson);
  EXPECT_EQ(c.logging.level, LogLevel::kInfo);
  ASSERT_EQ(c.tenants.size(), 1u);
  EXPECT_EQ(c.tenants[0].auth_method, AuthMethod::kBasic);
  EXPECT_THAT(c.tenants[0].scopes, IsEmpty());
  EXPECT_THAT(c.tenants[0].params, IsEmpty());
  EXPECT_EQ(c.tenants[0].client_secret, "env-secret-a");
}

TEST_F(ConfigTest, DefaultsApplyAndATenantsOwnValueWins) {
  env_.vars["SHARED"] = "shared-secret";
  const ConfigLoadResult result = Load(R"(defaults:
  client_id: shared-client
  client_secret_env: SHARED
  region: mypurecloud.jp
  auth_method: post
  scopes: [x]
  params: {a: "1"}
tenants:
  - id: inherits
  - id: overrides
    client_id: own-client
    client_secret_env: SECRET_A
    token_url: https://idp.example:8443/token
    auth_method: basic
    scopes: []
    params: {b: 2}
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  ASSERT_EQ(result.config.tenants.size(), 2u);
  const TenantConfig& a = result.config.tenants[0];
  EXPECT_EQ(a.client_id, "shared-client");
  EXPECT_EQ(a.client_secret, "shared-secret");
  EXPECT_EQ(a.token_url, "https://login.mypurecloud.jp/oauth/token");
  EXPECT_EQ(a.auth_method, AuthMethod::kPost);
  EXPECT_THAT(a.scopes, ElementsAre("x"));
  EXPECT_THAT(a.params, ElementsAre(Pair("a", "1")));
  const TenantConfig& b = result.config.tenants[1];
  EXPECT_EQ(b.client_id, "own-client");
  EXPECT_EQ(b.client_secret, "env-secret-a");  // the tenant's secret source replaces the default
  EXPECT_EQ(b.token_url, "https://idp.example:8443/token");  // token_url replaces region
  EXPECT_EQ(b.auth_method, AuthMethod::kBasic);
  EXPECT_THAT(b.scopes, IsEmpty());
  EXPECT_THAT(b.params, ElementsAre(Pair("b", "2")));  // replaced whole, not merged
}

TEST_F(ConfigTest, DefaultsCannotSetAnId) {
  ExpectErrors(std::string(R"(defaults:
  id: x
)") + kOneTenant,
               {"tokend.yaml:2:7: defaults.id: a tenant's id cannot have a default"});
}

TEST_F(ConfigTest, InheritedProblemIsReportedOnce) {
  ExpectErrors(R"(defaults:
  client_secret_env: UNSET
tenants:
  - {id: a, client_id: x, region: mypurecloud.com}
  - {id: b, client_id: y, region: mypurecloud.com}
)",
               {"tokend.yaml:2:22: defaults.client_secret_env: environment variable UNSET is not "
                "set"});
}

TEST_F(ConfigTest, WrongTypesNameTheKeyPath) {
  ExpectErrors(std::string(R"(refresh:
  max_concurrent: four
  adaptive: maybe
  at: "0.5"
socket:
  max_request_bytes: 8192.5
  path: [a]
backoff:
  multiplier: two
)") + kOneTenant,
               {
                   "tokend.yaml:2:19: refresh.max_concurrent: expected an integer",
                   "tokend.yaml:3:13: refresh.adaptive: expected true or false",
                   "tokend.yaml:4:7: refresh.at: expected a number",
                   "tokend.yaml:6:22: socket.max_request_bytes: expected an integer",
                   "tokend.yaml:7:9: socket.path: expected a string",
                   "tokend.yaml:9:15: backoff.multiplier: expected a number",
               });
}

TEST_F(ConfigTest, QuotedNumberIsAString) {
  ExpectErrors(std::string(R"(refresh:
  max_concurrent: "4"
)") + kOneTenant,
               {"tokend.yaml:2:19: refresh.max_concurrent: expected an integer"});
}

TEST_F(ConfigTest, RangesAreCheckedAndAllErrorsCollected) {
  ExpectErrors(std::string(R"(socket:
  max_connections: 0
  max_request_bytes: 100
  idle_timeout: 0s
refresh:
  max_concurrent: 1025
  at: 1.0
  jitter: 0.5
  expiry_margin: -1s
backoff:
  initial: 0s
  multiplier: 0.5
  jitter: ful
  permanent_error_retry: 10
http:
  max_response_bytes: 1000
logging:
  format: yaml
  level: warning
)") + kOneTenant,
               {
                   "tokend.yaml:2:20: socket.max_connections: must be between 1 and 65536 (got 0)",
                   "tokend.yaml:3:22: socket.max_request_bytes: must be between 256 and 1048576 "
                   "(got 100)",
                   "tokend.yaml:4:17: socket.idle_timeout: must be greater than 0",
                   "tokend.yaml:6:19: refresh.max_concurrent: must be between 1 and 1024 (got "
                   "1025)",
                   "tokend.yaml:7:7: refresh.at: must be greater than 0 and less than 1",
                   "tokend.yaml:8:11: refresh.jitter: must be at least 0 and less than 0.5",
                   "tokend.yaml:9:18: refresh.expiry_margin: expected a duration such as 250ms, "
                   "15s, 5m or 1h (a number and a unit ms, s, m or h, at most 8760h); got \"-1s\"",
                   "tokend.yaml:11:12: backoff.initial: must be greater than 0",
                   "tokend.yaml:12:15: backoff.multiplier: must be between 1 and 100",
                   "tokend.yaml:13:11: backoff.jitter: unknown value \"ful\"; expected one of "
                   "full, equal, decorrelated or none (did you mean full?)",
                   "tokend.yaml:14:26: backoff.permanent_error_retry: expected a duration such as "
                   "250ms, 15s, 5m or 1h (a number and a unit ms, s, m or h, at most 8760h); got "
                   "\"10\"",
                   "tokend.yaml:16:23: http.max_response_bytes: must be between 1024 and 16777216 "
                   "(got 1000)",
                   "tokend.yaml:18:11: logging.format: unknown value \"yaml\"; expected one of "
                   "json or text",
                   "tokend.yaml:19:10: logging.level: unknown value \"warning\"; expected one of "
                   "trace, debug, info, warn or error",
               });
}

TEST_F(ConfigTest, ZeroIsFineWhereItMakesSense) {
  const ConfigLoadResult result = Load(std::string(R"(refresh:
  expiry_margin: 0s
  startup_spread: 0ms
)") + kOneTenant);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.refresh.expiry_margin, Millis(0));
  EXPECT_EQ(result.config.refresh.startup_spread, Millis(0));
}

TEST_F(ConfigTest, RefreshPointMustStayInsideTheLifetime) {
  ExpectErrors(std::string(R"(refresh:
  at: 0.95
)") + kOneTenant,
               {"tokend.yaml:2:7: refresh: at + jitter must be less than 1 (at 0.950000, jitter "
                "0.100000)"});
  ExpectErrors(std::string(R"(refresh:
  at: 0.2
  jitter: 0.3
)") + kOneTenant,
               {"tokend.yaml:3:11: refresh: at - jitter must be greater than 0 (at 0.200000, "
                "jitter 0.300000)"});
}

TEST_F(ConfigTest, BackoffMaxMustBeAtLeastInitial) {
  ExpectErrors(std::string(R"(backoff:
  initial: 5m
)") + kOneTenant,
               {"tokend.yaml:2:12: backoff.max: must be at least backoff.initial (5m00s)"});
}

TEST_F(ConfigTest, ConnectTimeoutMustNotExceedTimeout) {
  ExpectErrors(std::string(R"(http:
  connect_timeout: 20s
)") + kOneTenant,
               {"tokend.yaml:2:20: http.connect_timeout: must not exceed http.timeout (15s)"});
}

TEST_F(ConfigTest, SocketModeIsOctalQuotedOrPlain) {
  for (const auto& [text, mode] : std::vector<std::pair<std::string, unsigned>>{
           {"\"0660\"", 0660}, {"0660", 0660}, {"600", 0600}, {"'0777'", 0777}, {"0000", 0}}) {
    const ConfigLoadResult result = Load("socket:\n  mode: " + text + "\n" + kOneTenant);
    ASSERT_TRUE(result.ok()) << text << ::testing::PrintToString(Errors(result));
    EXPECT_EQ(result.config.socket.mode, mode) << text;
  }
  for (const std::string text : {"\"0990\"", "\"rw\"", "1777", "66", "\"06600\"", "[1]"}) {
    ExpectErrors("socket:\n  mode: " + text + "\n" + kOneTenant,
                 {"tokend.yaml:2:9: socket.mode: expected an octal permission mode such as "
                  "\"0660\" (0000 to 0777)"});
  }
}

TEST_F(ConfigTest, SocketPathMustFitSunPath) {
  ExpectErrors("socket:\n  path: /" + std::string(107, 'x') + "\n" + kOneTenant,
               {"tokend.yaml:2:9: socket.path: longer than 107 bytes, the limit of a Unix socket "
                "path"});
}

TEST_F(ConfigTest, UnknownKeysAtEveryLevelWithDidYouMean) {
  ExpectErrors(R"(refesh:
  max_concurrent: 2
refresh:
  max_concurent: 2
  frobnicate: 1
defaults:
  scope: [a]
tenants:
  - id: org-a
    client_id: cid
    client_secret_env: SECRET_A
    regoin: mypurecloud.com
    region: mypurecloud.com
    params: {x: 1}
)",
               {
                   "tokend.yaml:1:1: refesh: unknown key (did you mean refresh?)",
                   "tokend.yaml:4:3: refresh.max_concurent: unknown key (did you mean "
                   "max_concurrent?)",
                   "tokend.yaml:5:3: refresh.frobnicate: unknown key",
                   "tokend.yaml:7:3: defaults.scope: unknown key (did you mean scopes?)",
                   "tokend.yaml:12:5: tenants[0].regoin: unknown key (did you mean region?)",
               });
}

TEST_F(ConfigTest, DuplicateKeysAreErrors) {
  ExpectErrors(std::string(R"(refresh:
  at: 0.5
  at: 0.6
)") + kOneTenant,
               {"tokend.yaml:3:3: refresh.at: duplicate key (first at line 2)"});
}

TEST_F(ConfigTest, AccessSectionResolvesNames) {
  const ConfigLoadResult result = Load(std::string(R"(access:
  clients: ["user:app", "group:apps", "uid:4000", "gid:5000"]
  admins: ["group:ops"]
)") + kOneTenant);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  using Kind = AccessEntry::Kind;
  EXPECT_THAT(result.config.access.clients, ElementsAre(AccessEntry{Kind::kUid, 1002, "user:app"},
                                                        AccessEntry{Kind::kGid, 2002, "group:apps"},
                                                        AccessEntry{Kind::kUid, 4000, "uid:4000"},
                                                        AccessEntry{Kind::kGid, 5000, "gid:5000"}));
  EXPECT_THAT(result.config.access.admins, ElementsAre(AccessEntry{Kind::kGid, 2001, "group:ops"}));

  // Defaults: nobody but root and tokend's own uid.
  const ConfigLoadResult plain = Load(kOneTenant);
  ASSERT_TRUE(plain.ok());
  EXPECT_THAT(plain.config.access.clients, IsEmpty());
  EXPECT_THAT(plain.config.access.admins, IsEmpty());
}

TEST_F(ConfigTest, AccessSectionErrorsNameTheKey) {
  ExpectErrors(std::string(R"(access:
  clients: ["user:nosuchuser", "group:apps", "group:nosuchgroup", "user:"]
  admin: ["uid:1"]
  admins: "uid:1"
)") + kOneTenant,
               {
                   "tokend.yaml:2:13: access.clients[0]: unknown user \"nosuchuser\" (no such "
                   "user on this system)",
                   "tokend.yaml:2:46: access.clients[2]: unknown group \"nosuchgroup\" (no such "
                   "group on this system)",
                   "tokend.yaml:2:67: access.clients[3]: expected \"user:NAME\", \"group:NAME\", "
                   "\"uid:N\" or \"gid:N\"; got \"user:\"",
                   "tokend.yaml:3:3: access.admin: unknown key (did you mean admins?)",
                   "tokend.yaml:4:11: access.admins: expected a list of strings",
               });
  ExpectErrors(std::string("acess:\n  clients: []\n") + kOneTenant,
               {"tokend.yaml:1:1: acess: unknown key (did you mean access?)"});
}

TEST_F(ConfigTest, MetricsAndStateSections) {
  const ConfigLoadResult result = Load(std::string(R"(metrics:
  textfile: /var/lib/node_exporter/tokend.prom
  interval: 30s
state: {file: /var/lib/tokend/state.json}
)") + kOneTenant);
  ASSERT_TRUE(result.ok()) << result.errors[0].ToString();
  EXPECT_EQ(result.config.metrics.textfile, "/var/lib/node_exporter/tokend.prom");
  EXPECT_EQ(result.config.metrics.interval, Millis(30000));
  EXPECT_EQ(result.config.state.file, "/var/lib/tokend/state.json");
  ExpectErrors(std::string("metrics:\n  interval: 0s\nstate:\n  fil: x\n") + kOneTenant,
               {"tokend.yaml:2:13: metrics.interval: must be greater than 0",
                "tokend.yaml:4:3: state.fil: unknown key (did you mean file?)"});
}

TEST_F(ConfigTest, YamlSyntaxErrorIsOneErrorWithPosition) {
  const ConfigLoadResult result = Load("refresh:\n  at: [0.5\ntenants: []\n");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].path, "tokend.yaml");
  EXPECT_GT(result.errors[0].line, 0);
  EXPECT_GT(result.errors[0].column, 0);
  EXPECT_THAT(result.errors[0].message, HasSubstr("end of sequence flow not found"));
}

TEST_F(ConfigTest, TabIndentationIsASyntaxError) {
  const ConfigLoadResult result = Load("refresh:\n\tat: 0.5\n");
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].line, 2);
}

TEST_F(ConfigTest, MissingFileIsOneClearError) {
  const ConfigLoadResult result = LoadConfigFile(dir_.path() + "/nope.yaml", env_);
  EXPECT_THAT(Errors(result), ElementsAre(dir_.path() + "/nope.yaml: config file not found"));
}

TEST_F(ConfigTest, DirectoryIsNotAConfigFile) {
  const ConfigLoadResult result = LoadConfigFile(dir_.path(), env_);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_THAT(result.errors[0].message, HasSubstr("cannot read config file"));
}

TEST_F(ConfigTest, EmptyOrNonMappingConfig) {
  ExpectErrors("", {"tokend.yaml: empty config; at least `tenants` is required"});
  ExpectErrors("# nothing\n", {"tokend.yaml: empty config; at least `tenants` is required"});
  ExpectErrors("- a\n", {"tokend.yaml:1:1: expected a mapping of sections (socket, access, "
                         "refresh, backoff, http, defaults, tenants, logging, metrics, state)"});
  ExpectErrors(std::string(kOneTenant) + "---\n" + kOneTenant,
               {"tokend.yaml:6:1: expected one YAML document, found a second one here"});
  // yaml-cpp 0.7's LoadAll() never returned on this (an endless run of empty documents).
  ExpectErrors(",refea-bc_id: 2}]\n", {"tokend.yaml:1:1: YAML syntax error: unexpected character"});
}

TEST_F(ConfigTest, TenantsMustBeANonEmptyListOfMappings) {
  ExpectErrors("logging: {}\n", {"tokend.yaml:1:1: tenants: missing; at least one tenant is "
                                 "required"});
  ExpectErrors("tenants: []\n", {"tokend.yaml:1:10: tenants: at least one tenant is required"});
  ExpectErrors("tenants:\n", {"tokend.yaml:1:1: tenants: at least one tenant is required"});
  ExpectErrors("tenants: {id: a}\n", {"tokend.yaml:1:10: tenants: expected a list of tenants"});
  ExpectErrors("tenants:\n  - org-a\n",
               {"tokend.yaml:2:5: tenants[0]: expected a mapping with at least id, client_id "
                "and a client secret"});
}

TEST_F(ConfigTest, TenantIdFormAndUniqueness) {
  ExpectErrors(R"(defaults: {client_id: c, client_secret_env: SECRET_A, region: mypurecloud.com}
tenants:
  - id: org-a
  - id: "org a"
  - id: org-a
  - client_id: x
  - id: )" + std::string(65, 'x') +
                   "\n",
               {
                   "tokend.yaml:4:9: tenants[1].id: invalid id \"org a\"; expected 1 to 64 of A-Z "
                   "a-z 0-9 _ . -",
                   "tokend.yaml:5:9: tenants[2].id: duplicate id \"org-a\" (first at line 3)",
                   "tokend.yaml:6:5: tenants[3]: missing id",
                   "tokend.yaml:7:9: tenants[4].id: invalid id \"" + std::string(65, 'x') +
                       "\"; expected 1 to 64 of A-Z a-z 0-9 _ . -",
               });
}

TEST_F(ConfigTest, ClientIdIsRequiredAndNonEmpty) {
  ExpectErrors(R"(tenants:
  - id: a
    client_secret_env: SECRET_A
    region: mypurecloud.com
  - id: b
    client_id: ""
    client_secret_env: SECRET_A
    region: mypurecloud.com
)",
               {
                   "tokend.yaml:2:5: tenants[0]: missing client_id",
                   "tokend.yaml:6:16: tenants[1].client_id: must not be empty",
               });
}

TEST_F(ConfigTest, ExactlyOneSecretSource) {
  ExpectErrors(R"(tenants:
  - id: a
    client_id: x
    region: mypurecloud.com
  - id: b
    client_id: x
    region: mypurecloud.com
    client_secret_env: SECRET_A
    client_secret_file: /nonexistent/secret
)",
               {
                   "tokend.yaml:2:5: tenants[0]: no client secret; set one of client_secret_file, "
                   "client_secret_env, client_secret_credential or client_secret",
                   "tokend.yaml:9:25: tenants[1]: set exactly one client secret source; found "
                   "client_secret_env, client_secret_file",
               });
}

// A tenant using `secret_line` (a YAML line, e.g. "client_secret_file: /x") and region.
std::string TenantWith(const std::string& secret_line) {
  return "tenants:\n  - id: a\n    client_id: x\n    region: mypurecloud.com\n    " + secret_line +
         "\n";
}

TEST_F(ConfigTest, SecretFileMustExist) {
  const std::string file = dir_.path() + "/missing";
  ExpectErrors(TenantWith("client_secret_file: " + file),
               {"tokend.yaml:5:25: tenants[0].client_secret_file: file " + file + " not found"});
}

TEST_F(ConfigTest, SecretFileMustNotBeEmpty) {
  for (const char* content : {"", "\n", "\r\n"}) {
    const std::string file = dir_.Write("empty", content);
    ExpectErrors(TenantWith("client_secret_file: " + file),
                 {"tokend.yaml:5:25: tenants[0].client_secret_file: file " + file + " is empty"});
  }
}

TEST_F(ConfigTest, SecretFileMustNotBeWorldReadable) {
  const std::string file = dir_.Write("open", "topsecret", 0644);
  const ConfigLoadResult result = Load(TenantWith("client_secret_file: " + file));
  EXPECT_THAT(Errors(result), ElementsAre("tokend.yaml:5:25: tenants[0].client_secret_file: file " +
                                          file + " is world-readable (mode 0644); chmod o-r it"));
}

TEST_F(ConfigTest, SecretFileGroupReadableIsFine) {
  const std::string file = dir_.Write("group", "topsecret", 0640);
  const ConfigLoadResult result = Load(TenantWith("client_secret_file: " + file));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.tenants[0].client_secret, "topsecret");
}

TEST_F(ConfigTest, SecretFileUnreadable) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads mode 0000 files";
  const std::string file = dir_.Write("locked", "topsecret", 0000);
  const ConfigLoadResult result = Load(TenantWith("client_secret_file: " + file));
  EXPECT_THAT(Errors(result), ElementsAre("tokend.yaml:5:25: tenants[0].client_secret_file: file " +
                                          file + " cannot be read: Permission denied"));
}

TEST_F(ConfigTest, SecretFileStripsOneTrailingNewline) {
  for (const auto& [content, expected] : std::vector<std::pair<std::string, std::string>>{
           {"abc\n", "abc"}, {"abc\r\n", "abc"}, {"abc", "abc"}, {" abc ", " abc "}}) {
    const std::string file = dir_.Write("s", content);
    const ConfigLoadResult result = Load(TenantWith("client_secret_file: " + file));
    ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
    EXPECT_EQ(result.config.tenants[0].client_secret, expected);
  }
}

TEST_F(ConfigTest, SecretFileWithSeveralLinesIsAnErrorThatHidesTheSecret) {
  const std::string file = dir_.Write("two", "line-one-secret\n\n");
  const ConfigLoadResult result = Load(TenantWith("client_secret_file: " + file));
  EXPECT_THAT(Errors(result), ElementsAre("tokend.yaml:5:25: tenants[0].client_secret_file: file " +
                                          file + " must hold the secret on a single line"));
}

TEST_F(ConfigTest, RelativeSecretFileIsResolvedAgainstTheConfigDirectory) {
  dir_.Write("rel.secret", "relative-secret\n");
  const std::string path = dir_.Write("tokend.yaml", TenantWith("client_secret_file: rel.secret"));
  const ConfigLoadResult result = LoadConfigFile(path, env_, accounts_);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.tenants[0].client_secret, "relative-secret");
}

TEST_F(ConfigTest, SecretFromEnvironment) {
  env_.vars["EMPTY"] = "";
  ExpectErrors(TenantWith("client_secret_env: UNSET_VAR"),
               {"tokend.yaml:5:24: tenants[0].client_secret_env: environment variable UNSET_VAR "
                "is not set"});
  ExpectErrors(TenantWith("client_secret_env: EMPTY"),
               {"tokend.yaml:5:24: tenants[0].client_secret_env: environment variable EMPTY is "
                "empty"});
  ExpectErrors(TenantWith("client_secret_env: 1BAD-NAME"),
               {"tokend.yaml:5:24: tenants[0].client_secret_env: not a valid environment "
                "variable name"});
  const ConfigLoadResult result = Load(TenantWith("client_secret_env: SECRET_A"));
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config.tenants[0].client_secret, "env-secret-a");
}

TEST_F(ConfigTest, SecretFromSystemdCredential) {
  ExpectErrors(TenantWith("client_secret_credential: org-a"),
               {"tokend.yaml:5:31: tenants[0].client_secret_credential: $CREDENTIALS_DIRECTORY "
                "is not set; run tokend from a systemd unit with "
                "LoadCredential=org-a:/path/to/secret"});

  env_.vars["CREDENTIALS_DIRECTORY"] = dir_.path();
  ExpectErrors(TenantWith("client_secret_credential: org-a"),
               {"tokend.yaml:5:31: tenants[0].client_secret_credential: credential file " +
                dir_.path() + "/org-a not found"});
  ExpectErrors(TenantWith("client_secret_credential: ../etc/passwd"),
               {"tokend.yaml:5:31: tenants[0].client_secret_credential: not a valid credential "
                "name (a file name in $CREDENTIALS_DIRECTORY)"});

  dir_.Write("org-a", "cred-secret\n", 0400);
  const ConfigLoadResult result = Load(TenantWith("client_secret_credential: org-a"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.tenants[0].client_secret, "cred-secret");

  dir_.Write("org-a", "cred-secret\n", 0444);
  const ConfigLoadResult open = Load(TenantWith("client_secret_credential: org-a"));
  EXPECT_THAT(Errors(open), ElementsAre(HasSubstr("is world-readable (mode 0444)")));
}

TEST_F(ConfigTest, InlineSecretIsAcceptedWithAWarning) {
  const ConfigLoadResult result = Load(TenantWith("client_secret: inline-secret-value"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.tenants[0].client_secret, "inline-secret-value");
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_EQ(result.warnings[0].key, "tenants[0].client_secret");
  EXPECT_EQ(result.warnings[0].message,
            "inline secret; prefer client_secret_file or client_secret_credential");
}

TEST_F(ConfigTest, ErrorsNeverContainTheSecret) {
  const ConfigLoadResult result = Load(R"(tenants:
  - id: a
    client_secret: inline-secret-value
    client_secret_env: SECRET_A
    region: nowhere
  - id: a
    client_id: inline-secret-value-2
    client_secret: [inline-secret-value-3]
)");
  ASSERT_FALSE(result.ok());
  for (const std::string& error : Errors(result)) {
    EXPECT_THAT(error, ::testing::Not(HasSubstr("inline-secret-value"))) << error;
    EXPECT_THAT(error, ::testing::Not(HasSubstr("env-secret-a"))) << error;
  }
}

TEST_F(ConfigTest, ExactlyOneOfRegionAndTokenUrl) {
  ExpectErrors(R"(tenants:
  - id: a
    client_id: x
    client_secret_env: SECRET_A
  - id: b
    client_id: x
    client_secret_env: SECRET_A
    region: mypurecloud.com
    token_url: https://login.mypurecloud.com/oauth/token
)",
               {
                   "tokend.yaml:2:5: tenants[0]: no endpoint; set region or token_url (here or in "
                   "defaults)",
                   "tokend.yaml:9:16: tenants[1]: set only one of region and token_url",
               });
}

TEST_F(ConfigTest, EmptyRegionOrTokenUrlMeansNotSet) {
  const ConfigLoadResult result = Load(R"(defaults:
  region: ""
  token_url: ""
tenants:
  - id: a
    client_id: x
    client_secret_env: SECRET_A
    region: usw2.pure.cloud
    token_url: ""
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_EQ(result.config.tenants[0].token_url, "https://login.usw2.pure.cloud/oauth/token");
}

TEST_F(ConfigTest, RegionMapsToTokenUrl) {
  for (const char* region :
       {"mypurecloud.com", "mypurecloud.ie", "mypurecloud.com.au", "mypurecloud.jp",
        "mypurecloud.de", "usw2.pure.cloud", "cac1.pure.cloud", "apne2.pure.cloud",
        "euw2.pure.cloud", "aps1.pure.cloud", "use2.us-gov-pure.cloud", "sae1.pure.cloud",
        "mec1.pure.cloud", "apne3.pure.cloud", "euc2.pure.cloud", "mxc1.pure.cloud",
        "apse1.pure.cloud"}) {
    EXPECT_EQ(TokenUrlForRegion(region), std::string("https://login.") + region + "/oauth/token");
  }
  EXPECT_EQ(TokenUrlForRegion("MyPureCloud.DE"), "https://login.mypurecloud.de/oauth/token");
  EXPECT_EQ(TokenUrlForRegion("example.com"), "");
  EXPECT_EQ(TokenUrlForRegion(""), "");
}

TEST_F(ConfigTest, UnknownRegionSuggestsTheClosest) {
  auto tenant_in = [](const std::string& region) {
    return "tenants:\n  - id: a\n    client_id: x\n    client_secret_env: SECRET_A\n    region: " +
           region + "\n";
  };
  ExpectErrors(tenant_in("mypurecloud.co"),
               {"tokend.yaml:5:13: tenants[0].region: unknown region domain \"mypurecloud.co\" "
                "(did you mean mypurecloud.com?)"});
  ExpectErrors(tenant_in("login.mypurecloud.de"),
               {"tokend.yaml:5:13: tenants[0].region: unknown region domain "
                "\"login.mypurecloud.de\" (did you mean mypurecloud.de?)"});
  ExpectErrors(tenant_in("https://login.use2.us-gov-pure.cloud/oauth/token"),
               {"tokend.yaml:5:13: tenants[0].region: unknown region domain "
                "\"https://login.use2.us-gov-pure.cloud/oauth/token\" (did you mean "
                "use2.us-gov-pure.cloud?)"});
  ExpectErrors(tenant_in("mars.pure.space"),
               {"tokend.yaml:5:13: tenants[0].region: unknown region domain \"mars.pure.space\""});
}

// A tenant with `token_url: URL`.
std::string TenantWithUrl(const std::string& url) {
  return "tenants:\n  - id: a\n    client_id: x\n    client_secret_env: SECRET_A\n    token_url: " +
         url + "\n";
}

TEST_F(ConfigTest, HttpIsOnlyForLoopbackHosts) {
  for (const char* url : {"http://127.0.0.1:8080/oauth/token", "http://127.9.8.7/t",
                          "http://localhost:1234/oauth/token", "http://LOCALHOST/t",
                          "http://[::1]:8443/oauth/token", "https://login.example.com/oauth/token",
                          "https://10.0.0.1:8443/a/b?tenant=1", "https://[2001:db8::1]/t"}) {
    const ConfigLoadResult result = Load(TenantWithUrl(url));
    ASSERT_TRUE(result.ok()) << url << ::testing::PrintToString(Errors(result));
    EXPECT_EQ(result.config.tenants[0].token_url, url);
  }
  for (const char* url : {"http://login.mypurecloud.com/oauth/token", "http://10.0.0.1/t",
                          "http://128.0.0.1/t", "http://[::2]/t", "http://localhost.example/t"}) {
    ExpectErrors(TenantWithUrl(url),
                 {"tokend.yaml:5:16: tenants[0].token_url: http:// is only allowed for loopback "
                  "hosts (127.0.0.0/8, ::1, localhost); use https://"});
  }
}

TEST_F(ConfigTest, TokenUrlMustBeWellFormed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"login.example.com/oauth/token", "expected https://host[:port]/path"},
      {"ftp://example.com/t", "unsupported scheme \"ftp\"; expected https://host[:port]/path"},
      {"https://example.com",
       "missing path (e.g. /oauth/token); expected https://host[:port]/path"},
      {"https:///oauth/token", "missing host; expected https://host[:port]/path"},
      {"https://example.com:99999/t", "invalid port \"99999\""},
      {"https://example.com:x/t", "invalid port \"x\""},
      {"https://user:pw@example.com/t",
       "must not contain user information; use client_id and the client secret"},
      {"https://exa mple.com/t", "must not contain spaces or control characters"},
      {"https://example.com/t#frag", "must not contain a #fragment"},
      {"https://[::1/t", "unterminated [IPv6] host"},
  };
  for (const auto& [url, message] : cases) {
    ExpectErrors(TenantWithUrl("\"" + url + "\""),
                 {"tokend.yaml:5:16: tenants[0].token_url: " + message});
  }
}

TEST_F(ConfigTest, ScopesAreNonEmptyTokens) {
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    scopes: [ok, \"a b\", \"\"]"),
               {
                   "tokend.yaml:6:25: tenants[0].scopes[2]: must not be empty",
               });
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    scopes: [ok, \"a b\"]"),
               {"tokend.yaml:6:18: tenants[0].scopes[1]: invalid scope \"a b\"; no spaces, quotes "
                "or backslashes (one scope per list item)"});
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    scopes: admin"),
               {"tokend.yaml:6:13: tenants[0].scopes: expected a list of strings"});
}

TEST_F(ConfigTest, ParamsAreOrderedScalarsAndCannotOverrideReservedFields) {
  const ConfigLoadResult ok = Load(TenantWith(
      "client_secret_env: SECRET_A\n    params:\n      z: last\n      a: 1\n      m: true"));
  ASSERT_TRUE(ok.ok()) << ::testing::PrintToString(Errors(ok));
  EXPECT_THAT(ok.config.tenants[0].params,
              ElementsAre(Pair("z", "last"), Pair("a", "1"), Pair("m", "true")));

  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    params:\n      grant_type: password\n"
                          "      scope: x\n      nested: {a: 1}\n      list: [1]"),
               {
                   "tokend.yaml:7:19: tenants[0].params.grant_type: reserved; tokend sets "
                   "grant_type itself",
                   "tokend.yaml:8:14: tenants[0].params.scope: reserved; tokend sets scope itself",
                   "tokend.yaml:9:15: tenants[0].params.nested: expected a single value (a string "
                   "or a number)",
                   "tokend.yaml:10:13: tenants[0].params.list: expected a single value (a string "
                   "or a number)",
               });
}

TEST_F(ConfigTest, ClientsAreAccessEntries) {
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    clients: [\"group:nope\"]"),
               {"tokend.yaml:6:15: tenants[0].clients[0]: unknown group \"nope\" (no such group "
                "on this system)"});
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    clients: [\"user:app\", bob, "
                          "\"uid:x\", \"gid:4294967295\", \"group:\"]"),
               {
                   "tokend.yaml:6:27: tenants[0].clients[1]: expected \"user:NAME\", "
                   "\"group:NAME\", \"uid:N\" or \"gid:N\"; got \"bob\"",
                   "tokend.yaml:6:32: tenants[0].clients[2]: expected \"user:NAME\", "
                   "\"group:NAME\", \"uid:N\" or \"gid:N\"; got \"uid:x\"",
                   "tokend.yaml:6:41: tenants[0].clients[3]: expected \"user:NAME\", "
                   "\"group:NAME\", \"uid:N\" or \"gid:N\"; got \"gid:4294967295\"",
                   "tokend.yaml:6:59: tenants[0].clients[4]: expected \"user:NAME\", "
                   "\"group:NAME\", \"uid:N\" or \"gid:N\"; got \"group:\"",
               });
}

TEST_F(ConfigTest, AuthMethodSuggestion) {
  ExpectErrors(TenantWith("client_secret_env: SECRET_A\n    auth_method: basik"),
               {"tokend.yaml:6:18: tenants[0].auth_method: unknown value \"basik\"; expected one "
                "of basic or post (did you mean basic?)"});
}

TEST_F(ConfigTest, HttpHeadersAndCaFile) {
  ExpectErrors(std::string(R"(http:
  request_id_header: "X Request"
  ca_file: /nonexistent/ca.pem
)") + kOneTenant,
               {
                   "tokend.yaml:2:22: http.request_id_header: not a valid HTTP header name",
                   "tokend.yaml:3:12: http.ca_file: file /nonexistent/ca.pem not found",
               });
}

TEST_F(ConfigTest, ErrorsAreSortedByPosition) {
  const ConfigLoadResult result = Load(R"(tenants:
  - id: a
logging:
  level: loud
refresh:
  at: 2
)");
  ASSERT_EQ(result.errors.size(), 5u) << ::testing::PrintToString(Errors(result));
  for (size_t i = 1; i < result.errors.size(); ++i) {
    EXPECT_LE(result.errors[i - 1].line, result.errors[i].line);
  }
}

TEST_F(ConfigTest, ShippedExampleConfigIsValid) {
  const std::filesystem::path example =
      std::filesystem::path(__FILE__).parent_path() / "../../config/tokend.yaml";
  env_.vars["CREDENTIALS_DIRECTORY"] = dir_.path();
  for (const char* name : {"org-parent", "org-child-1", "org-child-2"}) {
    dir_.Write(name, std::string("secret-of-") + name + "\n", 0400);
  }
  const ConfigLoadResult result = LoadConfigFile(example.string(), env_);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Errors(result));
  EXPECT_THAT(result.warnings, IsEmpty());
  ASSERT_EQ(result.config.tenants.size(), 3u);
  EXPECT_EQ(result.config.tenants[0].id, "org-parent");
  EXPECT_EQ(result.config.tenants[0].client_secret, "secret-of-org-parent");
  EXPECT_EQ(result.config.tenants[1].token_url, "https://login.mypurecloud.com/oauth/token");
  EXPECT_EQ(result.config.tenants[2].token_url, "https://login.mypurecloud.ie/oauth/token");
}

TEST(ConfigError, ToStringForms) {
  EXPECT_EQ((ConfigError{"t.yaml", 12, 5, "a: b"}).ToString(), "t.yaml:12:5: a: b");
  EXPECT_EQ((ConfigError{"t.yaml", 0, 0, "missing"}).ToString(), "t.yaml: missing");
  EXPECT_EQ((ConfigError{"t.yaml", 3, 0, "x"}).ToString(), "t.yaml:3: x");
}

TEST(ConfigTenant, SameEndpointIgnoresIdAndClients) {
  TenantConfig a;
  a.id = "a";
  a.client_id = "c";
  a.client_secret = "s";
  a.token_url = "https://x/t";
  a.scopes = {"s1"};
  a.params = {{"audience", "x"}};
  a.clients = {"uid:1"};
  TenantConfig b = a;
  b.id = "b";
  b.clients = {};
  EXPECT_TRUE(a.SameEndpoint(b));
  for (auto change : std::vector<void (*)(TenantConfig&)>{
           [](TenantConfig& t) { t.client_id = "other"; },
           [](TenantConfig& t) { t.client_secret = "other"; },
           [](TenantConfig& t) { t.token_url = "https://y/t"; },
           [](TenantConfig& t) { t.auth_method = AuthMethod::kPost; },
           [](TenantConfig& t) { t.scopes.push_back("s2"); },
           [](TenantConfig& t) { t.params[0].second = "y"; },
       }) {
    TenantConfig c = a;
    change(c);
    EXPECT_FALSE(a.SameEndpoint(c));
  }
}

TEST(ConfigSecretSource, ProcessSourceReadsTheEnvironment) {
  ::setenv("TOKEND_CONFIG_TEST_VAR", "v", 1);
  ProcessSecretSource source;
  EXPECT_EQ(source.GetEnv("TOKEND_CONFIG_TEST_VAR"), "v");
  ::unsetenv("TOKEND_CONFIG_TEST_VAR");
  EXPECT_EQ(source.GetEnv("TOKEND_CONFIG_TEST_VAR"), std::nullopt);
}

}  // namespace
}  // namespace tokend
