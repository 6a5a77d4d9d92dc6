import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Threads of the process kept for work that blocks (a `flock` wait, an `fsync` of a network
/// volume), which must not run on Swift's cooperative pool: that pool has one thread per core, and
/// a blocked one is taken from every task of the process.
///
/// A job is handed to an idle thread, or to a thread started for it when none is idle, up to
/// `maximum` threads; past that it waits for the next thread free, in arrival order, except that
/// jobs submitted `first` go before the jobs that were not (in their own arrival order), up to
/// `firstInARow` of them while others wait: then the oldest other job goes, so that a steady
/// stream of `first` jobs never starves the rest. Threads are
/// kept, waiting for the next job, once started. A thread that cannot be started (`pthread_create`
/// fails: a process or memory limit) is reported to the caller, who does the work another way.
final class KeptThreads: @unchecked Sendable {
    let name: String
    /// The most threads, and so the most jobs running at once.
    let maximum: Int

    /// Guards every field below.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    /// Jobs submitted `first`, taken before `jobs`.
    private var firstJobs: [@Sendable () -> Void] = []
    /// How many `first` jobs were taken in a row while other jobs waited.
    private var firstTaken = 0
    /// The most `first` jobs taken in a row while other jobs wait.
    static let firstInARow = 4
    /// Threads waiting on `condition` for a job.
    private var idle = 0
    /// Threads started that have not yet looked for a job: each will take one.
    private var starting = 0
    /// Threads started, in all (they are never stopped).
    private var started = 0
    /// Asked before each `pthread_create`, with the pool's lock held (it must not submit to this
    /// pool): false makes the start fail as if the system had refused it. For the package's tests
    /// of that path; always true otherwise.
    private let mayStartThread: @Sendable () -> Bool
    /// Jobs that hold one of the threads for as long as they like (a `flock` wait), counted from
    /// `reserve` to `endReservation`: at most `maximum`, so that such a job never queues behind
    /// another. Each pool counts its own, so that the waits of one pool never take the room of
    /// another's.
    private var reservations = 0

    init(name: String, maximum: Int, mayStartThread: @escaping @Sendable () -> Bool = { true }) {
        self.name = name
        self.maximum = max(1, maximum)
        self.mayStartThread = mayStartThread
    }

    /// Reserves a thread for a job that may hold it for long; false when `maximum` are reserved.
    /// A job reserved for is submitted, and its reservation ended (`endReservation`) once its
    /// thread is done with it, or once it is known that no thread will run it.
    func reserve() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard reservations < maximum else { return false }
        reservations += 1
        return true
    }

    /// Gives back a reservation made by `reserve`.
    func endReservation() {
        condition.lock()
        defer { condition.unlock() }
        reservations -= 1
    }

    /// How many jobs wait for a thread now.
    var waiting: Int {
        condition.lock()
        defer { condition.unlock() }
        return jobs.count + firstJobs.count
    }

    /// How many threads are reserved now (`reserve`).
    var reserved: Int {
        condition.lock()
        defer { condition.unlock() }
        return reservations
    }

    /// Queues `work` for a thread; with `first`, ahead of the jobs waiting that were not queued
    /// `first` (but for one in every `firstInARow + 1`). Returns false, with `work` not queued and
    /// never to run here, when it needed a thread of its own (none idle, fewer than `maximum`
    /// started) and none could be started.
    ///
    /// The thread is started with the lock held: a job submitted meanwhile must not count on a
    /// thread whose start then fails (with every thread counted started, it would queue, and wait
    /// for a thread that never comes).
    func submit(first: Bool = false, _ work: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if jobs.count + firstJobs.count + 1 > idle + starting && started < maximum {
            guard startThread() else { return false }
            starting += 1
            started += 1
        } else if idle > 0 {
            condition.signal()
        }
        if first { firstJobs.append(work) } else { jobs.append(work) }
        return true
    }

    /// Starts a thread running `work()`; false if the system would not create one.
    private func startThread() -> Bool {
        guard mayStartThread() else { return false }
        return startDetachedThread { [self] in work() }
    }

    private func work() {
        Thread.current.name = name
        condition.lock()
        starting -= 1
        while true {
            while jobs.isEmpty && firstJobs.isEmpty {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job: @Sendable () -> Void
            if !firstJobs.isEmpty && (jobs.isEmpty || firstTaken < Self.firstInARow) {
                job = firstJobs.removeFirst()
                firstTaken = jobs.isEmpty ? 0 : firstTaken + 1
            } else {
                job = jobs.removeFirst()
                firstTaken = 0
            }
            condition.unlock()
            job()
            condition.lock()
        }
    }
}

/// Starts a detached thread, with a stack of 256 kB, that runs `body` (which holds what it
/// captures until it returns); false if the system would not create one (`pthread_create` fails:
/// a process or memory limit). The threads of `KeptThreads` and `Deadlines`.
func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Body: Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
    var attributes = pthread_attr_t()
    guard pthread_attr_init(&attributes) == 0 else { return false }
    defer { pthread_attr_destroy(&attributes) }
    _ = pthread_attr_setstacksize(&attributes, 256 << 10)
    _ = pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    let context = Unmanaged.passRetained(Body(body)).toOpaque()
    #if canImport(Darwin)
        var thread: pthread_t?
    #else
        var thread = pthread_t()
    #endif
    let created = pthread_create(
        &thread, &attributes,
        { context in
            // Optional on Linux, not on Darwin: unwrapped the same way on both.
            Unmanaged<Body>.fromOpaque((context as UnsafeMutableRawPointer?)!).takeRetainedValue().run()
            return nil
        }, context)
    if created != 0 {
        Unmanaged<Body>.fromOpaque(context).release()
        return false
    }
    return true
}
