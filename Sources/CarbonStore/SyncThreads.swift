/// Threads of their own for the `path:` backend's `fsync` and `fdatasync` calls once these are slow
/// (`PathStorage.sync`): on a network file system (EFS, NFS) or a network block volume a sync takes
/// milliseconds, and a sync made on a thread of Swift's cooperative pool (one thread per core)
/// stops every other task of the process that long. Handed to these threads, the waiting task
/// gives its thread back, and syncs of different users proceed side by side.
///
/// Up to `maximum` threads in the process (`KeptThreads`); past that, calls queue in arrival order.
/// A call for which no thread can be started runs on the caller's own thread.
final class SyncThreads: Sendable {
    static let shared = SyncThreads(maximum: 16)

    let threads: KeptThreads

    /// `mayStartThread`: for the package's tests of a thread that cannot be started
    /// (`KeptThreads`).
    init(maximum: Int, mayStartThread: @escaping @Sendable () -> Bool = { true }) {
        threads = KeptThreads(name: "sync", maximum: maximum, mayStartThread: mayStartThread)
    }

    /// Runs `work` on one of the threads and returns what it returned, with the `errno` it left.
    /// Not cancellable: a sync, once asked for, is waited for.
    func run(
        _ work: @escaping @Sendable () -> (result: Int32, errno: Int32)
    ) async -> (result: Int32, errno: Int32) {
        await withCheckedContinuation { (done: CheckedContinuation<(result: Int32, errno: Int32), Never>) in
            if !threads.submit({ done.resume(returning: work()) }) {
                done.resume(returning: work())
            }
        }
    }
}
