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

    /// Tries until `wait` has passed; nil on timeout.
    static func acquire(_ path: String, wait: Duration) async throws -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageIOError(operation: "open lock file", path: path, errno: errno) }
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

    /// Records who holds the lock, for the timeout message of the next writer. Best effort.
    func describeHolder(_ text: String) {
        let bytes = Array(text.utf8)
        _ = ftruncate(fd, 0)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// Unlocks and closes. Call exactly once.
    func release() {
        _ = flock(fd, LOCK_UN)
        close(fd)
    }
}

/// `locking=local` for `path:`: advisory file locks in the data directory, one lock file per leaf
/// folder (`hh/hh/.lock`), so their number stays bounded however many users there are. Two users
/// in the same folder share a lock; that costs a little contention, never correctness.
public final class FileLockService: LockService {
    let root: String
    private let held = Locked<[String: FileLock]>([:])
    let owner: String

    public init(root: String) throws {
        self.root = try PathStorage.absolute(root)
        var host = [UInt8](repeating: 0, count: 256)
        _ = host.withUnsafeMutableBufferPointer { buf in
            buf.withMemoryRebound(to: CChar.self) { gethostname($0.baseAddress!, 255) }
        }
        owner = "pid \(getpid()) on \(String(decoding: host.prefix { $0 != 0 }, as: UTF8.self))"
    }

    func lockPath(for name: String) -> String {
        PathStorage.parent(of: root + "/" + name) + "/.lock"
    }

    public func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        let path = lockPath(for: name)
        let dir = PathStorage.parent(of: path)
        try PathStorage.makeDirectories(dir, below: root)
        let start = ContinuousClock.now
        let op = OperationID.make()
        guard let lock = try await FileLock.acquire(path, wait: wait) else {
            throw LockTimeoutError(
                userID: userID, waitedMilliseconds: (ContinuousClock.now - start).milliseconds,
                holder: Self.readHolder(path))
        }
        lock.describeHolder("\(owner), operation \(op)")
        held.withLock { $0[op] = lock }
        return Lease(name: name, operationID: op, validUntil: nil)
    }

    public func renew(_ lease: Lease) async throws -> Lease { lease }

    public func release(_ lease: Lease) async throws {
        held.withLock { $0.removeValue(forKey: lease.operationID) }?.release()
    }

    static func readHolder(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }
}
