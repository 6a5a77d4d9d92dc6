import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Threads of their own for the `path:` backend's `fsync` and `fdatasync` calls once these are slow
/// (`PathStorage.sync`): on a network file system (EFS, NFS) or a network block volume a sync takes
/// milliseconds, and a sync made on a thread of Swift's cooperative pool (one thread per core)
/// stops every other task of the process that long. Handed to these threads, the waiting task
/// gives its thread back, and syncs of different users proceed side by side.
///
/// Threads are started when a call finds none idle, and then kept waiting for the next call, up to
/// `maximum` at once in the process; beyond that, calls queue in arrival order. When a thread
/// cannot be started (`pthread_create` fails), the calls queued then run on the caller's thread.
final class SyncThreads: @unchecked Sendable {
    static let shared = SyncThreads(maximum: 16)

    /// The most threads, and so the most syncs in progress at once through them.
    let maximum: Int

    private struct Call {
        let work: @Sendable () -> (result: Int32, errno: Int32)
        let done: CheckedContinuation<(result: Int32, errno: Int32), Never>
    }

    /// Guards every field below.
    private let condition = NSCondition()
    private var calls: [Call] = []
    /// Threads waiting on `condition` for a call.
    private var idle = 0
    /// Threads started that have not yet looked for a call: each will take one.
    private var starting = 0
    /// Threads started, in all.
    private var started = 0

    /// Asked before each `pthread_create`: false makes the start fail as if the system had refused
    /// it. Package tests only (the path where no thread can be started); always true otherwise.
    private let mayStartThread: @Sendable () -> Bool

    init(maximum: Int, mayStartThread: @escaping @Sendable () -> Bool = { true }) {
        self.maximum = max(1, maximum)
        self.mayStartThread = mayStartThread
    }

    /// Runs `work` on one of the threads and returns what it returned, with the `errno` it left.
    /// Not cancellable: a sync, once asked for, is waited for.
    func run(_ work: @escaping @Sendable () -> (result: Int32, errno: Int32)) async -> (
        result: Int32, errno: Int32
    ) {
        await withCheckedContinuation { (done: CheckedContinuation<(result: Int32, errno: Int32), Never>) in
            condition.lock()
            calls.append(Call(work: work, done: done))
            let start = calls.count > idle + starting && started < maximum
            if start {
                starting += 1
                started += 1
            } else if idle > 0 {
                condition.signal()
            }
            condition.unlock()
            guard start else { return }
            if !startThread() {
                // No thread: the calls queued now, this one among them, run here, on the caller's
                // thread, so that none waits for a thread that may never come.
                condition.lock()
                starting -= 1
                started -= 1
                let queued = calls
                calls = []
                condition.unlock()
                for call in queued { call.done.resume(returning: call.work()) }
            }
        }
    }

    /// Starts a thread running `work()`; false if the system would not create one.
    private func startThread() -> Bool {
        guard mayStartThread() else { return false }
        var attributes = pthread_attr_t()
        guard pthread_attr_init(&attributes) == 0 else { return false }
        defer { pthread_attr_destroy(&attributes) }
        _ = pthread_attr_setstacksize(&attributes, 256 << 10)
        _ = pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
            var thread: pthread_t?
        #else
            var thread = pthread_t()
        #endif
        let created = pthread_create(
            &thread, &attributes,
            { context in
                let threads = Unmanaged<SyncThreads>.fromOpaque(context!).takeRetainedValue()
                threads.work()
                return nil
            }, context)
        if created != 0 {
            Unmanaged<SyncThreads>.fromOpaque(context).release()
            return false
        }
        return true
    }

    private func work() {
        Thread.current.name = "sync"
        condition.lock()
        starting -= 1
        while true {
            while calls.isEmpty {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let call = calls.removeFirst()
            condition.unlock()
            call.done.resume(returning: call.work())
            condition.lock()
        }
    }
}
