#include "tokend/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tokend {

namespace {

constexpr int kVersion = 1;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string DirectoryOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

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

  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("cannot create " + tmp);
  if (::fchmod(fd, 0600) != 0 || !WriteAll(fd, data) || ::fsync(fd) != 0) {
    std::string error = Errno("cannot write " + tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return error;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    std::string error = Errno("cannot rename " + tmp + " to " + path_);
    ::unlink(tmp.c_str());
    return error;
  }
  int dir = ::open(DirectoryOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return "";
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
