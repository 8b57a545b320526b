#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokend/access_policy.h"
#include "tokend/clock.h"
#include "tokend/control.h"
#include "tokend/token_store.h"

namespace tokend {

// SPEC §5 error codes.
enum class ErrorCode {
  kBadRequest,
  kUnknownOp,
  kUnknownTenant,
  kForbidden,
  kUnavailable,
  kTooLarge,
  kBusy,
  kInternal,
};
inline constexpr int kNumErrorCodes = 8;
const char* ToString(ErrorCode code);

// A `get` (or `invalidate`, `refresh`) that found no token to answer with yet
// and may still wait for one. The server parks it and calls Dispatcher::Resume
// when the store changes and when `deadline` has passed.
struct PendingGet {
  std::string tenant;
  std::string id_json;  // the request's "id" as JSON text; "" when it had none
  MonoTime deadline;
  Peer peer;
  int op = 0;  // the registry entry that parked it, for counters
  // `refresh`: the token current when it was asked for; until the deadline only
  // a different one answers. Null for get and invalidate.
  std::shared_ptr<const Token> superseded;
};

// A peer denied by access control; the server logs it (rate-limited).
struct Denial {
  std::string tenant;  // "" when the denial is not about one tenant
};

// A `watch` that was accepted: the connection now pushes events for these tenants.
struct WatchRequest {
  bool all = false;                  // every tenant the peer may read, now and after reloads
  std::vector<std::string> tenants;  // when !all
};

// What one request came to. Either an answer line was appended to the caller's
// buffer, or `pending` is set and nothing was appended.
struct Outcome {
  int op = 0;                         // Dispatcher::OpLabel(op) names it, for counters
  std::optional<ErrorCode> error;     // nullopt = ok (or still pending)
  std::optional<PendingGet> pending;  // the answer must wait
  std::optional<Denial> denied;       // the answer is `forbidden`; log it
  std::optional<WatchRequest> watch;  // the answer accepted a watch
};

// What the dispatcher knows of a connection.
struct Session {
  Peer peer;
  PeerAccess access;      // Dispatcher::Evaluate(peer), redone when its generation is old
  bool watching = false;  // a `watch` was accepted on it: only ops allowed_during_watch
};

// A request after parsing and validation, as an op's handler sees it.
struct Request {
  const nlohmann::json& body;  // a JSON object whose known fields have the right types
  std::string_view id_json;    // "" when the request had no "id"
  const Session& session;      // the peer passed the op-level access checks
};

// Turns request lines into answer lines (SPEC §5). Does no I/O: the socket
// server feeds it lines and writes what it appends, so it runs in unit tests on
// a simulated clock.
//
// Every op is one entry of one registry (Ops()), with its handler and its
// permission flags; Handle() is the one place that turns a bad request or a
// failed handler into an error answer.
//
// Access control (SPEC §5): a peer that is not a client gets `forbidden` for
// every op but `ping`; admin-only ops need an admin; ops about one tenant need
// PeerAccess::MayRead. Each such answer carries Outcome::denied.
//
// Thread-safe: the store, the control and the clock are thread-safe, and the
// policy is swapped under a lock.
class Dispatcher {
 public:
  // `started` is the moment `uptime_s` counts from. The access policy starts as
  // that of an empty `access` section (root and tokend's effective uid only).
  Dispatcher(TokenStore& store, RefreshControl& control, const Clock& clock, MonoTime started);

  // Replaces the access policy (at start and on reload) and bumps the
  // generation, so that sessions re-evaluate their access.
  void SetAccessPolicy(std::shared_ptr<const AccessPolicy> policy);
  // `peer`'s access under the current policy, stamped with its generation.
  PeerAccess Evaluate(const Peer& peer) const;
  // Changes with every SetAccessPolicy; compare with PeerAccess::generation.
  uint64_t AccessGeneration() const { return generation_.load(std::memory_order_acquire); }

  using Handler = Outcome (Dispatcher::*)(const Request&, std::string& out) const;
  struct Op {
    std::string_view name;
    Handler handler;            // nullptr = known to SPEC §5, not supported yet
    bool admin_only;            // only `access.admins` may use it
    bool allowed_during_watch;  // may be sent on a connection that watches
    bool open_to_all;           // even a peer that is not a client may use it
  };

  // The registry: every op of SPEC §5, in a fixed order.
  static std::span<const Op> Ops();
  // The registry entry named `name`, or nullptr.
  static const Op* FindOp(std::string_view name);

  // Labels for Outcome::op: the index of a registry entry, or one of these.
  static constexpr int kOpInvalid = -1;  // no op could be read (bad JSON, no/bad "op")
  static constexpr int kOpUnknown = -2;  // an op name not in the registry
  static std::string_view OpLabel(int op);
  // Outcome::op mapped to 0..NumOpLabels()-1, for counter arrays.
  static int OpSlot(int op);
  static int NumOpLabels();

  // Handles one request line (without its newline). Appends the answer line
  // (compact JSON, no newline) to `out`, or returns a pending get.
  // Never throws on any input. `session.access` must be current (the server
  // checks the generation before each request; see AccessGeneration).
  Outcome Handle(std::string_view line, const Session& session, std::string& out) const;
  // Same, for a peer on a connection that does not watch, evaluating its
  // access first (tests and tools; the server caches the evaluation).
  Outcome Handle(std::string_view line, const Peer& peer, std::string& out) const;

  // Retries a parked get: appends its answer when a token is servable, the
  // tenant is gone, or the deadline has passed (then `unavailable`); else
  // returns it pending again (moved out of `get`).
  Outcome Resume(PendingGet& get, std::string& out) const;

  // An error answer with no id, for errors found before a request is parsed
  // (too_large, busy).
  static std::string ErrorLine(ErrorCode code, std::string_view message);

  // Watch events (SPEC §5), without newline:
  // {"event":"token","tenant":T,"access_token":S,"token_type":"Bearer","expires_at":N,"expires_in":N}
  static void AppendTokenEvent(std::string& out, std::string_view tenant, const Token& token,
                               MonoTime now);
  // {"event":"expired","tenant":T}
  static void AppendExpiredEvent(std::string& out, std::string_view tenant);

  // At most one forced refresh per tenant per this interval (SPEC §5 invalidate).
  static constexpr Millis kInvalidateInterval = Millis(10000);

 private:
  Outcome Get(const Request& request, std::string& out) const;
  Outcome Status(const Request& request, std::string& out) const;
  Outcome Ping(const Request& request, std::string& out) const;
  Outcome Watch(const Request& request, std::string& out) const;
  Outcome Invalidate(const Request& request, std::string& out) const;
  Outcome Refresh(const Request& request, std::string& out) const;
  Outcome Reload(const Request& request, std::string& out) const;
  Outcome Metrics(const Request& request, std::string& out) const;

  // The request's tenant when it names one the peer may read; else appends
  // bad_request, unknown_tenant or forbidden to `out`, sets `outcome`, and
  // returns nullptr.
  const std::string* ReadableTenant(const Request& request, std::string& out,
                                    Outcome& outcome) const;
  // Answers like `get` now or parks the request (op `op`) for up to wait_ms.
  Outcome AnswerOrPark(const Request& request, const std::string& tenant, int op,
                       std::shared_ptr<const Token> superseded, std::string& out) const;
  // Same, once the fields are read (from the document, or by the fast path for
  // a plain `get`).
  Outcome AnswerOrPark(const std::string& tenant, int64_t wait_ms, std::string_view id_json,
                       const Peer& peer, int op, std::shared_ptr<const Token> superseded,
                       std::string& out) const;

  // Appends `get`'s ok answer when a token is servable now (and is not
  // `superseded`, unless `final`), or an error when the tenant is unknown or (if
  // `final`) unavailable; returns false when the caller may still wait.
  bool AnswerGet(const std::string& tenant, std::string_view id_json, bool final,
                 const Token* superseded, std::string& out, Outcome& outcome) const;

  TokenStore& store_;
  RefreshControl& control_;
  const Clock& clock_;
  MonoTime started_;

  mutable std::mutex policy_mutex_;
  std::shared_ptr<const AccessPolicy> policy_;  // GUARDED_BY(policy_mutex_)
  std::atomic<uint64_t> generation_{1};
};

// Appends `s` as a JSON string literal (quotes included) to `out`. `s` must be
// valid UTF-8; control characters, quote and backslash are escaped.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace tokend
