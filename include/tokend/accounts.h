#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace tokend {

// The system's user and group database (passwd, group, NSS), as access control
// needs it. A seam so that config and access tests need no real accounts.
//
// Implementations are thread-safe.
class AccountDirectory {
 public:
  virtual ~AccountDirectory() = default;

  // The uid of the user named `name`, or nullopt when there is none.
  virtual std::optional<uid_t> UserId(const std::string& name) const = 0;
  // The gid of the group named `name`, or nullopt when there is none.
  virtual std::optional<gid_t> GroupId(const std::string& name) const = 0;
  // Every group the user with `uid` belongs to: the primary group of its passwd
  // entry and its supplementary groups (getgrouplist). Empty when no user has
  // this uid. May be slow (NSS): callers cache it.
  virtual std::vector<gid_t> GroupsOfUid(uid_t uid) const = 0;
};

// The real database: getpwnam_r, getgrnam_r, getpwuid_r and getgrouplist.
class SystemAccounts final : public AccountDirectory {
 public:
  std::optional<uid_t> UserId(const std::string& name) const override;
  std::optional<gid_t> GroupId(const std::string& name) const override;
  std::vector<gid_t> GroupsOfUid(uid_t uid) const override;

  // A process-wide instance.
  static const SystemAccounts& Instance();
};

}  // namespace tokend
