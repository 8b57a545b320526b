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

// Runs `lookup(&entry, buf, size, &found)`, one of the getpw*_r/getgr*_r
// calls, growing the buffer on ERANGE; returns use(*found) while the buffer
// still lives, or `missing` when there is no such entry.
template <typename Entry, typename Lookup, typename Use, typename Result>
Result WithEntry(int size_name, Lookup lookup, Use use, Result missing) {
  std::vector<char> buf(InitialBufferSize(size_name));
  for (;;) {
    Entry entry{};
    Entry* found = nullptr;
    int rc = lookup(&entry, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < kMaxBuffer) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return missing;
    return use(*found);
  }
}

std::vector<gid_t> GroupList(const passwd& pw) {
  std::vector<gid_t> groups(64);
  for (;;) {
    int n = static_cast<int>(groups.size());
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) >= 0) {
      groups.resize(static_cast<size_t>(n));
      return groups;
    }
    // -1: too small; n now holds the number needed.
    if (n <= static_cast<int>(groups.size()) || n > kMaxGroups) return {pw.pw_gid};
    groups.resize(static_cast<size_t>(n));
  }
}

}  // namespace

std::optional<uid_t> SystemAccounts::UserId(const std::string& name) const {
  return WithEntry<passwd>(
      _SC_GETPW_R_SIZE_MAX,
      [&](passwd* pw, char* buf, size_t size, passwd** found) {
        return getpwnam_r(name.c_str(), pw, buf, size, found);
      },
      [](const passwd& pw) { return std::optional<uid_t>(pw.pw_uid); }, std::optional<uid_t>());
}

std::optional<gid_t> SystemAccounts::GroupId(const std::string& name) const {
  return WithEntry<group>(
      _SC_GETGR_R_SIZE_MAX,
      [&](group* gr, char* buf, size_t size, group** found) {
        return getgrnam_r(name.c_str(), gr, buf, size, found);
      },
      [](const group& gr) { return std::optional<gid_t>(gr.gr_gid); }, std::optional<gid_t>());
}

std::vector<gid_t> SystemAccounts::GroupsOfUid(uid_t uid) const {
  return WithEntry<passwd>(
      _SC_GETPW_R_SIZE_MAX,
      [&](passwd* pw, char* buf, size_t size, passwd** found) {
        return getpwuid_r(uid, pw, buf, size, found);
      },
      GroupList, std::vector<gid_t>());
}

const SystemAccounts& SystemAccounts::Instance() {
  static const SystemAccounts instance;
  return instance;
}

}  // namespace tokend
