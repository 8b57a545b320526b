#pragma once

#include <string>
#include <vector>

#include "tokend/config.h"

namespace tokend {

// One tenant's token as persisted in state.file.
struct PersistedToken {
  std::string tenant;
  std::string access_token;
  std::string token_type;
  int64_t obtained_unix_ms = 0;  // when its request was sent
  int64_t expires_unix_ms = 0;
  std::string fingerprint;  // EndpointFingerprint() of the tenant when it was obtained
};

// A stable fingerprint of what a token was issued for: client_id, token URL,
// auth method, scopes and params (not the secret). A changed fingerprint means a
// stored token is not this tenant's any more.
std::string EndpointFingerprint(const TenantConfig& tenant);

struct StateLoadResult {
  std::vector<PersistedToken> tokens;
  std::string error;  // "" = loaded (or no file); otherwise why it was set aside
  bool set_aside = false;  // the bad file was renamed to PATH.bad-<unix time>
};

// The persisted token cache (SPEC §3 state.file): a JSON document
// {"version":1,"tokens":[...]}, written atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory) with mode 0600.
//
// Not thread-safe; used from the refresh thread only.
class StateFile {
 public:
  explicit StateFile(std::string path) : path_(std::move(path)) {}

  // Writes `tokens`. Returns "" or the error.
  std::string Save(const std::vector<PersistedToken>& tokens) const;

  // Reads the file. A missing file is no error and no tokens. A file readable by
  // group or others is refused (error, nothing loaded, file left alone). A
  // corrupt, truncated or foreign-version file is set aside.
  StateLoadResult Load() const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tokend
