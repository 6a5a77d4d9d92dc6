#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Lock files of a local file system left open between holds (`FileLock`), so that the next
/// acquisition of the same lock in this process opens nothing: a `statx` of the name and one of the
/// descriptor instead of an open, a `statx` and a close (docs/BENCHMARKS.md, round eleven).
///
/// - A descriptor is let go here unlocked (`flock(LOCK_UN)` first), and `take` hands it to one
///   caller at a time: `flock` locks belong to the open file, so two holders in this process never
///   share one.
/// - Before it is used again, the name must still be that file (device and inode of the name,
///   not following a link, and of the descriptor, against those kept): a lock file removed or
///   replaced meanwhile is opened anew, so that this process locks the file every other process
///   opens. An inode cannot be reused while a descriptor keeps it open, so the same device and
///   inode is the same file.
/// - Only on a local file system (`FileLock.isOnLocalFileSystem`): an NFS client may answer a
///   `statx` from its attribute cache, which would not see a replaced file.
/// - At most `capacity` descriptors; the one let go longest ago is closed first, and all of them
///   when the process runs out of descriptors (EMFILE, ENFILE) opening a lock file.
final class KeptLockFiles: Sendable {
    struct Entry: Sendable {
        var fd: Int32
        /// The file's status when it was let go (its identity).
        var status: FileStatus
        /// When it was let go (a counter), for the eviction.
        var order: UInt64 = 0
    }

    let capacity: Int
    private let state = Locked<(entries: [String: Entry], order: UInt64)>(([:], 0))

    init(capacity: Int = 64) { self.capacity = max(0, capacity) }

    deinit { closeAll() }

    /// The descriptor kept for the lock file at `path`, taken out (the caller owns it: it closes
    /// it or lets it go again with `keep`); nil when none is kept.
    func take(_ path: String) -> Entry? {
        state.withLock { $0.entries.removeValue(forKey: path) }
    }

    /// Keeps `fd`, an unlocked descriptor of the lock file at `path`, for the next acquisition; or
    /// closes it when one is kept for that file already (two holders in turn, each with its own
    /// descriptor). Closes the descriptor let go longest ago when more than `capacity` are kept.
    func keep(_ path: String, fd: Int32, status: FileStatus) {
        let closing = state.withLock { s -> [Int32] in
            guard s.entries[path] == nil, capacity > 0 else { return [fd] }
            s.order += 1
            s.entries[path] = Entry(fd: fd, status: status, order: s.order)
            guard s.entries.count > capacity,
                let oldest = s.entries.min(by: { $0.value.order < $1.value.order })
            else { return [] }
            s.entries[oldest.key] = nil
            return [oldest.value.fd]
        }
        for fd in closing { _ = close(fd) }
    }

    /// Closes every kept descriptor (the process is out of descriptors).
    func closeAll() {
        let closing = state.withLock { s -> [Int32] in
            defer { s.entries = [:] }
            return s.entries.values.map(\.fd)
        }
        for fd in closing { _ = close(fd) }
    }

    /// How many descriptors are kept.
    var count: Int { state.withLock { $0.entries.count } }
}
