#include "tokend/access_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "simulated_clock.h"

namespace tokend {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uid_t kSelf = 777;

// Group memberships in memory; counts lookups to show the cache.
class FakeAccounts final : public AccountDirectory {
 public:
  std::optional<uid_t> UserId(const std::string&) const override { return std::nullopt; }
  std::optional<gid_t> GroupId(const std::string&) const override { return std::nullopt; }
  std::vector<gid_t> GroupsOfUid(uid_t uid) const override {
    ++lookups;
    auto it = groups.find(uid);
    return it == groups.end() ? std::vector<gid_t>{} : it->second;
  }

  std::map<uid_t, std::vector<gid_t>> groups;
  mutable int lookups = 0;
};

AccessEntry Uid(uint32_t id) { return {AccessEntry::Kind::kUid, id, "uid:" + std::to_string(id)}; }
AccessEntry Gid(uint32_t id) { return {AccessEntry::Kind::kGid, id, "gid:" + std::to_string(id)}; }

class AccessPolicyTest : public ::testing::Test {
 protected:
  PeerAccess Evaluate(const Peer& peer) {
    return AccessPolicy(config_, kSelf, accounts_).Evaluate(peer);
  }
  void AddTenant(const std::string& id, std::vector<AccessEntry> clients) {
    TenantConfig t;
    t.id = id;
    t.client_entries = std::move(clients);
    config_.tenants.push_back(std::move(t));
  }

  Config config_;
  FakeAccounts accounts_;
};

TEST_F(AccessPolicyTest, EmptyAccessMeansRootAndOwnUidOnly) {
  for (const Peer& peer : {Peer{0, 0, 1}, Peer{kSelf, 5, 1}}) {
    PeerAccess access = Evaluate(peer);
    EXPECT_TRUE(access.client);
    EXPECT_TRUE(access.admin);
    EXPECT_TRUE(access.MayRead("anything"));
  }
  for (const Peer& peer : {Peer{1000, 0, 1}, Peer{}, Peer{65534, 65534, 1}}) {
    PeerAccess access = Evaluate(peer);
    EXPECT_FALSE(access.client);
    EXPECT_FALSE(access.admin);
    EXPECT_FALSE(access.MayRead("anything"));
  }
  // Primary gid 0 is not root.
  EXPECT_FALSE(Evaluate(Peer{1000, 0, 1}).client);
  EXPECT_TRUE(AccessPolicy(kSelf).Evaluate(Peer{kSelf, 1, 1}).admin);
  EXPECT_FALSE(AccessPolicy(kSelf).Evaluate(Peer{1, 1, 1}).client);
}

TEST_F(AccessPolicyTest, UidEntriesMatchTheUid) {
  config_.access.clients = {Uid(1000)};
  EXPECT_TRUE(Evaluate(Peer{1000, 50, 1}).client);
  EXPECT_FALSE(Evaluate(Peer{1000, 50, 1}).admin);
  EXPECT_FALSE(Evaluate(Peer{1001, 1000, 1}).client);  // a gid equal to the uid is no match
  EXPECT_EQ(accounts_.lookups, 0);                     // no group entries, no lookups
}

TEST_F(AccessPolicyTest, GroupEntriesMatchPrimaryOrSupplementaryGroups) {
  config_.access.clients = {Gid(3000)};
  accounts_.groups[1001] = {1001, 3000};               // 1001's user is a member of 3000
  EXPECT_TRUE(Evaluate(Peer{1000, 3000, 1}).client);   // primary gid from SO_PEERCRED
  EXPECT_TRUE(Evaluate(Peer{1001, 1001, 1}).client);   // supplementary, from the user's groups
  EXPECT_FALSE(Evaluate(Peer{1002, 1002, 1}).client);  // neither
}

TEST_F(AccessPolicyTest, AdminsAreClientsAndMayAdminister) {
  config_.access.clients = {Uid(1000)};
  config_.access.admins = {Uid(1001), Gid(4000)};
  PeerAccess admin = Evaluate(Peer{1001, 1, 1});
  EXPECT_TRUE(admin.client);
  EXPECT_TRUE(admin.admin);
  EXPECT_TRUE(Evaluate(Peer{1005, 4000, 1}).admin);
  EXPECT_FALSE(Evaluate(Peer{1000, 1, 1}).admin);
}

TEST_F(AccessPolicyTest, TenantClientsRestrictOnTopOfAccessClients) {
  config_.access.clients = {Uid(1000), Uid(1001), Gid(3000)};
  AddTenant("org-b", {Uid(1001), Uid(2000)});
  AddTenant("org-a", {Gid(3000)});
  AddTenant("org-c", {});

  PeerAccess access = Evaluate(Peer{1000, 1, 1});
  EXPECT_THAT(access.denied_tenants, ElementsAre("org-a", "org-b"));  // sorted
  EXPECT_FALSE(access.MayRead("org-a"));
  EXPECT_FALSE(access.MayRead("org-b"));
  EXPECT_TRUE(access.MayRead("org-c"));
  EXPECT_TRUE(access.MayRead("unknown"));  // tenants without clients are open to clients

  access = Evaluate(Peer{1001, 1, 1});
  EXPECT_THAT(access.denied_tenants, ElementsAre("org-a"));
  access = Evaluate(Peer{1002, 3000, 1});
  EXPECT_THAT(access.denied_tenants, ElementsAre("org-b"));
  // 2000 is in org-b's clients but not in access.clients: nothing at all.
  EXPECT_FALSE(Evaluate(Peer{2000, 1, 1}).MayRead("org-b"));
  // Root reads everything.
  EXPECT_THAT(Evaluate(Peer{0, 0, 1}).denied_tenants, IsEmpty());
}

TEST_F(AccessPolicyTest, GroupsAreLookedUpOncePerUidAndTheCacheIsBounded) {
  config_.access.clients = {Gid(3000)};
  accounts_.groups[1001] = {3000};
  AccessPolicy policy(config_, kSelf, accounts_);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(policy.Evaluate(Peer{1001, 1, 1}).client);
  EXPECT_EQ(accounts_.lookups, 1);
  for (uid_t uid = 5000; uid < 5000 + AccessPolicy::kMaxCachedUids; ++uid) {
    policy.Evaluate(Peer{uid, 1, 1});
  }
  const int before = accounts_.lookups;
  policy.Evaluate(Peer{1001, 1, 1});  // evicted when the cache was full: looked up again
  EXPECT_EQ(accounts_.lookups, before + 1);
  // A new policy (a reload) starts with an empty cache.
  AccessPolicy reloaded(config_, kSelf, accounts_);
  reloaded.Evaluate(Peer{1001, 1, 1});
  EXPECT_EQ(accounts_.lookups, before + 2);
}

TEST(DenialThrottleTest, LogsAFewPerUidPerWindowThenCountsTheRest) {
  SimulatedClock clock;
  DenialThrottle throttle(3, Millis(60000), 16);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(throttle.Admit(1000, clock.Now()));
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(throttle.Admit(1000, clock.Now()));
  EXPECT_TRUE(throttle.Admit(1001, clock.Now()));  // other uids have their own budget
  clock.Advance(Millis(59999));
  EXPECT_THAT(throttle.Expire(clock.Now()), IsEmpty());
  clock.Advance(Millis(1));
  std::vector<DenialThrottle::Suppressed> suppressed = throttle.Expire(clock.Now());
  ASSERT_EQ(suppressed.size(), 1u);  // 1001 suppressed nothing
  EXPECT_EQ(suppressed[0].uid, 1000u);
  EXPECT_EQ(suppressed[0].count, 50u);
  EXPECT_THAT(throttle.Expire(clock.Now()), IsEmpty());
  EXPECT_TRUE(throttle.Admit(1000, clock.Now()));  // a new window
}

TEST(DenialThrottleTest, ManyUidsShareOneOverflowWindow) {
  SimulatedClock clock;
  DenialThrottle throttle(1, Millis(1000), 4);
  int logged = 0;
  for (uid_t uid = 0; uid < 1000; ++uid) logged += throttle.Admit(uid, clock.Now());
  EXPECT_EQ(logged, 5);  // 4 uids, then one line for all the others
  clock.Advance(Millis(1000));
  std::vector<DenialThrottle::Suppressed> suppressed = throttle.Expire(clock.Now());
  ASSERT_EQ(suppressed.size(), 1u);
  EXPECT_EQ(suppressed[0].uid, static_cast<uid_t>(-1));
  EXPECT_EQ(suppressed[0].count, 995u);
}

}  // namespace
}  // namespace tokend
