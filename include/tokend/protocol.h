#pragma once

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tokend/clock.h"
#include "tokend/control.h"
#include "tokend/token_store.h"

namespace tokend {

// Who is at the other end of a connection, read with SO_PEERCRED at accept.
struct Peer {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
};

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

// A `get` that found no servable token and may still wait for one. The server
// parks it and calls Dispatcher::Resume when the store changes and when
// `deadline` has passed.
struct PendingGet {
  std::string tenant;
  std::string id_json;  // the request's "id" as JSON text; "" when it had none
  MonoTime deadline;
  Peer peer;
};

// What one request came to. Either an answer line was appended to the caller's
// buffer, or `pending` is set and nothing was appended.
struct Outcome {
  int op = 0;                         // Dispatcher::OpLabel(op) names it, for counters
  std::optional<ErrorCode> error;     // nullopt = ok (or still pending)
  std::optional<PendingGet> pending;  // the answer must wait
};

// A request after parsing and validation, as an op's handler sees it.
struct Request {
  const nlohmann::json& body;  // a JSON object whose known fields have the right types
  std::string_view id_json;    // "" when the request had no "id"
  const Peer& peer;            // not checked yet: access control is a later issue
};

// Turns request lines into answer lines (SPEC §5). Does no I/O: the socket
// server feeds it lines and writes what it appends, so it runs in unit tests on
// a simulated clock.
//
// Every op is one entry of one registry (Ops()), with its handler and its
// permission flags; Handle() is the one place that turns a bad request or a
// failed handler into an error answer.
//
// Thread-safe: every method is const and the store, the control and the clock
// are thread-safe.
class Dispatcher {
 public:
  // `started` is the moment `uptime_s` counts from.
  // Later ops (invalidate, refresh) act on the store and the control, hence
  // the non-const references.
  Dispatcher(TokenStore& store, RefreshControl& control, const Clock& clock, MonoTime started);

  using Handler = Outcome (Dispatcher::*)(const Request&, std::string& out) const;
  struct Op {
    std::string_view name;
    Handler handler;            // nullptr = known to SPEC §5, not supported yet
    bool admin_only;            // only `access.admins` may use it
    bool allowed_during_watch;  // may be sent on a connection that watches
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
  // Never throws on any input.
  Outcome Handle(std::string_view line, const Peer& peer, std::string& out) const;

  // Retries a parked get: appends its answer when a token is servable, the
  // tenant is gone, or the deadline has passed (then `unavailable`); else
  // returns it pending again (moved out of `get`).
  Outcome Resume(PendingGet& get, std::string& out) const;

  // An error answer with no id, for errors found before a request is parsed
  // (too_large, busy).
  static std::string ErrorLine(ErrorCode code, std::string_view message);

 private:
  Outcome Get(const Request& request, std::string& out) const;
  // `get` once its fields are read (from the document or by ReadPlainGet).
  Outcome GetTenant(const std::string& tenant, int64_t wait_ms, std::string_view id_json,
                    const Peer& peer, std::string& out) const;
  Outcome Status(const Request& request, std::string& out) const;
  Outcome Ping(const Request& request, std::string& out) const;

  // Appends `get`'s ok answer when a token is servable now, or an error when the
  // tenant is unknown or (if `final`) unavailable; returns false when the caller
  // may still wait.
  bool AnswerGet(const std::string& tenant, std::string_view id_json, bool final, std::string& out,
                 Outcome& outcome) const;

  TokenStore& store_;
  RefreshControl& control_;
  const Clock& clock_;
  MonoTime started_;
};

// Appends `s` as a JSON string literal (quotes included) to `out`. `s` must be
// valid UTF-8; control characters, quote and backslash are escaped.
void AppendJsonString(std::string& out, std::string_view s);

}  // namespace tokend
