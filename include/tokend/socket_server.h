#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tokend/clock.h"
#include "tokend/config.h"
#include "tokend/control.h"
#include "tokend/event_log.h"
#include "tokend/protocol.h"
#include "tokend/token_store.h"

namespace tokend {

// What the socket side has done so far, for metrics (SPEC §7).
struct SocketCounters {
  int64_t connections_open = 0;
  uint64_t connections_accepted = 0;  // including those turned away busy
  uint64_t connections_busy = 0;      // turned away: max_connections were open
  struct Requests {
    std::string op;      // a registry op name, "unknown" or "invalid"
    std::string result;  // "ok" or an error code
    uint64_t count = 0;
  };
  std::vector<Requests> requests;  // only the (op, result) pairs seen
};

// Serves the SPEC §5 protocol on a Unix stream socket.
//
// One event-loop thread (epoll) owns every connection: it is started by Start()
// and joined by Stop(). Requests are answered in order per connection, even
// when pipelined; a `get` that waits for a token holds back the answers after
// it on its connection (not on others) until it resolves. Memory per
// connection is bounded: a connection whose unsent answers exceed a bound, or
// whose unread requests pile up behind a waiting `get`, is not read from until
// they drain.
//
// Access control: each connection's PeerAccess is computed once at accept and
// again after SetAccessPolicy; denials are logged as `client_denied`, at most
// a few per uid per minute (DenialThrottle), then one
// `client_denied_suppressed` line with the count.
//
// Watchers (`watch`): the store's change listener only queues the tenant and
// wakes the loop (it never blocks the refresh thread); the loop pushes a token
// event to each watcher whose last pushed token for that tenant differs, and an
// `expired` event when the tenant has no servable token any more (expiry,
// invalidate, removal; expiry is also timed by the loop). A watcher is exempt
// from idle_timeout; it is dropped (`watcher_dropped`) when its unsent events
// pass kMaxWatchBacklog, and when a reload takes away its right to a tenant it
// named. On a watching connection only `ping` is answered; other requests get
// bad_request; a half-close by the watcher does not end the watch.
//
// Start(), Stop(), SetAccessPolicy() and Counters() are thread-safe. The store,
// control, clock and log must outlive the server.
class SocketServer {
 public:
  SocketServer(SocketOptions options, TokenStore& store, RefreshControl& control,
               const Clock& clock, EventLog& log);
  ~SocketServer();  // Stop()

  SocketServer(const SocketServer&) = delete;
  SocketServer& operator=(const SocketServer&) = delete;

  // Starts serving. With `inherited_listen_fd` >= 0 (socket activation), serves
  // that listening socket and never creates or removes a file. Else binds
  // options.path: fails when the path does not fit sun_path, its directory is
  // missing, or another process answers on it; replaces a stale socket file
  // nobody answers on; never a wider mode than options.mode.
  // Logs `listening`. May be called once.
  // Returns "" when listening, else why it cannot serve (for the operator).
  std::string Start(int inherited_listen_fd = -1);

  // Stops the loop, closes every connection and joins the thread; removes the
  // socket file if Start() created it (and it is still ours). Idempotent.
  void Stop();

  SocketCounters Counters() const;

  // Replaces the access policy (call before Start() and on reload). Open
  // connections are re-evaluated before their next request; watchers at once.
  void SetAccessPolicy(std::shared_ptr<const AccessPolicy> policy);

  // Unsent events above which a watcher that does not read is dropped.
  static constexpr size_t kMaxWatchBacklog = 1 << 20;

  // When the event loop last went round (it does at least once a second); for
  // the watchdog.
  MonoTime LastProgress() const { return MonoTime(MonoTime::duration(last_progress_.load())); }

 private:
  struct Connection;

  void Run();
  void Wake();
  void AcceptAll();
  void OnConnectionEvent(Connection& conn, uint32_t events);
  // Reads what is there, up to the input bound. False: the connection is dead.
  bool ReadSome(Connection& conn);
  // Answers buffered requests in order until one waits or output is full.
  void Process(Connection& conn);
  void Park(Connection& conn, PendingGet get);
  void Resume(Connection& conn);
  void ResumeAllParked();
  // Sends buffered output. False: the peer is gone.
  bool Flush(Connection& conn);
  // Flushes, updates epoll interest and timer, or closes. Call after any change.
  void Settle(Connection& conn);
  void Close(Connection& conn);
  void Schedule(Connection& conn, MonoTime when);
  void RunTimers();
  int NextTimeoutMs() const;
  void Count(const Outcome& outcome);
  void CleanUp();

  // Access control.
  void RefreshAccess(Connection& conn);  // when the policy changed since it was computed
  void LogDenied(const Connection& conn, const Outcome& outcome);
  void ExpireDenials();
  void ReevaluateWatchers();

  // Watching.
  void BecomeWatcher(Connection& conn, WatchRequest request);
  // Pushes what changed for `tenant` ("" = every tenant it watches) to `conn`.
  void UpdateWatcher(Connection& conn, const std::string& tenant);
  // Drains the queue filled by the store listener and pushes to every watcher.
  void PushWatchEvents();
  // Pushes a token event when `tenant`'s servable token differs from the last
  // one pushed to `conn`, or `expired` when it has none any more.
  void PushTenant(Connection& conn, const std::string& tenant, MonoTime now);
  void DropWatcher(Connection& conn, const char* reason);

  const SocketOptions options_;
  TokenStore& store_;
  const Clock& clock_;
  EventLog& log_;
  Dispatcher dispatcher_;

  std::mutex lifecycle_mutex_;  // serializes Start() and Stop()
  bool started_ = false;        // GUARDED_BY(lifecycle_mutex_)
  std::thread thread_;          // GUARDED_BY(lifecycle_mutex_)

  // Set up by Start() before the thread runs; the loop thread's afterwards.
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int listener_id_ = 0;
  bool owns_file_ = false;
  struct stat bound_stat_ = {};  // the file we bound, to remove only our own
  MonoTime accept_paused_until_{};
  bool accept_paused_ = false;

  // Loop-thread state.
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::unordered_set<uint64_t> parked_ids_;
  std::set<std::pair<MonoTime, uint64_t>> timers_;  // at most one entry per connection
  uint64_t next_connection_id_ = 16;

  std::atomic<bool> stop_{false};
  std::atomic<MonoTime::rep> last_progress_{0};
  std::atomic<int> parked_count_{0};  // read by the store listener

  std::unordered_set<uint64_t> watcher_ids_;  // loop thread
  std::atomic<int> watcher_count_{0};         // read by the store listener
  std::mutex changes_mutex_;
  std::unordered_set<std::string> changed_tenants_;  // GUARDED_BY(changes_mutex_)
  bool all_changed_ = false;                         // GUARDED_BY(changes_mutex_)
  uint64_t watchers_generation_ = 0;  // loop thread: the policy watchers were checked under
  DenialThrottle denials_;            // loop thread

  std::atomic<int64_t> connections_open_{0};
  std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<uint64_t> connections_busy_{0};
  std::unique_ptr<std::atomic<uint64_t>[]> request_counts_;  // [op slot][result]
};

}  // namespace tokend
