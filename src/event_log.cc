#include "tokend/event_log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace tokend {

namespace {

// A text value is written bare when it is a plain word, else JSON-quoted, so a
// line always splits back into its fields.
void AppendTextValue(std::string& out, const Fields& value) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    bool plain = !s.empty();
    for (unsigned char c : s) {
      if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) {
        plain = false;
        break;
      }
    }
    out += plain ? s : value.dump(-1, ' ', false, Fields::error_handler_t::replace);
  } else {
    out += value.dump(-1, ' ', false, Fields::error_handler_t::replace);
  }
}

}  // namespace

EventLog::EventLog(std::shared_ptr<spdlog::logger> sink, const Clock& clock,
                   LoggingOptions options)
    : sink_(std::move(sink)), clock_(clock), level_(options.level), format_(options.format) {
  sink_->set_pattern("%v");
  sink_->set_level(spdlog::level::trace);
  sink_->flush_on(spdlog::level::trace);
}

void EventLog::SetOptions(LoggingOptions options) {
  level_.store(options.level);
  format_.store(options.format);
}

std::string EventLog::Format(LogLevel level, std::string_view event, std::string_view msg,
                             const Fields& fields) const {
  std::string ts = FormatRfc3339Millis(clock_.SystemNow());
  if (format_.load() == LogFormat::kJson) {
    Fields line = Fields::object();
    line["ts"] = ts;
    line["level"] = ToString(level);
    line["event"] = event;
    line["msg"] = msg;
    if (fields.is_object()) {
      for (const auto& [key, value] : fields.items()) {
        if (!line.contains(key)) line[key] = value;
      }
    }
    return line.dump(-1, ' ', false, Fields::error_handler_t::replace);
  }
  std::string out;
  out.reserve(128);
  out += ts;
  out += ' ';
  out += ToString(level);
  out += ' ';
  out += event;
  out += ": ";
  out += msg;
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) {
      out += ' ';
      out += key;
      out += '=';
      AppendTextValue(out, value);
    }
  }
  return out;
}

void EventLog::Log(LogLevel level, std::string_view event, std::string_view msg,
                   const Fields& fields) {
  if (!Enabled(level)) return;
  sink_->info(Format(level, event, msg, fields));
}

std::shared_ptr<spdlog::logger> MakeStdoutLogger() {
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  return std::make_shared<spdlog::logger>("tokend", std::move(sink));
}

}  // namespace tokend
