import CarbonFormat
import Crypto
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `path:`: one file per key under a root directory on a local or shared volume (EBS, EFS, NFS).
///
/// A write goes to a temporary file in the key's directory (`.tmp-…`), which is written, fsynced and
/// closed; then, holding the directory's commit lock (`.commit.lock`, an advisory file lock), the
/// condition is checked against the current file and the temporary file is renamed over it, and
/// the directory is fsynced. Readers take no lock: rename is atomic, so they see one complete file.
///
/// Below the root nothing is reached through a symbolic link: directories are opened one component
/// at a time with `O_NOFOLLOW | O_DIRECTORY` relative to their parent, and files with `O_NOFOLLOW`
/// relative to their directory. The root itself may be a link (mount points often are).
///
/// An update of a version-2 file appends one change frame instead (`append`): holding the same
/// commit lock, the writer checks that the file is still the one it read, cuts a torn append that
/// a crashed writer left, appends with `O_APPEND`, checks that its frame landed where it expected,
/// and `fdatasync`s once.
///
/// The version of a version-2 file is `v2:<fileID>:<valid length>:<last frame id>`: the random id
/// its snapshot was written with, where its valid content ends, and the random id of its last
/// change frame (docs/FORMAT.md). Ids are drawn afresh for every snapshot and every frame, so a
/// version names one content for ever, across deletes, re-creations and inode reuse, and it can be
/// checked with an `fstat` and two small reads (`getIfChanged`). The version of a version-1 file is
/// the SHA-256 of its content; it is upgraded to version 2 on its next write. (A checksum does not
/// qualify: the format ends every block with its own CRC-32C, so a CRC-32C of the whole file
/// depends only on the block lengths.)
public final class PathStorage: ObjectStorage {
    /// The absolute root directory, without a trailing slash.
    public let root: String
    let io: FileIO
    /// How long a writer waits for a directory's commit lock, which is held only around a rename.
    let commitLockWait: Duration
    /// The longest a writer may have held a directory's commit lock when it issues its rename. On
    /// NFS and EFS the lock is a lease of the server's (90 s by default): a writer paused for longer
    /// may have lost it, so it gives up instead of renaming (docs/STORAGE.md, "NFS and EFS").
    let maximumCommitHold: Duration
    /// Permissions of user, temporary and lock files (default 0600: owner only).
    public let fileMode: mode_t
    /// The largest file read; a larger one is refused before it is read (the decoder's limit,
    /// `RecordCodec.Limits.maxFileSize`, which the writer also keeps).
    public let maximumFileSize: Int
    /// Reads layouts (versions, the append fence) with the same limits as the engine's decoder.
    let codec: RecordCodec
    /// Directories whose entry in their parent this instance has made durable (fsynced the parent
    /// after finding or creating them), by path relative to the root.
    private let durableDirectories = Locked<Set<String>>([])
    /// The lock files of this storage's folders left open between holds (`FileLock`).
    let keptLockFiles = KeptLockFiles()
    /// How long this storage's syncs of files and folders (`fsync`, `fdatasync`) take, in
    /// nanoseconds: a moving average over every sync `sync(_:_:)` made.
    private let syncAverage = Locked<Int64>(0)
    /// The average sync time past which syncs are handed to threads of their own (`SyncThreads`)
    /// instead of blocking a thread of the cooperative pool; in nanoseconds.
    let offloadSyncsAboveNanoseconds: Int64
    /// The default of that limit: half a millisecond. An `fdatasync` of a local SSD or disk takes a
    /// fraction of that; one of EFS, NFS or a network block volume, a millisecond or more.
    package static let offloadSyncsAbove = Duration.microseconds(500)
    /// Whether every blocking step of this storage's operations (opening folders and files, reading,
    /// taking a lock's first try, writing, renaming) runs on `SyncThreads` rather than on the
    /// calling task's thread (`blocking`). True on a network file system (the root's `f_type` is
    /// not one of `FileLock.localFileSystems`: NFS and EFS, SMB, FUSE, Ceph, 9p), where each step
    /// waits for a server's answer; false on a local one, where the steps take microseconds and a
    /// hand-over to another thread would cost more than it frees. Syncs then run there too.
    public let offloadsFileWork: Bool
    /// Called at the start of every blocking step, on the thread that runs it, with whether the
    /// step is made under a lock (`LockHold`): the test support's emulation of a network file
    /// system's round trips (`PathStorage.onSlowVolume`). Nil in use.
    let beforeBlockingStep: (@Sendable (_ underLock: Bool) -> Void)?
    /// The threads its steps and syncs leave the cooperative pool for: the process's
    /// (`SyncThreads.shared`), but in tests of their order.
    let syncThreads: SyncThreads

    /// The default permissions of files: their owner reads and writes, nobody else has access.
    public static let defaultFileMode: mode_t = 0o600

    /// The permissions of directories for a file mode: the same bits, plus search (x) for every
    /// class that may read.
    public static func directoryMode(for fileMode: mode_t) -> mode_t {
        var mode = fileMode & 0o777
        if mode & 0o400 != 0 { mode |= 0o100 }
        if mode & 0o040 != 0 { mode |= 0o010 }
        if mode & 0o004 != 0 { mode |= 0o001 }
        return mode
    }

    public var directoryMode: mode_t { Self.directoryMode(for: fileMode) }

    /// Opens a root directory. A missing final directory is created if its parent exists; a missing
    /// parent is an error (an unmounted volume should not silently become a local folder).
    /// `readOnly`: the directory is only read; it is not created (a missing one holds no users),
    /// need not be writable, and every write is refused.
    public convenience init(
        root: String, fileMode: mode_t = PathStorage.defaultFileMode,
        maximumFileSize: Int = RecordCodec.Limits().maxFileSize, readOnly: Bool = false
    ) throws {
        try self.init(
            root: root, io: .posix, fileMode: fileMode, maximumFileSize: maximumFileSize, readOnly: readOnly)
    }

    package init(
        root: String, io: FileIO, fileMode: mode_t = PathStorage.defaultFileMode,
        maximumFileSize: Int = RecordCodec.Limits().maxFileSize,
        commitLockWait: Duration = .seconds(30), maximumCommitHold: Duration = .seconds(20),
        offloadSyncsAbove: Duration = PathStorage.offloadSyncsAbove, offloadFileWork: Bool? = nil,
        framesInPlace: Bool? = nil, readOnly: Bool = false,
        beforeBlockingStep: (@Sendable (_ underLock: Bool) -> Void)? = nil, syncThreads: SyncThreads = .shared
    ) throws {
        self.framesInPlace = framesInPlace
        self.readOnly = readOnly
        self.beforeBlockingStep = beforeBlockingStep
        self.syncThreads = syncThreads
        self.offloadSyncsAboveNanoseconds = offloadSyncsAbove.nanoseconds
        self.root = try Self.absolute(root)
        self.maximumFileSize = maximumFileSize
        var limits = RecordCodec.Limits()
        limits.maxFileSize = maximumFileSize
        self.codec = RecordCodec(limits: limits)
        self.io = io
        self.commitLockWait = commitLockWait
        self.maximumCommitHold = maximumCommitHold
        self.fileMode = fileMode & 0o777
        guard fileMode & 0o600 == 0o600, fileMode & ~0o777 == 0 else {
            throw InvalidRequestError(
                "file mode \(String(fileMode, radix: 8)) must give the owner read and write (0600 at least) and name only permission bits; e.g. mode=0640 lets the group read"
            )
        }
        var st = stat()
        var created = false
        if readOnly {
            if stat(self.root, &st) != 0 {
                let code = errno
                let parent = Self.parent(of: self.root)
                try Self.refuseDanglingLink(self.root)
                guard code == ENOENT || code == ENOTDIR else {
                    throw StorageIOError(operation: "open for reading", path: self.root, errno: code)
                }
                try Self.requireDirectory(parent, asParentOf: self.root, orItCannotBe: "read")
            } else if (st.st_mode & S_IFMT) != S_IFDIR {
                throw InvalidRequestError("data directory \(self.root) exists but is not a directory")
            } else if access(self.root, R_OK | X_OK) != 0 {
                throw StorageIOError(operation: "open for reading", path: self.root, errno: errno)
            }
        } else if stat(self.root, &st) != 0 {
            let parent = Self.parent(of: self.root)
            try Self.requireDirectory(parent, asParentOf: self.root, orItCannotBe: "created")
            try Self.refuseDanglingLink(self.root)
            if mkdir(self.root, Self.directoryMode(for: self.fileMode)) == 0 {
                created = true
            } else if errno != EEXIST {
                throw StorageIOError(operation: "mkdir", path: self.root, errno: errno)
            }
            // The umask may have removed bits that the configured mode grants (mode=0640).
            _ = chmod(self.root, Self.directoryMode(for: self.fileMode))
            // The root's own entry must survive a power cut before any write in it is acknowledged.
            let fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                defer { close(fd) }
                if io.fsync(fd) != 0 {
                    throw StorageIOError(operation: "fsync directory", path: parent, errno: errno)
                }
            }
        } else if (st.st_mode & S_IFMT) != S_IFDIR {
            throw InvalidRequestError("data directory \(self.root) exists but is not a directory")
        }
        if !readOnly { try Self.requireWritable(self.root) }
        var rootStatus = stat()
        let rootFound = stat(self.root, &rootStatus) == 0
        if !readOnly, geteuid() == 0, rootFound, rootStatus.st_uid != 0 {
            newEntriesOwner = Owner(uid: rootStatus.st_uid, gid: rootStatus.st_gid)
        } else {
            newEntriesOwner = nil
        }
        createdDataDirectory = created
        rootDevice = !readOnly && rootFound ? UInt64(rootStatus.st_dev) : nil
        if let offloadFileWork {
            self.offloadsFileWork = offloadFileWork
        } else {
            let fd = open(self.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            self.offloadsFileWork = fd >= 0 && FileLock.isOnNetworkFileSystem(fd)
            if fd >= 0 { _ = close(fd) }
        }
    }

    public func location(of key: String) -> String { path(of: key) }

    /// Whether opening this storage made the data directory (it did not exist).
    public let createdDataDirectory: Bool

    /// The kind of file system the data directory is on (`ext4`, `nfs`, `fuse`, …); nil where it
    /// cannot be told.
    public var fileSystemName: String? {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { _ = close(fd) }
        return FileLock.fileSystemType(fd).map(FileLock.fileSystemName)
    }

    /// The device the data directory was on when this storage was opened for writing (nil when
    /// opened for reading only). Every walk from the root, listing and writability check opens the
    /// directory by its path and refuses to go on when it is now on another device: a volume mounted
    /// over the directory (or over a folder above it) after this process began writing there, or
    /// unmounted from under it. Either way the writes would land where the other processes do not
    /// look (`DataDirectoryChangedError`).
    let rootDevice: UInt64?

    /// Throws when the data directory, opened as `fd` (or, without one, reached by its path), is
    /// not on `rootDevice`. A directory that cannot be looked at is left to the caller's own error.
    func checkRootDevice(_ fd: Int32? = nil) throws(DataDirectoryChangedError) {
        guard let expected = rootDevice else { return }
        var st = stat()
        let found = fd.map { fstat($0, &st) } ?? stat(root, &st)
        guard found == 0, UInt64(st.st_dev) != expected else { return }
        throw DataDirectoryChangedError(path: root, device: UInt64(st.st_dev), opened: expected)
    }

    /// Throws unless this process may write in `root` (`EROFS` on a read-only volume included).
    static func requireWritable(_ root: String) throws(StorageIOError) {
        if access(root, W_OK) != 0 {
            throw StorageIOError(operation: "open for writing", path: root, errno: errno)
        }
    }

    /// An owner and group for files and folders.
    package struct Owner: Sendable, Hashable {
        var uid: uid_t
        var gid: gid_t
    }

    /// For a process running as root on a data directory owned by another user (a service's
    /// account): that user and the directory's group, which every file and folder this process
    /// creates below it is given (`fchown`), so that a command run as root (a repair, an import)
    /// never leaves files or folders that the service may not open. Nil otherwise.
    package let newEntriesOwner: Owner?

    /// Gives a new file or folder `newEntriesOwner`, when there is one.
    func giveNewEntryOwner(_ fd: Int32) {
        if let owner = newEntriesOwner { _ = fchown(fd, owner.uid, owner.gid) }
    }

    /// Whether this process may write in the data directory (`access(W_OK)`, which also fails with
    /// `EROFS` on a read-only volume), as `init` checks at start: a volume remounted read-only or
    /// a directory whose permissions changed since is found by readiness probes. A storage opened
    /// for reading only checks nothing.
    public func checkWritable() async throws {
        if readOnly { return }
        try await blocking { [self] in
            try checkRootDevice()
            try Self.requireWritable(root)
        }
    }

    func path(of key: String) -> String { root + "/" + key }

    /// A key's folders below the root, and its file name.
    static func split(_ key: String) -> (folders: [String], name: String) {
        // Split as bytes ('/' is never part of another character's UTF-8): every step of an
        // operation splits its key, and a split by `Character` walks grapheme clusters. One array
        // is made (the folders); the names of a key (short) are stored in their `String`s.
        let bytes = key.utf8
        var folders: [String] = []
        var name = ""
        var start = bytes.startIndex
        var i = start
        while true {
            let atEnd = i == bytes.endIndex
            if atEnd || bytes[i] == UInt8(ascii: "/") {
                if start != i {
                    if !name.isEmpty { folders.append(name) }
                    name = String(Substring(bytes[start..<i]))
                }
                if atEnd { break }
                start = bytes.index(after: i)
            }
            i = bytes.index(after: i)
        }
        return (folders, name)
    }

    // MARK: - One walk to a user's folder per operation

    /// The user's folder of one operation of the engine (`withOperation`): the first walk to it
    /// that goes through `io` (one that may create it, or a writer's) leaves its descriptor here,
    /// and the operation's steps borrow that one (`openFolder`) instead of walking from the root
    /// again, and give it back (`closeFolder`) rather than close it. An update on a local disk so
    /// walks once instead of three times (the user's lock, the version check, the append), and
    /// neither duplicates nor closes a descriptor at each step. Its steps run one after another
    /// (the task's, or one thread's at a time for it).
    final class OperationFolder: Sendable {
        let storage: ObjectIdentifier
        let folders: [String]

        struct State {
            /// The descriptor that steps borrow.
            var kept: Int32?
            /// How many steps have each descriptor lent and not given back: the kept one, and one
            /// that a later walk replaced while it was lent (closed when the last gives it back).
            var lent: [Int32: Int] = [:]
            /// Once the operation is over nothing is lent (a task started within it that outlives
            /// it walks by itself), and the kept descriptor is closed as soon as no step has it.
            var ended = false
        }
        private let state = Locked(State())

        /// How the kept descriptor is closed: the storage's `io.close`, through which the walk that
        /// opened it would have closed it (tests watch it there).
        private let close: @Sendable (Int32) -> Int32

        init(
            storage: ObjectIdentifier, folders: [String],
            close: @escaping @Sendable (Int32) -> Int32 = { Glibc.close($0) }
        ) {
            self.storage = storage
            self.folders = folders
            self.close = close
        }

        /// Lends the kept descriptor to a step, which gives it back (`giveBack`) and never closes
        /// it; nil when none is kept or the operation is over.
        func lend() -> Int32? {
            state.withLock { s -> Int32? in
                guard !s.ended, let fd = s.kept else { return nil }
                s.lent[fd, default: 0] += 1
                return fd
            }
        }

        /// Keeps `fd`, a walk's folder, in place of any kept before, and lends it to the step that
        /// walked. False when the operation is over: the step keeps `fd` and closes it.
        func keepAndLend(_ fd: Int32) -> Bool {
            let (kept, replaced) = state.withLock { s -> (Bool, Int32?) in
                guard !s.ended else { return (false, nil) }
                let earlier = s.kept
                s.kept = fd
                s.lent[fd, default: 0] += 1
                // One that no step has now is closed here; one that is lent, by its last borrower.
                guard let earlier, earlier != fd, s.lent[earlier] == nil else { return (true, nil) }
                return (true, earlier)
            }
            if let replaced { _ = close(replaced) }
            return kept
        }

        /// Takes back `fd` if this operation lent it (and closes it if it is no longer kept, or the
        /// operation is over, and no other step has it); false if it did not lend it.
        func giveBack(_ fd: Int32) -> Bool {
            let (lent, closes) = state.withLock { s -> (Bool, Bool) in
                guard let count = s.lent[fd] else { return (false, false) }
                if count > 1 {
                    s.lent[fd] = count - 1
                    return (true, false)
                }
                s.lent[fd] = nil
                guard s.ended || s.kept != fd else { return (true, false) }
                if s.kept == fd { s.kept = nil }
                return (true, true)
            }
            if closes { _ = close(fd) }
            return lent
        }

        /// Ends the operation: the kept descriptor is closed now, or by the last step that has it.
        func end() {
            let closes = state.withLock { s -> Int32? in
                s.ended = true
                guard let fd = s.kept, s.lent[fd] == nil else { return nil }
                s.kept = nil
                return fd
            }
            if let closes { _ = close(closes) }
        }

        /// How many descriptors are lent and not given back, and whether one is kept (tests).
        var counts: (lent: Int, kept: Bool) {
            state.withLock { s in (s.lent.values.reduce(0, +), s.kept != nil) }
        }
    }

    /// The folder of the operation the running task is in, if any (`withOperation`).
    @TaskLocal static var operationFolder: OperationFolder?

    public func withOperation<T>(on key: String, _ body: () async throws -> T) async throws -> T {
        let scope = OperationFolder(
            storage: ObjectIdentifier(self), folders: Self.split(key).folders, close: io.close)
        defer { scope.end() }
        return try await Self.$operationFolder.withValue(scope) { try await body() }
    }

    /// The running operation's folder, when it is this storage's and `folders`.
    func operationFolder(_ folders: [String]) -> OperationFolder? {
        guard let scope = Self.operationFolder, scope.storage == ObjectIdentifier(self),
            scope.folders == folders
        else { return nil }
        return scope
    }

    /// Whether each of `folders`' entries in its parent was made durable by this instance.
    func isDurable(_ folders: [String]) -> Bool {
        durableDirectories.withLock { made in
            var relative = ""
            for name in folders {
                relative = relative.isEmpty ? name : relative + "/" + name
                if !made.contains(relative) { return false }
            }
            return true
        }
    }

    // MARK: - Directories, reached without following links

    /// Opens the folder `folders` below the root, one component at a time, never through a
    /// symbolic link. Returns nil when a folder is missing and `create` is false. With `create`,
    /// missing folders are made (with `directoryMode`); with `durable` as well, each folder's entry in
    /// its parent is made durable (the parent fsynced) before this returns, once per folder and
    /// instance, whoever created it, so that a write acknowledged in it survives a power cut.
    /// Writers (`forWriting`) open folders through `io`, so that tests can fail or stop them there;
    /// readers use the system calls directly. Within an operation of the engine on the folder's key
    /// (`withOperation`), a walk through `io` is made once and its folder handed out again.
    func openFolder(
        _ folders: [String], create: Bool, durable: Bool = false, forWriting: Bool = false
    ) throws -> Int32? {
        let scope = operationFolder(folders)
        if let scope, !durable || isDurable(folders), let kept = scope.lend() { return kept }
        guard let fd = try walk(to: folders, create: create, durable: durable, forWriting: forWriting) else {
            return nil
        }
        if let scope, forWriting || create { _ = scope.keepAndLend(fd) }
        return fd
    }

    /// Ends a step's use of a folder that `openFolder` opened: gives it back to the operation that
    /// lent it, or closes it. Every folder from `openFolder` ends here, never in a `close` of its
    /// own: a lent descriptor closed directly would be closed again by its operation, and its number
    /// may by then name another file. (A descriptor lent by any operation is open and owned by it,
    /// so no descriptor of another is taken for it.)
    func closeFolder(_ fd: Int32) {
        if let scope = Self.operationFolder, scope.giveBack(fd) { return }
        _ = io.close(fd)
    }

    /// How many walks from the root this storage has made (`walk`), for the package's tests.
    package var walkCount: Int { walks.load(ordering: .relaxed) }
    private let walks = Atomic<Int>(0)
    private let reservedBytes = Atomic<Int>(0)
    /// Whether appends write their frame in place (nil: where the file system is local); set by the
    /// package's tests to take the `O_APPEND` path of network file systems on a local disk.
    let framesInPlace: Bool?
    /// Opened for reading only (`StoreOptions.readOnly`): writes are refused.
    let readOnly: Bool

    /// Whether a folder may be opened in one call (`openat2`): false once the system has refused it.
    private let opensBeneath = Atomic<Bool>(true)

    /// `openFolder`'s walk from the root.
    ///
    /// The root is opened by its path, as given (it may be a link), at every walk. Below it, a
    /// folder that exists, and whose entries are durable when that is asked, is opened in one call
    /// (`FileIO.openDirectoryBeneath`, Linux's `openat2`) that refuses any symbolic link and `..` on
    /// the way: the folder the levels below would reach, in one system call instead of one per
    /// level. Anything but a folder opened that way (one missing, a link or not a folder on the way,
    /// a folder that may not be searched, a system without the call) takes the levels, which decide:
    /// they create what is missing and name the entry that is unsafe or refused. Other errors (EIO,
    /// EMFILE) are reported with the folder's path.
    func walk(to folders: [String], create: Bool, durable: Bool, forWriting: Bool) throws -> Int32? {
        walks.wrappingAdd(1, ordering: .relaxed)
        // Writers (and walks that create) go through `io`, which tests fail or stop; readers do not.
        let throughIO = forWriting || create
        let openat = throughIO ? io.openat : { Glibc.openat($0, $1, $2, $3) }
        var fd = root.withCString { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else {
            // Opened for reading only, a data directory that does not exist holds no users.
            if readOnly && errno == ENOENT && !create { return nil }
            throw StorageIOError(operation: "open directory", path: root, errno: errno)
        }
        do { try checkRootDevice(fd) } catch {
            _ = io.close(fd)
            throw error
        }
        if folders.count > 1, !durable || isDurable(folders), opensBeneath.load(ordering: .relaxed) {
            let relative = folders.joined(separator: "/")
            let child =
                throughIO ? io.openDirectoryBeneath(fd, relative) : systemOpenDirectoryBeneath(fd, relative)
            let code = errno
            if child >= 0 {
                _ = io.close(fd)
                return child
            }
            switch code {
            case ENOSYS, EPERM, EINVAL, E2BIG:
                // No `openat2` here (an older kernel, a seccomp filter; a real EPERM is reported by
                // the levels): every walk of this storage takes the levels from now on.
                opensBeneath.store(false, ordering: .relaxed)
            case ENOENT, ELOOP, ENOTDIR, EXDEV, EAGAIN, EINTR, EACCES, ENAMETOOLONG:
                break
            default:
                _ = io.close(fd)
                throw StorageIOError(operation: "open directory", path: root + "/" + relative, errno: code)
            }
        }
        var relative = ""
        for name in folders {
            relative = relative.isEmpty ? name : relative + "/" + name
            var child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
            if child < 0 && errno == ENOENT && create {
                let made = io.mkdirat(fd, name, directoryMode) == 0
                if !made && errno != EEXIST {
                    let code = errno
                    _ = io.close(fd)
                    throw StorageIOError(operation: "mkdir", path: root + "/" + relative, errno: code)
                }
                child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0)
                // The umask may have removed bits that the configured mode grants (mode=0640).
                if made && child >= 0 {
                    _ = fchmod(child, directoryMode)
                    giveNewEntryOwner(child)
                }
                // Made again (removed from outside since): its entry, and those below it, are no
                // longer known to be durable.
                if made {
                    let prefix = relative + "/"
                    durableDirectories.withLock { $0 = $0.filter { $0 != relative && !$0.hasPrefix(prefix) } }
                }
            }
            if child < 0 {
                let code = errno
                defer { _ = io.close(fd) }
                if code == ENOENT && !create { return nil }
                if code == ELOOP || code == ENOTDIR {
                    throw Self.unsafeEntry(in: fd, name, root + "/" + relative)
                }
                throw StorageIOError(operation: "open directory", path: root + "/" + relative, errno: code)
            }
            if durable && !durableDirectories.withLock({ $0.contains(relative) }) {
                // Once per folder and instance: on the caller's thread (`sync` would need this walk
                // to be async), but timed with the others.
                let synced = timedSync(io.fsync, fd)
                if synced.result != 0 {
                    let code = synced.errno
                    _ = io.close(child)
                    _ = io.close(fd)
                    throw StorageIOError(
                        operation: "fsync directory", path: Self.parent(of: root + "/" + relative),
                        errno: code)
                }
                _ = durableDirectories.withLock { $0.insert(relative) }
            }
            _ = io.close(fd)
            fd = child
        }
        return fd
    }

    /// The error for an entry that is a symbolic link or not of the kind expected.
    static func unsafeEntry(in directory: Int32, _ name: String, _ path: String) -> UnsafePathError {
        var st = stat()
        if fstatat(directory, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
            return UnsafePathError(path: path, reason: "it is a symbolic link")
        }
        return UnsafePathError(
            path: path,
            reason:
                "it is not of the expected kind (a directory for a folder, a regular file for a user file)")
    }

    // MARK: - Reading

    public func get(_ key: String) async throws -> StoredObject? {
        try await blocking { [self] in
            let (folders, name) = Self.split(key)
            guard let dir = try openFolder(folders, create: false) else { return nil }
            defer { closeFolder(dir) }
            return try read(name, in: dir, path: path(of: key))
        }
    }

    /// The bytes alone: readers that need no version skip its hash.
    public func getBytes(_ key: String) async throws -> [UInt8]? {
        try await blocking { [self] in try readBytes(key) }
    }

    func readBytes(_ key: String) throws -> [UInt8]? {
        let (folders, name) = Self.split(key)
        guard let dir = try openFolder(folders, create: false) else { return nil }
        defer { closeFolder(dir) }
        return try readBytes(name, in: dir, path: path(of: key))
    }

    /// Reads the file `name` of an open folder, with its version; nil if there is none.
    func read(_ name: String, in dir: Int32, path: String) throws -> StoredObject? {
        try readFile(name, in: dir, path: path).map {
            StoredObject(bytes: $0.bytes, version: version(of: $0.bytes, changed: $0.changed))
        }
    }

    /// Reads the file `name` of an open folder; nil if there is none.
    func readBytes(_ name: String, in dir: Int32, path: String) throws -> [UInt8]? {
        try readFile(name, in: dir, path: path)?.bytes
    }

    /// Reads the file `name` of an open folder, with its change time as `fstat` gave it before the
    /// read; nil if there is none.
    func readFile(_ name: String, in dir: Int32, path: String) throws -> (
        bytes: [UInt8], changed: ChangeTime
    )? {
        guard let file = try openUserFile(name: name, in: dir, path: path, changeTime: true) else {
            return nil
        }
        defer { _ = Glibc.close(file.fd) }
        guard file.size <= maximumFileSize else {
            throw FileTooLargeError(path: path, size: Int64(file.size), limit: Int64(maximumFileSize))
        }
        let bytes = try Self.readAll(file.fd, sizeHint: file.size, limit: maximumFileSize + 1, path: path)
        // The file may have grown since fstat: never read past the limit.
        guard bytes.count <= maximumFileSize else {
            throw FileTooLargeError(path: path, size: Int64(bytes.count), limit: Int64(maximumFileSize))
        }
        return (bytes, file.changed ?? ChangeTime(seconds: 0, nanoseconds: 0))
    }

    /// Opens the user file `name` of an open folder for reading, never through a symbolic link, and
    /// checks that it is a regular file; returns its descriptor (the caller closes it), its size and,
    /// if asked for, its change time, or nil if there is no such file. Non-blocking, so that a FIFO
    /// or device planted in a user file's place cannot hang the reader; anything but a regular file
    /// is refused. The change time is asked for only when wanted (`FileStatus`).
    func openUserFile(name: String, in dir: Int32, path: String, changeTime: Bool) throws -> (
        fd: Int32, size: Int, changed: ChangeTime?
    )? {
        let fd = name.withCString { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        if fd < 0 {
            if errno == ENOENT { return nil }
            if errno == ELOOP { throw Self.unsafeEntry(in: dir, name, path) }
            throw StorageIOError(operation: "open", path: path, errno: errno)
        }
        let status: (isRegularFile: Bool, size: Int, changed: ChangeTime?)?
        if changeTime {
            var st = stat()
            status =
                fstat(fd, &st) == 0
                ? ((st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size), ChangeTime(st)) : nil
        } else {
            status = FileStatus.of(fd).map { ($0.isRegularFile, $0.size, nil) }
        }
        guard let status else {
            let code = errno
            _ = Glibc.close(fd)
            throw StorageIOError(operation: "stat", path: path, errno: code)
        }
        guard status.isRegularFile else {
            _ = Glibc.close(fd)
            throw Self.unsafeEntry(in: dir, name, path)
        }
        return (fd, status.size, status.changed)
    }

    /// A file's status change time (`st_ctim`), which every write, truncation, rename and
    /// permission change moves on, whoever makes it.
    struct ChangeTime: Hashable, CustomStringConvertible {
        var seconds: Int
        var nanoseconds: Int

        init(seconds: Int, nanoseconds: Int) {
            self.seconds = seconds
            self.nanoseconds = nanoseconds
        }

        init(_ st: stat) {
            #if canImport(Darwin)
                self.init(seconds: Int(st.st_ctimespec.tv_sec), nanoseconds: Int(st.st_ctimespec.tv_nsec))
            #else
                self.init(seconds: Int(st.st_ctim.tv_sec), nanoseconds: Int(st.st_ctim.tv_nsec))
            #endif
        }

        init?(_ text: Substring) {
            let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard parts.count == 2, let s = Int(Substring(parts[0])), let n = Int(Substring(parts[1])) else {
                return nil
            }
            self.init(seconds: s, nanoseconds: n)
        }

        var description: String { "\(seconds).\(nanoseconds)" }
    }

    /// The version of a file's content (see the type's documentation): made of its ids for a
    /// version-2 file, its SHA-256 otherwise (version 1, or bytes that are not a user file, which
    /// the engine then reports as damaged).
    func version(of bytes: [UInt8], changed: ChangeTime?) -> ObjectVersion {
        Self.version(of: bytes, changed: changed, codec: codec)
    }

    static func version(of bytes: [UInt8], changed: ChangeTime? = nil, codec: RecordCodec = RecordCodec())
        -> ObjectVersion
    {
        let layout = bytes.withUnsafeBytes { try? codec.scanLayout($0) }
        if let layout, var v = AppendVersion(layout) {
            v.changed = changed
            return v.version
        }
        return ObjectVersion("sha256:" + hexString(SHA256.hash(data: bytes)))
    }

    /// What a version-2 file's version says: the snapshot's id, where the valid content ends, the
    /// id of its last frame (the snapshot's id when there is none), and the file's change time when
    /// it was read or written. The ids name the content: the fence compares them alone. The change
    /// time is what the record cache checks besides: a file changed in place by anything but the
    /// engine (a damaged disk block rewritten, an edit by hand) keeps its ids but not its change
    /// time, so that the next read decodes it again, and reports it if it is damaged.
    struct AppendVersion: Hashable {
        var fileID: WriteID
        var validLength: Int
        var lastID: WriteID
        var changed: ChangeTime?

        init(fileID: WriteID, validLength: Int, lastID: WriteID, changed: ChangeTime? = nil) {
            self.fileID = fileID
            self.validLength = validLength
            self.lastID = lastID
            self.changed = changed
        }

        init?(_ layout: FileLayout) {
            guard layout.formatVersion >= 2, let f = layout.fileID, let l = layout.lastID else { return nil }
            self.init(fileID: f, validLength: layout.validLength, lastID: l)
        }

        init?(_ version: ObjectVersion) {
            // Four or five fields separated by colons, read as bytes where they stand: every update
            // parses a version, and a split by `Character` walks grapheme clusters.
            let text = version.rawValue.utf8
            let colon = UInt8(ascii: ":")
            guard let c1 = text.firstIndex(of: colon), text[..<c1].elementsEqual("v2".utf8) else {
                return nil
            }
            let a = text.index(after: c1)
            guard let c2 = text[a...].firstIndex(of: colon), let f = WriteID(hexDigits: text[a..<c2]) else {
                return nil
            }
            let b = text.index(after: c2)
            guard let c3 = text[b...].firstIndex(of: colon), let n = Int(Substring(text[b..<c3])), n > 0
            else {
                return nil
            }
            let d = text.index(after: c3)
            let c4 = text[d...].firstIndex(of: colon)
            guard let l = WriteID(hexDigits: text[d..<(c4 ?? text.endIndex)]) else { return nil }
            var changed: ChangeTime? = nil
            if let c4 {
                let e = text.index(after: c4)
                guard text[e...].firstIndex(of: colon) == nil, let c = ChangeTime(Substring(text[e...]))
                else {
                    return nil
                }
                changed = c
            }
            self.init(fileID: f, validLength: n, lastID: l, changed: changed)
        }

        var version: ObjectVersion {
            ObjectVersion("v2:\(fileID):\(validLength):\(lastID)" + (changed.map { ":\($0)" } ?? ""))
        }
    }

    /// Reads to the end of the file, or `limit` bytes, whichever comes first.
    package static func readAll(_ fd: Int32, sizeHint: Int, limit: Int, path: String) throws(StorageIOError)
        -> [UInt8]
    {
        var out = [UInt8](repeating: 0, count: min(max(sizeHint, 0), limit))
        var filled = 0
        while filled < limit {
            if filled == out.count {
                out.append(
                    contentsOf: repeatElement(0, count: min(max(4096, out.count / 2), limit - out.count)))
            }
            let n = out.withUnsafeMutableBytes { buf in
                Glibc.read(fd, buf.baseAddress! + filled, buf.count - filled)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            filled += n
        }
        out.removeSubrange(filled...)
        return out
    }

    // MARK: - Version checks without reading the file

    public func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
        try await blocking { [self] in
            let (folders, name) = Self.split(key)
            let target = path(of: key)
            guard let dir = try openFolder(folders, create: false) else { return .missing }
            defer { closeFolder(dir) }
            if let expected = AppendVersion(cached) {
                // The change time is what the record cache checks besides the ids (`AppendVersion`).
                // A writer's check within an update or a delete (`withOperation`) asks for it only
                // when the cached version has one: asking makes the writer's own append stamp a
                // fine-grained time, which some file systems write again at its fdatasync
                // (`FileStatus`). A read always asks, and a version without one (made by this
                // process's append) gets it recorded (`confirmed`).
                let writing = operationFolder(folders) != nil
                let askTime = expected.changed != nil || !writing
                guard let file = try openUserFile(name: name, in: dir, path: target, changeTime: askTime)
                else { return .missing }
                defer { _ = Glibc.close(file.fd) }
                let size = file.size
                let read = try compare(file.fd, size: size, with: expected, path: target, quick: true)
                if read.comparison != .changed {
                    if expected.changed == nil, let changed = file.changed {
                        var confirmed = expected
                        confirmed.changed = changed
                        return .confirmed(version: confirmed.version)
                    }
                    if expected.changed == nil || expected.changed == file.changed { return .unchanged }
                }
                // Frames appended to the content asked about (the same snapshot, the same last frame
                // where the version ends, and a frame chained to it after: what `compare` has just
                // read): only the new bytes are read. The version of the whole is made from them.
                if read.comparison == .changed, let tail = read.after, size <= maximumFileSize,
                    expected.validLength >= FileLayout.frameTrailerLength
                {
                    let end = tail.withUnsafeBytes { codec.framesEnd($0, chainedTo: expected.lastID) }
                    if tail.count == size - expected.validLength, end.length > 0 {
                        let version = AppendVersion(
                            fileID: expected.fileID, validLength: expected.validLength + end.length,
                            lastID: end.lastID,
                            changed: file.changed)
                        return .appended(tail: Array(tail[..<end.length]), version: version.version)
                    }
                }
            }
            guard let object = try read(name, in: dir, path: target) else { return .missing }
            return object.version == cached ? .unchanged : .changed(object)
        }
    }

    /// How an open file stands against the version-2 version a writer or a cache holds.
    enum Comparison: Equatable {
        /// The file is the content the version names, followed by nothing or by zero bytes alone (a
        /// reserve: `writeFrame`).
        case same
        /// The same valid content, followed by bytes of a torn append that readers skip.
        case sameWithTornTail
        /// The same valid content, followed by bytes that readers skip but that are more than one
        /// torn append (a damaged frame): never cut, never written over.
        case sameWithDamagedTail
        /// Another content: another snapshot, or frames appended since.
        case changed
    }

    /// What `compare` found, and the bytes after the version's end that it read to find it.
    struct ComparisonRead {
        var comparison: Comparison
        /// When the file starts with the version's content (the same snapshot id, the same last
        /// frame id where the version ends) and goes on after it: the bytes after the end (up to
        /// the size given, and no further than `maximumFileSize`). Nil otherwise.
        var after: [UInt8]?
    }

    /// Compares an open file with a version: its size, its snapshot's id (16 bytes of the header)
    /// and its last frame's id (in the frame's trailer) against the version's, and whether the
    /// bytes after the version's end, if any, are a committed frame chained to it (someone's
    /// append: changed) or not (a torn append). Reads at most 36 bytes, and the bytes after the end,
    /// which it returns.
    ///
    /// With `quick` (a version check, which only asks whether the content changed), bytes after the
    /// end that do not start with a frame's marker answer `.same` without being read further: no
    /// committed frame starts there, whatever they are (zeros of a reserve, a torn append), so a
    /// check of a file with a reserve reads 4 bytes of it rather than the whole reserve.
    func compare(_ fd: Int32, size: Int, with v: AppendVersion, path: String, quick: Bool = false) throws
        -> ComparisonRead
    {
        let changed = ComparisonRead(comparison: .changed, after: nil)
        guard size >= v.validLength, v.validLength >= FileLayout.fileIDOffset + 16 else { return changed }
        guard try readExactly(fd, count: 16, at: FileLayout.fileIDOffset, path: path) == v.fileID.bytes else {
            return changed
        }
        // The last frame's trailer (which starts with its id) and the bytes after the end are read
        // together: with `quick` 4 of the latter, otherwise all.
        let checksLastID = v.lastID != v.fileID
        guard !checksLastID || v.validLength >= FileLayout.frameTrailerLength else { return changed }
        let lead = checksLastID ? FileLayout.frameTrailerLength : 0
        // None when the version ends past the largest file read (a version from elsewhere).
        let wanted = max(0, quick ? min(4, size - v.validLength) : min(size, maximumFileSize) - v.validLength)
        let read = try readExactly(fd, count: lead + wanted, at: v.validLength - lead, path: path)
        if checksLastID {
            guard read.count >= 16, read.prefix(16).elementsEqual(v.lastID.bytes) else { return changed }
        }
        if size == v.validLength { return ComparisonRead(comparison: .same, after: nil) }
        var after = read[min(lead, read.count)...]
        if quick {
            if after.count < 4 || !after.elementsEqual(RecordCodec.frameMarker.prefix(4)) {
                return ComparisonRead(comparison: .same, after: nil)
            }
            after = try readExactly(
                fd, count: min(size, maximumFileSize) - v.validLength, at: v.validLength, path: path)[...]
        }
        // Zero bytes alone: the reserve an append left for the next ones (or a file extended whose
        // data never reached the disk). No content, and nothing to cut.
        if after.withUnsafeBytes({ RecordCodec.isReserve($0) }) {
            return ComparisonRead(comparison: .same, after: nil)
        }
        let committed = after.withUnsafeBytes { codec.startsWithFrame($0, chainedTo: v.lastID) }
        if committed { return ComparisonRead(comparison: .changed, after: Array(after)) }
        let torn = after.withUnsafeBytes { RecordCodec.isOneTornAppend($0, at: v.validLength) }
        return ComparisonRead(
            comparison: torn ? .sameWithTornTail : .sameWithDamagedTail, after: Array(after))
    }

    /// `count` bytes at `offset` (fewer if the file ends first).
    func readExactly(_ fd: Int32, count: Int, at offset: Int, path: String) throws(StorageIOError) -> [UInt8]
    {
        var out = [UInt8](repeating: 0, count: max(count, 0))
        var filled = 0
        while filled < out.count {
            let n = out.withUnsafeMutableBytes { buf in
                pread(fd, buf.baseAddress! + filled, buf.count - filled, off_t(offset + filled))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(operation: "read", path: path, errno: errno)
            }
            if n == 0 { break }
            filled += n
        }
        out.removeSubrange(filled...)
        return out
    }

    // MARK: - Appending

    public var appendsInPlace: Bool { true }

    /// A blocking step or a sync, once begun, is waited for (`blocking`, `sync`); only the waits for
    /// the commit lock can be cancelled, and they come before any write.
    public var cancelsOnlyBeforeWriting: Bool { true }

    @discardableResult
    public func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion
    {
        try await append(key, bytes: bytes, expected: expected, whenWritten: {})
    }

    @discardableResult
    public func append(
        _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
    ) async throws -> ObjectVersion {
        let target = path(of: key)
        try refuseWritesIfReadOnly(target)
        let (folders, name) = Self.split(key)
        guard bytes.count >= FileLayout.frameTrailerLength,
            let frameID = WriteID(bytes: bytes[(bytes.count - FileLayout.frameTrailerLength)...].prefix(16))
        else { throw InvalidRequestError("\(target): an append must be one change frame") }
        let expectedVersion = try expected.map { v in
            guard let parsed = AppendVersion(v) else {
                throw VersionMismatchError(location: target, expected: v.rawValue)
            }
            return parsed
        }
        let opened = try await blocking { [self] in try openFolder(folders, create: false, forWriting: true) }
        guard let dir = opened else {
            throw VersionMismatchError(
                location: target, expected: expected?.rawValue ?? "a file to append to")
        }
        defer { closeFolder(dir) }
        return try await withCommitLock(dir, path: Self.parent(of: target)) {
            hold async throws -> ObjectVersion in
            let landed = try await blocking { [self] in
                try writeFrame(
                    bytes, name: name, in: dir, path: target, expected: expectedVersion,
                    expectedText: expected?.rawValue, hold: hold)
            }
            let fd = landed.fd
            do {
                // The frame is where the fence expected it. On a local file system every process
                // reads it from one page cache, and no writer can change the file before this
                // fdatasync is over (and the frame cut if it failed): each takes the commit lock,
                // held until then, and checks the file again. So the caller may let the user's lock
                // go now, and the next writer prepare its change while the disk works.
                if expectedVersion != nil && landed.onLocalFileSystem { whenWritten() }
                let synced = await sync(io.datasync, fd)
                if synced.result != 0 {
                    let code = synced.errno
                    // The frame may not be durable, and after a failed writeback a later fdatasync
                    // reports success without writing it again: a frame chained to it could then be
                    // acknowledged and still be lost with it. Cut it while the commit lock is held.
                    // The cut is made durable too, so that a power cut does not bring the frame back.
                    var cut = await blocking { [self] in io.ftruncate(fd, landed.start) == 0 }
                    if cut { cut = await sync(io.datasync, fd).result == 0 }
                    if !cut {
                        throw StorageIOError(
                            operation: "fdatasync (and the frame could not be cut: run `carbonstore verify`)",
                            path: target, errno: code)
                    }
                    throw StorageIOError(operation: "fdatasync", path: target, errno: code)
                }
                // The file closed, which on NFS is a request to the server too. The version has no
                // change time: asking for it would make the next append stamp a fine-grained one
                // (`FileStatus`); the next read in this process records it (`getIfChanged`).
                await blocking { [self] in _ = io.close(fd) }
            } catch {
                await blocking { [self] in _ = io.close(fd) }
                throw error
            }
            guard let v = expectedVersion else {
                // Unfenced (the torture tests' negative controls): a version no file has, so that the
                // next read reads the file.
                return AppendVersion(fileID: frameID, validLength: landed.end, lastID: frameID).version
            }
            return AppendVersion(fileID: v.fileID, validLength: landed.start + bytes.count, lastID: frameID)
                .version
        }
    }

    /// Writes all of `bytes` to `fd` through `io` (at `offset`, or where the descriptor stands
    /// without one), again after an interruption or a short write; nil when done, otherwise the
    /// `errno` of the failed `write` (EIO for one that wrote nothing).
    func writeAll(_ bytes: [UInt8], to fd: Int32, at offset: Int? = nil) -> Int32? {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                let rest = UnsafeRawBufferPointer(rebasing: buf[written...])
                return offset.map { io.pwrite(fd, rest, $0 + written) } ?? io.write(fd, rest)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if n == 0 { return EIO }
            written += n
        }
        return nil
    }

    /// Where `writeFrame` put a frame: the open user file (the caller closes it), the offset the
    /// frame starts at and the one the file ends at, and whether the file is on a local file system.
    struct LandedFrame: Sendable {
        var fd: Int32
        var start: Int
        var end: Int
        var onLocalFileSystem: Bool
    }

    /// The blocking part of an append, under the commit lock: opens the user file `name` of an open
    /// folder, checks the fence against `expected` (cutting a torn append after it), writes `bytes`
    /// where the content read ends, and checks that they read back whole there. On a local file
    /// system the frame is written in place, into the zero bytes that an earlier append reserved
    /// after the content (`reserveEnd`), and an append that does not fit reserves more first: the
    /// file then does not grow at most appends, and their `fdatasync` writes the data alone, not the
    /// inode's new size. Elsewhere (NFS, EFS), and unfenced, the frame is appended with `O_APPEND`
    /// after a reserve is cut. On success the file is left open for its `fdatasync`; on a throw it
    /// is closed.
    func writeFrame(
        _ bytes: [UInt8], name: String, in dir: Int32, path target: String,
        expected expectedVersion: AppendVersion?, expectedText: String?, hold: CommitLockHold
    ) throws -> LandedFrame {
        // Written in place only where one page cache serves every writer and the commit lock cannot
        // be lost: an NFS client's write at an offset would cover a frame that a writer whose lease
        // lapsed appended meanwhile, where `O_APPEND` puts it after that frame, chained to nothing.
        let local = expectedVersion != nil && FileLock.isOnLocalFileSystem(dir)
        let inPlace = local && framesInPlace != false
        let fd = io.openat(
            dir, name, O_RDWR | (inPlace ? 0 : O_APPEND) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0)
        if fd < 0 {
            if errno == ENOENT {
                throw VersionMismatchError(location: target, expected: expectedText ?? "a file")
            }
            if errno == ELOOP { throw Self.unsafeEntry(in: dir, name, target) }
            throw StorageIOError(operation: "open for appending", path: target, errno: errno)
        }
        var landed = false
        defer { if !landed { _ = io.close(fd) } }
        guard let status = FileStatus.of(fd) else {
            throw StorageIOError(operation: "stat", path: target, errno: errno)
        }
        guard status.isRegularFile else { throw Self.unsafeEntry(in: dir, name, target) }
        // A file with other names (a hard link, as a `cp -al` snapshot of the data directory makes)
        // is never changed in place: the update writes the file anew, and the other names keep
        // what they had (`Store`).
        if status.links > 1 { throw LinkedUserFileError(path: target, links: status.links) }
        var size = status.size
        // A file written with other permissions (an older default) gets the configured ones,
        // as a rewrite would give them.
        if status.owner == Self.effectiveUser && (status.mode & 0o777) != fileMode {
            _ = fchmod(fd, fileMode)
        }
        /// Cuts the file to `length` (what is after it: `what`).
        func cut(to length: Int, _ what: String) throws {
            if io.ftruncate(fd, length) != 0 {
                throw StorageIOError(operation: "truncate \(what) of", path: target, errno: errno)
            }
            size = length
        }
        // The fence: the file must still be the content read. A torn append after it is cut.
        var start = size
        if let v = expectedVersion {
            switch try compare(fd, size: size, with: v, path: target).comparison {
            case .changed:
                throw VersionMismatchError(location: target, expected: v.version.rawValue)
            case .sameWithDamagedTail:
                throw DamagedTailError(path: target, offset: v.validLength, length: size - v.validLength)
            case .sameWithTornTail:
                try cut(to: v.validLength, "a torn append")
                // The cut made durable before the frame is written where the torn bytes were: the
                // cut zeroes them on disk. Otherwise a power cut during this frame's own sync could
                // leave sectors of it beside sectors of the torn append, a frame whose every sector
                // holds bytes and whose CRC fails, which readers must take for damage
                // (docs/FORMAT.md, 13.4).
                if io.datasync(fd) != 0 {
                    throw StorageIOError(
                        operation: "fdatasync after cutting a torn append of", path: target, errno: errno)
                }
            case .same where !inPlace && size > v.validLength:
                // A reserve, which `O_APPEND` would write after.
                try cut(to: v.validLength, "the reserve")
            case .same:
                break
            }
            start = v.validLength
        } else if size > 0 {
            // Unfenced (the torture tests' negative controls): at the end of the file, after a
            // reserve is cut, which readers would otherwise never read past.
            let content = try Self.readAll(fd, sizeHint: size, limit: maximumFileSize + 1, path: target)
            if let layout = content.withUnsafeBytes({ try? codec.scanLayout($0) }),
                layout.validLength < content.count,
                content[layout.validLength...].withUnsafeBytes({ RecordCodec.isReserve($0) })
            {
                try cut(to: layout.validLength, "the reserve")
                start = size
            }
        }
        guard start + bytes.count <= maximumFileSize else {
            throw FileTooLargeError(
                path: target, size: Int64(start + bytes.count), limit: Int64(maximumFileSize))
        }
        try checkCommitHold(since: hold.acquired, path: target)
        let end = start + bytes.count
        if inPlace {
            // Written in place, a frame is not moved out of another writer's way as `O_APPEND`
            // would move it: the lock held must be the folder's lock file still.
            guard Self.isCommitLockFile(hold.fd, status: hold.status, in: dir) else {
                throw VersionMismatchError(
                    location: target,
                    expected:
                        "the commit lock held to be \(Self.parent(of: target))/.commit.lock; that file was removed or replaced meanwhile (never remove a lock file under a serving process)"
                )
            }
            // Room first, then the frame: a crash between leaves zero bytes after the content.
            if end > size {
                let reserved = Self.reserveEnd(after: end, limit: maximumFileSize)
                if reserved > end {
                    if io.reserve(fd, size, reserved) == 0 {
                        reservedBytes.wrappingAdd(reserved - size, ordering: .relaxed)
                    } else {
                        // No room for a reserve (a disk or a quota nearly full): the zeros written,
                        // if any, are cut, and the frame goes without one.
                        let code = errno
                        if io.ftruncate(fd, size) != 0 {
                            throw StorageIOError(
                                operation: "reserve room for appends in", path: target, errno: code)
                        }
                    }
                }
            }
            if let code = writeAll(bytes, to: fd, at: start) {
                throw StorageIOError(operation: "append to", path: target, errno: code)
            }
        } else {
            if let code = writeAll(bytes, to: fd) {
                throw StorageIOError(operation: "append to", path: target, errno: code)
            }
            // With O_APPEND the frame lands at the end of the file, whatever a writer that lost
            // the commit lock (a lease lapsed on NFS) did meanwhile. Landing anywhere but right
            // after the content read, it is chained to nothing there and readers ignore it: this
            // write did not happen, and the next writer cuts it.
            let landedEnd = Int(lseek(fd, 0, SEEK_CUR))
            guard expectedVersion == nil || landedEnd == end else {
                throw VersionMismatchError(
                    location: target,
                    expected:
                        "a frame at offset \(start); it landed at \(landedEnd - bytes.count) after another writer's"
                )
            }
        }
        // The frame must read back whole where it was meant to land: a writer that lost the
        // commit lock may have cut it as torn, or put its own bytes between its pieces, and
        // the file still end at the expected offset.
        if expectedVersion != nil, try readExactly(fd, count: bytes.count, at: start, path: target) != bytes {
            throw VersionMismatchError(
                location: target, expected: "the frame written at offset \(start); other bytes are there")
        }
        landed = true
        return LandedFrame(fd: fd, start: start, end: end, onLocalFileSystem: local)
    }

    /// The least room an append that does not fit in the file leaves after its frame: the file is
    /// extended to the next multiple of 4 KiB (a disk block, allocated whole anyway) past the frame,
    /// or to the one after when that would leave less than this. The next 8 to 40 appends of a
    /// hundred-odd bytes then land in place, and a file takes at most one disk block more than its
    /// content.
    static let minimumReserve = 1024

    /// Where the file ends once an append ending at `end` has reserved room (`minimumReserve`),
    /// never beyond `limit` (the largest file the engine reads).
    static func reserveEnd(after end: Int, limit: Int) -> Int {
        var reserved = (end + 4095) / 4096 * 4096
        if reserved - end < minimumReserve { reserved += 4096 }
        return min(reserved, max(limit, end))
    }

    /// The zero bytes this storage's appends have written to reserve room (`writeFrame`), which
    /// `StoreEvents.bytesWritten` does not count (it counts frames and snapshots): for the
    /// benchmarks' bytes written per append.
    public var reservedByteCount: Int { reservedBytes.load(ordering: .relaxed) }

    /// Whether `fd`, the commit lock a writer holds, is the lock file named `.commit.lock` in the
    /// folder `dir` now (the same file: device and inode). `status`: the descriptor's file as found
    /// when the lock was opened (an open descriptor's device and inode never change), if known.
    /// Asked without time stamps (`FileStatus`).
    static func isCommitLockFile(_ fd: Int32, status: FileStatus? = nil, in dir: Int32) -> Bool {
        guard let held = status ?? FileStatus.of(fd), let named = FileStatus.of(".commit.lock", in: dir)
        else {
            return false
        }
        return held.isSameFile(as: named)
    }

    /// This process's effective user, which owns the files it creates.
    static let effectiveUser = geteuid()

    /// Under the commit lock, so that an append in flight has finished (durable, or cut after a
    /// failed fdatasync): whether the file still has `version`'s content (bytes after it that are
    /// not a committed frame are not content), then that content made durable with an
    /// fdatasync, which also covers a frame whose writer died between its write and its own
    /// fdatasync.
    public func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool {
        // A version-1 file is replaced by a rename, durable before anyone can read it.
        guard let v = AppendVersion(version) else { return true }
        let target = path(of: key)
        let (folders, name) = Self.split(key)
        let opened = try await blocking { [self] in try openFolder(folders, create: false, forWriting: true) }
        guard let dir = opened else { return false }
        defer { closeFolder(dir) }
        return try await withCommitLock(dir, path: Self.parent(of: target)) { _ async throws -> Bool in
            // The user file, open, if it still has the version's content.
            let userFile = try await blocking { [self] () throws -> Int32? in
                guard
                    let (fd, size, _) = try openUserFile(name: name, in: dir, path: target, changeTime: false)
                else { return nil }
                var keep = false
                defer { if !keep { _ = Glibc.close(fd) } }
                if case .changed = try compare(fd, size: size, with: v, path: target).comparison {
                    return nil
                }
                keep = true
                return fd
            }
            guard let fd = userFile else { return false }
            let synced = await sync(io.datasync, fd)
            await blocking { _ = Glibc.close(fd) }
            if synced.result != 0 {
                throw StorageIOError(operation: "fdatasync", path: target, errno: synced.errno)
            }
            return true
        }
    }

    // MARK: - Writing

    @discardableResult
    public func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        let target = path(of: key)
        try refuseWritesIfReadOnly(target)
        let (folders, name) = Self.split(key)
        guard let dir = try await blocking({ [self] in try openFolder(folders, create: true, durable: true) })
        else {
            throw StorageIOError(operation: "open directory", path: Self.parent(of: target), errno: ENOENT)
        }
        defer { closeFolder(dir) }
        let temp =
            ".tmp-" + name + "." + String(getpid()) + "."
            + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        do {
            try await writeTemporary(temp, in: dir, path: Self.parent(of: target) + "/" + temp, bytes: bytes)
        } catch let error as StorageIOError where error.errno == ENOSPC || error.errno == EDQUOT {
            // Nothing of the user's file changed (the new one is removed): a writer that can append
            // its change instead does (`Store`).
            throw NoRoomToRewriteError(underlying: error, bytes: bytes.count, folder: Self.parent(of: target))
        }
        do {
            return try await withCommitLock(dir, path: Self.parent(of: target)) {
                hold async throws -> ObjectVersion in
                try await blocking { [self] in
                    try check(condition, name: name, in: dir, path: target)
                    try checkCommitHold(since: hold.acquired, path: target)
                    if io.renameat(dir, temp, name) != 0 {
                        throw StorageIOError(
                            operation: "rename to \(target) from", path: Self.parent(of: target) + "/" + temp,
                            errno: errno)
                    }
                }
                try await fsyncDirectory(dir, path: Self.parent(of: target))
                // The change time after the rename (which moves it), still under the commit lock.
                return await blocking { [self] in
                    var st = stat()
                    let changed = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? ChangeTime(st) : nil
                    return version(of: bytes, changed: changed)
                }
            }
        } catch {
            _ = io.unlinkat(dir, temp)
            throw error
        }
    }

    /// Creates, writes, fsyncs and closes a new temporary file in an open folder.
    func writeTemporary(_ temp: String, in dir: Int32, path: String, bytes: [UInt8]) async throws {
        @Sendable func fail(_ fd: Int32, _ op: String, _ code: Int32) -> StorageIOError {
            _ = io.close(fd)
            _ = io.unlinkat(dir, temp)
            return StorageIOError(operation: op, path: path, errno: code)
        }
        let fd = try await blocking { [self] () throws(StorageIOError) -> Int32 in
            let fd = io.openat(dir, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fileMode)
            guard fd >= 0 else { throw StorageIOError(operation: "create", path: path, errno: errno) }
            // The umask may have removed bits that the configured mode grants (mode=0660).
            if fchmod(fd, fileMode) != 0 { throw fail(fd, "chmod", errno) }
            giveNewEntryOwner(fd)
            if let code = writeAll(bytes, to: fd) { throw fail(fd, "write", code) }
            return fd
        }
        let synced = await sync(io.fsync, fd)
        if synced.result != 0 { throw fail(fd, "fsync", synced.errno) }
        try await blocking { [self] () throws(StorageIOError) in
            if io.close(fd) != 0 {
                let code = errno
                _ = io.unlinkat(dir, temp)
                throw StorageIOError(operation: "close", path: path, errno: code)
            }
        }
    }

    /// `allowDamagedTail`: a delete may remove a file whose tail is damaged; a write never
    /// replaces one (a new snapshot would drop the changes the damage may hide).
    func check(
        _ condition: WriteCondition, name: String, in dir: Int32, path: String, allowDamagedTail: Bool = false
    ) throws {
        switch condition {
        case .unconditional:
            return
        case .mustNotExist:
            if let current = try read(name, in: dir, path: path) {
                throw VersionMismatchError(location: path, expected: "no file, found \(current.version)")
            }
        case .mustMatch(let expected):
            if let v = AppendVersion(expected) {
                // A version-2 file is checked by its ids, without reading it whole.
                guard let (fd, size, _) = try openUserFile(name: name, in: dir, path: path, changeTime: false)
                else { throw VersionMismatchError(location: path, expected: expected.rawValue) }
                defer { _ = Glibc.close(fd) }
                switch try compare(fd, size: size, with: v, path: path).comparison {
                case .changed:
                    throw VersionMismatchError(location: path, expected: expected.rawValue)
                case .sameWithDamagedTail where !allowDamagedTail:
                    throw DamagedTailError(path: path, offset: v.validLength, length: size - v.validLength)
                default:
                    return
                }
            }
            let current = try read(name, in: dir, path: path)
            if current?.version != expected {
                throw VersionMismatchError(location: path, expected: expected.rawValue)
            }
        }
    }

    /// Refuses to rename when the commit lock has been held for longer than it can be trusted.
    /// The commit lock a writer holds (`withCommitLock`): since when, and its descriptor.
    struct CommitLockHold: Sendable {
        var acquired: ContinuousClock.Instant
        var fd: Int32
        /// The lock file's status when it was opened, or reused (`FileLock.status`).
        var status: FileStatus? = nil
    }

    func checkCommitHold(since acquired: ContinuousClock.Instant, path: String)
        throws(CommitLockHeldTooLongError)
    {
        let held = ContinuousClock.now - acquired
        if held > maximumCommitHold {
            throw CommitLockHeldTooLongError(
                path: path, heldMilliseconds: held.milliseconds,
                limitMilliseconds: maximumCommitHold.milliseconds)
        }
    }

    func fsyncDirectory(_ dir: Int32, path: String) async throws(StorageIOError) {
        let synced = await sync(io.fsync, dir)
        if synced.result != 0 {
            throw StorageIOError(operation: "fsync directory", path: path, errno: synced.errno)
        }
    }

    /// Runs `body` holding the folder's commit lock, which serialises check-and-rename between the
    /// tasks and processes of every host that mounts the volume. `body` gets the instant at which
    /// the lock was acquired. Its steps, and the release, go first on `SyncThreads` (`LockHold`).
    func withCommitLock<T>(
        _ dir: Int32, path: String, _ body: (CommitLockHold) async throws -> T
    ) async throws -> T {
        let lock = try await FileLock.acquire(
            ".commit.lock", in: dir, path: path + "/.commit.lock", mode: fileMode, wait: commitLockWait,
            on: self)
        guard let lock else {
            throw CommitLockTimeoutError(
                path: path + "/.commit.lock",
                waitedMilliseconds: commitLockWait.components.seconds * 1000
                    + commitLockWait.components.attoseconds / 1_000_000_000_000_000)
        }
        return try await LockHold.$active.withValue(true) {
            let result: Result<T, any Error>
            do {
                result = .success(
                    try await body(CommitLockHold(acquired: lock.acquired, fd: lock.fd, status: lock.status)))
            } catch {
                result = .failure(error)
            }
            // On NFS and EFS, `flock(LOCK_UN)` is a request to the server.
            await blocking { lock.release() }
            return try result.get()
        }
    }

    /// Runs `call` (`io.fsync` or `io.datasync`) on `fd` and returns its result, with the `errno` the
    /// call left (read on the thread that made the call, so that no suspension or other call can
    /// change it on the way). While this storage's syncs take under `offloadSyncsAbove` on average (a local
    /// disk: a fraction of a millisecond), the call runs on the caller's thread. Once they take
    /// longer (EFS or NFS, a network block volume: milliseconds), it runs on `SyncThreads`, so that
    /// it does not hold one of the cooperative pool's threads, which every other task of the
    /// process needs, and syncs of different users overlap. Every sync's time updates the average,
    /// so syncs come back to the caller's thread when they are fast again. The caller holds its
    /// locks through either.
    func sync(
        _ call: @escaping @Sendable (Int32) -> Int32, _ fd: Int32
    ) async -> (result: Int32, errno: Int32) {
        offloadsSyncs
            ? await syncThreads.run(first: LockHold.active) { [self] in timedSync(call, fd) }
            : timedSync(call, fd)
    }

    /// Runs one blocking step of an operation (system calls that wait for a disk or a server) and
    /// returns what it returned: on `SyncThreads` when `offloadsFileWork` (a network file system),
    /// so that the waiting task gives its thread of the cooperative pool back; otherwise on the
    /// caller's thread. A step reads `errno` itself, on the thread that made the call; it is not
    /// carried across. Not cancellable: a step, once begun, is waited for. The steps of a task
    /// that holds a lock go before the others (`LockHold`).
    func blocking<T: Sendable, E: Error>(_ step: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
        let underLock = LockHold.active
        guard offloadsFileWork else {
            beforeBlockingStep?(underLock)
            return try step()
        }
        // The operation's folder goes with the step to the thread (`withOperation`).
        let scope = Self.operationFolder
        return try await syncThreads.run(first: underLock) { [beforeBlockingStep] () -> Result<T, E> in
            beforeBlockingStep?(underLock)
            return Self.$operationFolder.withValue(scope) { Result { () throws(E) -> T in try step() } }
        }.get()
    }

    /// Runs `call` on `fd` on this thread, and adds its time to the average.
    func timedSync(_ call: (Int32) -> Int32, _ fd: Int32) -> (result: Int32, errno: Int32) {
        let start = ContinuousClock.now
        let result = call(fd)
        let code = errno
        let took = (ContinuousClock.now - start).nanoseconds
        syncAverage.withLock { $0 += (took - $0) / 4 }
        return (result, code)
    }

    /// Whether this storage's syncs now run on `SyncThreads` (their average is past the limit).
    var offloadsSyncs: Bool {
        offloadsFileWork || syncAverage.withLock { $0 } > offloadSyncsAboveNanoseconds
    }

    // MARK: - Deleting

    @discardableResult
    public func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        try refuseWritesIfReadOnly(path(of: key))
        let target = path(of: key)
        let (folders, name) = Self.split(key)
        let opened = try await blocking { [self] in try openFolder(folders, create: false, forWriting: true) }
        guard let dir = opened else {
            if case .mustMatch(let v) = condition {
                throw VersionMismatchError(location: target, expected: v.rawValue)
            }
            return false
        }
        defer { closeFolder(dir) }
        return try await withCommitLock(dir, path: Self.parent(of: target)) { hold async throws -> Bool in
            let removed = try await blocking { [self] in
                try check(condition, name: name, in: dir, path: target, allowDamagedTail: true)
                try checkCommitHold(since: hold.acquired, path: target)
                if io.unlinkat(dir, name) != 0 {
                    if errno == ENOENT { return false }
                    throw StorageIOError(operation: "unlink", path: target, errno: errno)
                }
                return true
            }
            guard removed else { return false }
            try await fsyncDirectory(dir, path: Self.parent(of: target))
            return true
        }
    }

    // MARK: - Listing

    public func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        try await blocking { [self] in try listNow(prefix: prefix, startAfter: startAfter, limit: limit) }
    }

    /// `list` for a scrub (`Store.verify`): a folder below the root that cannot be read (permission
    /// denied, an I/O error) is set aside, with its error, instead of failing the listing, so that
    /// the folders after it are still listed.
    package func listSkippingUnreadableFolders(prefix: String, startAfter: String?, limit: Int) async throws
        -> (listing: ObjectListing, unreadable: [StorageIOError])
    {
        try await blocking { [self] in
            var unreadable: [StorageIOError] = []
            let listing = try listNow(prefix: prefix, startAfter: startAfter, limit: limit) {
                unreadable.append($0)
            }
            return (listing, unreadable)
        }
    }

    /// `list`, on this thread; with `skipUnreadable`, a folder below the root that cannot be read is
    /// given to it and skipped.
    func listNow(
        prefix: String, startAfter: String?, limit: Int, skipUnreadable: ((StorageIOError) -> Void)? = nil
    ) throws -> ObjectListing {
        try checkRootDevice()
        var keys: [String] = []
        let limit = max(limit, 1)
        var more = false
        var base = prefix
        if !base.isEmpty && !base.hasSuffix("/") {
            // Only folder prefixes are meaningful on a volume.
            base = Self.parent(of: "/" + base).dropFirst() + "/"
            if base == "/" { base = "" }
        }
        try walk(
            relative: String(base.dropLast(base.isEmpty ? 0 : 1)), startAfter: startAfter,
            skipUnreadable: skipUnreadable
        ) { key in
            guard key.hasPrefix(prefix) else { return true }
            if keys.count == limit {
                more = true
                return false
            }
            keys.append(key)
            return true
        }
        return ObjectListing(keys: keys, nextStartAfter: more ? keys.last : nil)
    }

    /// Visits the keys of user files under `relative` in ascending byte order; `visit` returns false
    /// to stop.
    @discardableResult
    func walk(
        relative: String, startAfter: String?, skipUnreadable: ((StorageIOError) -> Void)? = nil,
        _ visit: (String) throws -> Bool
    ) throws -> Bool {
        let dirPath = relative.isEmpty ? root : root + "/" + relative
        let entries: [Entry]
        do {
            entries = try Self.entries(of: dirPath)
        } catch {
            guard let skipUnreadable, !relative.isEmpty else { throw error }
            skipUnreadable(error)
            return true
        }
        for entry in entries {
            let key = relative.isEmpty ? entry.name : relative + "/" + entry.name
            if entry.isDirectory {
                let sub = key + "/"
                if let after = startAfter, !after.hasPrefix(sub),
                    sub.utf8.lexicographicallyPrecedes(after.utf8)
                {
                    continue
                }
                if try !walk(relative: key, startAfter: startAfter, skipUnreadable: skipUnreadable, visit) {
                    return false
                }
            } else if key.hasSuffix(UserKeys.fileExtension) {
                if let after = startAfter, !after.utf8.lexicographicallyPrecedes(key.utf8) { continue }
                if try !visit(key) { return false }
            }
        }
        return true
    }

    /// The file name of a directory entry.
    static func name(of entry: UnsafeMutablePointer<dirent>) -> String {
        withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
    }

    struct Entry {
        var name: String
        var isDirectory: Bool
    }

    /// The visible entries of a directory (names starting with `.` are ours: locks and temporary
    /// files), sorted so that visiting them gives keys in byte order.
    static func entries(of dirPath: String) throws(StorageIOError) -> [Entry] {
        guard let dir = opendir(dirPath) else {
            if errno == ENOENT { return [] }
            throw StorageIOError(operation: "open directory", path: dirPath, errno: errno)
        }
        defer { closedir(dir) }
        var result: [Entry] = []
        while let ent = readdir(dir) {
            let name = Self.name(of: ent)
            if name.hasPrefix(".") { continue }
            var isDir = Int32(ent.pointee.d_type) == Int32(DT_DIR)
            var isFile = Int32(ent.pointee.d_type) == Int32(DT_REG)
            if Int32(ent.pointee.d_type) == Int32(DT_UNKNOWN) {
                var st = stat()
                let found = lstat(dirPath + "/" + name, &st) == 0
                isDir = found && (st.st_mode & S_IFMT) == S_IFDIR
                isFile = found && (st.st_mode & S_IFMT) == S_IFREG
            }
            // Symbolic links and other kinds of entry are never ours: skipped.
            guard isDir || isFile else { continue }
            result.append(Entry(name: name, isDirectory: isDir))
        }
        return result.sorted {
            ($0.isDirectory ? $0.name + "/" : $0.name).utf8.lexicographicallyPrecedes(
                ($1.isDirectory ? $1.name + "/" : $1.name).utf8)
        }
    }

    // MARK: - Temporary files of crashed writers

    /// A temporary file left by a writer that crashed between creating it and renaming it.
    public struct TemporaryFile: Sendable, Hashable {
        public var path: String
        public var ageSeconds: Int64
    }

    /// Every temporary file under the root, with its age.
    public func temporaryFiles() throws -> [TemporaryFile] {
        try scanTree().temporary
    }

    /// Entries below the root that no writer makes and that no reader will use: symbolic links,
    /// FIFOs, sockets and devices, and folders named like user files. Listing skips them, so
    /// `verify` reports them here.
    public func unexpectedEntries() throws -> [String] {
        try scanTree().unexpected
    }

    /// Folders below the root that cannot be read are set aside in `unreadable`.
    func scanTree() throws -> (temporary: [TemporaryFile], unexpected: [String], unreadable: [StorageIOError])
    {
        try checkRootDevice()
        var found: [TemporaryFile] = []
        var unexpected: [String] = []
        var unreadable: [StorageIOError] = []
        let now = Int64(time(nil))
        func scan(_ dir: String) throws {
            guard let d = opendir(dir) else {
                if errno == ENOENT { return }
                let error = StorageIOError(operation: "open directory", path: dir, errno: errno)
                guard dir != root else { throw error }
                unreadable.append(error)
                return
            }
            defer { closedir(d) }
            var subdirs: [String] = []
            while let ent = readdir(d) {
                let name = Self.name(of: ent)
                if name == "." || name == ".." { continue }
                let full = dir + "/" + name
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                let kind = st.st_mode & S_IFMT
                if kind == S_IFDIR {
                    if name.hasSuffix(UserKeys.fileExtension) { unexpected.append(full) }
                    subdirs.append(full)
                } else if kind != S_IFREG {
                    unexpected.append(full)
                } else if Self.isTemporaryFile(
                    name, in: dir == root ? "" : String(dir.dropFirst(root.count + 1)))
                {
                    found.append(TemporaryFile(path: full, ageSeconds: now - Int64(st.st_mtim.tv_sec)))
                }
            }
            for s in subdirs { try scan(s) }
        }
        try scan(root)
        return (found.sorted { $0.path < $1.path }, unexpected.sorted(), unreadable)
    }

    /// Whether the data directory exists (a storage opened for reading only does not create it).
    public var rootExists: Bool {
        var st = stat()
        return stat(root, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Throws unless `parent`, the folder a missing data directory `root` would be in, is a
    /// directory: a missing one is an unmounted volume more often than not. `what`: what `root`
    /// then cannot be (`read`, `created`).
    static func requireDirectory(_ parent: String, asParentOf root: String, orItCannotBe what: String)
        throws(InvalidRequestError)
    {
        var st = stat()
        guard stat(parent, &st) == 0 else {
            throw InvalidRequestError(
                "data directory \(root) cannot be \(what): its parent \(parent) does not exist (is the volume mounted?)"
            )
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw InvalidRequestError(
                "data directory \(root) cannot be \(what): its parent \(parent) is not a directory")
        }
    }

    /// Throws when `root`, which `stat` could not find, is a symbolic link (to something missing).
    static func refuseDanglingLink(_ root: String) throws(InvalidRequestError) {
        var link = stat()
        if lstat(root, &link) == 0, (link.st_mode & S_IFMT) == S_IFLNK {
            throw InvalidRequestError(
                "data directory \(root) is a symbolic link to something that does not exist; create its target or point the storage URI at the directory itself"
            )
        }
    }

    /// Throws when this storage was opened for reading only (`readOnly`).
    func refuseWritesIfReadOnly(_ target: String) throws(ReadOnlyStoreError) {
        if readOnly { throw ReadOnlyStoreError(location: target) }
    }

    /// Whether `name`, in the folder `folder` (relative to the root, "" for the root), is a
    /// temporary file that a write of this engine makes (`put`): `.tmp-` + the name of a user file
    /// + `.` + a process id + `.` + up to 8 hex digits, in the folder of that user's file (the user
    /// file's key, after any prefix, is one that `UserKeys` makes). Other files, even named
    /// `.tmp-…`, are not the engine's: `verify` neither lists nor removes them.
    static func isTemporaryFile(_ name: String, in folder: String) -> Bool {
        guard name.hasPrefix(".tmp-") else { return false }
        let parts = name.dropFirst(5).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 4, let random = parts.last, let pid = parts.dropLast().last,
            (1...8).contains(random.count), random.utf8.allSatisfy({ isLowerHexDigit($0) }),
            !pid.isEmpty, pid.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else { return false }
        let userFile = parts.dropLast(2).joined(separator: ".")
        let key = folder.isEmpty ? userFile : folder + "/" + userFile
        // The prefix, if any, is the leading folders: each split is tried.
        let segments = folder.isEmpty ? [] : folder.split(separator: "/", omittingEmptySubsequences: false)
        for i in 0...segments.count {
            let prefix = segments.prefix(i).joined(separator: "/")
            if UserKeys(prefix: prefix).userID(forKey: key) != nil { return true }
        }
        return false
    }

    static func isLowerHexDigit(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
            || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }

    /// Removes temporary files older than `minimumAge`. Safe while writers run: a writer whose
    /// temporary file disappears fails its rename and reports the error; it never reports success.
    @discardableResult
    public func removeTemporaryFiles(olderThan minimumAge: Duration) throws -> [TemporaryFile] {
        try refuseWritesIfReadOnly(root)
        let limit = minimumAge.components.seconds
        var removed: [TemporaryFile] = []
        for t in try temporaryFiles() where t.ageSeconds >= limit {
            // Unlinked relative to its folder, reached without following links.
            let relative = String(t.path.dropFirst(root.count + 1))
            let (folders, name) = Self.split(relative)
            guard let dir = try openFolder(folders, create: false) else { continue }
            defer { closeFolder(dir) }
            if io.unlinkat(dir, name) == 0 { removed.append(t) }
        }
        return removed
    }

    // MARK: - Paths

    static func absolute(_ path: String) throws -> String {
        var p = path
        if !p.hasPrefix("/") {
            guard let cwd = getcwd(nil, 0) else {
                throw StorageIOError(operation: "getcwd", path: path, errno: errno)
            }
            defer { free(cwd) }
            p = String(cString: cwd) + "/" + p
        }
        // Normalise: drop empty and "." segments, resolve "..".
        var parts: [Substring] = []
        for seg in p.split(separator: "/", omittingEmptySubsequences: true) {
            if seg == "." { continue }
            if seg == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(seg)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func baseName(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
