import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Settings of a `Store` beyond its storage and locks.
public struct StoreOptions: Sendable {
    /// How long a writer waits for a user's lock before `LockTimeoutError`.
    public var lockWait: Duration
    /// How many times an update is retried from a fresh read when the fence reports that someone
    /// else wrote first (only possible without locks, or when a lock was lost).
    public var maxConflictRetries: Int
    /// How the record is encoded.
    public var codec: RecordCodec
    /// A write is not started with less than this left on the lease.
    public var leaseSafetyMargin: Duration
    /// The clock that stamps `createdAt`/`updatedAt`.
    public var now: @Sendable () -> Timestamp
    /// Called after the lease was checked and right before the conditional write: a test hook to
    /// pause or kill a writer at the worst moment. Nil in production.
    public var beforeCommit: (@Sendable () async -> Void)?
    /// The system calls of the `path:` backend; tests substitute ones that fail or stop.
    public var fileIO: FileIO = .posix
    /// TEST ONLY: writes without the fence (unconditionally), so that the torture checker's
    /// negative controls can show it catches the lost updates that follow. Never set in production.
    public var unsafeDisableFence = false

    public init(
        lockWait: Duration = .seconds(10), maxConflictRetries: Int = 20, codec: RecordCodec = RecordCodec(),
        leaseSafetyMargin: Duration = .milliseconds(500),
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) {
        self.lockWait = lockWait
        self.maxConflictRetries = maxConflictRetries
        self.codec = codec
        self.leaseSafetyMargin = leaseSafetyMargin
        self.now = now
    }
}

/// What `Store.update` did.
public struct UpdateResult<Value: Sendable>: Sendable {
    /// What the mutation closure returned.
    public var value: Value
    /// The record as it now stands.
    public var record: UserRecord
    /// False when the mutation changed nothing, so nothing was written (idempotent repeats).
    public var committed: Bool
}

/// The engine: reads, updates, deletes and lists users, whatever the storage and the locks.
///
/// An update takes the user's lock, reads the file and its version, applies the mutation, and
/// writes only if the file still has that version (the fence), then releases the lock with its
/// operation id. Reads take no lock.
public struct Store: Sendable {
    public let storage: any ObjectStorage
    public let locks: any LockService
    public let keys: UserKeys
    public var options: StoreOptions

    public init(
        storage: any ObjectStorage, locks: any LockService, keys: UserKeys = UserKeys(),
        options: StoreOptions = .init()
    ) {
        self.storage = storage
        self.locks = locks
        self.keys = keys
        self.options = options
    }

    /// The user's record, or nil if the user has none.
    public func read(_ userID: String) async throws -> UserRecord? {
        let key = try keys.key(for: userID)
        guard let object = try await storage.get(key) else { return nil }
        return try decode(object.bytes, userID: userID, key: key)
    }

    /// The user's record; `UserNotFoundError` if there is none.
    public func get(_ userID: String) async throws -> UserRecord {
        guard let record = try await read(userID) else { throw UserNotFoundError(userID: userID) }
        return record
    }

    /// Applies `mutate` to the user's record (a new, empty record if the user has none) and commits
    /// the result durably. `mutate` may run more than once (after a conflict), each time on the
    /// latest record, so it must only change the record it is given. If it leaves the record
    /// unchanged, nothing is written and the revision stays as it was.
    @discardableResult
    public func update<Value: Sendable>(
        _ userID: String, _ mutate: (inout UserRecord) throws -> Value
    ) async throws -> UpdateResult<Value> {
        let key = try keys.key(for: userID)
        let lease = try await locks.acquire(key, userID: userID, wait: options.lockWait)
        let result: UpdateResult<Value>
        do {
            result = try await updateHoldingLease(userID, key: key, lease: lease, mutate)
        } catch {
            try? await locks.release(lease)
            throw error
        }
        // The update is committed: a failed release only leaves the lock to expire.
        try? await locks.release(lease)
        return result
    }

    private func updateHoldingLease<Value: Sendable>(
        _ userID: String, key: String, lease: Lease, _ mutate: (inout UserRecord) throws -> Value
    ) async throws -> UpdateResult<Value> {
        var attempt = 0
        var backoff = Backoff()
        var lease = lease
        while true {
            attempt += 1
            let current = try await storage.get(key)
            let before: UserRecord
            if let current {
                before = try decode(current.bytes, userID: userID, key: key)
            } else {
                before = UserRecord(userID: userID, revision: 0, createdAt: options.now())
            }
            var record = before
            let value = try mutate(&record)
            // Nothing to change: an idempotent repeat, or (after a conflict) our own earlier write
            // that did land although its answer was lost.
            if record == before {
                return UpdateResult(value: value, record: before, committed: false)
            }
            guard attempt <= options.maxConflictRetries + 1 else {
                throw WriteConflictError(userID: userID, attempts: attempt - 1)
            }
            record.userID = userID
            record.revision = before.revision + 1
            record.createdAt = before.createdAt
            record.updatedAt = max(options.now(), before.updatedAt)
            let bytes = options.codec.encode(record)

            // Never start a write on a lapsed (or nearly lapsed) lease; renew one that is a third
            // or more through its term, as long operations need.
            if !lease.isValid(margin: options.leaseSafetyMargin) {
                throw LeaseExpiredError(userID: userID, operationID: lease.operationID)
            }
            if lease.isDueForRenewal() { lease = try await locks.renew(lease) }
            if let beforeCommit = options.beforeCommit { await beforeCommit() }
            let condition: WriteCondition =
                options.unsafeDisableFence
                ? .unconditional : current.map { .mustMatch($0.version) } ?? .mustNotExist
            do {
                try await storage.put(key, bytes: bytes, condition: condition)
                return UpdateResult(value: value, record: record, committed: true)
            } catch is VersionMismatchError {
                // The fence held: nothing of this attempt was written. Someone else wrote since
                // our read (or our own retried write landed): read again and re-apply. The next
                // attempt checks the lease before it writes.
                if attempt <= options.maxConflictRetries { try await Task.sleep(for: backoff.next()) }
            }
        }
    }

    /// Deletes the user's file under the user's lock; returns false if there was none.
    @discardableResult
    public func delete(_ userID: String) async throws -> Bool {
        let key = try keys.key(for: userID)
        let lease = try await locks.acquire(key, userID: userID, wait: options.lockWait)
        do {
            var attempt = 0
            while true {
                attempt += 1
                guard let current = try await storage.get(key) else {
                    try? await locks.release(lease)
                    return false
                }
                if !lease.isValid(margin: options.leaseSafetyMargin) {
                    throw LeaseExpiredError(userID: userID, operationID: lease.operationID)
                }
                do {
                    let deleted = try await storage.delete(key, condition: .mustMatch(current.version))
                    try? await locks.release(lease)
                    return deleted
                } catch is VersionMismatchError {
                    guard attempt <= options.maxConflictRetries else {
                        throw WriteConflictError(userID: userID, attempts: attempt)
                    }
                }
            }
        } catch {
            try? await locks.release(lease)
            throw error
        }
    }

    /// One page of user ids, in storage order (the order of their hashed keys, not of the ids).
    /// Pass the returned cursor to get the next page; it is nil after the last page.
    public func listUsers(after cursor: String? = nil, limit: Int = 1000) async throws -> (
        userIDs: [String], cursor: String?
    ) {
        let page = try await storage.list(prefix: keys.prefix, startAfter: cursor, limit: limit)
        return (page.keys.compactMap { keys.userID(forKey: $0) }, page.nextStartAfter)
    }

    /// Every user id, fetched a page at a time as the sequence is consumed.
    public func allUsers(pageSize: Int = 1000) -> UserIDSequence {
        UserIDSequence(store: self, pageSize: pageSize)
    }

    func decode(_ bytes: [UInt8], userID: String, key: String) throws -> UserRecord {
        let record: UserRecord
        do {
            record = try options.codec.decode(bytes)
        } catch {
            throw CorruptUserFileError(
                userID: userID, location: storage.location(of: key), reason: error.description)
        }
        // Compare bytes: Swift's == treats canonically equivalent spellings as equal, but they are
        // different ids with different files.
        guard record.userID.utf8.elementsEqual(userID.utf8) else {
            throw CorruptUserFileError(
                userID: userID, location: storage.location(of: key),
                reason: "the file belongs to user '\(record.userID)'")
        }
        return record
    }
}

/// The ids of all users, paged lazily from storage.
public struct UserIDSequence: AsyncSequence, Sendable {
    public typealias Element = String
    let store: Store
    let pageSize: Int

    public struct AsyncIterator: AsyncIteratorProtocol {
        let store: Store
        let pageSize: Int
        var buffer: [String] = []
        var index = 0
        var cursor: String?
        var finished = false

        public mutating func next() async throws -> String? {
            while index == buffer.count {
                if finished { return nil }
                let page = try await store.listUsers(after: cursor, limit: pageSize)
                buffer = page.userIDs
                index = 0
                cursor = page.cursor
                finished = page.cursor == nil
            }
            defer { index += 1 }
            return buffer[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(store: store, pageSize: pageSize)
    }
}

extension Timestamp {
    /// The current wall-clock time.
    @Sendable public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(millisecondsSince1970: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }
}
