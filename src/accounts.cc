#include "tokend/accounts.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace tokend {

namespace {

// getpw*_r/getgr*_r buffers: start at the system's hint, grow on ERANGE.
size_t InitialBufferSize(int name) {
  long hint = sysconf(name);
  return hint > 0 ? static_cast<size_t>(hint) : 16384;
}

constexpr size_t kMaxBuffer = 1 << 20;
constexpr int kMaxGroups = 65536;

}  // namespace

std::optional<uid_t> SystemAccounts::UserId(const std::string& name) const {
  std::vector<char> buf(InitialBufferSize(_SC_GETPW_R_SIZE_MAX));
  for (;;) {
    passwd pw{};
    passwd* found = nullptr;
    int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < kMaxBuffer) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return std::nullopt;
    return found->pw_uid;
  }
}

std::optional<gid_t> SystemAccounts::GroupId(const std::string& name) const {
  std::vector<char> buf(InitialBufferSize(_SC_GETGR_R_SIZE_MAX));
  for (;;) {
    group gr{};
    group* found = nullptr;
    int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < kMaxBuffer) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return std::nullopt;
    return found->gr_gid;
  }
}

std::vector<gid_t> SystemAccounts::GroupsOfUid(uid_t uid) const {
  std::vector<char> buf(InitialBufferSize(_SC_GETPW_R_SIZE_MAX));
  passwd pw{};
  passwd* found = nullptr;
  for (;;) {
    int rc = getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < kMaxBuffer) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return {};
    break;
  }
  std::vector<gid_t> groups(64);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (getgrouplist(found->pw_name, found->pw_gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      return groups;
    }
    // -1: too small; n now holds the number needed.
    if (n <= static_cast<int>(groups.size()) || n > kMaxGroups) return {found->pw_gid};
    groups.resize(static_cast<size_t>(n));
  }
}

const SystemAccounts& SystemAccounts::Instance() {
  static const SystemAccounts instance;
  return instance;
}

}  // namespace tokend
