#include "tokenctl.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tokend/clock.h"
#include "tokend/duration.h"
#include "tokend/version.h"

namespace tokend {

namespace {

using nlohmann::json;

constexpr int kExitOk = 0;
constexpr int kExitDaemonError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

constexpr const char kDefaultSocket[] = "/run/tokend/tokend.sock";
constexpr Millis kDefaultTimeout(5000);
constexpr Millis kMaxWait(30000);             // SPEC §5 wait_ms
constexpr size_t kMaxAnswerBytes = 64 << 20;  // a sanity bound, far above any status

constexpr const char kUsage[] =
    "usage: tokenctl [--socket PATH] [--timeout DURATION] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  get TENANT [--wait DURATION] [--json]  print the tenant's access token\n"
    "  status [--json]                        every tenant's state and the concurrency limit\n"
    "  ping                                   check that tokend answers\n"
    "\n"
    "options:\n"
    "  --socket PATH       default: $TOKEND_SOCKET, else /run/tokend/tokend.sock\n"
    "  --timeout DURATION  for connecting and the answer (plus any --wait); default 5s\n"
    "  --help, --version\n"
    "\n"
    "exit status: 0 ok, 1 tokend answered an error, 2 bad usage, 3 tokend unreachable\n";

int UsageError(std::ostream& err, const std::string& problem) {
  err << "tokenctl: " << problem << "\n\n" << kUsage;
  return kExitUsage;
}

// Why a request did not get an answer.
struct Unreachable {
  std::string message;
};

// One request, one answer line, over the daemon's socket, within `timeout`.
// Returns the answer line, or why there is none.
std::variant<std::string, Unreachable> Exchange(const std::string& path, const std::string& request,
                                                Millis timeout) {
  const MonoTime deadline = MonoClock::now() + timeout;
  auto fail = [&](const std::string& what, int err) {
    return Unreachable{"cannot reach tokend at " + path + ": " + what +
                       (err != 0 ? std::string(": ") + std::strerror(err) : std::string())};
  };
  auto timed_out = [&] {
    return Unreachable{"no answer from tokend at " + path + " within " + FormatDuration(timeout)};
  };

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return fail("socket path is empty or too long", 0);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket", errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};

  // Waits until `events` or the deadline; false on timeout.
  auto wait_for = [&](short events) -> std::optional<bool> {
    for (;;) {
      auto left = std::chrono::ceil<Millis>(deadline - MonoClock::now()).count();
      if (left <= 0) return false;
      pollfd p{fd, events, 0};
      int n = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return std::nullopt;
      if (n == 0) continue;  // re-checks the deadline
      return true;
    }
  };

  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EAGAIN && errno != EINPROGRESS) return fail("connect", errno);
    // Backlog full: a Unix socket connect is retried until the deadline.
    for (;;) {
      auto ready = wait_for(POLLOUT);
      if (!ready) return fail("poll", errno);
      if (!*ready) return timed_out();
      if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
          errno == EISCONN) {
        break;
      }
      if (errno != EAGAIN && errno != EINPROGRESS && errno != EALREADY) {
        return fail("connect", errno);
      }
    }
  }

  std::string line = request + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto ready = wait_for(POLLOUT);
      if (!ready) return fail("poll", errno);
      if (!*ready) return timed_out();
      continue;
    }
    return fail("send", errno);
  }

  std::string answer;
  char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      answer.append(buf, static_cast<size_t>(n));
      size_t nl = answer.find('\n');
      if (nl != std::string::npos) {
        answer.resize(nl);
        if (!answer.empty() && answer.back() == '\r') answer.pop_back();
        return answer;
      }
      if (answer.size() > kMaxAnswerBytes) return fail("answer too long", 0);
      continue;
    }
    if (n == 0) return fail("connection closed before an answer", 0);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      auto ready = wait_for(POLLIN);
      if (!ready) return fail("poll", errno);
      if (!*ready) return timed_out();
      continue;
    }
    return fail("recv", errno);
  }
}

// A string field of an answer, or `fallback` when absent or not a string.
std::string StringField(const json& object, const char* key, const char* fallback = "") {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::string Seconds(const json& value) {
  if (!value.is_number_integer()) return "-";
  return FormatDuration(Millis(value.get<int64_t>() * 1000));
}

std::string LastErrorText(const json& error) {
  if (!error.is_object()) return "-";
  std::string text = StringField(error, "kind");
  if (auto status = error.find("http_status"); status != error.end() && status->is_number()) {
    text += " " + status->dump();
  }
  std::string message = StringField(error, "message");
  if (!message.empty()) text += ": " + message;
  return text.empty() ? "-" : text;
}

void PrintStatus(const json& answer, std::ostream& out) {
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"TENANT", "STATE", "EXPIRES_IN", "NEXT_REFRESH", "FAILURES", "LAST_ERROR"});
  if (auto tenants = answer.find("tenants"); tenants != answer.end() && tenants->is_array()) {
    for (const json& t : *tenants) {
      if (!t.is_object()) continue;
      auto failures = t.find("consecutive_failures");
      rows.push_back({StringField(t, "tenant", "?"), StringField(t, "state", "?"),
                      Seconds(t.value("expires_in", json())),
                      Seconds(t.value("next_refresh_in", json())),
                      failures != t.end() && failures->is_number() ? failures->dump() : "-",
                      LastErrorText(t.value("last_error", json()))});
    }
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
  json limit = answer.value("limit", json::object());
  auto num = [&](const char* key) {
    auto it = limit.find(key);
    return it != limit.end() && it->is_number() ? it->dump() : std::string("?");
  };
  out << "concurrency: limit " << num("effective") << " (configured " << num("configured")
      << "), in flight " << num("in_flight") << ", waiting " << num("waiting") << '\n';
}

}  // namespace

int RunTokenctl(int argc, char** argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string_view> args(argv + std::min(argc, 1), argv + argc);
  std::optional<std::string> socket_path;
  Millis timeout = kDefaultTimeout;

  size_t i = 0;
  // Global options, up to the command.
  for (; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      out << kUsage;
      return kExitOk;
    }
    if (arg == "--version") {
      out << "tokenctl " << kVersion << '\n';
      return kExitOk;
    }
    std::string_view name = arg.substr(0, arg.find('='));
    if (name != "--socket" && name != "--timeout") break;
    std::string_view value;
    if (name.size() < arg.size()) {
      value = arg.substr(name.size() + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return UsageError(err, std::string(name) + " needs a value");
    }
    if (name == "--socket") {
      if (value.empty()) return UsageError(err, "--socket needs a path");
      socket_path = std::string(value);
    } else {
      std::optional<Millis> parsed = ParseDuration(value);
      if (!parsed || parsed->count() <= 0) {
        return UsageError(err, "--timeout: not a positive duration: " + std::string(value));
      }
      timeout = *parsed;
    }
  }
  if (i >= args.size()) return UsageError(err, "no command given");
  if (args[i].starts_with("-")) return UsageError(err, "unknown option " + std::string(args[i]));
  const std::string command(args[i++]);
  std::vector<std::string_view> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());

  if (!socket_path) {
    const char* env = std::getenv("TOKEND_SOCKET");
    socket_path = env != nullptr && *env != '\0' ? env : kDefaultSocket;
  }

  json request = json::object();
  bool print_json = false;
  Millis wait(0);
  if (command == "get") {
    std::optional<std::string> tenant;
    for (size_t j = 0; j < rest.size(); ++j) {
      std::string_view arg = rest[j];
      if (arg == "--json") {
        print_json = true;
      } else if (arg == "--wait" || arg.starts_with("--wait=")) {
        std::string_view value;
        if (arg != "--wait") {
          value = arg.substr(7);
        } else if (j + 1 < rest.size()) {
          value = rest[++j];
        } else {
          return UsageError(err, "--wait needs a duration");
        }
        std::optional<Millis> parsed = ParseDuration(value);
        if (!parsed || *parsed > kMaxWait) {
          return UsageError(err, "--wait: not a duration from 0s to 30s: " + std::string(value));
        }
        wait = *parsed;
      } else if (arg.starts_with("-")) {
        return UsageError(err, "get: unknown option " + std::string(arg));
      } else if (!tenant) {
        tenant = std::string(arg);
      } else {
        return UsageError(err, "get takes one tenant");
      }
    }
    if (!tenant) return UsageError(err, "get needs a tenant");
    request["op"] = "get";
    request["tenant"] = *tenant;
    if (wait.count() > 0) request["wait_ms"] = wait.count();
  } else if (command == "status") {
    for (std::string_view arg : rest) {
      if (arg != "--json") return UsageError(err, "status: unexpected " + std::string(arg));
      print_json = true;
    }
    request["op"] = "status";
  } else if (command == "ping") {
    if (!rest.empty()) return UsageError(err, "ping takes no arguments");
    request["op"] = "ping";
  } else {
    return UsageError(err, "unknown command " + command);
  }

  auto exchanged = Exchange(*socket_path, request.dump(), timeout + wait);
  if (auto* unreachable = std::get_if<Unreachable>(&exchanged)) {
    err << "tokenctl: " << unreachable->message << '\n';
    return kExitUnreachable;
  }
  const std::string& line = std::get<std::string>(exchanged);
  json answer = json::parse(line, nullptr, false);
  if (!answer.is_object()) {
    err << "tokenctl: tokend at " << *socket_path << " sent an answer that is not JSON\n";
    return kExitUnreachable;
  }
  if (auto ok = answer.find("ok"); ok == answer.end() || *ok != true) {
    err << "error: " << StringField(answer, "error", "unknown") << ": "
        << StringField(answer, "message") << '\n';
    return kExitDaemonError;
  }

  if (print_json) {
    out << line << '\n';
  } else if (command == "get") {
    out << StringField(answer, "access_token") << '\n';
  } else if (command == "status") {
    PrintStatus(answer, out);
  } else {
    out << "ok tokend " << StringField(answer, "version", "?") << '\n';
  }
  return kExitOk;
}

}  // namespace tokend
