#include "tokend/daemon.h"

#include <signal.h>
#include <string.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "tokend/clock.h"
#include "tokend/config.h"
#include "tokend/event_log.h"
#include "tokend/refresh_engine.h"
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
    for (const auto& w : loaded.warnings) std::cerr << "warning: " << w.key << ": " << w.message << "\n";
    std::cout << "config OK: " << loaded.config.tenants.size() << " tenants\n";
    return kExitOk;
  }
  Config config = std::move(loaded.config);

  // Signals are taken synchronously by this thread only; every other thread is
  // started after they are blocked and inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  RealClock clock;
  EventLog log(MakeStdoutLogger(), clock, config.logging);
  log.Info("starting", "tokend starting", {{"version", kVersion}, {"config", options.config_path}});
  for (const auto& w : loaded.warnings) {
    log.Warn("config_warning", w.message, {{"key", w.key}});
  }

  TokenStore store(config.refresh.expiry_margin);
  RefreshEngine engine(config, store, log, clock);
  SocketServer server(config.socket, store, engine, clock, log);
  if (auto error = server.Start(); !error.empty()) {
    log.Error("socket_failed", "cannot serve the socket", {{"socket", config.socket.path}, {"error", error}});
    std::cerr << "tokend: " << error << "\n";
    return kExitRuntime;
  }
  engine.Start();
  log.Info("config_loaded", "config loaded", {{"tenants", config.tenants.size()}});
  log.Info("ready", "tokend is ready", {{"tenants", config.tenants.size()}});

  int stop_signal = 0;
  while (stop_signal == 0) {
    siginfo_t info;
    timespec timeout{1, 0};
    int sig = sigtimedwait(&signals, &info, &timeout);
    if (sig == SIGTERM || sig == SIGINT) {
      stop_signal = sig;
    } else if (sig == SIGHUP) {
      ConfigLoadResult reloaded = Load(options);
      if (!reloaded.ok()) {
        Fields errors = Fields::array();
        for (const auto& e : reloaded.errors) errors.push_back(e.ToString());
        log.Error("reload_failed", "new config rejected; the old one stays", {{"errors", errors}});
        continue;
      }
      config = std::move(reloaded.config);
      log.SetOptions(config.logging);
      engine.ApplyConfig(config);
      log.Info("reload_ok", "config reloaded", {{"tenants", config.tenants.size()}});
    }
  }

  log.Info("stopping", "tokend stopping", {{"signal", SignalName(stop_signal)}});
  server.Stop();
  engine.Stop();
  log.Info("stopped", "tokend stopped");
  return kExitOk;
}

}  // namespace tokend
