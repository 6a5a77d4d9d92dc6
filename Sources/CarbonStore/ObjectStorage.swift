/// An opaque token that changes whenever an object is rewritten: the S3 ETag, or on a volume the
/// file's identity and content checksum.
public struct ObjectVersion: Sendable, Hashable, CustomStringConvertible {
    public var rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
}

public struct StoredObject: Sendable {
    public var bytes: [UInt8]
    public var version: ObjectVersion

    public init(bytes: [UInt8], version: ObjectVersion) {
        self.bytes = bytes
        self.version = version
    }
}

/// The condition a write or delete is made under: the fence of the update protocol.
public enum WriteCondition: Sendable, Hashable {
    /// Write whatever is there. Used only by tools that restore files, never by updates.
    case unconditional
    /// Create only: fails if the object exists (S3 `If-None-Match: *`).
    case mustNotExist
    /// Replace only the version that was read (S3 `If-Match`).
    case mustMatch(ObjectVersion)
}

public struct ObjectListing: Sendable {
    public var keys: [String]
    /// Pass as `startAfter` for the next page; nil when this was the last page.
    public var nextStartAfter: String?

    public init(keys: [String], nextStartAfter: String?) {
        self.keys = keys
        self.nextStartAfter = nextStartAfter
    }
}

/// Where user files are kept: a key-value store of whole objects with conditional writes.
///
/// Implementations must make a `put` atomic (a reader sees the old or the new bytes, never a mix)
/// and durable before it returns, and must check the condition and write as one step: a write whose
/// condition fails throws `VersionMismatchError` and changes nothing.
public protocol ObjectStorage: Sendable {
    /// Reads a whole object, or nil if there is none.
    func get(_ key: String) async throws -> StoredObject?

    /// Reads a whole object's bytes without its version (readers that write nothing), or nil.
    func getBytes(_ key: String) async throws -> [UInt8]?

    /// Writes a whole object under a condition; returns the new version.
    @discardableResult
    func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion

    /// Deletes an object under a condition; returns false if there was none (and the condition
    /// allowed that).
    @discardableResult
    func delete(_ key: String, condition: WriteCondition) async throws -> Bool

    /// Keys that begin with `prefix`, in ascending byte order, after `startAfter`, at most `limit`.
    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing

    /// Where a key lives, for messages: a file path or `s3://bucket/key`.
    func location(of key: String) -> String

    /// Reads the object unless it still has the version `cached` (S3: `If-None-Match`, answered
    /// by 304; a volume: the file's identity, without reading it). The default reads it whole.
    func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead

    /// Whether `append` adds bytes in place (a file on a volume). Storages that cannot append (S3,
    /// memory) write the whole object instead, and the engine does so for them.
    var appendsInPlace: Bool { get }

    /// Whether a task's cancellation can stop an operation of this storage only before it writes
    /// anything: once a write has begun, it is finished and answered whatever the task's state (a
    /// volume's blocking steps and syncs are waited for). Together with locks that a cancellation
    /// leaves nothing held by, the engine then commits an update in the caller's own task
    /// (`Store.lead`). The default is false: a request to a server, which a cancellation cuts
    /// whether it has landed or not.
    var cancelsOnlyBeforeWriting: Bool { get }

    /// Checks, without writing, that writes can be made where the storage keeps its objects:
    /// throws the storage's error when they certainly cannot (a volume mounted or gone read-only, a
    /// data directory this process may not write). For readiness probes (`Store.checkReachable`);
    /// the default checks nothing (a server says so when a write is refused).
    func checkWritable() async throws

    /// Runs `body`, one operation of the engine on `key` (an update or a delete, from taking the
    /// user's lock to letting it go), whose calls to this storage and to a lock service on it may
    /// share what they would each prepare again. A volume opens the user's folder once for all of
    /// them (`PathStorage`); the default just runs `body`.
    func withOperation<T>(on key: String, _ body: () async throws -> T) async throws -> T

    /// Adds `bytes` at the end of the object's valid content, durably, if the object still has
    /// the version `expected` (the fence; nil writes without it, for the torture tests' negative
    /// controls only). Bytes after the valid end that are not a committed append (a torn one) are
    /// cut first. Throws `VersionMismatchError`, having written nothing that readers take for
    /// content, when the object changed. Only storages whose `appendsInPlace` is true implement it.
    @discardableResult
    func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion

    /// `append`, telling the caller when the bytes are written (the engine calls this one; the
    /// default calls `append(_:bytes:expected:)` and never calls `whenWritten`).
    ///
    /// `whenWritten` is called at most once, during the append: when the bytes are in the file
    /// right after the expected content but not yet durable, and only where no other writer can
    /// write anything to the object until they are durable or cut. (On a local file system, the
    /// folder's commit lock is held through the fdatasync and every write takes it; on NFS and
    /// EFS it is never called, since other hosts may not see the bytes yet.) The engine lets the
    /// user's lock go there, so that the next writer reads and prepares its change while this one
    /// waits for the disk. Once it has been called, the append throws nothing but the error of
    /// making the bytes durable, never `VersionMismatchError`.
    @discardableResult
    func append(
        _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
    ) async throws -> ObjectVersion

    /// Whether the object still has the version `version`, with all of that content durable. On
    /// a volume, it waits for an append in flight (one that a writer without the user's lock is
    /// making durable) to be durable or cut, then makes the file's content durable (which also
    /// covers a frame whose writer died between its write and its fdatasync); false if the object
    /// changed meanwhile (the frame was cut, or another version was written). The engine asks it
    /// before it answers an update that writes nothing, since that answer rests on what it read.
    /// The default returns true: what such a storage lets be read is durable. A storage that
    /// appends in place must implement it (a wrapper forwards it).
    func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool
}

/// What `getIfChanged` found.
public enum ConditionalRead: Sendable {
    /// The object still has the version asked about.
    case unchanged
    /// The object has another version: here it is.
    case changed(StoredObject)
    /// There is no object.
    case missing
    /// The object is the one asked about with bytes appended to it (a file on a volume that other
    /// writers appended change frames to): `tail` is its content from the end of the version asked
    /// about to the end of the file, and `version` the version of the whole.
    case appended(tail: [UInt8], version: ObjectVersion)
    /// The object still has the content asked about, and `version` names it with something the
    /// storage learned besides (a file's change time, for the record cache): keep it in place of
    /// the version asked about.
    case confirmed(version: ObjectVersion)
}

extension ObjectStorage {
    public func getBytes(_ key: String) async throws -> [UInt8]? { try await get(key)?.bytes }

    public func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
        guard let object = try await get(key) else { return .missing }
        return object.version == cached ? .unchanged : .changed(object)
    }

    public var appendsInPlace: Bool { false }

    public var cancelsOnlyBeforeWriting: Bool { false }

    public func checkWritable() async throws {}

    public func withOperation<T>(on key: String, _ body: () async throws -> T) async throws -> T {
        try await body()
    }

    @discardableResult
    public func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion
    {
        throw InvalidRequestError("\(location(of: key)): this storage cannot append; write the whole object")
    }

    /// Appends without ever saying that the bytes are written: the lock is kept until the append
    /// is durable.
    @discardableResult
    public func append(
        _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
    ) async throws -> ObjectVersion {
        try await append(key, bytes: bytes, expected: expected)
    }

    public func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool { true }
}
