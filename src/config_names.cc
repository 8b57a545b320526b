#include "tokend/config.h"

namespace tokend {

const char* ToString(JitterKind kind) {
  switch (kind) {
    case JitterKind::kFull: return "full";
    case JitterKind::kEqual: return "equal";
    case JitterKind::kDecorrelated: return "decorrelated";
    case JitterKind::kNone: return "none";
  }
  return "unknown";
}

const char* ToString(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

const char* ToString(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "unknown";
}

}  // namespace tokend
