#include "tokend/protocol.h"

#include <unistd.h>

#include <charconv>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tokend/version.h"

namespace tokend {

namespace {

using nlohmann::json;

constexpr int64_t kMaxWaitMs = 30000;

void AppendInt(std::string& out, int64_t value) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

// JSON text of a string that may come from outside (an HTTP answer, a peer):
// invalid UTF-8 is replaced rather than breaking the answer line.
void AppendForeignString(std::string& out, std::string_view s) {
  out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// `{` and, when the request had one, `"id":ID,`: every answer starts so.
void OpenAnswer(std::string& out, std::string_view id_json) {
  out += '{';
  if (!id_json.empty()) {
    out += "\"id\":";
    out += id_json;
    out += ',';
  }
}

// `{"id":ID,"ok":false,"error":CODE,"message":TEXT` — the caller may add fields
// and closes the object.
void AppendErrorHead(std::string& out, std::string_view id_json, ErrorCode code,
                     std::string_view message) {
  OpenAnswer(out, id_json);
  out += "\"ok\":false,\"error\":\"";
  out += ToString(code);
  out += "\",\"message\":";
  AppendForeignString(out, message);
}

Outcome Fail(std::string& out, std::string_view id_json, ErrorCode code, std::string_view message) {
  AppendErrorHead(out, id_json, code, message);
  out += '}';
  Outcome outcome;
  outcome.error = code;
  return outcome;
}

std::string_view TokenTypeForAnswer(const Token& token) {
  // RFC 6749 §5.1: the type is case-insensitive; clients expect "Bearer".
  const std::string& type = token.token_type;
  if (type.empty() || (type.size() == 6 && (type[0] == 'b' || type[0] == 'B') &&
                       type.compare(1, 5, "earer") == 0)) {
    return "Bearer";
  }
  return type;
}

// Seconds from `now` to `t`, rounded down (expiry: never promise too much).
int64_t FloorSeconds(MonoTime t, MonoTime now) {
  return std::chrono::floor<std::chrono::seconds>(t - now).count();
}

// Seconds from `now` to `t`, rounded up and at least 0 (next attempt: never early).
int64_t CeilSecondsNonNegative(MonoTime t, MonoTime now) {
  if (t <= now) return 0;
  return std::chrono::ceil<std::chrono::seconds>(t - now).count();
}

nlohmann::ordered_json LastErrorJson(const LastError& error) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["kind"] = ToString(error.kind);
  j["http_status"] = error.http_status != 0 ? nlohmann::ordered_json(error.http_status)
                                            : nlohmann::ordered_json(nullptr);
  j["message"] = error.message;
  j["at"] = error.at_unix;
  return j;
}

// Validates the types of the fields any op may carry; returns the problem or "".
std::string_view CheckFields(const json& body) {
  auto tenant = body.find("tenant");
  if (tenant != body.end() && !tenant->is_string()) return "field tenant must be a string";
  auto wait = body.find("wait_ms");
  if (wait != body.end()) {
    bool in_range = false;
    if (wait->is_number_unsigned()) {
      in_range = wait->get<uint64_t>() <= static_cast<uint64_t>(kMaxWaitMs);
    } else if (wait->is_number_integer()) {
      int64_t v = wait->get<int64_t>();
      in_range = v >= 0 && v <= kMaxWaitMs;
    }
    if (!in_range) return "field wait_ms must be an integer from 0 to 30000";
  }
  auto tenants = body.find("tenants");
  if (tenants != body.end()) {
    bool good = tenants->is_array();
    if (good) {
      for (const auto& t : *tenants) good = good && t.is_string();
    }
    if (!good) return "field tenants must be an array of strings";
  }
  auto token = body.find("access_token");
  if (token != body.end() && !token->is_string()) return "field access_token must be a string";
  return "";
}

// The fields of a `get` request read by ReadPlainGet.
struct PlainGet {
  std::string_view tenant;
  std::string_view id_json;  // as it appears in the request; "" when absent
  int64_t wait_ms = 0;
};

// Reads the request almost every client sends, a flat `get` such as
// {"op":"get","tenant":"org-a","id":7,"wait_ms":100}, without building a JSON
// document (that was most of the cost of answering it). It accepts only what
// it can read exactly as the general path would: keys op, tenant, id and
// wait_ms, each once; strings of printable ASCII without escapes; integers in
// canonical form, wait_ms within range. Anything else, valid or not, returns
// nullopt and takes the general path, which alone decides about errors.
std::optional<PlainGet> ReadPlainGet(std::string_view line) {
  size_t i = 0;
  const size_t n = line.size();
  auto skip_ws = [&] {
    while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n')) ++i;
  };
  // A string of printable ASCII without '"' or '\\'; returns its contents.
  auto plain_string = [&](std::string_view& value) {
    if (i >= n || line[i] != '"') return false;
    size_t start = ++i;
    while (i < n && line[i] != '"') {
      unsigned char c = static_cast<unsigned char>(line[i]);
      if (c < 0x20 || c > 0x7e || c == '\\') return false;
      ++i;
    }
    if (i >= n) return false;
    value = line.substr(start, i - start);
    ++i;
    return true;
  };
  // A canonical integer (no leading zeros, no "-0") of at most 15 digits.
  auto plain_integer = [&](std::string_view& text, int64_t& value) {
    size_t start = i;
    bool negative = i < n && line[i] == '-';
    if (negative) ++i;
    size_t digits = i;
    while (i < n && line[i] >= '0' && line[i] <= '9') ++i;
    size_t count = i - digits;
    if (count == 0 || count > 15 || (line[digits] == '0' && (count > 1 || negative))) return false;
    if (i < n && (line[i] == '.' || line[i] == 'e' || line[i] == 'E')) return false;
    text = line.substr(start, i - start);
    std::from_chars(line.data() + start, line.data() + i, value);
    return true;
  };

  PlainGet get;
  bool have_op = false, have_tenant = false, have_id = false, have_wait = false;
  skip_ws();
  if (i >= n || line[i] != '{') return std::nullopt;
  ++i;
  for (;;) {
    skip_ws();
    std::string_view key;
    if (!plain_string(key)) return std::nullopt;
    skip_ws();
    if (i >= n || line[i] != ':') return std::nullopt;
    ++i;
    skip_ws();
    if (key == "op" && !have_op) {
      std::string_view op;
      if (!plain_string(op) || op != "get") return std::nullopt;
      have_op = true;
    } else if (key == "tenant" && !have_tenant) {
      if (!plain_string(get.tenant)) return std::nullopt;
      have_tenant = true;
    } else if (key == "id" && !have_id) {
      if (i < n && line[i] == '"') {
        size_t start = i;
        std::string_view ignored;
        if (!plain_string(ignored)) return std::nullopt;
        get.id_json = line.substr(start, i - start);
      } else {
        int64_t ignored = 0;
        if (!plain_integer(get.id_json, ignored)) return std::nullopt;
      }
      have_id = true;
    } else if (key == "wait_ms" && !have_wait) {
      std::string_view text;
      if (!plain_integer(text, get.wait_ms) || get.wait_ms < 0 || get.wait_ms > kMaxWaitMs) {
        return std::nullopt;
      }
      have_wait = true;
    } else {
      return std::nullopt;  // another key, or one seen before
    }
    skip_ws();
    if (i < n && line[i] == ',') {
      ++i;
      continue;
    }
    if (i < n && line[i] == '}') break;
    return std::nullopt;
  }
  ++i;
  skip_ws();
  if (i != n || !have_op || !have_tenant) return std::nullopt;
  return get;
}

}  // namespace

const char* ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest:
      return "bad_request";
    case ErrorCode::kUnknownOp:
      return "unknown_op";
    case ErrorCode::kUnknownTenant:
      return "unknown_tenant";
    case ErrorCode::kForbidden:
      return "forbidden";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kTooLarge:
      return "too_large";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "internal";
}

void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    // Many bytes at a time while none needs an escape (tokens are hundreds of
    // bytes and never do). SSE2 (every x86-64): sixteen bytes compared with '"',
    // '\\' and, unsigned, with 0x1f.
#if defined(__SSE2__)
    while (i + 16 <= s.size()) {
      __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
      __m128i special =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                       _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f)));
      if (_mm_movemask_epi8(special) != 0) break;
      i += 16;
    }
#endif
    // Elsewhere and for the rest, eight: a byte below 0x20, '"' or '\\' sets
    // its high bit in `hit` (the SWAR has-zero / has-less tests).
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHighs = 0x8080808080808080ULL;
    while (i + 8 <= s.size()) {
      uint64_t v;
      std::memcpy(&v, s.data() + i, 8);
      uint64_t quote = v ^ (kOnes * '"');
      uint64_t backslash = v ^ (kOnes * '\\');
      uint64_t hit = ((v - kOnes * 0x20) | (quote - kOnes) | (backslash - kOnes)) & ~v & kHighs;
      if (hit != 0) break;
      i += 8;
    }
    if (i >= s.size()) break;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

Dispatcher::Dispatcher(TokenStore& store, RefreshControl& control, const Clock& clock,
                       MonoTime started)
    : store_(store),
      control_(control),
      clock_(clock),
      started_(started),
      policy_(std::make_shared<const AccessPolicy>(geteuid())) {}

void Dispatcher::SetAccessPolicy(std::shared_ptr<const AccessPolicy> policy) {
  std::lock_guard lock(policy_mutex_);
  policy_ = std::move(policy);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

PeerAccess Dispatcher::Evaluate(const Peer& peer) const {
  std::shared_ptr<const AccessPolicy> policy;
  uint64_t generation;
  {
    std::lock_guard lock(policy_mutex_);
    policy = policy_;
    generation = generation_.load(std::memory_order_acquire);
  }
  PeerAccess access = policy->Evaluate(peer);
  access.generation = generation;
  return access;
}

std::span<const Dispatcher::Op> Dispatcher::Ops() {
  // Adding an op is one entry here (and its handler).
  static constexpr Op kOps[] = {
      // name, handler, admin_only, allowed_during_watch, open_to_all
      {"get", &Dispatcher::Get, false, false, false},
      {"status", &Dispatcher::Status, false, false, false},
      {"ping", &Dispatcher::Ping, false, true, true},
      {"watch", &Dispatcher::Watch, false, false, false},
      {"invalidate", &Dispatcher::Invalidate, false, false, false},
      {"refresh", &Dispatcher::Refresh, true, false, false},
      {"reload", &Dispatcher::Reload, true, false, false},
      {"metrics", &Dispatcher::Metrics, false, false, false},
  };
  return kOps;
}

const Dispatcher::Op* Dispatcher::FindOp(std::string_view name) {
  for (const Op& op : Ops()) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

std::string_view Dispatcher::OpLabel(int op) {
  if (op >= 0 && op < static_cast<int>(Ops().size())) return Ops()[op].name;
  return op == kOpUnknown ? "unknown" : "invalid";
}

int Dispatcher::OpSlot(int op) {
  int n = static_cast<int>(Ops().size());
  if (op >= 0 && op < n) return op;
  return op == kOpUnknown ? n + 1 : n;
}

int Dispatcher::NumOpLabels() { return static_cast<int>(Ops().size()) + 2; }

std::string Dispatcher::ErrorLine(ErrorCode code, std::string_view message) {
  std::string out;
  Fail(out, "", code, message);
  return out;
}

Outcome Dispatcher::Handle(std::string_view line, const Peer& peer, std::string& out) const {
  Session session;
  session.peer = peer;
  session.access = Evaluate(peer);
  return Handle(line, session, out);
}

Outcome Dispatcher::Handle(std::string_view line, const Session& session, std::string& out) const {
  const size_t mark = out.size();
  // The hot request first, without a JSON document: a flat `get` from a client
  // that may read the tenant. Anything else (a stranger, a watching connection,
  // a tenant it may not read, any unusual form) takes the general path below,
  // which alone decides about errors.
  if (session.access.client && !session.watching) {
    if (std::optional<PlainGet> get = ReadPlainGet(line)) {
      std::string tenant(get->tenant);
      if (session.access.MayRead(tenant)) {
        static const int kGetOp = static_cast<int>(FindOp("get") - Ops().data());
        try {
          Outcome outcome =
              AnswerOrPark(tenant, get->wait_ms, get->id_json, session.peer, kGetOp, nullptr, out);
          outcome.op = kGetOp;
          return outcome;
        } catch (const std::exception& e) {
          out.resize(mark);
          Outcome outcome = Fail(out, get->id_json, ErrorCode::kInternal, e.what());
          outcome.op = kGetOp;
          return outcome;
        }
      }
    }
  }
  json body = json::parse(line, nullptr, /*allow_exceptions=*/false);
  Outcome outcome;
  outcome.op = kOpInvalid;
  if (body.is_discarded()) {
    outcome.error = Fail(out, "", ErrorCode::kBadRequest, "invalid JSON").error;
    return outcome;
  }
  if (!body.is_object()) {
    outcome.error = Fail(out, "", ErrorCode::kBadRequest, "a request must be a JSON object").error;
    return outcome;
  }

  std::string id_json;
  auto id = body.find("id");
  if (id != body.end()) {
    if (!id->is_string() && !id->is_number()) {
      outcome.error =
          Fail(out, "", ErrorCode::kBadRequest, "field id must be a string or a number").error;
      return outcome;
    }
    id_json = id->dump(-1, ' ', false, json::error_handler_t::replace);
  }

  auto op_field = body.find("op");
  if (op_field == body.end()) {
    outcome.error = Fail(out, id_json, ErrorCode::kBadRequest, "missing field: op").error;
    return outcome;
  }
  if (!op_field->is_string()) {
    outcome.error = Fail(out, id_json, ErrorCode::kBadRequest, "field op must be a string").error;
    return outcome;
  }
  const std::string& op_name = op_field->get_ref<const std::string&>();
  const Op* op = FindOp(op_name);
  if (op != nullptr) outcome.op = static_cast<int>(op - Ops().data());
  if (!session.access.client && (op == nullptr || !op->open_to_all)) {
    // Not even an unknown op's name is discussed with a stranger; ping is for anyone.
    if (op == nullptr) outcome.op = kOpUnknown;
    outcome.error =
        Fail(out, id_json, ErrorCode::kForbidden,
             "uid " + std::to_string(session.peer.uid) + " may not use tokend (see access.clients)")
            .error;
    outcome.denied = Denial{};
    return outcome;
  }
  if (op == nullptr) {
    outcome.op = kOpUnknown;
    std::string message = "unknown op ";
    message += json(op_name).dump(-1, ' ', false, json::error_handler_t::replace);
    outcome.error = Fail(out, id_json, ErrorCode::kUnknownOp, message).error;
    return outcome;
  }
  if (op->handler == nullptr) {
    std::string message = "op " + std::string(op->name) + " is not supported yet";
    outcome.error = Fail(out, id_json, ErrorCode::kUnknownOp, message).error;
    return outcome;
  }
  if (op->admin_only && !session.access.admin) {
    outcome.error = Fail(out, id_json, ErrorCode::kForbidden,
                         "op " + std::string(op->name) + " is for admins; uid " +
                             std::to_string(session.peer.uid) + " is not one (see access.admins)")
                        .error;
    outcome.denied = Denial{};
    return outcome;
  }
  if (session.watching && !op->allowed_during_watch) {
    outcome.error = Fail(out, id_json, ErrorCode::kBadRequest,
                         "this connection watches; only ping may be sent on it")
                        .error;
    return outcome;
  }
  if (std::string_view problem = CheckFields(body); !problem.empty()) {
    outcome.error = Fail(out, id_json, ErrorCode::kBadRequest, problem).error;
    return outcome;
  }

  // The one place where a failing handler becomes an error answer.
  try {
    Outcome handled = (this->*(op->handler))(Request{body, id_json, session}, out);
    handled.op = outcome.op;
    if (handled.pending) handled.pending->op = outcome.op;
    return handled;
  } catch (const std::exception& e) {
    out.resize(mark);
    outcome.error = Fail(out, id_json, ErrorCode::kInternal, e.what()).error;
    return outcome;
  }
}

Outcome Dispatcher::Resume(PendingGet& get, std::string& out) const {
  Outcome outcome;
  outcome.op = get.op;
  bool final = clock_.Now() >= get.deadline;
  if (AnswerGet(get.tenant, get.id_json, final, get.superseded.get(), out, outcome)) {
    return outcome;
  }
  outcome.pending = std::move(get);
  return outcome;
}

bool Dispatcher::AnswerGet(const std::string& tenant, std::string_view id_json, bool final,
                           const Token* superseded, std::string& out, Outcome& outcome) const {
  const MonoTime now = clock_.Now();
  std::shared_ptr<const Token> token = store_.Servable(tenant, now);
  std::optional<TenantView> view;
  if (!token) {
    view = store_.Find(tenant);
    if (!view) {
      std::string message = "unknown tenant ";
      AppendJsonString(message, tenant);
      outcome.error = Fail(out, id_json, ErrorCode::kUnknownTenant, message).error;
      return true;
    }
    // Published between the two reads.
    if (view->token && store_.Servable(*view->token, now)) token = view->token;
  }
  if (token && superseded != nullptr && token.get() == superseded && !final) return false;
  if (token) {
    out.reserve(out.size() + token->access_token.size() + tenant.size() + id_json.size() + 128);
    OpenAnswer(out, id_json);
    out += "\"ok\":true,\"tenant\":";
    AppendJsonString(out, tenant);
    out += ",\"access_token\":";
    AppendJsonString(out, token->access_token);
    out += ",\"token_type\":";
    AppendJsonString(out, TokenTypeForAnswer(*token));
    out += ",\"expires_at\":";
    AppendInt(out, token->expires_at_unix);
    out += ",\"expires_in\":";
    AppendInt(out, FloorSeconds(token->expires, now));
    out += '}';
    outcome.error.reset();
    return true;
  }
  if (!final) return false;

  std::string message = "no valid token for tenant ";
  message += tenant;
  message += " (state ";
  message += ToString(view->state);
  message += ')';
  AppendErrorHead(out, id_json, ErrorCode::kUnavailable, message);
  out += ",\"state\":\"";
  out += ToString(view->state);
  out += '"';
  if (view->next_refresh) {
    out += ",\"retry_after_ms\":";
    Millis left = *view->next_refresh > now ? std::chrono::ceil<Millis>(*view->next_refresh - now)
                                            : Millis(0);
    AppendInt(out, left.count());
  }
  if (view->last_error) {
    out += ",\"last_error\":";
    out += LastErrorJson(*view->last_error).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  out += '}';
  outcome.error = ErrorCode::kUnavailable;
  return true;
}

const std::string* Dispatcher::ReadableTenant(const Request& request, std::string& out,
                                              Outcome& outcome) const {
  auto tenant_field = request.body.find("tenant");
  if (tenant_field == request.body.end()) {
    outcome = Fail(out, request.id_json, ErrorCode::kBadRequest, "missing field: tenant");
    return nullptr;
  }
  const std::string& tenant = tenant_field->get_ref<const std::string&>();
  if (request.session.access.MayRead(tenant)) return &tenant;
  if (!store_.Known(tenant)) {
    std::string message = "unknown tenant ";
    AppendJsonString(message, tenant);
    outcome = Fail(out, request.id_json, ErrorCode::kUnknownTenant, message);
  } else {
    std::string message = "uid " + std::to_string(request.session.peer.uid) +
                          " may not read tenant " + tenant + " (see its clients)";
    outcome = Fail(out, request.id_json, ErrorCode::kForbidden, message);
    outcome.denied = Denial{tenant};
  }
  return nullptr;
}

Outcome Dispatcher::AnswerOrPark(const Request& request, const std::string& tenant, int op,
                                 std::shared_ptr<const Token> superseded, std::string& out) const {
  int64_t wait_ms = 0;
  if (auto wait = request.body.find("wait_ms"); wait != request.body.end()) {
    wait_ms = wait->get<int64_t>();
  }
  return AnswerOrPark(tenant, wait_ms, request.id_json, request.session.peer, op,
                      std::move(superseded), out);
}

Outcome Dispatcher::AnswerOrPark(const std::string& tenant, int64_t wait_ms,
                                 std::string_view id_json, const Peer& peer, int op,
                                 std::shared_ptr<const Token> superseded, std::string& out) const {
  Outcome outcome;
  if (AnswerGet(tenant, id_json, wait_ms == 0, superseded.get(), out, outcome)) return outcome;
  outcome.pending = PendingGet{tenant, std::string(id_json), clock_.Now() + Millis(wait_ms),
                               peer,   op,                   std::move(superseded)};
  return outcome;
}

Outcome Dispatcher::Get(const Request& request, std::string& out) const {
  Outcome outcome;
  const std::string* tenant = ReadableTenant(request, out, outcome);
  if (tenant == nullptr) return outcome;
  return AnswerOrPark(request, *tenant, 0, nullptr, out);
}

Outcome Dispatcher::Invalidate(const Request& request, std::string& out) const {
  Outcome outcome;
  const std::string* tenant = ReadableTenant(request, out, outcome);
  if (tenant == nullptr) return outcome;
  auto token_field = request.body.find("access_token");
  if (token_field == request.body.end()) {
    return Fail(out, request.id_json, ErrorCode::kBadRequest, "missing field: access_token");
  }
  const std::string& rejected = token_field->get_ref<const std::string&>();
  // The store decides: only the current token, once per token, at most once per
  // interval. Reports of an older token change nothing.
  if (store_.Invalidate(*tenant, rejected, clock_.Now(), kInvalidateInterval)) {
    control_.Invalidate(*tenant, rejected);
  }
  return AnswerOrPark(request, *tenant, 0, nullptr, out);
}

Outcome Dispatcher::Refresh(const Request& request, std::string& out) const {
  Outcome outcome;
  const std::string* tenant = ReadableTenant(request, out, outcome);
  if (tenant == nullptr) return outcome;
  std::optional<TenantView> view = store_.Find(*tenant);
  if (!view) {
    std::string message = "unknown tenant ";
    AppendJsonString(message, *tenant);
    return Fail(out, request.id_json, ErrorCode::kUnknownTenant, message);
  }
  std::shared_ptr<const Token> current = view->token;
  control_.RequestRefresh(*tenant);
  return AnswerOrPark(request, *tenant, 0, std::move(current), out);
}

Outcome Dispatcher::Watch(const Request& request, std::string& out) const {
  const PeerAccess& access = request.session.access;
  WatchRequest watch;
  auto tenants_field = request.body.find("tenants");
  if (tenants_field == request.body.end()) {
    watch.all = true;
    for (const TenantView& view : store_.Snapshot()) {
      if (access.MayRead(view.tenant)) watch.tenants.push_back(view.tenant);
    }
  } else {
    if (tenants_field->empty()) {
      return Fail(out, request.id_json, ErrorCode::kBadRequest,
                  "field tenants must not be empty; leave it out to watch every tenant");
    }
    for (const auto& t : *tenants_field) {
      const std::string& tenant = t.get_ref<const std::string&>();
      if (std::find(watch.tenants.begin(), watch.tenants.end(), tenant) != watch.tenants.end()) {
        continue;
      }
      if (!store_.Known(tenant)) {
        std::string message = "unknown tenant ";
        AppendJsonString(message, tenant);
        return Fail(out, request.id_json, ErrorCode::kUnknownTenant, message);
      }
      if (!access.MayRead(tenant)) {
        Outcome outcome = Fail(out, request.id_json, ErrorCode::kForbidden,
                               "uid " + std::to_string(request.session.peer.uid) +
                                   " may not read tenant " + tenant + " (see its clients)");
        outcome.denied = Denial{tenant};
        return outcome;
      }
      watch.tenants.push_back(tenant);
    }
  }
  OpenAnswer(out, request.id_json);
  out += "\"ok\":true,\"watching\":[";
  for (size_t i = 0; i < watch.tenants.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(out, watch.tenants[i]);
  }
  out += "]}";
  Outcome outcome;
  outcome.watch = std::move(watch);
  return outcome;
}

Outcome Dispatcher::Reload(const Request& request, std::string& out) const {
  const ReloadOutcome reloaded = control_.Reload();
  nlohmann::ordered_json answer = nlohmann::ordered_json::object();
  if (auto id = request.body.find("id"); id != request.body.end()) answer["id"] = *id;
  answer["ok"] = reloaded.ok;
  Outcome outcome;
  if (reloaded.ok) {
    answer["tenants"] = reloaded.tenants;
  } else {
    answer["error"] = ToString(ErrorCode::kBadRequest);
    answer["message"] = "the new config has " + std::to_string(reloaded.errors.size()) +
                        " error(s); the old config stays";
    answer["errors"] = reloaded.errors;
    outcome.error = ErrorCode::kBadRequest;
  }
  out += answer.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return outcome;
}

Outcome Dispatcher::Metrics(const Request& request, std::string& out) const {
  OpenAnswer(out, request.id_json);
  out += "\"ok\":true,\"text\":";
  AppendForeignString(out, control_.MetricsText());
  out += '}';
  return Outcome{};
}

void Dispatcher::AppendTokenEvent(std::string& out, std::string_view tenant, const Token& token,
                                  MonoTime now) {
  out += "{\"event\":\"token\",\"tenant\":";
  AppendJsonString(out, tenant);
  out += ",\"access_token\":";
  AppendJsonString(out, token.access_token);
  out += ",\"token_type\":";
  AppendJsonString(out, TokenTypeForAnswer(token));
  out += ",\"expires_at\":";
  AppendInt(out, token.expires_at_unix);
  out += ",\"expires_in\":";
  AppendInt(out, FloorSeconds(token.expires, now));
  out += '}';
}

void Dispatcher::AppendExpiredEvent(std::string& out, std::string_view tenant) {
  out += "{\"event\":\"expired\",\"tenant\":";
  AppendJsonString(out, tenant);
  out += '}';
}

Outcome Dispatcher::Status(const Request& request, std::string& out) const {
  const MonoTime now = clock_.Now();
  const LimitSnapshot limit = control_.Limit();
  nlohmann::ordered_json answer = nlohmann::ordered_json::object();
  if (auto id = request.body.find("id"); id != request.body.end()) answer["id"] = *id;
  answer["ok"] = true;
  answer["version"] = kVersion;
  answer["uptime_s"] = now > started_ ? FloorSeconds(now, started_) : 0;
  answer["limit"] = {{"configured", limit.configured},
                     {"effective", limit.effective},
                     {"in_flight", limit.in_flight},
                     {"waiting", limit.waiting}};
  nlohmann::ordered_json tenants = nlohmann::ordered_json::array();
  for (const TenantView& view : store_.Snapshot()) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["tenant"] = view.tenant;
    t["state"] = ToString(view.state);
    t["expires_in"] = view.token ? nlohmann::ordered_json(FloorSeconds(view.token->expires, now))
                                 : nlohmann::ordered_json(nullptr);
    t["next_refresh_in"] =
        view.next_refresh ? nlohmann::ordered_json(CeilSecondsNonNegative(*view.next_refresh, now))
                          : nlohmann::ordered_json(nullptr);
    t["consecutive_failures"] = view.consecutive_failures;
    t["last_success"] = view.last_success_unix ? nlohmann::ordered_json(*view.last_success_unix)
                                               : nlohmann::ordered_json(nullptr);
    t["last_error"] =
        view.last_error ? LastErrorJson(*view.last_error) : nlohmann::ordered_json(nullptr);
    tenants.push_back(std::move(t));
  }
  answer["tenants"] = std::move(tenants);
  if (std::optional<ReloadOutcome> reload = control_.LastReload()) {
    answer["last_reload"] = {{"ok", reload->ok}, {"at", reload->at_unix}, {"errors", reload->errors}};
  }
  out += answer.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return Outcome{};
}

Outcome Dispatcher::Ping(const Request& request, std::string& out) const {
  OpenAnswer(out, request.id_json);
  out += "\"ok\":true,\"version\":";
  AppendJsonString(out, kVersion);
  out += '}';
  return Outcome{};
}

}  // namespace tokend
