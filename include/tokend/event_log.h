#pragma once

#include <atomic>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "tokend/clock.h"
#include "tokend/config.h"

namespace spdlog {
class logger;
}

namespace tokend {

// The fields of one event, in the order they are written.
using Fields = nlohmann::ordered_json;

// Structured event log (SPEC §6): one event per line, json or text, on the given
// spdlog logger (stdout in the daemon, a memory sink in tests).
//
// json: {"ts":"...Z","level":"info","event":"refresh_ok","msg":"...",<fields>}
// text: <ts> <level> <event> <msg> key=value key=value ...
//
// Callers never pass access tokens or client secrets in a field or a message.
// Thread-safe; format and level may be changed at any time (reload).
class EventLog {
 public:
  EventLog(std::shared_ptr<spdlog::logger> sink, const Clock& clock, LoggingOptions options);

  void Log(LogLevel level, std::string_view event, std::string_view msg,
           const Fields& fields = Fields::object());

  void Trace(std::string_view e, std::string_view m, const Fields& f = Fields::object()) {
    Log(LogLevel::kTrace, e, m, f);
  }
  void Debug(std::string_view e, std::string_view m, const Fields& f = Fields::object()) {
    Log(LogLevel::kDebug, e, m, f);
  }
  void Info(std::string_view e, std::string_view m, const Fields& f = Fields::object()) {
    Log(LogLevel::kInfo, e, m, f);
  }
  void Warn(std::string_view e, std::string_view m, const Fields& f = Fields::object()) {
    Log(LogLevel::kWarn, e, m, f);
  }
  void Error(std::string_view e, std::string_view m, const Fields& f = Fields::object()) {
    Log(LogLevel::kError, e, m, f);
  }

  bool Enabled(LogLevel level) const { return level >= level_.load(); }
  void SetOptions(LoggingOptions options);

  // Formats one line without writing it (exposed for tests).
  std::string Format(LogLevel level, std::string_view event, std::string_view msg,
                     const Fields& fields) const;

 private:
  std::shared_ptr<spdlog::logger> sink_;
  const Clock& clock_;
  std::atomic<LogLevel> level_;
  std::atomic<LogFormat> format_;
};

// A logger that writes bare lines to stdout, flushed per line.
std::shared_ptr<spdlog::logger> MakeStdoutLogger();

}  // namespace tokend
