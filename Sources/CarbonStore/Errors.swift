import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What kind of failure an error is. Callers (the command-line tool, the HTTP service) map kinds to
/// exit codes and status codes without knowing the concrete error types.
public enum ErrorKind: String, Sendable, Hashable {
    /// The request or configuration is wrong; retrying the same thing fails the same way.
    case invalidInput
    case notFound
    /// Someone else changed the data first, or an id is taken by different content.
    case conflict
    /// A stored file cannot be decoded. It is left in place for an operator.
    case corrupt
    /// The user stayed locked by another writer for longer than this writer may wait.
    case lockTimeout
    /// This writer's lease ran out before it committed; nothing was written.
    case leaseExpired
    /// Storage could not be reached or refused the operation for a reason that may pass.
    case unavailable
    /// The storage failed (an I/O error, a full disk).
    case storageFailure
    /// The storage refused this process access: a file or directory it may not read or write
    /// (EACCES, EPERM), a store opened for reading only (`ReadOnlyStoreError`), or an S3 or DynamoDB
    /// AccessDenied. An operator must fix the permissions.
    case permissionDenied

    /// The HTTP status code an API reports for this kind.
    public var httpStatus: Int {
        switch self {
        case .invalidInput: return 400
        case .notFound: return 404
        case .conflict: return 409
        case .corrupt: return 500
        case .lockTimeout: return 503
        case .leaseExpired: return 503
        case .unavailable: return 503
        case .storageFailure: return 500
        case .permissionDenied: return 500
        }
    }

    /// Whether repeating the same request later may succeed.
    public var isTransient: Bool {
        switch self {
        case .lockTimeout, .leaseExpired, .unavailable, .conflict: return true
        case .invalidInput, .notFound, .corrupt, .storageFailure, .permissionDenied: return false
        }
    }
}

/// The one protocol every CarbonStore error conforms to: a kind, and a description that is one
/// line saying what failed, for which user or key, and why.
public protocol CarbonStoreError: Error, Sendable, CustomStringConvertible {
    var kind: ErrorKind { get }
}

/// A storage URI that cannot be used, with the problem and a correct example.
public struct InvalidStorageURIError: CarbonStoreError, Hashable {
    public var uri: String
    public var problem: String
    public var example: String

    public init(uri: String, problem: String, example: String) {
        self.uri = uri
        self.problem = problem
        self.example = example
    }
    public var kind: ErrorKind { .invalidInput }

    public var description: String {
        "invalid storage URI '\(uri)': \(problem). Example: \(example)"
    }
}

/// A user id that CarbonStore does not accept.
public struct InvalidUserIDError: CarbonStoreError, Hashable {
    public var userID: String
    public var reason: String

    public init(userID: String, reason: String) {
        self.userID = userID
        self.reason = reason
    }
    public var kind: ErrorKind { .invalidInput }

    public var description: String {
        let shown = userID.count > 60 ? String(userID.prefix(57)) + "..." : userID
        return "invalid user id '\(shown)': \(reason)"
    }
}

/// A request that is not valid, e.g. a malformed amount or a conflicting option.
public struct InvalidRequestError: CarbonStoreError, Hashable {
    public var message: String
    public var kind: ErrorKind { .invalidInput }
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public struct UserNotFoundError: CarbonStoreError, Hashable {
    public var userID: String

    public init(userID: String) {
        self.userID = userID
    }
    public var kind: ErrorKind { .notFound }
    public var description: String { "user '\(userID)' does not exist" }
}

/// A stored user file that does not decode. CarbonStore never replaces such a file on its own.
public struct CorruptUserFileError: CarbonStoreError, Hashable {
    public var userID: String?
    public var location: String
    public var reason: String

    public init(userID: String?, location: String, reason: String) {
        self.userID = userID
        self.location = location
        self.reason = reason
    }
    public var kind: ErrorKind { .corrupt }

    public var description: String {
        let who = userID.map { "of user '\($0)' " } ?? ""
        return
            "user file \(who)at \(location) is damaged: \(reason). It was left untouched; restore it from a backup or inspect it with 'carbonstore file inspect'"
    }
}

/// The user stayed locked by someone else for the whole wait.
public struct LockTimeoutError: CarbonStoreError, Hashable {
    public var userID: String
    public var waitedMilliseconds: Int64
    public var holder: String?

    public init(userID: String, waitedMilliseconds: Int64, holder: String?) {
        self.userID = userID
        self.waitedMilliseconds = waitedMilliseconds
        self.holder = holder
    }
    public var kind: ErrorKind { .lockTimeout }

    public var description: String {
        let who = holder.map { " by \($0)" } ?? ""
        return
            "timed out after \(waitedMilliseconds) ms waiting for the write lock of user '\(userID)', held\(who); retry later or raise the storage URI's wait (ms)"
    }
}

/// A user file's commit lock stayed held for the whole wait (30 s): a writer stopped or hung in its
/// commit window (a frozen process, a hung volume). Nothing was written; retrying later is safe.
public struct CommitLockTimeoutError: CarbonStoreError, Hashable {
    /// The commit lock file.
    public var path: String
    public var waitedMilliseconds: Int64

    public init(path: String, waitedMilliseconds: Int64) {
        self.path = path
        self.waitedMilliseconds = waitedMilliseconds
    }

    public var kind: ErrorKind { .lockTimeout }

    public var description: String {
        "timed out after \(waitedMilliseconds) ms waiting for the commit lock \(path): a stopped or hung writer holds it (`lslocks -o PID,COMMAND,BLOCKED,PATH` names it on this host, on the line of that path that is not blocked); nothing was written; retry later"
    }
}

/// A writer's lease ran out (it was paused or too slow) before it committed; nothing was written.
public struct LeaseExpiredError: CarbonStoreError, Hashable {
    public var userID: String
    public var operationID: String

    public init(userID: String, operationID: String) {
        self.userID = userID
        self.operationID = operationID
    }
    public var kind: ErrorKind { .leaseExpired }

    public var description: String {
        "the write lock of user '\(userID)' (operation \(operationID)) expired before the update was committed; nothing was written, retry the update"
    }
}

/// Another writer committed between our read and our write, more often than we retry.
public struct WriteConflictError: CarbonStoreError, Hashable {
    public var userID: String
    public var attempts: Int

    public init(userID: String, attempts: Int) {
        self.userID = userID
        self.attempts = attempts
    }
    public var kind: ErrorKind { .conflict }

    public var description: String {
        "user '\(userID)' was changed by another writer during each of \(attempts) attempts; nothing was written, retry the update"
    }
}

/// The storage refused a conditional write or delete because the object changed (the fence).
public struct VersionMismatchError: CarbonStoreError, Hashable {
    public var location: String
    public var expected: String

    public init(location: String, expected: String) {
        self.location = location
        self.expected = expected
    }
    public var kind: ErrorKind { .conflict }

    public var description: String {
        "\(location) changed since it was read (expected \(expected)); the write was not made"
    }
}

/// A write (an update, a delete, removing temporary files) through a store opened for reading only
/// (`StoreOptions.readOnly`), refused before any lock is taken.
public struct ReadOnlyStoreError: CarbonStoreError, Hashable {
    /// What was to be written: a user file's location, or the data directory.
    public var location: String

    public init(location: String) { self.location = location }

    public var kind: ErrorKind { .permissionDenied }
    public var description: String {
        "\(location): this store was opened for reading only (StoreOptions.readOnly); open it without readOnly to write"
    }
}

/// A `path:` data directory that does not exist, where a command needs one (`carbonstore verify`:
/// a scrub of a mistyped path, or of a volume not mounted, must not pass for a healthy store).
public struct DataDirectoryMissingError: CarbonStoreError, Hashable {
    public var path: String

    public init(path: String) { self.path = path }

    public var kind: ErrorKind { .notFound }
    public var description: String {
        "data directory \(path) does not exist: nothing to verify (is the path right, and the volume mounted?)"
    }
}

/// An operating-system call of the file backend failed.
public struct StorageIOError: CarbonStoreError, Hashable {
    public var operation: String
    public var path: String
    public var errno: Int32
    /// `permissionDenied` for EACCES and EPERM, else `storageFailure` (EROFS included: a volume
    /// that went read-only after I/O errors is a storage failure, not a matter of permissions).
    public var kind: ErrorKind { errno == EACCES || errno == EPERM ? .permissionDenied : .storageFailure }

    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(path) failed: \(systemErrorMessage(errno)) (errno \(errno))"
    }
}

/// The data directory, opened by its path, is on another device than when the storage was opened
/// for writing: a volume was mounted over it (or over a folder above it) after the process began
/// using it, or unmounted from under it. Nothing is read or written there: the process's writes
/// would land where the other processes do not look, or hide under the mount. A restart uses the
/// directory as it is then.
public struct DataDirectoryChangedError: CarbonStoreError, Hashable {
    public var path: String
    /// The device the directory is on now (`st_dev`), and the one it was on when opened.
    public var device: UInt64
    public var opened: UInt64

    public init(path: String, device: UInt64, opened: UInt64) {
        self.path = path
        self.device = device
        self.opened = opened
    }

    public var kind: ErrorKind { .storageFailure }

    /// `major:minor` of a Linux device number.
    static func name(_ dev: UInt64) -> String {
        let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~0xFFF)
        let minor = (dev & 0xFF) | ((dev >> 12) & ~0xFF)
        return "\(major):\(minor)"
    }

    public var description: String {
        "the data directory \(path) is on another file system (device \(Self.name(device))) than when this process opened it (device \(Self.name(opened))): a volume was mounted over it or unmounted meanwhile, so nothing is read or written there; check that the volume mounted is the one meant (what was written before the change is in the directory the mount covers, or on the volume unmounted), then restart the process"
    }
}

/// A user's file could not be written whole (a new snapshot: the first write, a compaction, a
/// version-1 file's upgrade) because the volume or the quota is full (`ENOSPC`, `EDQUOT`) while
/// the new file was written beside the old one. Nothing of the user's file changed, and the new
/// file was removed. An update that can append its change instead does so (`Store.update`); this
/// error reaches the caller only when it cannot.
public struct NoRoomToRewriteError: CarbonStoreError, Hashable {
    /// The failed step on the new file (create, write, fsync or close).
    public var underlying: StorageIOError
    /// The size of the new file.
    public var bytes: Int
    /// The folder it was written in.
    public var folder: String

    public init(underlying: StorageIOError, bytes: Int, folder: String) {
        self.underlying = underlying
        self.bytes = bytes
        self.folder = folder
    }

    public var kind: ErrorKind { underlying.kind }

    public var description: String {
        "\(underlying.description); the user's file is written whole here (\(bytes) bytes, in a new file that then replaces the old one, if any), which needs that much free space in \(folder): free space on the volume or raise the quota; nothing of the user's file changed"
    }
}

/// A user's file has more than one name (a hard link, as a `cp -al` snapshot of the data
/// directory makes): an append would change it under every name. Nothing was written; an update
/// writes the file anew instead (`Store.update`), which leaves the other names as they were.
public struct LinkedUserFileError: CarbonStoreError, Hashable {
    public var path: String
    public var links: Int

    public init(path: String, links: Int) {
        self.path = path
        self.links = links
    }

    public var kind: ErrorKind { .storageFailure }

    public var description: String {
        "\(path) has \(links) names (hard links): it is written anew rather than appended to, so that the other names keep their content"
    }
}

/// Something that is not available in this build or configuration.
public struct UnsupportedError: CarbonStoreError, Hashable {
    public var message: String
    public var kind: ErrorKind { .invalidInput }
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension IDConflictError: CarbonStoreError {
    public var kind: ErrorKind { .conflict }
}

/// An entry below the data directory that CarbonStore will not use: a symbolic link, or an entry
/// of the wrong kind where a folder or a user file belongs. Nothing was read or written through it.
public struct UnsafePathError: CarbonStoreError, Hashable {
    public var path: String
    public var reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var kind: ErrorKind { .storageFailure }

    public var description: String {
        "refusing to use \(path): \(reason). CarbonStore never follows a symbolic link below its data directory; remove or replace the entry (only the data directory itself may be a link)"
    }
}

/// A writer held a folder's commit lock for longer than it may trust it (on NFS and EFS the lock
/// is a lease of the server's), usually because the process was paused; nothing was written.
public struct CommitLockHeldTooLongError: CarbonStoreError, Hashable {
    public var path: String
    public var heldMilliseconds: Int64
    public var limitMilliseconds: Int64

    public init(path: String, heldMilliseconds: Int64, limitMilliseconds: Int64) {
        self.path = path
        self.heldMilliseconds = heldMilliseconds
        self.limitMilliseconds = limitMilliseconds
    }
    public var kind: ErrorKind { .leaseExpired }

    public var description: String {
        "the commit lock of \(path) was held for \(heldMilliseconds) ms before the rename (was the process paused?), longer than the \(limitMilliseconds) ms it may be trusted; nothing was written, retry the update"
    }
}

/// An update would make a user's record larger than the format's limits
/// (`RecordCodec.Limits`); nothing was written.
public struct RecordTooLargeStoreError: CarbonStoreError, Hashable {
    public var underlying: RecordTooLargeError

    public init(underlying: RecordTooLargeError) {
        self.underlying = underlying
    }
    public var kind: ErrorKind { .invalidInput }
    public var description: String { underlying.description + "; nothing was written" }
}

/// A stored file larger than any file the engine writes: refused before it is read, and left in
/// place for an operator.
public struct FileTooLargeError: CarbonStoreError, Hashable {
    public var path: String
    public var size: Int64
    public var limit: Int64

    public init(path: String, size: Int64, limit: Int64) {
        self.path = path
        self.size = size
        self.limit = limit
    }
    public var kind: ErrorKind { .corrupt }

    public var description: String {
        "user file at \(path) is \(size) bytes, over the \(limit)-byte limit of user files (RecordCodec.Limits.maxFileSize); it was not read and was left untouched; inspect or restore it"
    }
}

/// Bytes after a file's valid content that are more than one torn append: a change frame damaged
/// on disk, which may hide acknowledged changes after it. The engine neither cuts them nor writes
/// over them.
public struct DamagedTailError: CarbonStoreError, Hashable {
    public var path: String
    /// Where the valid content ends, and how many bytes follow.
    public var offset: Int
    public var length: Int

    public init(path: String, offset: Int, length: Int) {
        self.path = path
        self.offset = offset
        self.length = length
    }
    public var kind: ErrorKind { .corrupt }

    public var description: String {
        // `file verify` reads files of this host: an object elsewhere (S3) is copied first.
        let inspect =
            path.hasPrefix("/")
            ? "Inspect it with `carbonstore file verify \(path)`"
            : "Inspect a copy of it with `carbonstore file verify`"
        return
            "user file at \(path) has \(length) bytes after offset \(offset) that are \(IgnoredTail.damageExplanation); nothing was written. \(inspect), then restore the user from a backup or cut the damaged bytes by hand"
    }
}
