import CarbonFormat
import Foundation

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
///
/// A lock that is held elsewhere is waited for in the kernel on a local file system: a dedicated
/// thread (never one of the cooperative pool's) blocks in `flock(LOCK_EX)`, and the kernel wakes
/// it as soon as the holder lets the lock go (`BlockingFlock`), with no polling interval between.
/// On other file systems (NFS and EFS, where a blocking lock is the client polling the server on
/// its own schedule and a blocked thread cannot be called back; SMB, FUSE, Ceph), and when every
/// thread allowed for blocking is taken, the waiter polls `flock(LOCK_NB)` instead.
struct FileLock: Sendable {
    let fd: Int32
    let path: String
    /// When the lock was taken (for a lock that is held): right after the `flock` that took it at
    /// the first try, on its thread; for a lock that was waited for, when the waiting task was
    /// handed it (a few scheduling delays later, which the commit lock's hold check does not count).
    var acquired: ContinuousClock.Instant = .now
    /// Where the descriptor goes, unlocked, once the lock is let go (`release`), with the file's
    /// status: a lock file of a local file system, acquired through a storage (`KeptLockFiles`).
    var keptIn: KeptLockFiles? = nil
    var status: FileStatus? = nil

    /// Opens (creating it with `mode` if needed) the lock file `name` of an open folder, never
    /// through a symbolic link, and waits up to `wait` for the lock; nil on timeout. A waiter whose
    /// task is cancelled throws `CancellationError`. On timeout or cancellation the lock is not
    /// held, and never will be through this call: a thread that gets it later lets it go at once.
    ///
    /// The opening and the first try are one blocking step of `storage` (`PathStorage.blocking`:
    /// on a thread of its own on a network file system; without a storage, on this thread); with
    /// `holder`, the lock is described once held (`describeHolder`), in the same step when the first
    /// try takes it. A wait in the kernel blocks a thread of `pool` (the process's one, but for
    /// tests).
    static func acquire(
        _ name: String, in directory: Int32, path: String, mode: mode_t, wait: Duration,
        on storage: PathStorage? = nil, holder: String? = nil, pool: KeptThreads = BlockingFlock.pool
    ) async throws -> FileLock? {
        let kept = storage?.keptLockFiles
        let owner = storage?.newEntriesOwner
        @Sendable func step() throws -> FirstTry {
            let first = try firstTry(name, in: directory, path: path, mode: mode, kept: kept, owner: owner)
            if case .held(let lock) = first, let holder { lock.describeHolder(holder) }
            return first
        }
        let first = try await run(on: storage, step)
        switch first {
        case .held(let lock):
            return lock
        case .busy(let busy):
            // `wait` closes the descriptor unless it returns true.
            guard try await Self.wait(busy.fd, path: path, for: wait, on: storage, pool: pool) else {
                return nil
            }
            var waited = busy
            waited.acquired = .now
            let lock = waited
            // Made holding the lock: it goes first on the storage's threads (`LockHold`).
            if let holder {
                await LockHold.$active.withValue(true) {
                    await run(on: storage) { lock.describeHolder(holder) }
                }
            }
            return lock
        }
    }

    /// Runs `step` as a blocking step of `storage` (`PathStorage.blocking`), or on this thread
    /// without one.
    static func run<T: Sendable, E: Error>(
        on storage: PathStorage?, _ step: @escaping @Sendable () throws(E) -> T
    ) async throws(E) -> T {
        guard let storage else { return try step() }
        return try await storage.blocking(step)
    }

    /// What the first try at a lock found: the lock held, or held elsewhere (the descriptor open).
    enum FirstTry: Sendable {
        case held(FileLock)
        case busy(FileLock)
    }

    /// Opens (creating it with `mode` if needed) the lock file `name` of an open folder, never
    /// through a symbolic link, and tries the lock once without waiting. A descriptor that `kept`
    /// holds for the file is used instead of a new one while the name is still that file.
    static func firstTry(
        _ name: String, in directory: Int32, path: String, mode: mode_t, kept: KeptLockFiles? = nil,
        owner: PathStorage.Owner? = nil
    ) throws -> FirstTry {
        var reused: FileLock? = nil
        if let kept, let entry = kept.take(path) {
            // The name and the descriptor must both still be the file kept (asked without time
            // stamps, as `openFile` says); otherwise it was removed or replaced since (never under a
            // serving process: docs/STORAGE.md).
            if let named = FileStatus.of(name, in: directory), named.isRegularFile,
                named.isSameFile(as: entry.status),
                FileStatus.of(entry.fd)?.isSameFile(as: entry.status) == true
            {
                reused = FileLock(fd: entry.fd, path: path, keptIn: kept, status: named)
            } else {
                close(entry.fd)
            }
        }
        var lock =
            try reused ?? openFile(name, in: directory, path: path, mode: mode, kept: kept, owner: owner)
        let fd = lock.fd
        // Free: taken at once, without a thread.
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            lock.acquired = .now
            return .held(lock)
        }
        guard errno == EWOULDBLOCK || errno == EINTR else {
            let code = errno
            close(fd)
            throw StorageIOError(operation: "lock", path: path, errno: code)
        }
        return .busy(lock)
    }

    /// Opens the lock file `name` of an open folder (`firstTry`), not locked. Its descriptor is to
    /// be kept in `kept` once let go when the file system is local.
    /// `owner`: the owner a process running as root gives the lock file (`PathStorage.newEntriesOwner`).
    static func openFile(
        _ name: String, in directory: Int32, path: String, mode: mode_t, kept: KeptLockFiles?,
        owner: PathStorage.Owner? = nil
    ) throws -> FileLock {
        let flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        var fd = name.withCString { openat(directory, $0, flags, mode) }
        if fd < 0 && (errno == EMFILE || errno == ENFILE), let kept, kept.count > 0 {
            // Out of descriptors: the kept lock files go first.
            kept.closeAll()
            fd = openat(directory, name, flags, mode)
        }
        guard fd >= 0 else {
            if errno == ELOOP { throw PathStorage.unsafeEntry(in: directory, name, path) }
            throw StorageIOError(operation: "open lock file", path: path, errno: errno)
        }
        // Asked without time stamps (`FileStatus`): the holder's description written next would
        // otherwise stamp the lock file's inode finely, and the inode's block, often the user
        // file's too, be written again by the append's fdatasync.
        guard let status = FileStatus.of(fd), status.isRegularFile else {
            close(fd)
            throw PathStorage.unsafeEntry(in: directory, name, path)
        }
        // Owner and mode are set only on a file of one name: a lock file with more than one (a hard
        // link planted in its place, or a `cp -al` snapshot's) may be another file, left as it is.
        if status.links == 1 {
            // A lock file of root's (this process, as root, created it, or an older version did) is
            // given to the data directory's owner (`PathStorage.newEntriesOwner`); another
            // account's is left as it is.
            if let owner, status.owner == 0 { _ = fchown(fd, owner.uid, owner.gid) }
            // The umask may have removed bits that the configured mode grants (mode=0660). The file
            // may belong to another account of the group: then its mode stays as that account set it.
            if status.owner == PathStorage.effectiveUser && (status.mode & 0o777) != mode {
                _ = fchmod(fd, mode)
            }
        }
        let keeps = kept != nil && isOnLocalFileSystem(fd)
        return FileLock(fd: fd, path: path, keptIn: keeps ? kept : nil, status: status)
    }

    /// Waits up to `wait` for the lock on `fd`: blocked in the kernel's queue on a local file
    /// system, polled on NFS or when no blocking thread is free. Returns true holding it; otherwise
    /// (false, or a thrown error) the descriptor is closed, now or by the blocked thread when its
    /// `flock` returns. With a storage, the file system's type is asked and each poll's try made in
    /// a blocking step of it (`PathStorage.blocking`).
    static func wait(
        _ fd: Int32, path: String, for wait: Duration, on storage: PathStorage? = nil,
        pool: KeptThreads = BlockingFlock.pool, deadlines: Deadlines = .shared
    ) async throws -> Bool {
        // No time left (the turn in this process took it all): the one try already made answers.
        guard wait > .zero else {
            close(fd)
            return false
        }
        let local = await run(on: storage) { isOnLocalFileSystem(fd) }
        if local, let waiter = BlockingFlock(fd: fd, path: path, pool: pool, deadlines: deadlines),
            let got = try await waiter.wait(until: .now + wait)
        {
            return got
        }
        // Polled: on NFS and other network file systems, when every thread allowed for blocking is
        // taken, or when no thread could be started for this wait.
        @Sendable func tryOnce() throws(StorageIOError) -> Bool? {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            if errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw StorageIOError(operation: "lock", path: path, errno: errno)
        }
        do {
            let got = try await pollUntil(wait: wait) { try await run(on: storage, tryOnce) }
            if got == nil { close(fd) }
            return got != nil
        } catch {
            close(fd)
            throw error
        }
    }

    /// Whether `fd` is on a local file system known to answer `flock` itself and to share one page
    /// cache between every process that opens a file (ext4, XFS, Btrfs, tmpfs, overlay, ZFS, F2FS).
    /// Only there may a wait for a lock block in the kernel: elsewhere (NFS and EFS, SMB, FUSE, Ceph
    /// and other network or user-space file systems, where a blocked lock waits on a server or a
    /// daemon and only a signal would end it) locks are polled. Only there does an appender let the
    /// user's lock go before its fdatasync (`PathStorage.append`).
    static func isOnLocalFileSystem(_ fd: Int32) -> Bool {
        fileSystemType(fd).map { localFileSystems.contains($0) } ?? false
    }

    /// Whether `fd` is on a file system that is not known to be local (`localFileSystems`): NFS and
    /// EFS, SMB, FUSE, Ceph, 9p and any other. False where this cannot be told (not Linux, or no
    /// `fstatfs`).
    static func isOnNetworkFileSystem(_ fd: Int32) -> Bool {
        fileSystemType(fd).map { !localFileSystems.contains($0) } ?? false
    }

    /// A name for a `statfs(2)` file system type, for messages: `ext4` (for ext2 to ext4), `xfs`,
    /// `btrfs`, `tmpfs`, `overlay`, `zfs`, `f2fs`, `nfs`, `fuse`, `smb`, `ceph`, `9p`, otherwise
    /// `type 0x…`.
    static func fileSystemName(_ type: Int64) -> String {
        let names: [Int64: String] = [
            0xEF53: "ext4", 0x5846_5342: "xfs", 0x9123_683E: "btrfs", 0x0102_1994: "tmpfs",
            0x794C_7630: "overlay", 0x2FC1_2FC1: "zfs", 0xF2F5_2010: "f2fs", 0x6969: "nfs",
            0x6573_5546: "fuse", 0xFF53_4D42: "smb", 0xFE53_4D42: "smb", 0x00C3_6400: "ceph",
            0x0102_1997: "9p",
        ]
        return names[type] ?? "type 0x" + String(UInt64(bitPattern: type), radix: 16)
    }

    /// The `f_type` of `statfs(2)` for `fd`'s file system; nil where it cannot be told.
    static func fileSystemType(_ fd: Int32) -> Int64? {
        #if os(Linux) && (arch(x86_64) || arch(arm64))
            guard let fstatfs = Self.fstatfs else { return nil }
            // `struct statfs` (at most 120 bytes) starts with `f_type`, a `long` on these machines.
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
            defer { buffer.deallocate() }
            guard fstatfs(fd, buffer) == 0 else { return nil }
            return Int64(buffer.load(as: Int.self))
        #else
            return nil
        #endif
    }

    /// `f_type` values of `statfs(2)` for local file systems: ext2/3/4, XFS, Btrfs, tmpfs, overlay,
    /// ZFS, F2FS.
    static let localFileSystems: Set<Int64> = [
        0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630, 0x2FC1_2FC1, 0xF2F5_2010,
    ]

    #if os(Linux)
        /// The C library's `fstatfs`, which the Swift overlay of Glibc does not export
        /// (`sys/vfs.h`); nil if it cannot be found (then every lock is polled).
        static let fstatfs = SharedLibrary.loaded.symbol(
            "fstatfs", (@convention(c) (Int32, UnsafeMutableRawPointer) -> Int32).self)
    #endif

    /// The length the holder's description is padded to, so that each holder overwrites the last
    /// one without cutting the file.
    static let holderTextLength = 128

    /// Records who holds the lock, for the timeout message of the next writer. Best effort, and
    /// never into a lock file with more than one name: a hard link (a snapshot made with `cp -al`,
    /// or one planted to point at a file elsewhere) keeps its content.
    func describeHolder(_ text: String) {
        // Looked at now, holding the lock: a link made while this writer waited counts.
        guard let status = FileStatus.of(fd), status.links == 1 else { return }
        // Padded to a fixed length and written over the last holder's: a reader never finds the
        // file empty, and the file is cut only when its length is not that one already.
        var bytes = Array(text.utf8.prefix(Self.holderTextLength - 1))
        bytes.append(
            contentsOf: repeatElement(UInt8(ascii: " "), count: Self.holderTextLength - 1 - bytes.count))
        bytes.append(UInt8(ascii: "\n"))
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        if status.size != bytes.count { _ = ftruncate(fd, off_t(bytes.count)) }
    }

    /// Unlocks, and closes the descriptor or keeps it for the next acquisition (`keptIn`). Call
    /// exactly once.
    func release() {
        if flock(fd, LOCK_UN) == 0, let keptIn, let status {
            keptIn.keep(path, fd: fd, status: status)
        } else {
            close(fd)
        }
    }
}

/// One wait for a `flock` in the kernel's queue, on a thread of `BlockingFlock.pool` (never one of the
/// cooperative pool's, which a blocked `flock` would take from every task): the caller's task awaits
/// the thread's answer, up to its deadline or its cancellation. A waiter that gives up leaves the
/// descriptor to the thread, which lets the lock go and closes the descriptor as soon as its
/// `flock` returns, so that a waiter that timed out never holds the lock.
///
/// At most `maximumThreads` waits are blocked in threads of the pool at once (those of waiters
/// that gave up count until their `flock` returns: `KeptThreads.reserve`); beyond that, waiters
/// poll. Every lock of the process waits in the one `pool`.
final class BlockingFlock: Sendable {
    static let maximumThreads = 16

    private enum Answer: Sendable {
        case locked
        case failed(Int32)
        case timedOut
        case cancelled
        /// No thread could be started for the wait; the descriptor is open and not locked.
        case noThread
    }

    /// The threads that block in `flock`: at most `maximumThreads`, as many as waits can be
    /// outstanding (reserved: waits handed to threads whose `flock` has not returned, or whose
    /// job has not ended), so that a wait never queues behind another (but for the moment a
    /// thread takes between the end of one job and the start of the next).
    static let pool = KeptThreads(name: "flock", maximum: maximumThreads)

    private struct State {
        var continuation: CheckedContinuation<Answer, Never>?
        /// The caller gave up (timeout or cancellation) before or while the thread waited.
        var abandoned = false
        var timer: WaitTimer?
        /// When the waiter's time is up (`wait(until:)`).
        var deadline: ContinuousClock.Instant?
    }

    let fd: Int32
    let path: String
    /// The threads the wait is handed to (`pool`, but for tests).
    let threadPool: KeptThreads
    /// Where the wait's deadline is watched (`Deadlines.shared`, but for tests).
    let deadlines: Deadlines
    private let state = Locked(State())

    /// Nil when every thread of `pool` is reserved for a wait.
    init?(fd: Int32, path: String, pool: KeptThreads = BlockingFlock.pool, deadlines: Deadlines = .shared) {
        guard pool.reserve() else { return nil }
        self.fd = fd
        self.path = path
        self.threadPool = pool
        self.deadlines = deadlines
    }

    /// Returns true holding the lock; false on timeout; throws `CancellationError` if the task is
    /// cancelled, or the `flock` error. Except when it returns true, the descriptor is closed (by
    /// the thread, once its `flock` returns). Returns nil, the descriptor open and not locked, when
    /// no thread could be started for the wait: the caller then polls.
    func wait(until deadline: ContinuousClock.Instant) async throws -> Bool? {
        let answer = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
                let start = state.withLock { s -> Bool in
                    guard !s.abandoned else { return false }
                    s.continuation = continuation
                    s.deadline = deadline
                    s.timer = WaitTimer.start(at: deadline, on: deadlines) { [weak self] in
                        self?.giveUp(.timedOut)
                    }
                    return true
                }
                guard start else {
                    // Cancelled before the thread started: nothing else has the descriptor.
                    threadPool.endReservation()
                    close(fd)
                    continuation.resume(returning: .cancelled)
                    return
                }
                let submitted = threadPool.submit { [self] in
                    block()
                    // Counted free only now that its thread is done with it, so that no more waits
                    // are outstanding than the pool has threads.
                    threadPool.endReservation()
                }
                if !submitted { noThread() }
            }
        } onCancel: {
            giveUp(.cancelled)
        }
        switch answer {
        case .locked: return true
        case .timedOut: return false
        case .cancelled: throw CancellationError()
        case .failed(let code): throw StorageIOError(operation: "lock", path: path, errno: code)
        case .noThread: return nil
        }
    }

    /// No thread took the wait: the waiter is answered `.noThread` and polls with the descriptor,
    /// unless it gave up already, in which case nobody else will close the descriptor.
    private func noThread() {
        let c = state.withLock { s -> CheckedContinuation<Answer, Never>? in
            let c = s.continuation
            s.continuation = nil
            s.abandoned = true
            s.timer?.cancel()
            s.timer = nil
            return c
        }
        threadPool.endReservation()
        if let c {
            c.resume(returning: .noThread)
        } else {
            close(fd)
        }
    }

    /// The thread's work: blocks until the lock is taken (or fails), then hands it to the waiter,
    /// or, if the waiter gave up, lets it go and closes the descriptor. A waiter that gave up
    /// before the thread came to its wait (the start of a thread, or a thread coming free, took
    /// longer than its wait) is not waited for: the descriptor is closed at once, and no thread
    /// stays blocked for it behind a holder that does not let go. Nor is one whose time is up when
    /// the thread comes to it, although its timer has not told it yet (the deadline's thread has
    /// not run yet): the thread answers it `timedOut` itself.
    fileprivate func block() {
        let (abandoned, deadline) = state.withLock { ($0.abandoned, $0.deadline) }
        if abandoned {
            close(fd)
            return
        }
        if let deadline, ContinuousClock.now >= deadline {
            // Closed before the waiter is answered: it never holds the lock, nor its descriptor.
            close(fd)
            giveUp(.timedOut)
            return
        }
        var result: Int32
        var code: Int32 = 0
        repeat {
            result = flock(fd, LOCK_EX)
            code = result == 0 ? 0 : errno
        } while result != 0 && code == EINTR
        let taken = state.withLock { s -> (CheckedContinuation<Answer, Never>, WaitTimer?)? in
            guard !s.abandoned, let c = s.continuation else { return nil }
            s.continuation = nil
            let timer = s.timer
            s.timer = nil
            return (c, timer)
        }
        if case let (continuation, timer)? = taken {
            timer?.cancel()
            if result != 0 { close(fd) }
            let answer: Answer = result == 0 ? .locked : .failed(code)
            continuation.resume(returning: answer)
        } else {
            if result == 0 { _ = flock(fd, LOCK_UN) }
            close(fd)
        }
    }

    /// The waiter gives up: it is answered now, and the thread, if it started, cleans up after it.
    private func giveUp(_ answer: Answer) {
        let c = state.withLock { s -> CheckedContinuation<Answer, Never>? in
            s.abandoned = true
            let c = s.continuation
            s.continuation = nil
            s.timer?.cancel()
            s.timer = nil
            return c
        }
        c?.resume(returning: answer)
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
        let opened = try await storage.blocking { [storage] in try storage.openFolder(folders, create: true) }
        guard let dir = opened else {
            throw StorageIOError(
                operation: "open directory", path: PathStorage.parent(of: path), errno: ENOENT)
        }
        defer { storage.closeFolder(dir) }
        let start = ContinuousClock.now
        let op = OperationID.make()
        let holder = "\(owner), operation \(op)"
        guard let turn = await turns.take(path, wait: wait) else {
            throw LockTimeoutError(
                userID: userID, waitedMilliseconds: (ContinuousClock.now - start).milliseconds,
                holder: Self.readHolder(".lock", in: dir))
        }
        let lock: FileLock?
        do {
            lock = try await FileLock.acquire(
                ".lock", in: dir, path: path, mode: storage.fileMode,
                wait: wait - (ContinuousClock.now - start), on: storage, holder: holder)
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
        held.withLock { $0[op] = (lock, turn, path) }
        return Lease(name: name, userID: userID, operationID: op, validUntil: nil)
    }

    public func renew(_ lease: Lease) async throws -> Lease { lease }

    /// A cancelled wait closes its descriptor (`FileLock`), and a release is a blocking step that is
    /// waited for.
    public var leavesNothingHeldWhenCancelled: Bool { true }

    /// Lets the lock go in a blocking step of the storage (`PathStorage.blocking`: on NFS and EFS,
    /// where `flock(LOCK_UN)` is a request to the server, on a thread of its own).
    public func release(_ lease: Lease) async throws {
        guard let entry = held.withLock({ $0.removeValue(forKey: lease.operationID) }) else { return }
        let lock = entry.lock
        await storage.blocking { lock.release() }
        turns.give(entry.path, entry.turn)
    }

    public func releaseAtOnce(_ lease: Lease) -> Bool {
        guard let entry = held.withLock({ $0.removeValue(forKey: lease.operationID) }) else { return true }
        entry.lock.release()
        turns.give(entry.path, entry.turn)
        return true
    }

    static func readHolder(_ name: String, in directory: Int32) -> String? {
        // Never blocking (a FIFO planted there would wait for a writer) and only a regular file.
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        // The text is padded with spaces to a fixed length (`describeHolder`).
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        return String(text.reversed().drop { $0 == " " || $0 == "\n" }.reversed())
    }
}
