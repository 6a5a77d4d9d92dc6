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
        let posix = FileIO.posix
        let slow: @Sendable (Int32) -> Int32 = { result in
            let code = errno
            if result == 0 { Thread.sleep(forTimeInterval: Double(delay.nanoseconds) / 1e9) }
            errno = code
            return result
        }
        var io = posix
        io.fsync = { fd in slow(posix.fsync(fd)) }
        io.datasync = { fd in slow(posix.datasync(fd)) }
        return try PathStorage(
            root: root, io: io,
            offloadSyncsAbove: offloadingSyncs ? PathStorage.offloadSyncsAbove : .seconds(1_000_000_000))
    }
}
