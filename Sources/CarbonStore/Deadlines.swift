import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The deadlines of the process's lock waits (`BlockingFlock`, `FairTurns`), watched by one thread
/// of its own: when a deadline passes before its wait is over, the thread runs the wait's action
/// (which answers the waiter "timed out").
///
/// A wait that ends in time cancels its deadline, which costs a dictionary removal. Scheduling
/// wakes the thread only when the new deadline comes before the one it sleeps towards; with no
/// deadline left, the thread sleeps until the latest one ever scheduled (not for ever), so that
/// waits of the same length, one after another, wake it about once per wait length, not once per
/// wait. (A task per wait, sleeping until its deadline and cancelled when the wait ended, cost two
/// more context switches per wait, about four per contended update, which waits twice: its start
/// and its cancellation each ran a job on the cooperative pool; docs/BENCHMARKS.md, round twelve.)
/// Deadlines that are due together run in their order.
///
/// An action never runs before its deadline: the thread checks every deadline against
/// `ContinuousClock` when it wakes. On Linux it sleeps on a condition variable timed by
/// `CLOCK_MONOTONIC` (a change of the wall clock moves nothing; a machine suspended while a wait
/// is on makes it end late by up to the time suspended, which `ContinuousClock` counts and the
/// monotonic clock does not); on Darwin, for a relative time. The thread is started with the
/// first deadline and kept; if it cannot be started, `schedule` returns nil (and tries again to
/// start it at most once a second) and the caller times the wait another way.
final class Deadlines: @unchecked Sendable {
    /// The process's deadlines.
    static let shared = Deadlines()

    /// A scheduled deadline, to cancel it with.
    struct Token: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        var deadline: ContinuousClock.Instant
        var action: @Sendable () -> Void
    }

    /// What the thread is doing, for `schedule` to know whether to wake it.
    private enum Watch {
        /// Not started yet.
        case notStarted
        /// Its start failed at this instant: not tried again for a second.
        case startFailed(ContinuousClock.Instant)
        /// Looking at the deadlines (or running actions); it looks again before it sleeps.
        case scanning
        /// Asleep until this instant, or until woken.
        case sleepingUntil(ContinuousClock.Instant)
        /// Asleep until woken: no deadline was left.
        case sleepingForever
    }

    // Guarded by `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var entries: [UInt64: Entry] = [:]
    private var lastID: UInt64 = 0
    /// The latest deadline ever scheduled: the thread sleeps until it when no deadline is left.
    private var latest: ContinuousClock.Instant? = nil
    private var watch = Watch.notStarted
    /// How many times the thread woke up (for the package's tests).
    private var wakeCount = 0
    /// Asked before the thread is started: false makes the start fail (for the package's tests).
    private let mayStartThread: @Sendable () -> Bool

    init(mayStartThread: @escaping @Sendable () -> Bool = { true }) {
        self.mayStartThread = mayStartThread
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if !canImport(Darwin)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    // The shared instance lives as long as the process; instances of tests are leaked with their
    // thread, which never ends.

    /// Runs `action` on the watching thread once `deadline` has passed, unless it is cancelled
    /// first. Nil, with nothing scheduled, when the thread could not be started.
    func schedule(at deadline: ContinuousClock.Instant, _ action: @escaping @Sendable () -> Void) -> Token? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        switch watch {
        case .startFailed(let failed) where ContinuousClock.now - failed < .seconds(1):
            return nil
        case .notStarted, .startFailed:
            guard startThread() else {
                watch = .startFailed(.now)
                return nil
            }
            watch = .scanning
        case .scanning:
            break
        case .sleepingUntil(let wake):
            if deadline < wake { pthread_cond_signal(condition) }
        case .sleepingForever:
            pthread_cond_signal(condition)
        }
        lastID += 1
        entries[lastID] = Entry(deadline: deadline, action: action)
        if latest.map({ $0 < deadline }) ?? true { latest = deadline }
        return Token(id: lastID)
    }

    /// Forgets a deadline whose wait is over: its action will not run (unless it is running already).
    func cancel(_ token: Token) {
        pthread_mutex_lock(mutex)
        entries[token.id] = nil
        pthread_mutex_unlock(mutex)
    }

    /// How many deadlines are scheduled, and how many times the thread has woken (package tests).
    var counts: (scheduled: Int, wakes: Int) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return (entries.count, wakeCount)
    }

    private func startThread() -> Bool {
        guard mayStartThread() else { return false }
        return startDetachedThread { [self] in run() }
    }

    /// The thread: runs the actions whose deadline has passed (without the lock), then sleeps
    /// until the earliest deadline left, or until woken.
    private func run() {
        Thread.current.name = "deadlines"
        pthread_mutex_lock(mutex)
        while true {
            let now = ContinuousClock.now
            var due: [(deadline: ContinuousClock.Instant, id: UInt64)] = []
            var earliest: ContinuousClock.Instant? = nil
            for (id, entry) in entries {
                if entry.deadline <= now {
                    due.append((entry.deadline, id))
                } else if earliest.map({ entry.deadline < $0 }) ?? true {
                    earliest = entry.deadline
                }
            }
            if !due.isEmpty {
                // In their order: by deadline, then by when they were scheduled.
                due.sort { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
                let actions = due.compactMap { entries.removeValue(forKey: $0.id)?.action }
                watch = .scanning
                pthread_mutex_unlock(mutex)
                for action in actions { action() }
                pthread_mutex_lock(mutex)
                continue
            }
            if let wake = earliest ?? latest.flatMap({ $0 > now ? $0 : nil }) {
                watch = .sleepingUntil(wake)
                Self.wait(condition, mutex, for: wake - now)
            } else {
                watch = .sleepingForever
                _ = pthread_cond_wait(condition, mutex)
            }
            wakeCount += 1
            watch = .scanning
        }
    }

    /// Waits on `condition` (with `mutex` held) until signalled or `delay` has passed.
    private static func wait(
        _ condition: UnsafeMutablePointer<pthread_cond_t>, _ mutex: UnsafeMutablePointer<pthread_mutex_t>,
        for delay: Duration
    ) {
        let (seconds, attoseconds) = max(delay, .zero).components
        let whole = Int(min(seconds, Int64(Int32.max)))
        let nanoseconds = Int(attoseconds / 1_000_000_000)
        #if canImport(Darwin)
            var relative = timespec(tv_sec: whole, tv_nsec: nanoseconds)
            _ = pthread_cond_timedwait_relative_np(condition, mutex, &relative)
        #else
            // The condition is timed by CLOCK_MONOTONIC (`init`).
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let total = Int(now.tv_nsec) + nanoseconds
            var wake = timespec(
                tv_sec: now.tv_sec + time_t(whole + total / 1_000_000_000), tv_nsec: total % 1_000_000_000)
            _ = pthread_cond_timedwait(condition, mutex, &wake)
        #endif
    }
}

/// The timer of one wait: a deadline of `Deadlines`, or, when its thread could not be started, a
/// task that sleeps until the deadline.
enum WaitTimer: Sendable {
    case deadline(Deadlines.Token, Deadlines)
    case task(Task<Void, Never>)

    /// Runs `action` once `deadline` has passed, unless the timer is cancelled first.
    static func start(
        at deadline: ContinuousClock.Instant, on deadlines: Deadlines = .shared,
        _ action: @escaping @Sendable () -> Void
    ) -> WaitTimer {
        if let token = deadlines.schedule(at: deadline, action) { return .deadline(token, deadlines) }
        return .task(
            Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                guard !Task.isCancelled else { return }
                action()
            })
    }

    func cancel() {
        switch self {
        case .deadline(let token, let deadlines): deadlines.cancel(token)
        case .task(let task): task.cancel()
        }
    }
}
