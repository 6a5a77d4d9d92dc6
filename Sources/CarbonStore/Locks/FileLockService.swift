#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An exclusive advisory lock (`flock`) on a file, held through an open descriptor.
///
/// `flock` locks belong to the open file description, so two descriptors conflict even in one
/// process: the same lock serialises tasks and processes alike. The kernel drops it when the
/// process dies, so a crashed writer never holds a user. On NFS (v4, and EFS) Linux maps it to
/// NFS byte-range locks, which the server enforces across hosts.
struct FileLock: Sendable {
    let fd: Int32
    let path: String

    /// Opens (creating it with `mode` if needed) the lock file `name` of an open folder, never
    /// through a symbolic link, and tries to lock it until `wait` has passed; nil on timeout.
    static func acquire(
        _ name: String, in directory: Int32, path: String, mode: mode_t, wait: Duration
    ) async throws -> FileLock? {
        let fd = openat(directory, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode)
        guard fd >= 0 else {
            if errno == ELOOP { throw PathStorage.unsafeEntry(in: directory, name, path) }
            throw StorageIOError(operation: "open lock file", path: path, errno: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw PathStorage.unsafeEntry(in: directory, name, path)
        }
        // The umask may have removed bits that the configured mode grants (mode=0660). The file may
        // belong to another account of the group: then its mode stays as that account set it.
        if st.st_uid == geteuid() && (st.st_mode & 0o777) != mode { _ = fchmod(fd, mode) }
        do {
            let got = try await pollUntil(wait: wait) { () throws(StorageIOError) -> Bool? in
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
                if errno == EWOULDBLOCK || errno == EINTR { return nil }
                throw StorageIOError(operation: "lock", path: path, errno: errno)
            }
            guard got != nil else {
                close(fd)
                return nil
            }
        } catch {
            close(fd)
            throw error
        }
        return FileLock(fd: fd, path: path)
    }

    /// Records who holds the lock, for the timeout message of the next writer. Best effort, and
    /// never into a lock file with more than one name: a hard link (a snapshot made with `cp -al`,
    /// or one planted to point at a file elsewhere) keeps its content.
    func describeHolder(_ text: String) {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_nlink == 1 else { return }
        // Written first, then cut to length: a reader never finds the file empty.
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        _ = ftruncate(fd, off_t(bytes.count))
    }

    /// Unlocks and closes. Call exactly once.
    func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// `locking=local` for `path:`: advisory file locks in the data directory, one lock file per leaf
/// folder (`hh/hh/.lock`), so their number stays bounded however many users there are. Two users
/// in the same folder share a lock; that costs a little contention, never correctness. Lock files
/// get the storage's file mode and are never reached through a symbolic link.
public final class FileLockService: LockService {
    let storage: PathStorage
    /// The tasks of this process queue for a lock file first come, first served; only the task
    /// whose turn it is polls the file lock, which serialises it against other processes.
    private let turns = FairTurns()
    private let held = Locked<[String: (lock: FileLock, turn: UInt64, path: String)]>([:])
    let owner: String

    public init(storage: PathStorage) {
        self.storage = storage
        var host = [UInt8](repeating: 0, count: 256)
        _ = host.withUnsafeMutableBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { gethostname($0.baseAddress!, 255) }
        }
        owner = "pid \(getpid()) on \(String(decoding: host.prefix { $0 != 0 }, as: UTF8.self))"
    }

    public func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        let folders = PathStorage.split(name).folders
        let path = storage.root + "/" + (folders + [".lock"]).joined(separator: "/")
        guard let dir = try storage.openFolder(folders, create: true) else {
            throw StorageIOError(
                operation: "open directory", path: PathStorage.parent(of: path), errno: ENOENT)
        }
        defer { close(dir) }
        let start = ContinuousClock.now
        let op = OperationID.make()
        guard let turn = await turns.take(path, wait: wait) else {
            throw LockTimeoutError(
                userID: userID, waitedMilliseconds: (ContinuousClock.now - start).milliseconds,
                holder: Self.readHolder(".lock", in: dir))
        }
        let lock: FileLock?
        do {
            lock = try await FileLock.acquire(
                ".lock", in: dir, path: path, mode: storage.fileMode,
                wait: wait - (ContinuousClock.now - start))
        } catch {
            turns.give(path, turn)
            throw error
        }
        guard let lock else {
            turns.give(path, turn)
            throw LockTimeoutError(
                userID: userID, waitedMilliseconds: (ContinuousClock.now - start).milliseconds,
                holder: Self.readHolder(".lock", in: dir))
        }
        lock.describeHolder("\(owner), operation \(op)")
        held.withLock { $0[op] = (lock, turn, path) }
        return Lease(name: name, userID: userID, operationID: op, validUntil: nil)
    }

    public func renew(_ lease: Lease) async throws -> Lease { lease }

    public func release(_ lease: Lease) async throws {
        guard let entry = held.withLock({ $0.removeValue(forKey: lease.operationID) }) else { return }
        entry.lock.release()
        turns.give(entry.path, entry.turn)
    }

    static func readHolder(_ name: String, in directory: Int32) -> String? {
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }
}
