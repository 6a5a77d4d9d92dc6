import CarbonStore
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension PathStorage {
    /// A `path:` storage on `root` whose every `fsync` and `fdatasync` takes `delay` longer than
    /// the disk's own: a volume whose writes reach stable storage over a network (a cloud block
    /// volume, a SAN), emulated on a local disk for the benchmarks (`MultiProcessUpdate
    /// --sync-delay`). The calling thread sleeps after the real call returns, as it would stay
    /// blocked in the kernel on such a volume: no CPU is used, and the locks held around the call
    /// stay held. A failed call fails at once. With `offloadingSyncs` false, the storage never hands
    /// its syncs to threads of their own (`PathStorage.sync`), as before it could, for comparison.
    /// Part of the test support only.
    public static func withSlowSync(
        root: String, delay: Duration, offloadingSyncs: Bool = true
    ) throws -> PathStorage {
        try PathStorage(
            root: root, io: slowSyncs(delay),
            offloadSyncsAbove: offloadingSyncs ? PathStorage.offloadSyncsAbove : .seconds(1_000_000_000))
    }

    /// A `path:` storage on `root` that behaves as one on a network file system (EFS, NFS): every
    /// blocking step of its operations (`PathStorage.blocking`: opening a folder and a file and
    /// reading it, a lock's first try, an append's fence and write, a rename) starts by sleeping
    /// `stepDelay` on the thread that runs it, as a step that waits for a server's round trips
    /// holds its thread; every `fsync` and `fdatasync` takes `syncDelay` longer (`withSlowSync`).
    /// With `offloadingFileWork` (what the storage chooses by itself on a network file system) the
    /// steps and syncs run on threads of their own; without, on the calling task's thread, as
    /// before they could (syncs still leave it once they average over `offloadSyncsAbove`), for
    /// comparison (`ManyUsersUpdate --step-delay`). `onStep`, if given, is called at the start of
    /// every step, on its thread, with whether the step is made under a lock (a writer's, which
    /// goes first on the storage's threads). Part of the test support only.
    public static func onSlowVolume(
        root: String, stepDelay: Duration, syncDelay: Duration = .zero, offloadingFileWork: Bool = true,
        onStep: (@Sendable (_ underLock: Bool) -> Void)? = nil
    ) throws -> PathStorage {
        let seconds = Double(stepDelay.nanoseconds) / 1e9
        return try PathStorage(
            root: root, io: slowSyncs(syncDelay), offloadFileWork: offloadingFileWork,
            beforeBlockingStep: { underLock in
                onStep?(underLock)
                if seconds > 0 { Thread.sleep(forTimeInterval: seconds) }
            })
    }

    /// System calls whose syncs take `delay` longer (none when it is zero).
    static func slowSyncs(_ delay: Duration) -> FileIO {
        let posix = FileIO.posix
        guard delay > .zero else { return posix }
        let slow: @Sendable (Int32) -> Int32 = { result in
            let code = errno
            if result == 0 { Thread.sleep(forTimeInterval: Double(delay.nanoseconds) / 1e9) }
            errno = code
            return result
        }
        var io = posix
        io.fsync = { fd in slow(posix.fsync(fd)) }
        io.datasync = { fd in slow(posix.datasync(fd)) }
        return io
    }
}
