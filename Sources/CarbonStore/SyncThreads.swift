/// Threads of their own for the `path:` backend's blocking system calls: its `fsync` and
/// `fdatasync` calls once these are slow (`PathStorage.sync`), and, on a network file system, every
/// other blocking step of its operations (`PathStorage.blocking`). On EFS or NFS a sync, an `open`,
/// a `flock` or a read takes a network round trip or more, and one made on a thread of Swift's
/// cooperative pool (one thread per core) stops every other task of the process that long. Handed
/// to these threads, the waiting task gives its thread back, and the operations of different users
/// proceed side by side.
///
/// Up to `maximum` threads in the process (`KeptThreads`); past that, calls queue in arrival order,
/// except that the calls of a task that holds a lock other writers wait for (`LockHold`) go before
/// the others (four in a row at most while others wait: `KeptThreads.firstInARow`): a burst of
/// reads does not stretch a writer's hold of its locks, for which other writers wait, and a
/// stream of writers does not starve the reads and the lock acquisitions. A call for which no
/// thread can be started runs on the caller's own thread.
package final class SyncThreads: Sendable {
    package static let shared = SyncThreads(maximum: 16)

    let threads: KeptThreads

    /// `mayStartThread`: for the package's tests of a thread that cannot be started
    /// (`KeptThreads`).
    init(maximum: Int, mayStartThread: @escaping @Sendable () -> Bool = { true }) {
        threads = KeptThreads(name: "sync", maximum: maximum, mayStartThread: mayStartThread)
    }

    /// Runs `work` on one of the threads and returns what it returned (for a system call, with the
    /// `errno` it left, read on that thread); with `first`, ahead of the calls waiting that were
    /// not made `first`. Not cancellable: a call, once asked for, is waited for.
    func run<T: Sendable>(first: Bool = false, _ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (done: CheckedContinuation<T, Never>) in
            if !threads.submit(first: first, { done.resume(returning: work()) }) {
                done.resume(returning: work())
            }
        }
    }
}

/// Whether the running task holds a lock that other writers may be waiting for: a user's lock
/// (from `Store`'s acquisition to its release; with `locking=none`, which takes none, a writer's
/// steps from its read on are marked all the same, since they lead to the commit lock) or a
/// folder's commit lock (`PathStorage.withCommitLock`). Its blocking steps and syncs then go first
/// on `SyncThreads`.
enum LockHold {
    @TaskLocal static var active = false
}
