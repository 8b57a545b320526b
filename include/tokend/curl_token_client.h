#pragma once

#include <memory>

#include "tokend/config.h"
#include "tokend/token_client.h"

namespace tokend {

// TokenClient over libcurl's multi interface: every attempt of every tenant runs
// on the one thread that calls Poll(), so thousands of tenants cost no threads.
//
// Each attempt: POST form-encoded grant_type=client_credentials (+ scope, params),
// client_secret_basic or client_secret_post, connect and total timeouts, TLS
// verification always on (plus http.ca_file), redirects never followed, the body
// capped at http.max_response_bytes, the request id header set from the request,
// the correlation header captured.
//
// http.ca_file is trusted in addition to the system's CAs: it replaces libcurl's
// default bundle file, while libcurl's default CA directory (Debian: /etc/ssl/certs)
// stays in use. An attempt that cannot even be set up (no token_url, say) fails
// with kind network on the next Poll(), never inside Start().
//
// Thread-safety: Wakeup() may be called from any thread; everything else only
// from the driving thread.
class CurlTokenClient final : public TokenClient {
 public:
  CurlTokenClient(const HttpOptions& options, const Clock& clock);
  ~CurlTokenClient() override;
  CurlTokenClient(const CurlTokenClient&) = delete;
  CurlTokenClient& operator=(const CurlTokenClient&) = delete;

  void Start(TokenRequest request, Callback done) override;
  void CancelAll() override;

  // Waits up to `max_wait` for network activity or Wakeup(), then performs
  // transfers and calls the callbacks of finished attempts.
  void Poll(Millis max_wait);

  // Makes a Poll() in progress (or the next one) return promptly.
  void Wakeup();

  // Takes effect for attempts started afterwards.
  void SetOptions(const HttpOptions& options);

  size_t in_flight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokend
