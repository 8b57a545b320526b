#include "tokend/socket_server.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace tokend {

namespace {

// epoll data of the two non-connection fds; connection ids start above them.
constexpr uint64_t kListenId = 1;
constexpr uint64_t kWakeId = 2;

// Unsent output above which a connection's requests are no longer read or
// answered until the peer catches up.
constexpr size_t kMaxPendingOutput = 64 * 1024;
// Unprocessed input above which a connection is not read (it only grows while
// a `get` waits or output is full).
constexpr size_t kMaxBufferedInput = 64 * 1024;
constexpr size_t kReadChunk = 16 * 1024;
// Read at most this much per readiness event, so one busy peer cannot starve
// the others.
constexpr size_t kMaxReadPerEvent = 256 * 1024;
constexpr int kMaxEvents = 64;
// When nearly every request comes within kSpin of the loop going idle (a
// client asking back to back), the loop polls for up to kSpin before it
// sleeps: the client finds it awake, which saves the sleep and the wakeup,
// about half of a round trip on a Unix socket. kSpinShare is how many of the
// recent idle gaps (a moving average over about 8) must have been that short;
// random or sparse traffic has longer gaps and never spins, so an idle daemon
// costs nothing and a spin is rarely in vain.
constexpr std::chrono::microseconds kSpin{50};
constexpr double kSpinShare = 0.8;
constexpr Millis kAcceptPause(100);  // after EMFILE/ENFILE

constexpr int kNumResults = 1 + kNumErrorCodes;  // ok, then each ErrorCode

// Tenants queued by the store listener before it just says "everything".
constexpr size_t kMaxQueuedChanges = 4096;
// A watcher with no token to time re-checks this often anyway.
constexpr Millis kWatchRecheck(3600 * 1000);

std::string Errno(int err) { return std::strerror(err); }

// Room for a whole request line (with "\r\n") even when it exceeds the default.
size_t InputLimit(const SocketOptions& options) {
  return std::max(kMaxBufferedInput, options.max_request_bytes + 2);
}

}  // namespace

struct SocketServer::Connection {
  Connection(uint64_t id_in, int fd_in, Session session_in, MonoTime now)
      : id(id_in), fd(fd_in), session(std::move(session_in)), last_activity(now) {}
  ~Connection() { ::close(fd); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  size_t PendingOutput() const { return out.size() - out_pos; }
  size_t BufferedInput() const { return in.size() - in_pos; }

  const uint64_t id;
  const int fd;
  Session session;  // the peer, its access, whether it watches

  struct Watch {
    bool all = false;                  // every tenant the peer may read
    std::vector<std::string> tenants;  // when !all
    // The last token pushed per tenant; null once `expired` was pushed.
    std::unordered_map<std::string, std::shared_ptr<const Token>> pushed;
    std::optional<MonoTime> next_expiry;  // no later than the first pushed token's
  };
  std::unique_ptr<Watch> watch;  // set once `watch` was accepted

  std::string in;  // received bytes; those before in_pos are handled
  size_t in_pos = 0;
  size_t scanned = 0;  // no '\n' in [in_pos, scanned)
  std::string out;     // answers; those before out_pos are sent
  size_t out_pos = 0;

  std::optional<PendingGet> parked;  // the waiting `get` that holds back the rest
  bool read_eof = false;             // the peer will send no more
  bool closing = false;              // close once `out` is sent (too_large)
  uint32_t events = 0;               // current epoll interest
  MonoTime last_activity;            // last byte received or sent
  std::optional<MonoTime> timer_at;  // its entry in timers_, never later than due
};

SocketServer::SocketServer(SocketOptions options, TokenStore& store, RefreshControl& control,
                           const Clock& clock, EventLog& log)
    : options_(std::move(options)),
      store_(store),
      clock_(clock),
      log_(log),
      dispatcher_(store, control, clock, clock.Now()),
      request_counts_(std::make_unique<std::atomic<uint64_t>[]>(
          static_cast<size_t>(Dispatcher::NumOpLabels() * kNumResults))) {}

SocketServer::~SocketServer() { Stop(); }

std::string SocketServer::Start(int inherited_listen_fd) {
  std::lock_guard lock(lifecycle_mutex_);
  if (started_) return "the socket server was already started";
  started_ = true;

  std::string where = options_.path;
  const bool activated = inherited_listen_fd >= 0;
  if (activated) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(inherited_listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        !listening) {
      return "inherited fd " + std::to_string(inherited_listen_fd) + " is not a listening socket";
    }
    int flags = fcntl(inherited_listen_fd, F_GETFL);
    if (flags < 0 || fcntl(inherited_listen_fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      return "cannot make the inherited socket non-blocking: " + Errno(errno);
    }
    fcntl(inherited_listen_fd, F_SETFD, FD_CLOEXEC);
    listen_fd_ = inherited_listen_fd;
    sockaddr_un addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &addr_len) == 0 &&
        addr.sun_family == AF_UNIX && addr.sun_path[0] != '\0') {
      where = addr.sun_path;
    }
  } else {
    const std::string& path = options_.path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty()) return "socket path is empty";
    if (path.size() >= sizeof addr.sun_path) {
      return "socket path " + path + " is too long (" + std::to_string(path.size()) +
             " bytes; at most " + std::to_string(sizeof addr.sun_path - 1) + ")";
    }
    std::memcpy(addr.sun_path, path.data(), path.size());

    // A leftover socket file is replaced only if nobody answers on it.
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket";
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe < 0) return "socket: " + Errno(errno);
      int rc = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      int err = errno;
      ::close(probe);
      if (rc == 0 || err == EAGAIN) {
        return "another process is listening on " + path + " (is tokend already running?)";
      }
      if (err != ECONNREFUSED) return "cannot probe " + path + ": " + Errno(err);
      if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        return "cannot remove stale socket " + path + ": " + Errno(errno);
      }
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return "socket: " + Errno(errno);
    // Bound under a temporary name and renamed into place once listening, so
    // the path never names a socket nobody listens on: a client that waits for
    // the file to appear would get ECONNREFUSED between bind() and listen().
    // (A path too long for the temporary name is bound directly.)
    std::string bound_path = path + ".tmp-" + std::to_string(getpid());
    sockaddr_un bound_addr = addr;
    if (bound_path.size() < sizeof bound_addr.sun_path) {
      std::memcpy(bound_addr.sun_path, bound_path.c_str(), bound_path.size() + 1);
      unlink(bound_path.c_str());
    } else {
      bound_path = path;
    }
    // The umask makes the file no wider than `mode` from its first moment; the
    // chmod then sets exactly `mode`. (umask is process-wide: Start() runs
    // before other threads create files.)
    mode_t old_mask = umask(static_cast<mode_t>(~options_.mode & 0777));
    int rc = bind(fd, reinterpret_cast<const sockaddr*>(&bound_addr), sizeof bound_addr);
    int err = errno;
    umask(old_mask);
    if (rc != 0) {
      ::close(fd);
      return "cannot bind " + path + ": " + Errno(err);
    }
    if (chmod(bound_path.c_str(), static_cast<mode_t>(options_.mode & 07777)) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        (bound_path != path && rename(bound_path.c_str(), path.c_str()) != 0) ||
        lstat(path.c_str(), &bound_stat_) != 0) {
      err = errno;
      ::close(fd);
      unlink(bound_path.c_str());
      return "cannot listen on " + path + ": " + Errno(err);
    }
    listen_fd_ = fd;
    owns_file_ = true;
  }

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  epoll_event listen_event{};
  listen_event.events = EPOLLIN;
  listen_event.data.u64 = kListenId;
  epoll_event wake_event{};
  wake_event.events = EPOLLIN;
  wake_event.data.u64 = kWakeId;
  if (epoll_fd_ < 0 || wake_fd_ < 0 ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &listen_event) != 0 ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake_event) != 0) {
    std::string error = "cannot set up the event loop: " + Errno(errno);
    CleanUp();
    return error;
  }

  // Cheap unless a `get` waits or someone watches: then it queues and wakes,
  // and never blocks the refresh thread for longer than a short lock.
  listener_id_ = store_.AddListener([this](const std::string& tenant) {
    bool wake = parked_count_.load() > 0;
    if (watcher_count_.load() > 0) {
      std::lock_guard changes_lock(changes_mutex_);
      if (tenant.empty() || changed_tenants_.size() >= kMaxQueuedChanges) {
        all_changed_ = true;
      } else {
        changed_tenants_.insert(tenant);
      }
      wake = true;
    }
    if (wake) Wake();
  });
  thread_ = std::thread([this] { Run(); });
  log_.Info("listening", "serving the socket", {{"socket", where}, {"activated", activated}});
  return "";
}

void SocketServer::Stop() {
  std::lock_guard lock(lifecycle_mutex_);
  if (!thread_.joinable()) return;
  stop_.store(true);
  Wake();
  thread_.join();
  CleanUp();
}

// Runs on the caller of Start()/Stop() once the loop thread is gone (or never ran).
void SocketServer::CleanUp() {
  if (listener_id_ != 0) {
    store_.RemoveListener(listener_id_);  // waits out a listener running now
    listener_id_ = 0;
  }
  timers_.clear();
  parked_ids_.clear();
  watcher_ids_.clear();
  watcher_count_.store(0);
  connections_.clear();
  connections_open_.store(0);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
  if (owns_file_) {
    struct stat st {};
    // Only our own file: a later daemon may have replaced it.
    if (lstat(options_.path.c_str(), &st) == 0 && st.st_ino == bound_stat_.st_ino &&
        st.st_dev == bound_stat_.st_dev) {
      unlink(options_.path.c_str());
    }
    owns_file_ = false;
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
  wake_fd_ = -1;
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  epoll_fd_ = -1;
}

void SocketServer::Wake() {
  uint64_t one = 1;
  // EAGAIN only when the counter is saturated, i.e. a wake-up is pending anyway.
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
}

SocketCounters SocketServer::Counters() const {
  SocketCounters counters;
  counters.connections_open = connections_open_.load(std::memory_order_relaxed);
  counters.connections_accepted = connections_accepted_.load(std::memory_order_relaxed);
  counters.connections_busy = connections_busy_.load(std::memory_order_relaxed);
  const int ops = static_cast<int>(Dispatcher::Ops().size());
  for (int slot = 0; slot < Dispatcher::NumOpLabels(); ++slot) {
    int op = slot < ops ? slot : (slot == ops ? Dispatcher::kOpInvalid : Dispatcher::kOpUnknown);
    for (int result = 0; result < kNumResults; ++result) {
      uint64_t n = request_counts_[slot * kNumResults + result].load(std::memory_order_relaxed);
      if (n == 0) continue;
      counters.requests.push_back(
          {std::string(Dispatcher::OpLabel(op)),
           result == 0 ? "ok" : ToString(static_cast<ErrorCode>(result - 1)), n});
    }
  }
  return counters;
}

void SocketServer::SetAccessPolicy(std::shared_ptr<const AccessPolicy> policy) {
  // No Wake(): this may race with Stop() closing the eventfd, and may run on
  // the loop thread itself (`reload`). The loop compares generations every time
  // round (at least once a second), and every connection before each request.
  dispatcher_.SetAccessPolicy(std::move(policy));
}

void SocketServer::Count(const Outcome& outcome) {
  int result = outcome.error ? 1 + static_cast<int>(*outcome.error) : 0;
  request_counts_[Dispatcher::OpSlot(outcome.op) * kNumResults + result].fetch_add(
      1, std::memory_order_relaxed);
}

void SocketServer::Run() {
  epoll_event events[kMaxEvents];
  double short_gaps = 0;  // moving average: 1 for a gap under kSpin, 0 otherwise
  while (!stop_.load()) {
    // Real time, not clock_: the spin is about this CPU, not about timers.
    const auto idle_from = MonoClock::now();
    int n = 0;
    if (short_gaps >= kSpinShare) {
      do {
        n = epoll_wait(epoll_fd_, events, kMaxEvents, 0);
      } while (n == 0 && MonoClock::now() - idle_from < kSpin);
    }
    if (n == 0) n = epoll_wait(epoll_fd_, events, kMaxEvents, NextTimeoutMs());
    const bool short_gap = n > 0 && MonoClock::now() - idle_from < kSpin;
    short_gaps += ((short_gap ? 1.0 : 0.0) - short_gaps) / 8;
    if (n < 0) {
      if (errno == EINTR) continue;
      log_.Error("socket_failed", "epoll_wait failed; the socket stops serving",
                 {{"error", Errno(errno)}});
      return;
    }
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kListenId) {
        AcceptAll();
      } else if (id == kWakeId) {
        uint64_t count = 0;
        [[maybe_unused]] ssize_t r = read(wake_fd_, &count, sizeof count);
        woken = true;
      } else if (auto it = connections_.find(id); it != connections_.end()) {
        OnConnectionEvent(*it->second, events[i].events);
      }
    }
    if (stop_.load()) break;
    if (woken) {
      ResumeAllParked();
      PushWatchEvents();
    }
    if (dispatcher_.AccessGeneration() != watchers_generation_) ReevaluateWatchers();
    RunTimers();
    last_progress_.store(clock_.Now().time_since_epoch().count());
  }
}

void SocketServer::AcceptAll() {
  if (accept_paused_) return;
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Level-triggered: stop listening for a moment rather than spin.
        log_.Warn("accept_failed", "cannot accept connections for now", {{"error", Errno(err)}});
        epoll_event ev{};
        ev.data.u64 = kListenId;
        epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
        accept_paused_ = true;
        accept_paused_until_ = clock_.Now() + kAcceptPause;
        return;
      }
      log_.Warn("accept_failed", "accept failed", {{"error", Errno(err)}});
      return;
    }
    connections_accepted_.fetch_add(1, std::memory_order_relaxed);
    if (connections_.size() >= static_cast<size_t>(std::max(0, options_.max_connections))) {
      static const std::string kBusy =
          Dispatcher::ErrorLine(ErrorCode::kBusy, "too many connections; try again later") + "\n";
      // Counted before the peer can read the answer (tests read both).
      connections_busy_.fetch_add(1, std::memory_order_relaxed);
      [[maybe_unused]] ssize_t sent =
          send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      continue;
    }
    Session session;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      session.peer = Peer{cred.uid, cred.gid, cred.pid};
    }
    // Once per connection: requests only compare the generation.
    session.access = dispatcher_.Evaluate(session.peer);
    const uint64_t id = next_connection_id_++;
    auto conn = std::make_unique<Connection>(id, fd, std::move(session), clock_.Now());
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) continue;  // conn closes fd
    conn->events = ev.events;
    Connection& ref = *conn;
    connections_.emplace(id, std::move(conn));
    connections_open_.store(static_cast<int64_t>(connections_.size()), std::memory_order_relaxed);
    Schedule(ref, ref.last_activity + options_.idle_timeout);
  }
}

void SocketServer::OnConnectionEvent(Connection& conn, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    // The peer is gone both ways: nobody is left to read an answer.
    Close(conn);
    return;
  }
  if ((events & (EPOLLIN | EPOLLRDHUP)) && !ReadSome(conn)) {
    Close(conn);
    return;
  }
  if ((events & EPOLLOUT) && !Flush(conn)) {
    Close(conn);
    return;
  }
  Process(conn);
  Settle(conn);
}

bool SocketServer::ReadSome(Connection& conn) {
  char buf[kReadChunk];
  size_t total = 0;
  while (!conn.read_eof && !conn.closing && conn.BufferedInput() < InputLimit(options_) &&
         total < kMaxReadPerEvent) {
    ssize_t n = recv(conn.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (conn.in_pos > 0 && conn.in_pos == conn.in.size()) {
        conn.in.clear();
        conn.in_pos = conn.scanned = 0;
      }
      conn.in.append(buf, static_cast<size_t>(n));
      total += static_cast<size_t>(n);
      // A short read emptied the socket: another recv() would only say EAGAIN
      // (one wasted syscall per request). Level-triggered epoll reports what
      // arrives later, the peer's EOF included.
      if (static_cast<size_t>(n) < sizeof buf) break;
      continue;
    }
    if (n == 0) {
      conn.read_eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    return false;  // ECONNRESET and the like
  }
  if (total > 0) conn.last_activity = clock_.Now();
  return true;
}

void SocketServer::Process(Connection& conn) {
  const size_t max_line = options_.max_request_bytes;
  while (!conn.parked && !conn.closing && conn.PendingOutput() < kMaxPendingOutput) {
    const char* base = conn.in.data();
    size_t from = std::max(conn.in_pos, conn.scanned);
    const void* nl = std::memchr(base + from, '\n', conn.in.size() - from);
    size_t line_end;
    size_t next;
    if (nl != nullptr) {
      line_end = static_cast<size_t>(static_cast<const char*>(nl) - base);
      next = line_end + 1;
    } else {
      conn.scanned = conn.in.size();
      if (conn.BufferedInput() > max_line + 1) {  // + 1: a "\r" awaiting its "\n"
        line_end = next = conn.in.size();         // too long already
      } else if (conn.read_eof && conn.BufferedInput() > 0) {
        line_end = next = conn.in.size();  // a last request without its newline
      } else {
        break;
      }
    }
    std::string_view line(base + conn.in_pos, line_end - conn.in_pos);
    conn.in_pos = next;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_line) {
      Outcome outcome;
      outcome.op = Dispatcher::kOpInvalid;
      outcome.error = ErrorCode::kTooLarge;
      Count(outcome);
      conn.out += Dispatcher::ErrorLine(
          ErrorCode::kTooLarge,
          "request longer than " + std::to_string(max_line) + " bytes; closing the connection");
      conn.out += '\n';
      conn.closing = true;
      break;
    }
    if (line.empty()) continue;  // blank lines are tolerated
    RefreshAccess(conn);
    Outcome outcome = dispatcher_.Handle(line, conn.session, conn.out);
    if (outcome.denied) LogDenied(conn, outcome);
    if (outcome.pending) {
      Park(conn, std::move(*outcome.pending));
    } else {
      conn.out += '\n';
      Count(outcome);
      if (outcome.watch) BecomeWatcher(conn, std::move(*outcome.watch));
    }
  }
  // Drop what was handled; memmove only when it is worth it.
  if (conn.in_pos == conn.in.size()) {
    conn.in.clear();
    conn.in_pos = conn.scanned = 0;
  } else if (conn.in_pos > 4096 && conn.in_pos * 2 > conn.in.size()) {
    conn.in.erase(0, conn.in_pos);
    conn.scanned -= std::min(conn.scanned, conn.in_pos);
    conn.in_pos = 0;
  }
}

void SocketServer::Park(Connection& conn, PendingGet get) {
  MonoTime deadline = get.deadline;
  conn.parked = std::move(get);
  parked_ids_.insert(conn.id);
  // Published before a token can arrive unseen: the store listener wakes us
  // from now on, and Resume() looks once more (see Resume's caller below).
  parked_count_.fetch_add(1);
  Schedule(conn, deadline);
  Resume(conn);
}

void SocketServer::Resume(Connection& conn) {
  if (!conn.parked) return;
  Outcome outcome = dispatcher_.Resume(*conn.parked, conn.out);
  if (outcome.pending) {
    conn.parked = std::move(*outcome.pending);
    return;
  }
  conn.parked.reset();
  parked_ids_.erase(conn.id);
  parked_count_.fetch_sub(1);
  conn.out += '\n';
  Count(outcome);
}

void SocketServer::ResumeAllParked() {
  std::vector<uint64_t> ids(parked_ids_.begin(), parked_ids_.end());
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    Connection& conn = *it->second;
    Resume(conn);
    if (!conn.parked) {
      Process(conn);
      Settle(conn);
    }
  }
}

bool SocketServer::Flush(Connection& conn) {
  bool sent_any = false;
  while (conn.PendingOutput() > 0) {
    ssize_t n = send(conn.fd, conn.out.data() + conn.out_pos, conn.PendingOutput(),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      conn.out_pos += static_cast<size_t>(n);
      sent_any = true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;  // EPIPE, ECONNRESET: the peer is gone
  }
  if (conn.out_pos == conn.out.size()) {
    conn.out.clear();
    conn.out_pos = 0;
  } else if (conn.out_pos > 4096 && conn.out_pos * 2 > conn.out.size()) {
    conn.out.erase(0, conn.out_pos);
    conn.out_pos = 0;
  }
  if (sent_any) conn.last_activity = clock_.Now();
  return true;
}

void SocketServer::Settle(Connection& conn) {
  // Send, and answer more of what is buffered while the output has room: stop
  // when output is full (EPOLLOUT resumes), a get waits, or no whole line is
  // left (EPOLLIN resumes). Each round consumes input, so this ends.
  for (;;) {
    if (!Flush(conn)) {
      Close(conn);
      return;
    }
    if (conn.watch && conn.PendingOutput() > kMaxWatchBacklog) {
      DropWatcher(conn, "backlog");
      return;
    }
    if (conn.parked || conn.closing || conn.PendingOutput() >= kMaxPendingOutput ||
        conn.BufferedInput() == 0) {
      break;
    }
    const size_t before = conn.BufferedInput();
    Process(conn);
    if (conn.BufferedInput() == before && !conn.parked && !conn.closing) break;
  }
  const bool drained = conn.PendingOutput() == 0;
  // A watcher that half-closed still gets its events.
  if (drained && (conn.closing ||
                  (conn.read_eof && !conn.parked && !conn.watch && conn.BufferedInput() == 0))) {
    Close(conn);  // answered everything that will ever be asked
    return;
  }
  const bool want_read = !conn.read_eof && !conn.closing &&
                         conn.PendingOutput() < kMaxPendingOutput &&
                         conn.BufferedInput() < InputLimit(options_);
  uint32_t events = (want_read ? (EPOLLIN | EPOLLRDHUP) : 0u) | (drained ? 0u : EPOLLOUT);
  if (events != conn.events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = conn.id;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev) != 0) {
      Close(conn);
      return;
    }
    conn.events = events;
  }
  MonoTime due = conn.last_activity + options_.idle_timeout;
  if (conn.parked) {
    due = conn.parked->deadline;
  } else if (conn.watch) {
    due = conn.watch->next_expiry.value_or(clock_.Now() + kWatchRecheck);
  }
  Schedule(conn, due);
}

void SocketServer::Close(Connection& conn) {
  const uint64_t id = conn.id;
  if (conn.timer_at) timers_.erase({*conn.timer_at, id});
  if (conn.parked) {
    parked_ids_.erase(id);
    parked_count_.fetch_sub(1);
  }
  if (conn.watch) {
    watcher_ids_.erase(id);
    watcher_count_.fetch_sub(1);
  }
  connections_.erase(id);  // closes the fd, which leaves the epoll set
  connections_open_.store(static_cast<int64_t>(connections_.size()), std::memory_order_relaxed);
}

// Keeps at most one timer entry per connection, never later than `when`; an
// entry that fires early is re-armed by RunTimers (activity only moves the
// idle deadline later, so it costs nothing per request).
void SocketServer::Schedule(Connection& conn, MonoTime when) {
  if (conn.timer_at && *conn.timer_at <= when) return;
  if (conn.timer_at) timers_.erase({*conn.timer_at, conn.id});
  timers_.emplace(when, conn.id);
  conn.timer_at = when;
}

void SocketServer::RunTimers() {
  MonoTime now = clock_.Now();
  ExpireDenials();
  if (accept_paused_ && now >= accept_paused_until_) {
    accept_paused_ = false;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenId;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &ev);
  }
  while (!timers_.empty() && timers_.begin()->first <= now) {
    const uint64_t id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    Connection& conn = *it->second;
    conn.timer_at.reset();
    if (conn.parked) {
      if (now >= conn.parked->deadline) {
        Resume(conn);  // answers `unavailable`
        if (!conn.parked) Process(conn);
      }
      Settle(conn);
      continue;
    }
    if (conn.watch) {  // never idle: times the expiry of what it was pushed
      Connection::Watch& w = *conn.watch;
      w.next_expiry.reset();
      std::vector<std::string> due;
      for (const auto& [tenant, token] : w.pushed) {
        if (token && !store_.Servable(*token, now)) due.push_back(tenant);
      }
      for (const std::string& tenant : due) PushTenant(conn, tenant, now);
      const Millis margin = store_.expiry_margin();
      for (const auto& [tenant, token] : w.pushed) {
        if (token && (!w.next_expiry || token->expires - margin < *w.next_expiry)) {
          w.next_expiry = token->expires - margin;
        }
      }
      Settle(conn);
      continue;
    }
    if (now >= conn.last_activity + options_.idle_timeout) {
      Close(conn);
      continue;
    }
    Schedule(conn, conn.last_activity + options_.idle_timeout);
  }
}

int SocketServer::NextTimeoutMs() const {
  std::optional<MonoTime> next;
  if (!timers_.empty()) next = timers_.begin()->first;
  if (accept_paused_ && (!next || accept_paused_until_ < *next)) next = accept_paused_until_;
  // The loop goes round at least once a second, so LastProgress() shows it alive.
  constexpr int64_t kMaxIdleMs = 1000;
  if (!next) return kMaxIdleMs;
  MonoTime now = clock_.Now();
  if (*next <= now) return 0;
  auto ms = std::chrono::ceil<Millis>(*next - now).count();
  return static_cast<int>(std::min<int64_t>(ms, kMaxIdleMs));
}

}  // namespace tokend

namespace tokend {

void SocketServer::RefreshAccess(Connection& conn) {
  if (conn.session.access.generation != dispatcher_.AccessGeneration()) {
    conn.session.access = dispatcher_.Evaluate(conn.session.peer);
  }
}

void SocketServer::LogDenied(const Connection& conn, const Outcome& outcome) {
  const Peer& peer = conn.session.peer;
  if (!denials_.Admit(peer.uid, clock_.Now())) return;
  Fields fields = {{"uid", peer.uid},
                   {"gid", peer.gid},
                   {"pid", peer.pid},
                   {"op", std::string(Dispatcher::OpLabel(outcome.op))}};
  if (!outcome.denied->tenant.empty()) fields["tenant"] = outcome.denied->tenant;
  log_.Warn("client_denied", "request refused by access control", fields);
}

void SocketServer::ExpireDenials() {
  for (const DenialThrottle::Suppressed& s : denials_.Expire(clock_.Now())) {
    log_.Warn("client_denied_suppressed", "more requests were refused than logged",
              {{"uid", s.uid},
               {"suppressed", s.count},
               {"window_s",
                std::chrono::duration_cast<std::chrono::seconds>(denials_.window()).count()}});
  }
}

void SocketServer::ReevaluateWatchers() {
  watchers_generation_ = dispatcher_.AccessGeneration();
  std::vector<uint64_t> ids(watcher_ids_.begin(), watcher_ids_.end());
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    Connection& conn = *it->second;
    RefreshAccess(conn);
    const PeerAccess& access = conn.session.access;
    Connection::Watch& w = *conn.watch;
    bool revoked = !access.client;
    if (!w.all) {
      for (const std::string& tenant : w.tenants) revoked = revoked || !access.MayRead(tenant);
    }
    if (revoked) {
      DropWatcher(conn, "access_revoked");
      continue;
    }
    std::erase_if(w.pushed, [&](const auto& entry) { return !access.MayRead(entry.first); });
    UpdateWatcher(conn, "");  // tenants it may read now
    Settle(conn);
  }
}

void SocketServer::BecomeWatcher(Connection& conn, WatchRequest request) {
  conn.session.watching = true;
  conn.watch = std::make_unique<Connection::Watch>();
  conn.watch->all = request.all;
  if (!request.all) conn.watch->tenants = std::move(request.tenants);
  // Counted before the store is read, so that no change slips by unseen.
  watcher_ids_.insert(conn.id);
  watcher_count_.fetch_add(1);
  if (conn.timer_at) {  // the idle timer no longer applies
    timers_.erase({*conn.timer_at, conn.id});
    conn.timer_at.reset();
  }
  UpdateWatcher(conn, "");
}

void SocketServer::PushTenant(Connection& conn, const std::string& tenant, MonoTime now) {
  Connection::Watch& w = *conn.watch;
  std::shared_ptr<const Token> token = store_.Servable(tenant, now);
  auto it = w.pushed.find(tenant);
  const Token* last = it != w.pushed.end() ? it->second.get() : nullptr;
  if (token) {
    if (last != nullptr && (last == token.get() || last->access_token == token->access_token)) {
      it->second = std::move(token);  // the same token, republished
      return;
    }
    Dispatcher::AppendTokenEvent(conn.out, tenant, *token, now);
    conn.out += '\n';
    const MonoTime until = token->expires - store_.expiry_margin();
    if (!w.next_expiry || until < *w.next_expiry) w.next_expiry = until;
    w.pushed[tenant] = std::move(token);
  } else if (last != nullptr) {
    Dispatcher::AppendExpiredEvent(conn.out, tenant);
    conn.out += '\n';
    it->second.reset();
  }
}

void SocketServer::UpdateWatcher(Connection& conn, const std::string& tenant) {
  Connection::Watch& w = *conn.watch;
  const PeerAccess& access = conn.session.access;
  const MonoTime now = clock_.Now();
  if (!tenant.empty()) {
    const bool watched =
        w.all ? access.MayRead(tenant)
              : std::find(w.tenants.begin(), w.tenants.end(), tenant) != w.tenants.end();
    if (watched) PushTenant(conn, tenant, now);
    return;
  }
  if (!w.all) {
    for (const std::string& t : w.tenants) PushTenant(conn, t, now);
    return;
  }
  std::unordered_set<std::string> seen;
  for (const TenantView& view : store_.Snapshot()) {
    if (!access.MayRead(view.tenant)) continue;
    seen.insert(view.tenant);
    PushTenant(conn, view.tenant, now);
  }
  std::vector<std::string> gone;  // removed by a reload: their last token is gone too
  for (const auto& [t, token] : w.pushed) {
    if (!seen.count(t)) gone.push_back(t);
  }
  for (const std::string& t : gone) PushTenant(conn, t, now);
}

void SocketServer::PushWatchEvents() {
  if (watcher_ids_.empty()) return;
  bool all = false;
  std::unordered_set<std::string> changed;
  {
    std::lock_guard lock(changes_mutex_);
    all = all_changed_;
    all_changed_ = false;
    changed.swap(changed_tenants_);
  }
  if (!all && changed.empty()) return;
  std::vector<uint64_t> ids(watcher_ids_.begin(), watcher_ids_.end());
  for (uint64_t id : ids) {
    auto it = connections_.find(id);
    if (it == connections_.end()) continue;
    Connection& conn = *it->second;
    if (all) {
      UpdateWatcher(conn, "");
    } else {
      for (const std::string& tenant : changed) UpdateWatcher(conn, tenant);
    }
    Settle(conn);  // sends now; drops it if it stopped reading long ago
  }
}

void SocketServer::DropWatcher(Connection& conn, const char* reason) {
  const Peer& peer = conn.session.peer;
  log_.Warn("watcher_dropped", "closing a watching connection",
            {{"reason", reason},
             {"uid", peer.uid},
             {"pid", peer.pid},
             {"unsent_bytes", conn.PendingOutput()}});
  Close(conn);
}

}  // namespace tokend
