// Lookup load generator: K client threads, each on its own Unix-socket
// connection, each sending one request at a time back to back; prints
// requests/s and latency percentiles.
//
//   tokend_lookup_bench --socket PATH [--protocol tokend|redis] [--key KEY]
//                       [--clients 1,16,64] [--seconds 5] [--warmup 1]
//                       [--pause-us 0]
//
// tokend: {"op":"get","tenant":KEY} and one answer line (it must be ok).
// redis:  GET KEY in RESP and one bulk string answer (it must not be null).
// --pause-us N: each client sleeps N microseconds after each answer (a paced
// load instead of back to back, to see what the server costs between requests).
//
// One output line per K:
//   PROTOCOL K REQUESTS_PER_S P50_US P99_US P999_US ANSWER_BYTES TOTAL_REQUESTS
// (TOTAL_REQUESTS includes the warm-up, for CPU time per request.)
// A failed request (an error answer, a closed connection) stops the run with
// exit status 1, so a figure never hides errors.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string socket_path;
  std::string protocol = "tokend";
  std::string key = "t0";
  std::vector<int> clients = {1, 16, 64};
  double seconds = 5.0;
  double warmup = 1.0;
  int pause_us = 0;
};

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "tokend_lookup_bench: %s\n", message.c_str());
  std::exit(1);
}

int Connect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket: " + std::string(std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) Die("socket path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    Die("connect " + path + ": " + std::strerror(errno));
  }
  return fd;
}

// One connection speaking one protocol; Call() sends the request and reads
// exactly one answer.
class Connection {
 public:
  explicit Connection(const Options& options) : fd_(Connect(options.socket_path)) {
    redis_ = options.protocol == "redis";
    if (redis_) {
      request_ = "*2\r\n$3\r\nGET\r\n$" + std::to_string(options.key.size()) + "\r\n" +
                 options.key + "\r\n";
    } else {
      request_ = "{\"op\":\"get\",\"tenant\":\"" + options.key + "\"}\n";
    }
    buffer_.resize(64 * 1024);
  }
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Returns false on a failed or error answer.
  bool Call() {
    size_t sent = 0;
    while (sent < request_.size()) {
      ssize_t n = send(fd_, request_.data() + sent, request_.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    size_t have = 0;
    for (;;) {
      if (have == buffer_.size()) buffer_.resize(buffer_.size() * 2);
      ssize_t n = recv(fd_, buffer_.data() + have, buffer_.size() - have, 0);
      if (n <= 0) return false;
      have += static_cast<size_t>(n);
      int done = redis_ ? RedisComplete(have) : LineComplete(have);
      if (done != 0) return done > 0;
    }
  }

  std::string_view last() const { return {buffer_.data(), last_size_}; }

 private:
  // 1 = a good answer, -1 = an error answer, 0 = incomplete.
  int LineComplete(size_t have) {
    const char* nl = static_cast<const char*>(std::memchr(buffer_.data(), '\n', have));
    if (nl == nullptr) return 0;
    last_size_ = static_cast<size_t>(nl - buffer_.data());
    std::string_view line(buffer_.data(), last_size_);
    return line.find("\"ok\":true") != std::string_view::npos ? 1 : -1;
  }

  int RedisComplete(size_t have) {
    std::string_view data(buffer_.data(), have);
    size_t eol = data.find("\r\n");
    if (eol == std::string_view::npos) return 0;
    if (data[0] != '$') {
      last_size_ = eol;
      return -1;
    }
    long length = std::strtol(buffer_.data() + 1, nullptr, 10);
    if (length < 0) {
      last_size_ = eol;
      return -1;  // null bulk: no such key
    }
    size_t total = eol + 2 + static_cast<size_t>(length) + 2;
    if (have < total) return 0;
    last_size_ = total;
    return 1;
  }

  int fd_;
  bool redis_ = false;
  std::string request_;
  std::vector<char> buffer_;
  size_t last_size_ = 0;
};

struct Result {
  double requests_per_s = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0;
  size_t answer_bytes = 0;
  uint64_t total_requests = 0;  // warm-up included
};

Result Run(const Options& options, int clients) {
  std::atomic<int> phase{0};  // 0 connecting, 1 warm-up, 2 measuring, 3 stop
  std::atomic<int> ready{0};
  std::atomic<bool> failed{false};
  std::vector<std::vector<uint32_t>> latencies(static_cast<size_t>(clients));
  std::vector<size_t> answer_bytes(static_cast<size_t>(clients));
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      Connection conn(options);
      auto& mine = latencies[static_cast<size_t>(i)];
      mine.reserve(1 << 20);
      uint64_t calls = 0;
      ready.fetch_add(1);
      while (phase.load(std::memory_order_relaxed) == 0) std::this_thread::yield();
      for (;;) {
        int p = phase.load(std::memory_order_relaxed);
        if (p == 3) break;
        auto start = Clock::now();
        if (!conn.Call()) {
          std::fprintf(stderr, "request failed: %.*s\n", static_cast<int>(conn.last().size()),
                       conn.last().data());
          failed.store(true);
          phase.store(3);
          break;
        }
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start);
        ++calls;
        if (p == 2) mine.push_back(static_cast<uint32_t>(std::min<int64_t>(ns.count(), UINT32_MAX)));
        if (options.pause_us > 0) {
          std::this_thread::sleep_for(std::chrono::microseconds(options.pause_us));
        }
      }
      answer_bytes[static_cast<size_t>(i)] = conn.last().size();
      total.fetch_add(calls);
    });
  }
  while (ready.load() < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  phase.store(1);
  std::this_thread::sleep_for(std::chrono::duration<double>(options.warmup));
  phase.store(2);
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(options.seconds));
  phase.store(3);
  auto elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& t : threads) t.join();
  if (failed.load()) Die("a request failed");

  std::vector<uint32_t> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  if (all.empty()) Die("no request completed");
  std::sort(all.begin(), all.end());
  auto pct = [&all](double p) {
    size_t i = std::min(all.size() - 1, static_cast<size_t>(p * static_cast<double>(all.size())));
    return all[i] / 1000.0;
  };
  Result r;
  r.requests_per_s = static_cast<double>(all.size()) / elapsed;
  r.p50_us = pct(0.50);
  r.p99_us = pct(0.99);
  r.p999_us = pct(0.999);
  r.answer_bytes = answer_bytes[0];
  r.total_requests = total.load();
  return r;
}

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(std::atoi(s.substr(pos, comma - pos).c_str()));
    if (out.back() < 1) Die("--clients wants positive numbers");
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + std::string(arg));
      return argv[++i];
    };
    if (arg == "--socket") {
      options.socket_path = value();
    } else if (arg == "--protocol") {
      options.protocol = value();
    } else if (arg == "--key") {
      options.key = value();
    } else if (arg == "--clients") {
      options.clients = ParseList(value());
    } else if (arg == "--seconds") {
      options.seconds = std::atof(value().c_str());
    } else if (arg == "--warmup") {
      options.warmup = std::atof(value().c_str());
    } else if (arg == "--pause-us") {
      options.pause_us = std::atoi(value().c_str());
      if (options.pause_us < 0) Die("--pause-us wants a number >= 0");
    } else {
      Die("usage: tokend_lookup_bench --socket PATH [--protocol tokend|redis] [--key KEY] "
          "[--clients 1,16,64] [--seconds 5] [--warmup 1] [--pause-us 0]");
    }
  }
  if (options.socket_path.empty()) Die("--socket is required");
  if (options.protocol != "tokend" && options.protocol != "redis") Die("unknown --protocol");
  for (int k : options.clients) {
    Result r = Run(options, k);
    std::printf("%s %d %.0f %.1f %.1f %.1f %zu %llu\n", options.protocol.c_str(), k,
                r.requests_per_s, r.p50_us, r.p99_us, r.p999_us, r.answer_bytes,
                static_cast<unsigned long long>(r.total_requests));
    std::fflush(stdout);
  }
  return 0;
}
