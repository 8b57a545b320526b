#include "tokend/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>
#include <sstream>
#include <span>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "tokend/accounts.h"
#include "tokend/duration.h"

namespace tokend {

namespace {

constexpr std::string_view kTopLevelKeys[] = {"socket",   "access",  "refresh", "backoff", "http",
                                              "defaults", "tenants", "logging", "metrics", "state"};
constexpr std::string_view kAccessKeys[] = {"clients", "admins"};
constexpr std::string_view kSocketKeys[] = {"path", "mode", "max_connections", "max_request_bytes",
                                            "idle_timeout"};
constexpr std::string_view kRefreshKeys[] = {"max_concurrent", "adaptive",      "at",
                                             "jitter",         "expiry_margin", "startup_spread"};
constexpr std::string_view kBackoffKeys[] = {"initial", "max", "multiplier", "jitter",
                                             "permanent_error_retry"};
constexpr std::string_view kHttpKeys[] = {
    "connect_timeout",    "timeout",           "ca_file", "request_id_header",
    "correlation_header", "max_response_bytes"};
constexpr std::string_view kLoggingKeys[] = {"format", "level"};
constexpr std::string_view kMetricsKeys[] = {"textfile", "interval"};
constexpr std::string_view kStateKeys[] = {"file"};
constexpr std::string_view kTenantKeys[] = {"id",
                                            "client_id",
                                            "client_secret_file",
                                            "client_secret_env",
                                            "client_secret_credential",
                                            "client_secret",
                                            "region",
                                            "token_url",
                                            "auth_method",
                                            "scopes",
                                            "params",
                                            "clients"};

// SPEC §1.
constexpr std::string_view kRegionDomains[] = {
    "mypurecloud.com",  "mypurecloud.ie",   "mypurecloud.com.au",     "mypurecloud.jp",
    "mypurecloud.de",   "usw2.pure.cloud",  "cac1.pure.cloud",        "apne2.pure.cloud",
    "euw2.pure.cloud",  "aps1.pure.cloud",  "use2.us-gov-pure.cloud", "sae1.pure.cloud",
    "mec1.pure.cloud",  "apne3.pure.cloud", "euc2.pure.cloud",        "mxc1.pure.cloud",
    "apse1.pure.cloud",
};

// Form fields tokend writes itself; a tenant's params may not replace them.
constexpr std::string_view kReservedParams[] = {"grant_type", "scope", "client_id",
                                                "client_secret"};

constexpr size_t kMaxConfigBytes = 4 * 1024 * 1024;
constexpr size_t kMaxSecretBytes = 64 * 1024;
constexpr size_t kMaxSocketPathBytes = 107;  // sizeof(sockaddr_un::sun_path) - 1

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool Contains(std::span<const std::string_view> list, std::string_view word) {
  return std::find(list.begin(), list.end(), word) != list.end();
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions),
// case-insensitive: "max_concurent" -> "max_concurrent" is 1, "jitetr" -> "jitter" is 1.
size_t EditDistance(std::string_view a_in, std::string_view b_in) {
  const std::string a = Lower(a_in);
  const std::string b = Lower(b_in);
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean X?)" for the closest candidate within edit distance 2 (1 for words
// shorter than 6, so "x" does not suggest "at"), or "".
std::string DidYouMean(std::string_view word, std::span<const std::string_view> candidates) {
  const size_t limit = std::min<size_t>(2, std::max<size_t>(1, word.size() / 3));
  size_t best_distance = limit + 1;
  std::string_view best;
  for (std::string_view candidate : candidates) {
    const size_t distance = EditDistance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  if (best.empty()) return "";
  return " (did you mean " + std::string(best) + "?)";
}

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string JoinOr(std::span<const std::string_view> words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
    out += words[i];
  }
  return out;
}

struct Pos {
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based; 0 = unknown
};

Pos PosOf(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return {};
  return {mark.line + 1, mark.column + 1};
}

Pos PosOf(const YAML::Node& node) { return PosOf(node.Mark()); }

// A YAML value with the key path naming it and where it is.
struct Value {
  std::string path;  // "refresh.max_concurrent", "tenants[1].scopes[0]"; "" for the root
  YAML::Node node;
  Pos pos;      // of the value; of the key when the value is empty
  Pos key_pos;  // of the key, for entries of a mapping
};

template <typename T>
struct Located {
  T value{};
  std::string path;
  Pos pos;
};

// One tenant entry or `defaults`, checked for form but not yet merged or resolved.
struct TenantFields {
  std::string path;  // "tenants[1]" or "defaults"
  Pos pos;
  std::optional<Located<std::string>> id;
  std::optional<Located<std::string>> client_id;
  std::optional<Located<std::string>> secret_file;
  std::optional<Located<std::string>> secret_env;
  std::optional<Located<std::string>> secret_credential;
  std::optional<Located<std::string>> secret_inline;
  std::optional<Located<std::string>> region;  // a known domain, lower-case
  std::optional<Located<std::string>> token_url;
  std::optional<Located<AuthMethod>> auth_method;
  std::optional<Located<std::vector<std::string>>> scopes;
  std::optional<Located<std::vector<std::pair<std::string, std::string>>>> params;
  std::optional<Located<std::vector<AccessEntry>>> clients;
  // Keys that were set to a value reported as invalid, so that "missing" errors do
  // not pile onto the real one, and an invalid tenant value still hides the default.
  std::set<std::string> invalid;

  bool Set(const std::optional<Located<std::string>>& field, const char* key) const {
    return field.has_value() || invalid.count(key) > 0;
  }
  bool HasSecret() const {
    return Set(secret_file, "client_secret_file") || Set(secret_env, "client_secret_env") ||
           Set(secret_credential, "client_secret_credential") ||
           Set(secret_inline, "client_secret");
  }
  bool HasEndpoint() const { return Set(region, "region") || Set(token_url, "token_url"); }
};

bool IsHttpTokenChar(char c) {
  // RFC 9110 tchar.
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsScopeTokenChar(char c) {
  // RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E.
  const auto u = static_cast<unsigned char>(c);
  return u == 0x21 || (u >= 0x23 && u <= 0x5B) || (u >= 0x5D && u <= 0x7E);
}

bool IsValidTenantId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

bool IsValidEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool IsDecimalId(std::string_view s) {
  if (s.empty() || s.size() > 10) return false;
  if (!std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  // (uid_t)-1 means "no change" to the kernel; it is never a real id.
  return std::stoull(std::string(s)) < 4294967295ULL;
}

bool IsAccountName(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  if (s.back() == '$') s.remove_suffix(1);  // Samba machine accounts
  if (s.empty() || s[0] == '-' || s[0] == '.') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// "user:NAME", "group:NAME", "uid:N" or "gid:N".
bool IsValidAccessEntry(std::string_view entry) {
  const size_t colon = entry.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view kind = entry.substr(0, colon);
  const std::string_view rest = entry.substr(colon + 1);
  if (kind == "user" || kind == "group") return IsAccountName(rest);
  if (kind == "uid" || kind == "gid") return IsDecimalId(rest);
  return false;
}

bool IsLoopbackHost(const std::string& host) {
  const std::string lower = Lower(host);
  if (lower == "localhost" || lower == "localhost.") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

// Why `url` is not an acceptable token endpoint, or "" when it is one:
// https://host[:port]/path, or http:// with a loopback host.
std::string TokenUrlProblem(std::string_view url) {
  constexpr std::string_view kForm = "expected https://host[:port]/path";
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) {
      return "must not contain spaces or control characters";
    }
  }
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) return std::string(kForm);
  const std::string scheme = Lower(url.substr(0, sep));
  if (scheme != "https" && scheme != "http") {
    return "unsupported scheme " + Quote(scheme) + "; " + std::string(kForm);
  }
  const std::string_view rest = url.substr(sep + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  const std::string_view path =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return "must not contain user information; use client_id and the client secret";
  }

  std::string host;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated [IPv6] host";
    host = std::string(authority.substr(1, close - 1));
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return "invalid IPv6 address " + Quote(host);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return std::string(kForm);
      port = after.substr(1);
      if (port.empty()) return "empty port";
    }
  } else {
    const size_t colon = authority.rfind(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return "empty port";
    }
    if (host.empty()) return "missing host; " + std::string(kForm);
    const bool host_ok = std::all_of(host.begin(), host.end(), [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '-' || c == '_';
    });
    if (!host_ok) return "invalid host " + Quote(host);
  }
  if (!port.empty()) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535) {
      return "invalid port " + Quote(port);
    }
  }
  if (path.empty() || path[0] != '/')
    return "missing path (e.g. /oauth/token); " + std::string(kForm);
  if (path.find('#') != std::string_view::npos) return "must not contain a #fragment";
  if (scheme == "http" && !IsLoopbackHost(host)) {
    return "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost); use https://";
  }
  return "";
}

// Collects errors and warnings; sorts and de-duplicates them on the way out (a
// value inherited from `defaults` is checked once per tenant that inherits it).
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void Error(Pos pos, std::string_view key, const std::string& message) {
    errors_.push_back(ConfigError{file_, pos.line, pos.column,
                                  key.empty() ? message : std::string(key) + ": " + message});
  }

  void Warn(std::string_view key, const std::string& message) {
    warnings_.push_back(ConfigWarning{std::string(key), message});
  }

  size_t error_count() const { return errors_.size(); }

  std::vector<ConfigError> TakeErrors() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    std::vector<ConfigError> out;
    std::set<std::tuple<int, int, std::string>> seen;
    for (auto& error : errors_) {
      if (seen.emplace(error.line, error.column, error.message).second) {
        out.push_back(std::move(error));
      }
    }
    return out;
  }

  std::vector<ConfigWarning> TakeWarnings() {
    std::vector<ConfigWarning> out;
    std::set<std::pair<std::string, std::string>> seen;
    for (auto& warning : warnings_) {
      if (seen.emplace(warning.key, warning.message).second) out.push_back(std::move(warning));
    }
    return out;
  }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigWarning> warnings_;
};

enum class SecretFileKind { kFile, kCredential };

// Walks the YAML tree once, filling a Config and reporting every problem.
class Loader {
 public:
  Loader(Diagnostics& diag, const SecretSource& env, const AccountDirectory& accounts,
         std::filesystem::path base_dir)
      : diag_(diag), env_(env), accounts_(accounts), base_dir_(std::move(base_dir)) {}

  void Load(const YAML::Node& root, Config& config);

 private:
  // Sections.
  void LoadSocket(const Value& section, SocketOptions& out);
  void LoadAccess(const Value& section, AccessOptions& out);
  void LoadRefresh(const Value& section, RefreshOptions& out);
  void LoadBackoff(const Value& section, BackoffOptions& out);
  void LoadHttp(const Value& section, HttpOptions& out);
  void LoadLogging(const Value& section, LoggingOptions& out);
  void LoadMetrics(const Value& section, MetricsOptions& out);
  void LoadState(const Value& section, StateOptions& out);
  void LoadTenants(const Value& section, const TenantFields& defaults,
                   std::vector<TenantConfig>& out);
  TenantFields ParseTenantFields(const Value& map, bool is_defaults);
  TenantConfig ResolveTenant(const TenantFields& own, const TenantFields& defaults);
  std::optional<std::string> ReadSecretFile(const Located<std::string>& where,
                                            const std::string& file, SecretFileKind kind);

  // The known entries of a mapping, in file order; unknown, duplicate and
  // non-string keys are reported and left out. `known` empty = any key.
  std::vector<Value> Entries(const Value& map, std::span<const std::string_view> known);
  static std::string KeyOf(const Value& entry);

  // Typed readers: report and return nullopt on a bad value.
  std::optional<std::string> String(const Value& v);
  std::optional<int64_t> Integer(const Value& v, int64_t min, int64_t max);
  std::optional<double> Number(const Value& v);
  std::optional<bool> Bool(const Value& v);
  std::optional<Millis> Duration(const Value& v, bool allow_zero);
  std::optional<unsigned> FileMode(const Value& v);
  template <typename E>
  std::optional<E> Enum(const Value& v,
                        std::initializer_list<std::pair<std::string_view, E>> choices);
  std::optional<std::vector<std::string>> StringList(const Value& v);
  // A list of access entries, their names resolved.
  std::optional<std::vector<AccessEntry>> AccessList(const Value& v);
  bool PlainScalar(const Value& v, std::string_view expected);

  std::string Resolve(const std::string& file) const;
  void Error(const Value& v, const std::string& message) { diag_.Error(v.pos, v.path, message); }
  // Where a key was set, for checks that relate two keys; nullopt when not set.
  std::optional<Value> Seen(const std::string& path) const;

  Diagnostics& diag_;
  const SecretSource& env_;
  const AccountDirectory& accounts_;
  std::filesystem::path base_dir_;
  std::unordered_map<std::string, Value> seen_;  // key path -> where it was set
};

std::string Loader::KeyOf(const Value& entry) {
  const size_t dot = entry.path.rfind('.');
  return dot == std::string::npos ? entry.path : entry.path.substr(dot + 1);
}

std::optional<Value> Loader::Seen(const std::string& path) const {
  const auto it = seen_.find(path);
  if (it == seen_.end()) return std::nullopt;
  return it->second;
}

std::string Loader::Resolve(const std::string& file) const {
  const std::filesystem::path p(file);
  if (p.is_absolute() || base_dir_.empty()) return file;
  return (base_dir_ / p).string();
}

std::vector<Value> Loader::Entries(const Value& map, std::span<const std::string_view> known) {
  std::vector<Value> out;
  if (!map.node || map.node.IsNull()) return out;  // "section:" with everything commented out
  if (!map.node.IsMap()) {
    Error(map, "expected a mapping of keys to values");
    return out;
  }
  std::unordered_map<std::string, int> first_line;
  for (auto it = map.node.begin(); it != map.node.end(); ++it) {
    // A copy: `it->first` lives in a proxy that dies with this statement.
    const YAML::Node key = it->first;
    const Pos key_pos = PosOf(key);
    if (!key.IsScalar()) {
      diag_.Error(key_pos, map.path, "keys must be strings");
      continue;
    }
    const std::string& name = key.Scalar();
    const std::string path = map.path.empty() ? name : map.path + "." + name;
    const auto [first, inserted] = first_line.emplace(name, key_pos.line);
    if (!inserted) {
      diag_.Error(key_pos, path,
                  "duplicate key (first at line " + std::to_string(first->second) + ")");
      continue;
    }
    if (!known.empty() && !Contains(known, name)) {
      diag_.Error(key_pos, path, "unknown key" + DidYouMean(name, known));
      continue;
    }
    // An empty value ("key:") has no position of its own; point at the key.
    const Pos value_pos = it->second.IsNull() ? key_pos : PosOf(it->second);
    Value entry{path, it->second, value_pos, key_pos};
    seen_[path] = entry;
    out.push_back(std::move(entry));
  }
  return out;
}

std::optional<std::string> Loader::String(const Value& v) {
  if (!v.node.IsScalar()) {
    Error(v, v.node.IsNull() ? "expected a string, got nothing (write \"\" for empty)"
                             : "expected a string");
    return std::nullopt;
  }
  return v.node.Scalar();
}

// Numbers and booleans must be plain scalars: `max_concurrent: "4"` is a string.
bool Loader::PlainScalar(const Value& v, std::string_view expected) {
  if (v.node.IsScalar() && v.node.Tag() == "?") return true;
  Error(v, "expected " + std::string(expected));
  return false;
}

std::optional<int64_t> Loader::Integer(const Value& v, int64_t min, int64_t max) {
  if (!PlainScalar(v, "an integer")) return std::nullopt;
  const std::string& text = v.node.Scalar();
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range && end == text.data() + text.size()) {
    Error(v, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return std::nullopt;
  }
  if (ec != std::errc() || end != text.data() + text.size()) {
    Error(v, "expected an integer");
    return std::nullopt;
  }
  if (value < min || value > max) {
    Error(v, "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
                 text + ")");
    return std::nullopt;
  }
  return value;
}

std::optional<double> Loader::Number(const Value& v) {
  if (!PlainScalar(v, "a number")) return std::nullopt;
  const std::string& text = v.node.Scalar();
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    Error(v, "expected a number");
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Loader::Bool(const Value& v) {
  if (!PlainScalar(v, "true or false")) return std::nullopt;
  const std::string text = Lower(v.node.Scalar());
  if (text == "true") return true;
  if (text == "false") return false;
  Error(v, "expected true or false");
  return std::nullopt;
}

std::optional<Millis> Loader::Duration(const Value& v, bool allow_zero) {
  if (!v.node.IsScalar()) {
    Error(v, "expected a duration such as 250ms, 15s, 5m or 1h");
    return std::nullopt;
  }
  const std::string& text = v.node.Scalar();
  const std::optional<Millis> d = ParseDuration(text);
  if (!d) {
    Error(v,
          "expected a duration such as 250ms, 15s, 5m or 1h (a number and a unit ms, s, m or "
          "h, at most 8760h); got " +
              Quote(text));
    return std::nullopt;
  }
  if (!allow_zero && d->count() == 0) {
    Error(v, "must be greater than 0");
    return std::nullopt;
  }
  return d;
}

// Octal digits as chmod takes them: "0660", "660", 0660 (plain YAML is read as
// text, so the digits are octal whatever YAML 1.1 or 1.2 would say).
std::optional<unsigned> Loader::FileMode(const Value& v) {
  if (v.node.IsScalar()) {
    const std::string& text = v.node.Scalar();
    const bool octal =
        text.size() >= 3 && text.size() <= 4 &&
        std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
    if (octal) {
      const unsigned mode = static_cast<unsigned>(std::stoul(text, nullptr, 8));
      if (mode <= 0777) return mode;
    }
  }
  Error(v, "expected an octal permission mode such as \"0660\" (0000 to 0777)");
  return std::nullopt;
}

template <typename E>
std::optional<E> Loader::Enum(const Value& v,
                              std::initializer_list<std::pair<std::string_view, E>> choices) {
  std::vector<std::string_view> names;
  for (const auto& [name, value] : choices) names.push_back(name);
  if (!v.node.IsScalar()) {
    Error(v, "expected one of " + JoinOr(names));
    return std::nullopt;
  }
  const std::string& text = v.node.Scalar();
  for (const auto& [name, value] : choices) {
    if (text == name) return value;
  }
  Error(v, "unknown value " + Quote(text) + "; expected one of " + JoinOr(names) +
               DidYouMean(text, names));
  return std::nullopt;
}

std::optional<std::vector<std::string>> Loader::StringList(const Value& v) {
  std::vector<std::string> out;
  if (v.node.IsNull()) return out;
  if (!v.node.IsSequence()) {
    Error(v, "expected a list of strings");
    return std::nullopt;
  }
  bool ok = true;
  for (size_t i = 0; i < v.node.size(); ++i) {
    const YAML::Node item = v.node[i];
    const Value entry{
        v.path + "[" + std::to_string(i) + "]", item, item.IsNull() ? v.pos : PosOf(item), {}};
    const std::optional<std::string> s = String(entry);
    if (!s) {
      ok = false;
    } else if (s->empty()) {
      Error(entry, "must not be empty");
      ok = false;
    } else {
      out.push_back(*s);
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<AccessEntry>> Loader::AccessList(const Value& v) {
  std::optional<std::vector<std::string>> list = StringList(v);
  if (!list) return std::nullopt;
  std::vector<AccessEntry> out;
  bool ok = true;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string& text = (*list)[i];
    const Pos pos = PosOf(v.node[i]);
    const std::string path = v.path + "[" + std::to_string(i) + "]";
    if (!IsValidAccessEntry(text)) {
      diag_.Error(
          pos, path,
          "expected \"user:NAME\", \"group:NAME\", \"uid:N\" or \"gid:N\"; got " + Quote(text));
      ok = false;
      continue;
    }
    const size_t colon = text.find(':');
    const std::string_view kind = std::string_view(text).substr(0, colon);
    const std::string name = text.substr(colon + 1);
    AccessEntry entry;
    entry.text = text;
    entry.kind =
        kind == "user" || kind == "uid" ? AccessEntry::Kind::kUid : AccessEntry::Kind::kGid;
    if (kind == "uid" || kind == "gid") {
      entry.id = static_cast<uint32_t>(std::stoul(name));
    } else if (kind == "user") {
      const std::optional<uid_t> uid = accounts_.UserId(name);
      if (!uid) {
        diag_.Error(pos, path, "unknown user " + Quote(name) + " (no such user on this system)");
        ok = false;
        continue;
      }
      entry.id = *uid;
    } else {
      const std::optional<gid_t> gid = accounts_.GroupId(name);
      if (!gid) {
        diag_.Error(pos, path, "unknown group " + Quote(name) + " (no such group on this system)");
        ok = false;
        continue;
      }
      entry.id = *gid;
    }
    out.push_back(std::move(entry));
  }
  if (!ok) return std::nullopt;
  return out;
}

void Loader::LoadAccess(const Value& section, AccessOptions& out) {
  for (const Value& v : Entries(section, kAccessKeys)) {
    const std::string key = KeyOf(v);
    if (auto list = AccessList(v)) (key == "clients" ? out.clients : out.admins) = std::move(*list);
  }
}

void Loader::LoadSocket(const Value& section, SocketOptions& out) {
  for (const Value& v : Entries(section, kSocketKeys)) {
    const std::string key = KeyOf(v);
    if (key == "path") {
      if (auto s = String(v)) {
        const std::string path = Resolve(*s);
        if (s->empty()) {
          Error(v, "must not be empty");
        } else if (path.size() > kMaxSocketPathBytes) {
          Error(v, "longer than " + std::to_string(kMaxSocketPathBytes) +
                       " bytes, the limit of a Unix socket path");
        } else {
          out.path = path;
        }
      }
    } else if (key == "mode") {
      if (auto m = FileMode(v)) out.mode = *m;
    } else if (key == "max_connections") {
      if (auto n = Integer(v, 1, 65536)) out.max_connections = static_cast<int>(*n);
    } else if (key == "max_request_bytes") {
      if (auto n = Integer(v, 256, 1024 * 1024)) out.max_request_bytes = static_cast<size_t>(*n);
    } else if (key == "idle_timeout") {
      if (auto d = Duration(v, false)) out.idle_timeout = *d;
    }
  }
}

void Loader::LoadRefresh(const Value& section, RefreshOptions& out) {
  bool fractions_ok = true;
  for (const Value& v : Entries(section, kRefreshKeys)) {
    const std::string key = KeyOf(v);
    if (key == "max_concurrent") {
      if (auto n = Integer(v, 1, 1024)) out.max_concurrent = static_cast<int>(*n);
    } else if (key == "adaptive") {
      if (auto b = Bool(v)) out.adaptive = *b;
    } else if (key == "at") {
      const std::optional<double> x = Number(v);
      if (x && (*x <= 0 || *x >= 1)) Error(v, "must be greater than 0 and less than 1");
      if (x && *x > 0 && *x < 1) {
        out.at = *x;
      } else {
        fractions_ok = false;
      }
    } else if (key == "jitter") {
      const std::optional<double> x = Number(v);
      if (x && (*x < 0 || *x >= 0.5)) Error(v, "must be at least 0 and less than 0.5");
      if (x && *x >= 0 && *x < 0.5) {
        out.jitter = *x;
      } else {
        fractions_ok = false;
      }
    } else if (key == "expiry_margin") {
      if (auto d = Duration(v, true)) out.expiry_margin = *d;
    } else if (key == "startup_spread") {
      if (auto d = Duration(v, true)) out.startup_spread = *d;
    }
  }
  if (!fractions_ok) return;
  // The refresh point at +- jitter must stay strictly inside the token's lifetime.
  const std::optional<Value> at = Seen("refresh.at");
  const std::optional<Value> jitter = Seen("refresh.jitter");
  const Value& where = jitter ? *jitter : at ? *at : section;
  const std::string values =
      " (at " + std::to_string(out.at) + ", jitter " + std::to_string(out.jitter) + ")";
  if (out.at - out.jitter <= 0) {
    diag_.Error(where.pos, "refresh", "at - jitter must be greater than 0" + values);
  } else if (out.at + out.jitter >= 1) {
    diag_.Error(where.pos, "refresh", "at + jitter must be less than 1" + values);
  }
}

void Loader::LoadBackoff(const Value& section, BackoffOptions& out) {
  bool bounds_ok = true;
  for (const Value& v : Entries(section, kBackoffKeys)) {
    const std::string key = KeyOf(v);
    if (key == "initial" || key == "max") {
      const std::optional<Millis> d = Duration(v, false);
      if (!d) {
        bounds_ok = false;
      } else {
        (key == "initial" ? out.initial : out.max) = *d;
      }
    } else if (key == "multiplier") {
      const std::optional<double> x = Number(v);
      if (x && (*x < 1 || *x > 100)) Error(v, "must be between 1 and 100");
      if (x && *x >= 1 && *x <= 100) out.multiplier = *x;
    } else if (key == "jitter") {
      if (auto k = Enum<JitterKind>(v, {{"full", JitterKind::kFull},
                                        {"equal", JitterKind::kEqual},
                                        {"decorrelated", JitterKind::kDecorrelated},
                                        {"none", JitterKind::kNone}})) {
        out.jitter = *k;
      }
    } else if (key == "permanent_error_retry") {
      if (auto d = Duration(v, false)) out.permanent_error_retry = *d;
    }
  }
  if (bounds_ok && out.max < out.initial) {
    const std::optional<Value> max = Seen("backoff.max");
    const std::optional<Value> initial = Seen("backoff.initial");
    const Value& where = max ? *max : initial ? *initial : section;
    diag_.Error(where.pos, "backoff.max",
                "must be at least backoff.initial (" + FormatDuration(out.initial) + ")");
  }
}

void Loader::LoadHttp(const Value& section, HttpOptions& out) {
  bool timeouts_ok = true;
  for (const Value& v : Entries(section, kHttpKeys)) {
    const std::string key = KeyOf(v);
    if (key == "connect_timeout" || key == "timeout") {
      const std::optional<Millis> d = Duration(v, false);
      if (!d) {
        timeouts_ok = false;
      } else {
        (key == "timeout" ? out.timeout : out.connect_timeout) = *d;
      }
    } else if (key == "ca_file") {
      const std::optional<std::string> s = String(v);
      if (!s || s->empty()) {
        if (s) out.ca_file.clear();
        continue;
      }
      const std::string file = Resolve(*s);
      const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) {
        Error(v, errno == ENOENT ? "file " + file + " not found"
                                 : "cannot read file " + file + ": " + std::strerror(errno));
        continue;
      }
      ::close(fd);
      out.ca_file = file;
    } else if (key == "request_id_header" || key == "correlation_header") {
      const std::optional<std::string> s = String(v);
      if (!s) continue;
      if (!std::all_of(s->begin(), s->end(), IsHttpTokenChar)) {
        Error(v, "not a valid HTTP header name");
        continue;
      }
      (key == "request_id_header" ? out.request_id_header : out.correlation_header) = *s;
    } else if (key == "max_response_bytes") {
      if (auto n = Integer(v, 1024, 16 * 1024 * 1024)) {
        out.max_response_bytes = static_cast<size_t>(*n);
      }
    }
  }
  if (timeouts_ok && out.connect_timeout > out.timeout) {
    const std::optional<Value> connect = Seen("http.connect_timeout");
    const std::optional<Value> whole = Seen("http.timeout");
    const Value& where = connect ? *connect : whole ? *whole : section;
    diag_.Error(where.pos, "http.connect_timeout",
                "must not exceed http.timeout (" + FormatDuration(out.timeout) + ")");
  }
}

void Loader::LoadLogging(const Value& section, LoggingOptions& out) {
  for (const Value& v : Entries(section, kLoggingKeys)) {
    const std::string key = KeyOf(v);
    if (key == "format") {
      if (auto f = Enum<LogFormat>(v, {{"json", LogFormat::kJson}, {"text", LogFormat::kText}})) {
        out.format = *f;
      }
    } else if (key == "level") {
      if (auto l = Enum<LogLevel>(v, {{"trace", LogLevel::kTrace},
                                      {"debug", LogLevel::kDebug},
                                      {"info", LogLevel::kInfo},
                                      {"warn", LogLevel::kWarn},
                                      {"error", LogLevel::kError}})) {
        out.level = *l;
      }
    }
  }
}

void Loader::LoadMetrics(const Value& section, MetricsOptions& out) {
  for (const Value& v : Entries(section, kMetricsKeys)) {
    const std::string key = KeyOf(v);
    if (key == "textfile") {
      if (auto s = String(v)) out.textfile = s->empty() ? "" : Resolve(*s);
    } else if (key == "interval") {
      if (auto d = Duration(v, false)) out.interval = *d;
    }
  }
}

void Loader::LoadState(const Value& section, StateOptions& out) {
  for (const Value& v : Entries(section, kStateKeys)) {
    if (KeyOf(v) == "file") {
      if (auto s = String(v)) out.file = s->empty() ? "" : Resolve(*s);
    }
  }
}

TenantFields Loader::ParseTenantFields(const Value& map, bool is_defaults) {
  TenantFields t;
  t.path = map.path;
  t.pos = map.pos;
  auto located = [](const Value& v, std::string s) {
    return Located<std::string>{std::move(s), v.path, v.pos};
  };
  for (const Value& v : Entries(map, kTenantKeys)) {
    const std::string key = KeyOf(v);
    // Any error reported while reading this key marks it invalid.
    const size_t errors_before = diag_.error_count();
    struct MarkInvalid {
      TenantFields& t;
      const std::string& key;
      Diagnostics& diag;
      size_t before;
      ~MarkInvalid() {
        if (diag.error_count() > before) t.invalid.insert(key);
      }
    } mark_invalid{t, key, diag_, errors_before};
    if (key == "id") {
      if (is_defaults) {
        Error(v, "a tenant's id cannot have a default");
        continue;
      }
      const std::optional<std::string> s = String(v);
      if (!s) continue;
      if (!IsValidTenantId(*s)) {
        Error(v, "invalid id " + Quote(*s) + "; expected 1 to 64 of A-Z a-z 0-9 _ . -");
        continue;
      }
      t.id = located(v, *s);
    } else if (key == "client_id") {
      const std::optional<std::string> s = String(v);
      if (s && s->empty()) Error(v, "must not be empty");
      if (s && !s->empty()) t.client_id = located(v, *s);
    } else if (key == "client_secret_file") {
      const std::optional<std::string> s = String(v);
      if (s && s->empty()) Error(v, "must not be empty");
      if (s && !s->empty()) t.secret_file = located(v, *s);
    } else if (key == "client_secret_env") {
      const std::optional<std::string> s = String(v);
      if (s && !IsValidEnvName(*s)) Error(v, "not a valid environment variable name");
      if (s && IsValidEnvName(*s)) t.secret_env = located(v, *s);
    } else if (key == "client_secret_credential") {
      const std::optional<std::string> s = String(v);
      if (!s) continue;
      if (s->empty() || s->find('/') != std::string::npos || *s == "." || *s == "..") {
        Error(v, "not a valid credential name (a file name in $CREDENTIALS_DIRECTORY)");
        continue;
      }
      t.secret_credential = located(v, *s);
    } else if (key == "client_secret") {
      // Never echo the value, not even in a type error.
      if (!v.node.IsScalar()) {
        Error(v, "expected a string");
        continue;
      }
      if (v.node.Scalar().empty()) {
        Error(v, "must not be empty");
        continue;
      }
      t.secret_inline = located(v, v.node.Scalar());
      diag_.Warn(v.path, "inline secret; prefer client_secret_file or client_secret_credential");
    } else if (key == "region") {
      const std::optional<std::string> s = String(v);
      if (!s || s->empty()) continue;  // "" = not set, as in the SPEC's defaults
      const std::string domain = Lower(*s);
      if (TokenUrlForRegion(domain).empty()) {
        std::string hint = DidYouMean(domain, kRegionDomains);
        // "login.mypurecloud.com" or a whole URL where the bare domain belongs.
        std::string host =
            domain.substr(domain.find("://") == std::string::npos ? 0 : domain.find("://") + 3);
        host = host.substr(0, host.find('/'));
        if (host.rfind("login.", 0) == 0) host = host.substr(6);
        if (hint.empty() && Contains(kRegionDomains, host)) hint = " (did you mean " + host + "?)";
        Error(v, "unknown region domain " + Quote(*s) + hint);
        continue;
      }
      t.region = located(v, domain);
    } else if (key == "token_url") {
      const std::optional<std::string> s = String(v);
      if (!s || s->empty()) continue;  // "" = not set
      const std::string problem = TokenUrlProblem(*s);
      if (!problem.empty()) {
        Error(v, problem);
        continue;
      }
      t.token_url = located(v, *s);
    } else if (key == "auth_method") {
      if (auto m =
              Enum<AuthMethod>(v, {{"basic", AuthMethod::kBasic}, {"post", AuthMethod::kPost}})) {
        t.auth_method = Located<AuthMethod>{*m, v.path, v.pos};
      }
    } else if (key == "scopes") {
      std::optional<std::vector<std::string>> list = StringList(v);
      if (!list) continue;
      bool ok = true;
      for (size_t i = 0; i < list->size(); ++i) {
        const std::string& scope = (*list)[i];
        if (!std::all_of(scope.begin(), scope.end(), IsScopeTokenChar)) {
          const YAML::Node item = v.node[i];
          diag_.Error(PosOf(item), v.path + "[" + std::to_string(i) + "]",
                      "invalid scope " + Quote(scope) +
                          "; no spaces, quotes or backslashes (one scope per list item)");
          ok = false;
        }
      }
      if (ok) t.scopes = Located<std::vector<std::string>>{std::move(*list), v.path, v.pos};
    } else if (key == "params") {
      std::vector<std::pair<std::string, std::string>> params;
      bool ok = true;
      if (!v.node.IsNull() && !v.node.IsMap()) {
        Error(v, "expected a mapping of form field names to values");
        continue;
      }
      for (const Value& param : Entries(v, {})) {
        const std::string name = param.path.substr(v.path.size() + 1);
        if (name.empty()) {
          Error(param, "empty form field name");
          ok = false;
        } else if (Contains(kReservedParams, name)) {
          Error(param, "reserved; tokend sets " + name + " itself");
          ok = false;
        } else if (!param.node.IsScalar()) {
          Error(param, "expected a single value (a string or a number)");
          ok = false;
        } else {
          params.emplace_back(name, param.node.Scalar());
        }
      }
      if (ok) {
        t.params = Located<std::vector<std::pair<std::string, std::string>>>{std::move(params),
                                                                             v.path, v.pos};
      }
    } else if (key == "clients") {
      if (auto list = AccessList(v)) {
        t.clients = Located<std::vector<AccessEntry>>{std::move(*list), v.path, v.pos};
      }
    }
  }

  // Groups where one entry (defaults or tenant) may set only one member.
  std::vector<const Located<std::string>*> secrets;
  for (const auto* s : {&t.secret_file, &t.secret_env, &t.secret_credential, &t.secret_inline}) {
    if (*s) secrets.push_back(&**s);
  }
  std::sort(secrets.begin(), secrets.end(), [](const auto* a, const auto* b) {
    return std::tie(a->pos.line, a->pos.column) < std::tie(b->pos.line, b->pos.column);
  });
  if (secrets.size() > 1) {
    std::string names;
    for (const auto* s : secrets) {
      names += (names.empty() ? "" : ", ") + s->path.substr(t.path.size() + 1);
    }
    diag_.Error(secrets[1]->pos, t.path, "set exactly one client secret source; found " + names);
  }
  if (t.region && t.token_url) {
    diag_.Error(t.token_url->pos, t.path, "set only one of region and token_url");
  }
  return t;
}

std::optional<std::string> Loader::ReadSecretFile(const Located<std::string>& where,
                                                  const std::string& file, SecretFileKind kind) {
  const char* what = kind == SecretFileKind::kCredential ? "credential file " : "file ";
  auto fail = [&](const std::string& message) {
    diag_.Error(where.pos, where.path, what + file + " " + message);
    return std::nullopt;
  };
  // O_NONBLOCK so that a FIFO cannot hang the load; it does not affect regular files.
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return fail("not found");
    return fail(std::string("cannot be read: ") + std::strerror(errno));
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(std::string("cannot be read: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("is not a regular file");
  if (st.st_mode & S_IROTH) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(std::string("is world-readable (mode ") + mode + "); chmod o-r it");
  }
  std::string data;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::string("cannot be read: ") + std::strerror(errno));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSecretBytes) return fail("is larger than 64 KiB");
  }
  if (data.size() >= 2 && data.compare(data.size() - 2, 2, "\r\n") == 0) {
    data.resize(data.size() - 2);
  } else if (!data.empty() && data.back() == '\n') {
    data.pop_back();
  }
  if (data.empty()) return fail("is empty");
  if (data.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    return fail("must hold the secret on a single line");
  }
  return data;
}

TenantConfig Loader::ResolveTenant(const TenantFields& own, const TenantFields& defaults) {
  TenantConfig out;
  // A tenant's own value wins, key by key; the secret keys and the endpoint keys
  // (region, token_url) are each one choice, taken whole from the tenant when it
  // sets any of them.
  const TenantFields& secret = own.HasSecret() ? own : defaults;
  const TenantFields& endpoint = own.HasEndpoint() ? own : defaults;

  if (own.id) {
    out.id = own.id->value;
  } else if (!own.invalid.count("id")) {
    diag_.Error(own.pos, own.path, "missing id");
  }

  const TenantFields& client = own.Set(own.client_id, "client_id") ? own : defaults;
  if (client.client_id) {
    out.client_id = client.client_id->value;
  } else if (!client.invalid.count("client_id")) {
    diag_.Error(own.pos, own.path, "missing client_id");
  }

  const int secret_sources = (secret.secret_file ? 1 : 0) + (secret.secret_env ? 1 : 0) +
                             (secret.secret_credential ? 1 : 0) + (secret.secret_inline ? 1 : 0);
  if (!secret.HasSecret()) {
    diag_.Error(own.pos, own.path,
                "no client secret; set one of client_secret_file, client_secret_env, "
                "client_secret_credential or client_secret");
  } else if (secret_sources != 1) {
    // Several (reported where they were parsed) or an invalid one (reported too).
  } else if (secret.secret_file) {
    const std::string file = Resolve(secret.secret_file->value);
    if (auto s = ReadSecretFile(*secret.secret_file, file, SecretFileKind::kFile)) {
      out.client_secret = std::move(*s);
    }
  } else if (secret.secret_env) {
    const std::string& name = secret.secret_env->value;
    const std::optional<std::string> value = env_.GetEnv(name);
    if (!value) {
      diag_.Error(secret.secret_env->pos, secret.secret_env->path,
                  "environment variable " + name + " is not set");
    } else if (value->empty()) {
      diag_.Error(secret.secret_env->pos, secret.secret_env->path,
                  "environment variable " + name + " is empty");
    } else {
      out.client_secret = *value;
    }
  } else if (secret.secret_credential) {
    const std::optional<std::string> dir = env_.GetEnv("CREDENTIALS_DIRECTORY");
    if (!dir || dir->empty()) {
      diag_.Error(secret.secret_credential->pos, secret.secret_credential->path,
                  "$CREDENTIALS_DIRECTORY is not set; run tokend from a systemd unit with "
                  "LoadCredential=" +
                      secret.secret_credential->value + ":/path/to/secret");
    } else {
      const std::string file = *dir + "/" + secret.secret_credential->value;
      if (auto s = ReadSecretFile(*secret.secret_credential, file, SecretFileKind::kCredential)) {
        out.client_secret = std::move(*s);
      }
    }
  } else if (secret.secret_inline) {
    out.client_secret = secret.secret_inline->value;
  }

  if (!endpoint.HasEndpoint()) {
    diag_.Error(own.pos, own.path, "no endpoint; set region or token_url (here or in defaults)");
  } else if (endpoint.token_url && !endpoint.region) {
    out.token_url = endpoint.token_url->value;
  } else if (endpoint.region && !endpoint.token_url) {
    out.token_url = TokenUrlForRegion(endpoint.region->value);
  }

  if (own.auth_method || defaults.auth_method) {
    out.auth_method = (own.auth_method ? own.auth_method : defaults.auth_method)->value;
  }
  if (own.scopes || defaults.scopes) {
    out.scopes = (own.scopes ? own.scopes : defaults.scopes)->value;
  }
  if (own.params || defaults.params) {
    out.params = (own.params ? own.params : defaults.params)->value;
  }
  if (own.clients || defaults.clients) {
    out.client_entries = (own.clients ? own.clients : defaults.clients)->value;
    for (const AccessEntry& entry : out.client_entries) out.clients.push_back(entry.text);
  }
  return out;
}

void Loader::LoadTenants(const Value& section, const TenantFields& defaults,
                         std::vector<TenantConfig>& out) {
  if (!section.node.IsSequence()) {
    Error(section,
          section.node.IsNull() ? "at least one tenant is required" : "expected a list of tenants");
    return;
  }
  if (section.node.size() == 0) {
    Error(section, "at least one tenant is required");
    return;
  }
  std::unordered_map<std::string, int> first_line;  // id -> line
  for (size_t i = 0; i < section.node.size(); ++i) {
    const YAML::Node item = section.node[i];
    const Value entry{
        "tenants[" + std::to_string(i) + "]", item, item.IsNull() ? section.pos : PosOf(item), {}};
    if (!item.IsMap()) {
      Error(entry, "expected a mapping with at least id, client_id and a client secret");
      continue;
    }
    const TenantFields fields = ParseTenantFields(entry, false);
    if (fields.id) {
      const auto [first, inserted] = first_line.emplace(fields.id->value, fields.id->pos.line);
      if (!inserted) {
        diag_.Error(fields.id->pos, fields.id->path,
                    "duplicate id " + Quote(fields.id->value) + " (first at line " +
                        std::to_string(first->second) + ")");
      }
    }
    out.push_back(ResolveTenant(fields, defaults));
  }
}

void Loader::Load(const YAML::Node& root, Config& config) {
  const Value root_value{"", root, PosOf(root), {}};
  if (!root || root.IsNull()) {
    diag_.Error({}, "", "empty config; at least `tenants` is required");
    return;
  }
  if (!root.IsMap()) {
    diag_.Error(root_value.pos, "",
                "expected a mapping of sections (socket, access, refresh, backoff, http, "
                "defaults, tenants, logging, metrics, state)");
    return;
  }
  std::unordered_map<std::string, Value> sections;
  for (const Value& v : Entries(root_value, kTopLevelKeys)) sections.emplace(v.path, v);
  auto section = [&](const char* name) {
    const auto it = sections.find(name);
    return it == sections.end() ? Value{name, YAML::Node(), {}, {}} : it->second;
  };

  LoadSocket(section("socket"), config.socket);
  LoadAccess(section("access"), config.access);
  LoadRefresh(section("refresh"), config.refresh);
  LoadBackoff(section("backoff"), config.backoff);
  LoadHttp(section("http"), config.http);
  LoadLogging(section("logging"), config.logging);
  LoadMetrics(section("metrics"), config.metrics);
  LoadState(section("state"), config.state);

  const TenantFields defaults = ParseTenantFields(section("defaults"), true);
  if (!sections.count("tenants")) {
    diag_.Error(root_value.pos, "tenants", "missing; at least one tenant is required");
    return;
  }
  LoadTenants(section("tenants"), defaults, config.tenants);
}

// Notes where each document of a YAML stream starts, building nothing.
class DocumentStarts final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> marks;
};

ConfigLoadResult LoadFromText(const std::string& yaml_text, const std::string& path,
                              const std::filesystem::path& base_dir, const SecretSource& env,
                              const AccountDirectory& accounts) {
  ConfigLoadResult result;
  result.config.source_path = path;
  Diagnostics diag(path);
  try {
    // At most two documents are looked at, never YAML::LoadAll(): on some
    // malformed streams (",x") yaml-cpp 0.7's parser reports an empty document
    // again and again without consuming input, and LoadAll() collects them
    // until memory runs out (fixed upstream by yaml-cpp PR #1319; found by
    // fuzz_config). A second document starting where the first did is that.
    std::istringstream stream(yaml_text);
    YAML::Parser parser(stream);
    DocumentStarts starts;
    int documents = 0;
    while (documents < 2 && parser.HandleNextDocument(starts)) ++documents;
    if (documents > 1 && starts.marks.size() > 1 && starts.marks[1].pos == starts.marks[0].pos) {
      diag.Error(PosOf(starts.marks[1]), "", "YAML syntax error: unexpected character");
    } else if (documents > 1) {
      diag.Error(PosOf(starts.marks[1]), "",
                 "expected one YAML document, found a second one here");
    } else {
      Loader loader(diag, env, accounts, base_dir);
      loader.Load(documents == 0 ? YAML::Node() : YAML::Load(yaml_text), result.config);
    }
  } catch (const YAML::Exception& e) {
    diag.Error(PosOf(e.mark), "", e.msg);
  } catch (const std::exception& e) {
    diag.Error({}, "", std::string("internal error while reading the config: ") + e.what());
  }
  result.errors = diag.TakeErrors();
  result.warnings = diag.TakeWarnings();
  return result;
}

}  // namespace

std::string ConfigError::ToString() const {
  std::string out = path;
  if (line > 0) {
    out += ":" + std::to_string(line);
    if (column > 0) out += ":" + std::to_string(column);
  }
  return out + ": " + message;
}

bool TenantConfig::SameEndpoint(const TenantConfig& other) const {
  return client_id == other.client_id && client_secret == other.client_secret &&
         token_url == other.token_url && auth_method == other.auth_method &&
         scopes == other.scopes && params == other.params;
}

std::optional<std::string> ProcessSecretSource::GetEnv(const std::string& name) const {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::string TokenUrlForRegion(const std::string& region) {
  const std::string domain = Lower(region);
  if (!Contains(kRegionDomains, domain)) return "";
  return "https://login." + domain + "/oauth/token";
}

ConfigLoadResult LoadConfigString(const std::string& yaml_text, const std::string& path,
                                  const SecretSource& env, const AccountDirectory& accounts) {
  return LoadFromText(yaml_text, path, {}, env, accounts);
}

ConfigLoadResult LoadConfigString(const std::string& yaml_text, const std::string& path,
                                  const SecretSource& env) {
  return LoadConfigString(yaml_text, path, env, SystemAccounts::Instance());
}

ConfigLoadResult LoadConfigFile(const std::string& path, const SecretSource& env) {
  return LoadConfigFile(path, env, SystemAccounts::Instance());
}

ConfigLoadResult LoadConfigFile(const std::string& path, const SecretSource& env,
                                const AccountDirectory& accounts) {
  auto single_error = [&](const std::string& message) {
    ConfigLoadResult result;
    result.config.source_path = path;
    result.errors.push_back(ConfigError{path, 0, 0, message});
    return result;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return single_error("config file not found");
    return single_error(std::string("cannot read config file: ") + std::strerror(errno));
  }
  std::string text;
  char buf[8192];
  int read_errno = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      read_errno = errno;
      break;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) break;
  }
  ::close(fd);
  if (read_errno != 0) {
    return single_error(std::string("cannot read config file: ") + std::strerror(read_errno));
  }
  if (text.size() > kMaxConfigBytes) return single_error("config file is larger than 4 MiB");
  return LoadFromText(text, path, std::filesystem::path(path).parent_path(), env, accounts);
}

}  // namespace tokend
