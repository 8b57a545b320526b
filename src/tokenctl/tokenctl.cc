#include "tokenctl.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
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
constexpr Millis kDefaultRefreshWait(10000);  // invalidate, refresh: wait for the new token
constexpr size_t kMaxTokenBytes = 64 * 1024;  // invalidate's stdin
constexpr size_t kMaxAnswerBytes = 64 << 20;  // a sanity bound, far above any status

constexpr const char kUsage[] =
    "usage: tokenctl [--socket PATH] [--timeout DURATION] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  get TENANT [--wait DURATION] [--json]  print the tenant's access token\n"
    "  status [--json]                        every tenant's state and the concurrency limit\n"
    "  watch [TENANT ...]                     print each pushed event (a JSON line) until\n"
    "                                         interrupted; no tenant = all you may read\n"
    "  invalidate TENANT [--wait D] [--json]  report the token on stdin as rejected upstream;\n"
    "                                         print the current one (default --wait 10s)\n"
    "  refresh TENANT [--wait D] [--json]     refresh now (admins); print the new token\n"
    "                                         (default --wait 10s)\n"
    "  reload                                 re-read the config (admins), like SIGHUP\n"
    "  metrics                                print the Prometheus metrics\n"
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

// One connection to the daemon, every step bounded by a deadline.
class DaemonConnection {
 public:
  explicit DaemonConnection(std::string path) : path_(std::move(path)) {}
  ~DaemonConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  DaemonConnection(const DaemonConnection&) = delete;
  DaemonConnection& operator=(const DaemonConnection&) = delete;

  std::optional<Unreachable> Connect(MonoTime deadline, Millis timeout);
  std::optional<Unreachable> SendLine(const std::string& request, MonoTime deadline);
  // The next line without its newline; `deadline` nullopt = no deadline.
  std::variant<std::string, Unreachable> ReadLine(std::optional<MonoTime> deadline);

 private:
  Unreachable Fail(const std::string& what, int err) const {
    return Unreachable{"cannot reach tokend at " + path_ + ": " + what +
                       (err != 0 ? std::string(": ") + std::strerror(err) : std::string())};
  }
  Unreachable TimedOut() const {
    return Unreachable{"no answer from tokend at " + path_ + " within " + FormatDuration(timeout_)};
  }
  // Waits until `events` or the deadline; false on timeout, nullopt on error.
  std::optional<bool> WaitFor(short events, std::optional<MonoTime> deadline) const;

  const std::string path_;
  int fd_ = -1;
  Millis timeout_{0};
  std::string buffer_;
};

std::optional<bool> DaemonConnection::WaitFor(short events,
                                              std::optional<MonoTime> deadline) const {
  for (;;) {
    int wait_ms = -1;
    if (deadline) {
      auto left = std::chrono::ceil<Millis>(*deadline - MonoClock::now()).count();
      if (left <= 0) return false;
      wait_ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
    }
    pollfd p{fd_, events, 0};
    int n = poll(&p, 1, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) continue;  // re-checks the deadline
    return true;
  }
}

std::optional<Unreachable> DaemonConnection::Connect(MonoTime deadline, Millis timeout) {
  timeout_ = timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.empty() || path_.size() >= sizeof addr.sun_path) {
    return Fail("socket path is empty or too long", 0);
  }
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Fail("socket", errno);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return std::nullopt;
  if (errno != EAGAIN && errno != EINPROGRESS) return Fail("connect", errno);
  // Backlog full: a Unix socket connect is retried until the deadline.
  for (;;) {
    auto ready = WaitFor(POLLOUT, deadline);
    if (!ready) return Fail("poll", errno);
    if (!*ready) return TimedOut();
    if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
        errno == EISCONN) {
      return std::nullopt;
    }
    if (errno != EAGAIN && errno != EINPROGRESS && errno != EALREADY) return Fail("connect", errno);
  }
}

std::optional<Unreachable> DaemonConnection::SendLine(const std::string& request,
                                                      MonoTime deadline) {
  std::string line = request + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      auto ready = WaitFor(POLLOUT, deadline);
      if (!ready) return Fail("poll", errno);
      if (!*ready) return TimedOut();
      continue;
    }
    return Fail("send", errno);
  }
  return std::nullopt;
}

std::variant<std::string, Unreachable> DaemonConnection::ReadLine(
    std::optional<MonoTime> deadline) {
  char buf[16384];
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (buffer_.size() > kMaxAnswerBytes) return Fail("answer too long", 0);
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return Fail("connection closed by tokend", 0);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      auto ready = WaitFor(POLLIN, deadline);
      if (!ready) return Fail("poll", errno);
      if (!*ready) return TimedOut();
      continue;
    }
    return Fail("recv", errno);
  }
}

// One request, one answer line, over the daemon's socket, within `timeout`.
// Returns the answer line, or why there is none.
std::variant<std::string, Unreachable> Exchange(const std::string& path, const std::string& request,
                                                Millis timeout) {
  const MonoTime deadline = MonoClock::now() + timeout;
  DaemonConnection conn(path);
  if (auto failed = conn.Connect(deadline, timeout)) return *failed;
  if (auto failed = conn.SendLine(request, deadline)) return *failed;
  return conn.ReadLine(deadline);
}

// Reads the token to invalidate from `in`: its first line, without surrounding
// blanks. Nullopt when there is none.
std::optional<std::string> ReadToken(std::istream& in) {
  std::string line;
  char c;
  while (line.size() <= kMaxTokenBytes && in.get(c) && c != '\n') line += c;
  const size_t begin = line.find_first_not_of(" \t\r");
  if (begin == std::string::npos || line.size() > kMaxTokenBytes) return std::nullopt;
  const size_t end = line.find_last_not_of(" \t\r");
  return line.substr(begin, end - begin + 1);
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
  // A refused reload stays visible until a reload succeeds.
  if (auto reload = answer.find("last_reload");
      reload != answer.end() && reload->is_object() && reload->value("ok", true) == false) {
    out << "last reload FAILED; the previous config is still running:\n";
    for (const auto& error : reload->value("errors", json::array())) {
      if (error.is_string()) out << "  " << error.get<std::string>() << '\n';
    }
  }
}

// Parses `TENANT [--wait DURATION] [--json]` of get, invalidate and refresh.
// Returns a usage problem, or "".
std::string ParseTenantArgs(const std::string& command, const std::vector<std::string_view>& rest,
                            std::optional<std::string>& tenant, Millis& wait, bool& print_json) {
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
        return "--wait needs a duration";
      }
      std::optional<Millis> parsed = ParseDuration(value);
      if (!parsed || *parsed > kMaxWait) {
        return "--wait: not a duration from 0s to 30s: " + std::string(value);
      }
      wait = *parsed;
    } else if (arg.starts_with("-")) {
      return command + ": unknown option " + std::string(arg);
    } else if (!tenant) {
      tenant = std::string(arg);
    } else {
      return command + " takes one tenant";
    }
  }
  if (!tenant) return command + " needs a tenant";
  return "";
}

// Prints the daemon's error answer; the exit status for it.
int DaemonError(const json& answer, std::ostream& err) {
  err << "error: " << StringField(answer, "error", "unknown") << ": "
      << StringField(answer, "message") << '\n';
  if (auto errors = answer.find("errors"); errors != answer.end() && errors->is_array()) {
    for (const json& e : *errors) {
      if (e.is_string()) err << "  " << e.get<std::string>() << '\n';
    }
  }
  return kExitDaemonError;
}

// `watch`: the answer within `timeout`, then every pushed line until the
// daemon closes the connection (or the process is interrupted).
int Watch(const std::string& path, const json& request, Millis timeout, std::ostream& out,
          std::ostream& err) {
  const MonoTime deadline = MonoClock::now() + timeout;
  DaemonConnection conn(path);
  std::optional<Unreachable> failed = conn.Connect(deadline, timeout);
  if (!failed) failed = conn.SendLine(request.dump(), deadline);
  if (failed) {
    err << "tokenctl: " << failed->message << '\n';
    return kExitUnreachable;
  }
  auto first = conn.ReadLine(deadline);
  if (auto* unreachable = std::get_if<Unreachable>(&first)) {
    err << "tokenctl: " << unreachable->message << '\n';
    return kExitUnreachable;
  }
  json answer = json::parse(std::get<std::string>(first), nullptr, false);
  if (!answer.is_object()) {
    err << "tokenctl: tokend at " << path << " sent an answer that is not JSON\n";
    return kExitUnreachable;
  }
  if (auto ok = answer.find("ok"); ok == answer.end() || *ok != true) {
    return DaemonError(answer, err);
  }
  for (;;) {
    auto line = conn.ReadLine(std::nullopt);
    if (auto* unreachable = std::get_if<Unreachable>(&line)) {
      err << "tokenctl: " << unreachable->message << '\n';
      return kExitUnreachable;
    }
    out << std::get<std::string>(line) << '\n' << std::flush;
  }
}

}  // namespace

int RunTokenctl(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return RunTokenctl(argc, argv, std::cin, out, err);
}

int RunTokenctl(int argc, char** argv, std::istream& in, std::ostream& out, std::ostream& err) {
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
  if (command == "get" || command == "invalidate" || command == "refresh") {
    std::optional<std::string> tenant;
    if (command != "get") wait = kDefaultRefreshWait;
    std::string problem = ParseTenantArgs(command, rest, tenant, wait, print_json);
    if (!problem.empty()) return UsageError(err, problem);
    request["op"] = command;
    request["tenant"] = *tenant;
    if (command == "invalidate") {
      std::optional<std::string> token = ReadToken(in);
      if (!token) return UsageError(err, "invalidate reads the rejected token on stdin; got none");
      request["access_token"] = *token;
    }
    if (wait.count() > 0) request["wait_ms"] = wait.count();
  } else if (command == "watch") {
    json tenants = json::array();
    for (std::string_view arg : rest) {
      if (arg.starts_with("-")) return UsageError(err, "watch: unknown option " + std::string(arg));
      tenants.push_back(std::string(arg));
    }
    request["op"] = "watch";
    if (!tenants.empty()) request["tenants"] = std::move(tenants);
    return Watch(*socket_path, request, timeout, out, err);
  } else if (command == "reload" || command == "metrics") {
    if (!rest.empty()) return UsageError(err, command + " takes no arguments");
    request["op"] = command;
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
    return DaemonError(answer, err);
  }

  if (print_json) {
    out << line << '\n';
  } else if (command == "get" || command == "invalidate" || command == "refresh") {
    out << StringField(answer, "access_token") << '\n';
  } else if (command == "status") {
    PrintStatus(answer, out);
  } else if (command == "reload") {
    auto tenants = answer.find("tenants");
    out << "reloaded: " << (tenants != answer.end() ? tenants->dump() : "?") << " tenants\n";
  } else if (command == "metrics") {
    std::string text = StringField(answer, "text");
    out << text;
    if (!text.empty() && text.back() != '\n') out << '\n';
  } else {
    out << "ok tokend " << StringField(answer, "version", "?") << '\n';
  }
  return kExitOk;
}

}  // namespace tokend
