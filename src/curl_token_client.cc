#include "tokend/curl_token_client.h"

#include <curl/curl.h>
#include <string.h>  // explicit_bzero

#include <algorithm>
#include <cctype>
#include <climits>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokend/version.h"

namespace tokend {
namespace {

// Every attempt opens its own connection and closes it afterwards. On a reused
// keep-alive connection that dies before answering (a server reset, an idle
// close racing our request), libcurl silently re-sends the POST on a new
// connection with the same headers: a hidden second request carrying the same
// request id, uncounted and outside the backoff. Refreshes are minutes apart
// per tenant, so the handshake this costs does not matter. (CURLOPT_FRESH_CONNECT
// and CURLOPT_FORBID_REUSE below.)

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// application/x-www-form-urlencoded (RFC 6749 Appendix B): unreserved characters
// stay, space becomes '+', everything else is %XX.
std::string FormEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(c);
    } else if (u == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::string Base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  if (i < in.size()) {
    uint32_t n = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) n |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

void Wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view TrimHeaderValue(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() &&
         (v.back() == ' ' || v.back() == '\t' || v.back() == '\r' || v.back() == '\n'))
    v.remove_suffix(1);
  return v;
}

bool IsTlsError(CURLcode code) {
  switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
      return true;
    default:
      return false;
  }
}

void RedactIn(std::string& text, std::string_view needle) {
  static constexpr std::string_view kRedacted = "[redacted]";
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + kRedacted.size())) {
    text.replace(at, needle.size(), kRedacted);
  }
}

// An endpoint may echo what it was sent (the secret in an error description, a
// Basic credential in a header it reflects); what it says is logged, counted
// and shown by `status`, so the tenant's secret is cut out of all of it, in
// every form it was sent in. Secrets shorter than 4 bytes are left: redacting
// them would shred every message and hide nothing.
void RedactSecret(TokenResult& result, const TenantConfig& tenant) {
  if (tenant.client_secret.size() < 4) return;
  std::string forms[] = {
      tenant.client_secret,
      FormEncode(tenant.client_secret),
      Base64(FormEncode(tenant.client_id) + ":" + FormEncode(tenant.client_secret)),
      Base64(tenant.client_id + ":" + tenant.client_secret),
  };
  for (const std::string& form : forms) {
    for (std::string* text : {&result.message, &result.oauth_error,
                              &result.oauth_error_description, &result.correlation_id}) {
      RedactIn(*text, form);
    }
  }
  for (std::string& form : forms) Wipe(form);
}

// One attempt in flight: its easy handle and everything the handle points into.
struct Attempt {
  CURL* easy = nullptr;
  TokenClient::Callback done;
  std::shared_ptr<const TenantConfig> tenant;  // for RedactSecret()
  std::string request_id;
  std::string url;
  std::string form;               // holds the secret with client_secret_post; wiped
  curl_slist* headers = nullptr;  // holds the secret with client_secret_basic; wiped
  std::string response;
  size_t max_response_bytes = 0;
  bool too_large = false;
  std::string correlation_header;
  std::string correlation_id;
  std::string retry_after;
  MonoTime started;
  Millis connect_timeout{0};
  Millis timeout{0};
  char error[CURL_ERROR_SIZE] = {};

  Attempt() = default;
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;
  ~Attempt() {
    if (easy != nullptr) curl_easy_cleanup(easy);
    for (curl_slist* h = headers; h != nullptr; h = h->next) {
      explicit_bzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(headers);
    Wipe(form);
  }

  static size_t OnBody(char* data, size_t size, size_t count, void* self) {
    auto* attempt = static_cast<Attempt*>(self);
    size_t bytes = size * count;
    if (attempt->response.size() + bytes > attempt->max_response_bytes) {
      attempt->too_large = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    attempt->response.append(data, bytes);
    return bytes;
  }

  static size_t OnHeader(char* data, size_t size, size_t count, void* self) {
    auto* attempt = static_cast<Attempt*>(self);
    size_t bytes = size * count;
    std::string_view line(data, bytes);
    if (line.starts_with("HTTP/")) {
      // A new response (after a 100 Continue, say): forget the previous one's headers.
      attempt->retry_after.clear();
      attempt->correlation_id.clear();
      return bytes;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return bytes;
    std::string_view name = line.substr(0, colon);
    std::string_view value = TrimHeaderValue(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "Retry-After")) {
      attempt->retry_after.assign(value.substr(0, 128));
    } else if (!attempt->correlation_header.empty() &&
               EqualsIgnoreCase(name, attempt->correlation_header)) {
      attempt->correlation_id.assign(value.substr(0, 128));
    }
    return bytes;
  }
};

}  // namespace

struct CurlTokenClient::Impl {
  HttpOptions options;
  const Clock& clock;
  CURLM* multi = nullptr;
  std::unordered_map<CURL*, std::unique_ptr<Attempt>> attempts;
  // Attempts that failed before reaching the network; delivered by the next Poll().
  std::vector<std::pair<Callback, TokenResult>> failed_early;
  // Bumped by CancelAll() so a Poll() delivering callbacks stops delivering.
  uint64_t cancel_epoch = 0;

  Impl(const HttpOptions& o, const Clock& c) : options(o), clock(c) {}

  // Sets up the attempt's easy handle; returns a problem or "" when it is ready.
  std::string Configure(Attempt& a, const TokenRequest& request);
  TokenResult Finish(Attempt& a, CURLcode code);
};

std::string CurlTokenClient::Impl::Configure(Attempt& a, const TokenRequest& request) {
  const TenantConfig* tenant = request.tenant_config.get();
  if (tenant == nullptr) return "no tenant configuration";
  if (tenant->token_url.empty()) return "token_url is empty";
  a.easy = curl_easy_init();
  if (a.easy == nullptr) return "curl_easy_init failed";

  a.tenant = request.tenant_config;
  a.url = tenant->token_url;
  a.max_response_bytes = options.max_response_bytes;
  a.correlation_header = options.correlation_header;
  a.connect_timeout = options.connect_timeout;
  a.timeout = options.timeout;

  a.form = "grant_type=client_credentials";
  if (!tenant->scopes.empty()) {
    std::string scope;
    for (const auto& s : tenant->scopes) {
      if (!scope.empty()) scope.push_back(' ');
      scope += s;
    }
    a.form += "&scope=" + FormEncode(scope);
  }
  for (const auto& [name, value] : tenant->params) {
    a.form += "&" + FormEncode(name) + "=" + FormEncode(value);
  }

  auto add_header = [&a](const std::string& line) {
    curl_slist* next = curl_slist_append(a.headers, line.c_str());
    if (next == nullptr) return false;
    a.headers = next;
    return true;
  };
  bool headers_ok = add_header("Content-Type: application/x-www-form-urlencoded") &&
                    add_header("Accept: application/json") && add_header("Expect:");
  if (!options.request_id_header.empty() && !request.request_id.empty()) {
    headers_ok = headers_ok && add_header(options.request_id_header + ": " + request.request_id);
  }
  if (tenant->auth_method == AuthMethod::kBasic) {
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic encoding.
    std::string pair = FormEncode(tenant->client_id) + ":" + FormEncode(tenant->client_secret);
    std::string line = "Authorization: Basic " + Base64(pair);
    headers_ok = headers_ok && add_header(line);
    Wipe(pair);
    Wipe(line);
  } else {
    std::string secret = FormEncode(tenant->client_secret);
    a.form += "&client_id=" + FormEncode(tenant->client_id) + "&client_secret=" + secret;
    Wipe(secret);
  }
  if (!headers_ok) return "out of memory building headers";

  static const std::string user_agent = std::string("tokend/") + kVersion;
  CURL* e = a.easy;
  bool ok = curl_easy_setopt(e, CURLOPT_URL, a.url.c_str()) == CURLE_OK;
  if (!ok) return "token_url is not a valid URL";
  ok = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a.error) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POSTFIELDS, a.form.c_str()) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(a.form.size())) ==
           CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HTTPHEADER, a.headers) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent.c_str()) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                        static_cast<long>(a.connect_timeout.count())) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(a.timeout.count())) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Attempt::OnBody) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_WRITEDATA, &a) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Attempt::OnHeader) == CURLE_OK &&
       curl_easy_setopt(e, CURLOPT_HEADERDATA, &a) == CURLE_OK;
  if (!ok) return "curl refused an option";
  if (!options.ca_file.empty()) {
    // Replaces libcurl's default CA bundle file; its default CA directory
    // (Debian: /etc/ssl/certs) stays, so the system's CAs remain trusted too.
    if (curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str()) != CURLE_OK) {
      return "TLS: ca_file not accepted";
    }
  }
  return "";
}

TokenResult CurlTokenClient::Impl::Finish(Attempt& a, CURLcode code) {
  long status = 0;
  curl_easy_getinfo(a.easy, CURLINFO_RESPONSE_CODE, &status);
  Millis latency = std::chrono::duration_cast<Millis>(clock.Now() - a.started);

  TokenResult result;
  if (code == CURLE_OK) {
    result =
        ParseTokenAnswer(static_cast<int>(status), a.response, a.retry_after, clock.SystemNow());
  } else if (a.too_large) {
    if (status >= 400) {
      // An error page too large to read is still that error.
      result = ParseTokenAnswer(static_cast<int>(status), "", a.retry_after, clock.SystemNow());
    } else {
      result.kind = AttemptKind::kBadResponse;
      result.http_status = static_cast<int>(status);
      result.message = "answer larger than " + std::to_string(a.max_response_bytes) + " bytes";
    }
  } else {
    result.http_status = static_cast<int>(status);
    std::string detail = a.error[0] != '\0' ? a.error : curl_easy_strerror(code);
    if (code == CURLE_OPERATION_TIMEDOUT) {
      curl_off_t connected_us = 0;
      curl_easy_getinfo(a.easy, CURLINFO_CONNECT_TIME_T, &connected_us);
      result.kind = AttemptKind::kTimeout;
      result.message = connected_us == 0 && status == 0
                           ? "connect timed out after " + std::to_string(latency.count()) + " ms"
                           : "no answer within " + std::to_string(a.timeout.count()) + " ms";
    } else if (IsTlsError(code)) {
      result.kind = AttemptKind::kNetwork;
      result.message = code == CURLE_PEER_FAILED_VERIFICATION
                           ? "TLS: certificate verify failed (" + detail + ")"
                           : "TLS: " + detail;
    } else {
      result.kind = AttemptKind::kNetwork;
      switch (code) {
        case CURLE_COULDNT_RESOLVE_HOST:
          result.message = "DNS: " + detail;
          break;
        case CURLE_COULDNT_CONNECT:
          result.message = "connect failed: " + detail;
          break;
        case CURLE_GOT_NOTHING:
          result.message = "connection closed without an answer";
          break;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
          result.message = "connection broken: " + detail;
          break;
        case CURLE_UNSUPPORTED_PROTOCOL:
          result.message = "unsupported protocol or answer: " + detail;
          break;
        default:
          result.message = std::string(curl_easy_strerror(code)) + ": " + detail;
          break;
      }
    }
  }
  result.latency = latency;
  result.request_id = a.request_id;
  result.correlation_id = a.correlation_id;
  if (a.tenant) RedactSecret(result, *a.tenant);
  if (!result.retry_after && !a.retry_after.empty()) {
    result.retry_after = ParseRetryAfter(a.retry_after, clock.SystemNow());
  }
  return result;
}

CurlTokenClient::CurlTokenClient(const HttpOptions& options, const Clock& clock)
    : impl_(std::make_unique<Impl>(options, clock)) {
  InitCurlOnce();
  impl_->multi = curl_multi_init();
}

CurlTokenClient::~CurlTokenClient() {
  CancelAll();
  curl_multi_cleanup(impl_->multi);
}

void CurlTokenClient::Start(TokenRequest request, Callback done) {
  auto attempt = std::make_unique<Attempt>();
  attempt->started = impl_->clock.Now();
  attempt->request_id = request.request_id;
  std::string problem = impl_->Configure(*attempt, request);
  if (problem.empty() && curl_multi_add_handle(impl_->multi, attempt->easy) != CURLM_OK) {
    problem = "curl_multi_add_handle failed";
  }
  if (!problem.empty()) {
    TokenResult result;
    result.kind = AttemptKind::kNetwork;
    result.message = std::move(problem);
    result.request_id = request.request_id;
    impl_->failed_early.emplace_back(std::move(done), std::move(result));
    Wakeup();
    return;
  }
  attempt->done = std::move(done);
  CURL* easy = attempt->easy;
  impl_->attempts.emplace(easy, std::move(attempt));
}

void CurlTokenClient::CancelAll() {
  for (auto& [easy, attempt] : impl_->attempts) curl_multi_remove_handle(impl_->multi, easy);
  impl_->attempts.clear();
  impl_->failed_early.clear();
  ++impl_->cancel_epoch;
}

void CurlTokenClient::Poll(Millis max_wait) {
  long long wait_ms = std::clamp<long long>(max_wait.count(), 0, INT_MAX);
  if (!impl_->failed_early.empty()) wait_ms = 0;
  curl_multi_poll(impl_->multi, nullptr, 0, static_cast<int>(wait_ms), nullptr);
  int running = 0;
  curl_multi_perform(impl_->multi, &running);

  // Collect first, then call back: a callback may Start() or CancelAll().
  std::vector<std::pair<Callback, TokenResult>> finished = std::move(impl_->failed_early);
  impl_->failed_early.clear();
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(impl_->multi, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;  // msg dies with remove_handle below
    auto it = impl_->attempts.find(easy);
    if (it == impl_->attempts.end()) continue;
    std::unique_ptr<Attempt> attempt = std::move(it->second);
    impl_->attempts.erase(it);
    curl_multi_remove_handle(impl_->multi, easy);
    TokenResult result = impl_->Finish(*attempt, code);
    finished.emplace_back(std::move(attempt->done), std::move(result));
  }
  const uint64_t epoch = impl_->cancel_epoch;
  for (auto& [done, result] : finished) {
    if (impl_->cancel_epoch != epoch) break;
    done(std::move(result));
  }
}

void CurlTokenClient::Wakeup() { curl_multi_wakeup(impl_->multi); }

void CurlTokenClient::SetOptions(const HttpOptions& options) { impl_->options = options; }

size_t CurlTokenClient::in_flight() const {
  return impl_->attempts.size() + impl_->failed_early.size();
}

}  // namespace tokend
