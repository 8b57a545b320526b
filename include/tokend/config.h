#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokend/clock.h"

namespace tokend {

enum class AuthMethod { kBasic, kPost };  // client_secret_basic | client_secret_post
enum class JitterKind { kFull, kEqual, kDecorrelated, kNone };
enum class LogFormat { kJson, kText };
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };

const char* ToString(JitterKind kind);
const char* ToString(LogFormat format);
const char* ToString(LogLevel level);

// SPEC §3 `socket`.
struct SocketOptions {
  std::string path = "/run/tokend/tokend.sock";
  unsigned mode = 0660;
  int max_connections = 512;
  size_t max_request_bytes = 8192;
  Millis idle_timeout = Millis(5 * 60 * 1000);
};

// One entry of an access list (SPEC §3 access.clients, access.admins, a tenant's
// clients) with its name resolved to a number when the config was loaded.
struct AccessEntry {
  enum class Kind {
    kUid,  // "user:NAME" or "uid:N": the peer's uid
    kGid,  // "group:NAME" or "gid:N": the peer's primary gid or any group of its user
  };
  Kind kind = Kind::kUid;
  uint32_t id = 0;
  std::string text;  // as written, e.g. "group:apps"

  bool operator==(const AccessEntry&) const = default;
};

// SPEC §3 `access`. Root and tokend's own uid are always clients and admins.
struct AccessOptions {
  std::vector<AccessEntry> clients;  // empty = nobody else
  std::vector<AccessEntry> admins;   // may also refresh and reload; they are clients too
};

// SPEC §3 `refresh`.
struct RefreshOptions {
  int max_concurrent = 4;
  bool adaptive = true;
  double at = 0.5;
  double jitter = 0.1;
  Millis expiry_margin = Millis(60 * 1000);
  Millis startup_spread = Millis(5 * 1000);
};

// SPEC §3 `backoff`.
struct BackoffOptions {
  Millis initial = Millis(1000);
  Millis max = Millis(2 * 60 * 1000);
  double multiplier = 2.0;
  JitterKind jitter = JitterKind::kFull;
  Millis permanent_error_retry = Millis(10 * 60 * 1000);
};

// SPEC §3 `http`.
struct HttpOptions {
  Millis connect_timeout = Millis(5000);
  Millis timeout = Millis(15000);
  std::string ca_file;
  std::string request_id_header = "X-Request-Id";
  std::string correlation_header = "ININ-Correlation-Id";
  size_t max_response_bytes = 65536;
};

// SPEC §3 `logging`.
struct LoggingOptions {
  LogFormat format = LogFormat::kJson;
  LogLevel level = LogLevel::kInfo;
};

// SPEC §3 `metrics`.
struct MetricsOptions {
  std::string textfile;  // Prometheus text file, rewritten atomically; "" = off
  Millis interval = Millis(15000);
};

// SPEC §3 `state`.
struct StateOptions {
  std::string file;  // persisted token cache; "" = off
};

// One tenant after defaults were applied and its secret was read.
struct TenantConfig {
  std::string id;
  std::string client_id;
  std::string client_secret;  // the secret itself; never logged
  std::string token_url;      // resolved from region when region was given
  AuthMethod auth_method = AuthMethod::kBasic;
  std::vector<std::string> scopes;
  std::vector<std::pair<std::string, std::string>> params;  // extra form fields, in order
  std::vector<std::string> clients;                         // per-tenant access entries, as written
  std::vector<AccessEntry> client_entries;                  // the same, resolved

  // True when a token obtained for `other` is one this tenant may use: client_id,
  // client_secret, token_url, auth_method, scopes and params are all equal (id and
  // clients do not matter). A reload keeps a tenant's token only when this holds.
  bool SameEndpoint(const TenantConfig& other) const;
};

struct Config {
  std::string source_path;  // the file it was loaded from
  SocketOptions socket;
  AccessOptions access;
  RefreshOptions refresh;
  BackoffOptions backoff;
  HttpOptions http;
  LoggingOptions logging;
  MetricsOptions metrics;
  StateOptions state;
  std::vector<TenantConfig> tenants;
};

// One problem found in a config file, positioned at the key it is about.
struct ConfigError {
  std::string path;  // the file
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
  std::string message;

  // "PATH:LINE:COL: message"; "PATH: message" when the line is unknown (a missing
  // file, an empty config). `message` starts with the key path it is about, e.g.
  // "refresh.max_concurrent: expected an integer", and never holds a secret.
  std::string ToString() const;
};

struct ConfigWarning {
  std::string key;  // e.g. "tenants[2].client_secret"
  std::string message;
};

// Outcome of loading: either a config (errors empty) or every error found.
struct ConfigLoadResult {
  Config config;
  std::vector<ConfigError> errors;
  std::vector<ConfigWarning> warnings;
  bool ok() const { return errors.empty(); }
};

class AccountDirectory;

// Where secrets come from; a seam so tests need neither files nor env.
class SecretSource {
 public:
  virtual ~SecretSource() = default;
  // Returns the value of the environment variable, or nullopt when unset.
  virtual std::optional<std::string> GetEnv(const std::string& name) const = 0;
};

class ProcessSecretSource final : public SecretSource {
 public:
  std::optional<std::string> GetEnv(const std::string& name) const override;
};

// Reads, validates and resolves the YAML config at `path` (SPEC §3): every key,
// defaults, durations, region -> token_url, secrets (file, env, systemd credential
// via $CREDENTIALS_DIRECTORY, inline with a warning), user and group names of
// access lists (through `accounts`; an unknown name is an error). Never throws;
// never touches the network. Reports every error found, sorted by position
// (docs/CONFIG.md has the rules). Relative paths in the file (socket.path,
// http.ca_file, client_secret_file) are resolved against the directory of
// `path`, and stored resolved.
ConfigLoadResult LoadConfigFile(const std::string& path, const SecretSource& env,
                                const AccountDirectory& accounts);
// With the system's accounts (SystemAccounts).
ConfigLoadResult LoadConfigFile(const std::string& path, const SecretSource& env);

// Same, from YAML text; `path` is only used in error messages and to resolve nothing:
// relative paths stay relative to the working directory.
ConfigLoadResult LoadConfigString(const std::string& yaml_text, const std::string& path,
                                  const SecretSource& env, const AccountDirectory& accounts);
ConfigLoadResult LoadConfigString(const std::string& yaml_text, const std::string& path,
                                  const SecretSource& env);

// The token URL of a Genesys Cloud region domain (SPEC §1, case-insensitive):
// "https://login.<region>/oauth/token", or "" if the domain is unknown.
std::string TokenUrlForRegion(const std::string& region);

}  // namespace tokend
