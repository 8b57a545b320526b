// Fuzzes the config loader: LoadConfigString on arbitrary YAML, with a fake
// SecretSource (no environment), and checks what it promises: every error has
// a message, a loaded config has valid tenants, and no error message repeats a
// secret the loader read.
//
// Paths in the input are real paths (client_secret_file, ca_file): the loader
// may open files; it only reads them.

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>

#include "tokend/config.h"

namespace {

constexpr char kEnvSecret[] = "fuzz-env-secret-4a7c2e91";

void Require(bool condition) {
  if (!condition) std::abort();
}

class FakeSecrets final : public tokend::SecretSource {
 public:
  std::optional<std::string> GetEnv(const std::string& name) const override {
    // A directory, not a secret (and none there: no file is read).
    if (name == "CREDENTIALS_DIRECTORY") return std::string("/nonexistent-tokend-credentials");
    if (name.empty() || name[0] == 'U') return std::nullopt;  // "unset"
    if (name[0] == 'E') return std::string();                 // "empty"
    return std::string(kEnvSecret);
  }
};

bool ValidTenantId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id) {
    if (!(std::isalnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const FakeSecrets secrets;
  const std::string text(reinterpret_cast<const char*>(data), size);
  tokend::ConfigLoadResult result = tokend::LoadConfigString(text, "fuzz.yaml", secrets);
  // Messages may quote the input; the secret must not come from anywhere else.
  const bool input_has_secret = text.find(kEnvSecret) != std::string::npos;

  for (const auto& error : result.errors) {
    Require(!error.message.empty());
    const std::string line = error.ToString();
    Require(line.rfind("fuzz.yaml", 0) == 0);
    Require(input_has_secret || line.find(kEnvSecret) == std::string::npos);
  }
  for (const auto& warning : result.warnings) {
    Require(input_has_secret || warning.message.find(kEnvSecret) == std::string::npos);
  }
  if (!result.ok()) return 0;

  const tokend::Config& config = result.config;
  Require(!config.tenants.empty());
  std::set<std::string> ids;
  for (const auto& tenant : config.tenants) {
    Require(ValidTenantId(tenant.id));
    Require(ids.insert(tenant.id).second);
    Require(!tenant.client_id.empty() && !tenant.client_secret.empty());
    Require(tenant.token_url.rfind("https://", 0) == 0 || tenant.token_url.rfind("http://", 0) == 0);
  }
  Require(config.refresh.max_concurrent >= 1);
  Require(config.backoff.initial <= config.backoff.max);
  Require(config.http.connect_timeout <= config.http.timeout);
  Require(config.refresh.at - config.refresh.jitter > 0 && config.refresh.at + config.refresh.jitter < 1);
  return 0;
}
