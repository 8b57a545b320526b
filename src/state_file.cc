#include "tokend/state_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokend/atomic_file.h"

namespace tokend {

namespace {

constexpr int kVersion = 1;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::string EndpointFingerprint(const TenantConfig& tenant) {
  // FNV-1a 64 over a length-prefixed canonical form: stable across builds and
  // platforms, and it needs no secret.
  std::string canonical;
  auto add = [&canonical](const std::string& s) {
    canonical += std::to_string(s.size());
    canonical += ':';
    canonical += s;
  };
  add(tenant.client_id);
  add(tenant.token_url);
  add(tenant.auth_method == AuthMethod::kBasic ? "basic" : "post");
  for (const auto& scope : tenant.scopes) add("scope=" + scope);
  for (const auto& [key, value] : tenant.params) add("param=" + key + "=" + value);
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : canonical) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(hash));
  return out;
}

std::string StateFile::Save(const std::vector<PersistedToken>& tokens) const {
  nlohmann::json doc;
  doc["version"] = kVersion;
  doc["tokens"] = nlohmann::json::array();
  for (const auto& t : tokens) {
    doc["tokens"].push_back({{"tenant", t.tenant},
                             {"access_token", t.access_token},
                             {"token_type", t.token_type},
                             {"obtained_unix_ms", t.obtained_unix_ms},
                             {"expires_unix_ms", t.expires_unix_ms},
                             {"fingerprint", t.fingerprint}});
  }
  std::string data = doc.dump() + "\n";

  return WriteFileAtomically(path_, data, 0600);
}

StateLoadResult StateFile::Load() const {
  StateLoadResult result;
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno != ENOENT) result.error = Errno("cannot read " + path_);
    return result;
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    result.error = path_ + " is readable by group or others (mode " + mode +
                   "); refusing to load tokens from it (chmod 600 it)";
    return result;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    result.error = Errno("cannot read " + path_);
    return result;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();

  auto set_aside = [&](const std::string& why) {
    result.tokens.clear();
    std::string aside = path_ + ".bad-" + std::to_string(std::time(nullptr));
    result.set_aside = ::rename(path_.c_str(), aside.c_str()) == 0;
    result.error = why + (result.set_aside ? "; moved to " + aside : "");
    return result;
  };

  auto doc = nlohmann::json::parse(buffer.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return set_aside(path_ + " is not valid JSON");
  if (!doc.contains("version") || doc["version"] != kVersion) {
    return set_aside(path_ + " has an unknown version");
  }
  if (!doc.contains("tokens") || !doc["tokens"].is_array()) {
    return set_aside(path_ + " has no token list");
  }
  for (const auto& t : doc["tokens"]) {
    if (!t.is_object() || !t.contains("tenant") || !t["tenant"].is_string() ||
        !t.contains("access_token") || !t["access_token"].is_string() ||
        !t.contains("token_type") || !t["token_type"].is_string() ||
        !t.contains("obtained_unix_ms") || !t["obtained_unix_ms"].is_number_integer() ||
        !t.contains("expires_unix_ms") || !t["expires_unix_ms"].is_number_integer() ||
        !t.contains("fingerprint") || !t["fingerprint"].is_string()) {
      return set_aside(path_ + " has a malformed token entry");
    }
    PersistedToken token;
    token.tenant = t["tenant"].get<std::string>();
    token.access_token = t["access_token"].get<std::string>();
    token.token_type = t["token_type"].get<std::string>();
    token.obtained_unix_ms = t["obtained_unix_ms"].get<int64_t>();
    token.expires_unix_ms = t["expires_unix_ms"].get<int64_t>();
    token.fingerprint = t["fingerprint"].get<std::string>();
    result.tokens.push_back(std::move(token));
  }
  return result;
}

}  // namespace tokend
