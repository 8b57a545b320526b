#include "tokend/daemon.h"

#include <signal.h>
#include <string.h>

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <iostream>
#include <optional>
#include <string>

#include "tokend/access_policy.h"
#include "tokend/atomic_file.h"
#include "tokend/clock.h"
#include "tokend/config.h"
#include "tokend/event_log.h"
#include "tokend/metrics.h"
#include "tokend/refresh_engine.h"
#include "tokend/service_notifier.h"
#include "tokend/socket_server.h"
#include "tokend/token_store.h"
#include "tokend/version.h"

namespace tokend {

namespace {

constexpr char kUsage[] =
    "usage: tokend [--config PATH] [--check-config] [--log-level LEVEL]\n"
    "              [--log-format json|text] [--version] [--help]\n";

constexpr char kHelp[] =
    "tokend keeps OAuth 2.0 client-credentials tokens fresh for many tenants and\n"
    "serves them to local programs over a Unix socket.\n\n"
    "  --config PATH        config file (default: $TOKEND_CONFIG, else /etc/tokend/tokend.yaml)\n"
    "  --check-config       validate the config and read every secret, then exit\n"
    "  --log-level LEVEL    trace|debug|info|warn|error (overrides logging.level)\n"
    "  --log-format FORMAT  json|text (overrides logging.format)\n"
    "  --version            print the version and exit\n"
    "  --help               print this help and exit\n\n"
    "Exit status: 0 clean stop, 1 bad configuration, 2 bad usage, 3 runtime failure.\n";

struct Options {
  std::string config_path;
  bool check_config = false;
  std::optional<LogLevel> log_level;
  std::optional<LogFormat> log_format;
};

std::optional<LogLevel> ParseLevel(const std::string& s) {
  for (auto level : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn,
                     LogLevel::kError}) {
    if (s == ToString(level)) return level;
  }
  return std::nullopt;
}

std::optional<LogFormat> ParseFormat(const std::string& s) {
  if (s == "json") return LogFormat::kJson;
  if (s == "text") return LogFormat::kText;
  return std::nullopt;
}

// Returns an exit status when the process should end now (help, version, bad usage).
std::optional<int> ParseArgs(int argc, char** argv, Options& options) {
  auto usage_error = [](const std::string& message) {
    std::cerr << "tokend: " << message << "\n" << kUsage;
    return std::optional<int>(kExitUsage);
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline_value = true;
    }
    auto take_value = [&](std::string& out) -> bool {
      if (has_inline_value) {
        out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage << "\n" << kHelp;
      return kExitOk;
    } else if (arg == "--version") {
      std::cout << "tokend " << kVersion << "\n";
      return kExitOk;
    } else if (arg == "--check-config") {
      options.check_config = true;
    } else if (arg == "--config") {
      if (!take_value(options.config_path)) return usage_error("--config needs a PATH");
    } else if (arg == "--log-level") {
      std::string v;
      if (!take_value(v)) return usage_error("--log-level needs a LEVEL");
      options.log_level = ParseLevel(v);
      if (!options.log_level) {
        return usage_error("--log-level: unknown level '" + v +
                           "' (trace|debug|info|warn|error)");
      }
    } else if (arg == "--log-format") {
      std::string v;
      if (!take_value(v)) return usage_error("--log-format needs json or text");
      options.log_format = ParseFormat(v);
      if (!options.log_format) return usage_error("--log-format: expected json or text, got '" + v + "'");
    } else {
      return usage_error("unknown argument '" + arg + "'");
    }
  }
  if (options.config_path.empty()) {
    const char* env = std::getenv("TOKEND_CONFIG");
    options.config_path = env && *env ? env : "/etc/tokend/tokend.yaml";
  }
  return std::nullopt;
}

void PrintErrors(const ConfigLoadResult& result) {
  for (const auto& error : result.errors) std::cerr << error.ToString() << "\n";
}

ConfigLoadResult Load(const Options& options) {
  ProcessSecretSource env;
  ConfigLoadResult result = LoadConfigFile(options.config_path, env);
  if (options.log_level) result.config.logging.level = *options.log_level;
  if (options.log_format) result.config.logging.format = *options.log_format;
  return result;
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
  }
  return "signal";
}

// The running daemon: owns the store, the refresh engine and the socket server,
// answers what the socket side asks (RefreshControl), and runs the main thread's
// loop of signals, sd_notify and the metrics textfile.
class Daemon final : public RefreshControl {
 public:
  Daemon(Options options, Config config, EventLog& log, const Clock& clock)
      : options_(std::move(options)),
        config_(std::move(config)),
        log_(log),
        clock_(clock),
        started_(clock.Now()),
        store_(config_.refresh.expiry_margin),
        engine_(config_, store_, log_, clock_),
        server_(config_.socket, store_, *this, clock_, log_) {
    server_.SetAccessPolicy(AccessPolicy::FromConfig(config_));
  }

  int Run(const sigset_t& signals);

  LimitSnapshot Limit() const override { return engine_.Limit(); }
  void RequestRefresh(const std::string& tenant) override { engine_.RequestRefresh(tenant); }
  void Invalidate(const std::string& tenant, const std::string& access_token) override {
    engine_.Invalidate(tenant, access_token);
  }
  ReloadOutcome Reload() override;
  std::optional<ReloadOutcome> LastReload() const override {
    std::lock_guard lock(last_reload_mutex_);
    return last_reload_;
  }
  std::string MetricsText() override;

 private:
  void WriteMetricsFile();
  std::string StatusLine();

  const Options options_;
  std::mutex config_mutex_;
  Config config_;  // GUARDED_BY(config_mutex_) once running
  EventLog& log_;
  const Clock& clock_;
  const MonoTime started_;
  ServiceNotifier notifier_;
  mutable std::mutex last_reload_mutex_;
  std::optional<ReloadOutcome> last_reload_;  // GUARDED_BY(last_reload_mutex_)
  TokenStore store_;
  RefreshEngine engine_;
  SocketServer server_;
};

ReloadOutcome Daemon::Reload() {
  std::lock_guard lock(config_mutex_);
  notifier_.Reloading(clock_.Now());
  ReloadOutcome outcome;
  ConfigLoadResult loaded = Load(options_);
  if (!loaded.ok()) {
    Fields errors = Fields::array();
    for (const auto& e : loaded.errors) {
      outcome.errors.push_back(e.ToString());
      errors.push_back(e.ToString());
    }
    outcome.tenants = config_.tenants.size();
    log_.Error("reload_failed", "new config rejected; the old one stays", {{"errors", errors}});
  } else {
    for (const auto& w : loaded.warnings) log_.Warn("config_warning", w.message, {{"key", w.key}});
    config_ = std::move(loaded.config);
    log_.SetOptions(config_.logging);
    engine_.ApplyConfig(config_);
    server_.SetAccessPolicy(AccessPolicy::FromConfig(config_));  // names resolved again
    outcome.ok = true;
    outcome.tenants = config_.tenants.size();
    log_.Info("reload_ok", "config reloaded", {{"tenants", outcome.tenants}});
  }
  notifier_.Ready();
  outcome.at_unix = UnixSeconds(clock_.SystemNow());
  {
    std::lock_guard last(last_reload_mutex_);
    last_reload_ = outcome;
  }
  return outcome;
}

std::string Daemon::MetricsText() {
  SocketCounters counters = server_.Counters();
  MetricsSources sources;
  sources.refresh = &engine_.metrics();
  sources.socket = &counters;
  sources.store = &store_;
  sources.limit = engine_.Limit();
  sources.now = clock_.Now();
  return RenderMetrics(sources);
}

void Daemon::WriteMetricsFile() {
  std::string path;
  {
    std::lock_guard lock(config_mutex_);
    path = config_.metrics.textfile;
  }
  if (path.empty()) return;
  std::string error = WriteFileAtomically(path, MetricsText(), 0644);
  if (!error.empty()) {
    log_.Warn("metrics_write_failed", "cannot write the metrics textfile",
              {{"file", path}, {"error", error}});
  }
}

std::string Daemon::StatusLine() {
  auto [total, valid] = store_.CountValid(clock_.Now());
  LimitSnapshot limit = engine_.Limit();
  return std::to_string(valid) + "/" + std::to_string(total) +
         " tenants hold a valid token; requests in flight " + std::to_string(limit.in_flight) +
         " of " + std::to_string(limit.effective);
}

int Daemon::Run(const sigset_t& signals) {
  int activated_fd = -1;
  int fds = sd_listen_fds(1);
  if (fds > 1) {
    log_.Error("socket_failed", "socket activation passed more than one socket", {{"fds", fds}});
    return kExitRuntime;
  }
  if (fds == 1) activated_fd = SD_LISTEN_FDS_START;
  // Tenants (and tokens restored from state.file) are in the store before the
  // socket serves, so the first request never sees an empty daemon.
  engine_.Start();
  if (std::string error = server_.Start(activated_fd); !error.empty()) {
    log_.Error("socket_failed", "cannot serve the socket",
               {{"socket", config_.socket.path}, {"error", error}});
    std::cerr << "tokend: " << error << "\n";
    return kExitRuntime;
  }
  log_.Info("config_loaded", "config loaded", {{"tenants", config_.tenants.size()}});
  log_.Info("ready", "tokend is ready", {{"tenants", config_.tenants.size()}});
  notifier_.Ready();
  notifier_.Status(StatusLine());

  // Test hook: stalls the refresh loop, to show the watchdog firing.
  if (const char* stall = std::getenv("TOKEND_TEST_STALL_REFRESH_LOOP_MS")) {
    engine_.StallForTesting(Millis(std::atoll(stall)));
  }

  const std::optional<Millis> watchdog = notifier_.watchdog_interval();
  // A loop that has not gone round for this long is stuck (both tick every second).
  const Millis stall_limit = std::max(Millis(3000), watchdog ? *watchdog : Millis(0));
  MonoTime next_metrics = clock_.Now();
  int stop_signal = 0;
  while (stop_signal == 0) {
    MonoTime now = clock_.Now();
    if (watchdog &&
        LoopsMakingProgress(now, engine_.LastProgress(), server_.LastProgress(), stall_limit)) {
      notifier_.Watchdog();
    }
    notifier_.Status(StatusLine());
    Millis metrics_interval;
    {
      std::lock_guard lock(config_mutex_);
      metrics_interval = config_.metrics.interval;
    }
    if (now >= next_metrics) {
      WriteMetricsFile();
      next_metrics = now + metrics_interval;
    }

    Millis wait = std::min<Millis>(Millis(1000), std::chrono::ceil<Millis>(next_metrics - now));
    if (watchdog) wait = std::min(wait, *watchdog);
    wait = std::max(wait, Millis(1));
    timespec timeout{static_cast<time_t>(wait.count() / 1000),
                     static_cast<long>((wait.count() % 1000) * 1000000)};
    siginfo_t info;
    int sig = sigtimedwait(&signals, &info, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      stop_signal = sig;
    } else if (sig == SIGHUP) {
      Reload();
    }
  }

  notifier_.Stopping();
  log_.Info("stopping", "tokend stopping", {{"signal", SignalName(stop_signal)}});
  server_.Stop();
  engine_.Stop();
  WriteMetricsFile();
  log_.Info("stopped", "tokend stopped");
  return kExitOk;
}

}  // namespace

int RunDaemon(int argc, char** argv) {
  Options options;
  if (auto status = ParseArgs(argc, argv, options)) return *status;

  ConfigLoadResult loaded = Load(options);
  if (!loaded.ok()) {
    PrintErrors(loaded);
    return kExitBadConfig;
  }
  if (options.check_config) {
    for (const auto& w : loaded.warnings) {
      std::cerr << "warning: " << w.key << ": " << w.message << "\n";
    }
    std::cout << "config OK: " << loaded.config.tenants.size() << " tenants\n";
    return kExitOk;
  }

  // Signals are taken synchronously by the main thread only; every other thread
  // is started after they are blocked and inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  RealClock clock;
  EventLog log(MakeStdoutLogger(), clock, loaded.config.logging);
  log.Info("starting", "tokend starting", {{"version", kVersion}, {"config", options.config_path}});
  for (const auto& w : loaded.warnings) log.Warn("config_warning", w.message, {{"key", w.key}});

  Daemon daemon(options, std::move(loaded.config), log, clock);
  return daemon.Run(signals);
}

}  // namespace tokend
