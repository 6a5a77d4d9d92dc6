import CarbonFormat
import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where a `Store` reads the time: the wall clock that stamps records and the monotonic clock that
/// times leases and backoff. Tests substitute a clock they advance themselves, so lease tests need
/// no busy waits.
public struct StoreClock: Sendable {
    /// The wall-clock time that stamps `createdAt` and `updatedAt`.
    public var now: @Sendable () -> Timestamp
    /// The monotonic instant that leases are checked against.
    public var instant: @Sendable () -> ContinuousClock.Instant
    /// Waits (the backoff between conflicting attempts).
    public var sleep: @Sendable (Duration) async throws -> Void

    public init(
        now: @escaping @Sendable () -> Timestamp, instant: @escaping @Sendable () -> ContinuousClock.Instant,
        sleep: @escaping @Sendable (Duration) async throws -> Void
    ) {
        self.now = now
        self.instant = instant
        self.sleep = sleep
    }

    /// The system's clocks.
    public static let system = StoreClock(
        now: Timestamp.now, instant: { ContinuousClock.now }, sleep: { try await Task.sleep(for: $0) })
}

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
    /// The clocks.
    public var clock: StoreClock
    /// What the engine reports as it works (lock waits, fence conflicts, bytes written), for metrics.
    public var events: StoreEvents = .none
    /// The memory, estimated, that the cache of decoded records may take (0: no cache). A cached
    /// record is used only after the storage has confirmed that the user's file is unchanged
    /// (`ObjectStorage.getIfChanged`).
    public var cacheBytes: Int = 64 << 20
    /// When an update writes a whole new snapshot instead of appending a change frame
    /// (docs/FORMAT.md, version 2).
    public var compaction: CompactionPolicy = .init()
    /// Whether concurrent updates of one user in this process are committed together (one lock
    /// hold, one read, one write). Off, each update takes the lock on its own.
    public var groupCommit = true
    /// Whether an update that appends a change frame lets the user's lock go once the frame is in
    /// the file, while the frame is made durable, where the storage allows it (a local file
    /// system: `ObjectStorage.append`'s `whenWritten`) and the lock can be let go at once
    /// (`locking=local`, `none`). The next writer then reads the file and prepares its change while
    /// this one waits for the disk; its own write still waits for this one's fdatasync. Off, the
    /// lock is held until the append is durable.
    public var releasesLockBeforeSync = true
    /// Whether the store is opened for reading only (the command line's `user show`, `user list`
    /// and `verify`). On `path:` a missing data directory is then not created (its users read as
    /// absent, and a missing parent is still an error), the directory need not be writable (a
    /// read-only volume, a group with read access through `mode=`), and every write is refused.
    public var readOnly = false
    /// Called after the lease was checked and right before the conditional write. Package-internal:
    /// the reliability tests pause or kill a writer there; nothing that ships can set it.
    package var beforeCommit: (@Sendable () async -> Void)?
    /// The system calls of the `path:` backend; the package's tests substitute ones that fail or stop.
    package var fileIO: FileIO = .posix
    /// Whether `path:` appends write their frame in place into the file's reserve (nil: on a local
    /// file system) or with `O_APPEND` (`PathStorage.writeFrame`); for the package's tests.
    package var framesInPlace: Bool?
    /// Writes without the fence (unconditionally), so that the torture checker's negative controls
    /// can show that it catches the lost updates that follow. Package-internal, for those tests only.
    package var unsafeDisableFence = false

    public init(
        lockWait: Duration = .seconds(10), maxConflictRetries: Int = 20, codec: RecordCodec = RecordCodec(),
        leaseSafetyMargin: Duration = .milliseconds(500), clock: StoreClock = .system
    ) {
        self.lockWait = lockWait
        self.maxConflictRetries = maxConflictRetries
        self.codec = codec
        self.leaseSafetyMargin = leaseSafetyMargin
        self.clock = clock
    }
}

/// When an update rewrites the user's file as a new snapshot rather than appending a change frame to
/// it: when the frames would pass `tailFraction` of the snapshot's size and `minimumTailBytes`.
/// A version-1 file, or a change that no frame can say, is always rewritten.
public struct CompactionPolicy: Sendable, Hashable {
    public var tailFraction: Double
    public var minimumTailBytes: Int

    public init(tailFraction: Double = 0.5, minimumTailBytes: Int = 16 << 10) {
        self.tailFraction = tailFraction
        self.minimumTailBytes = minimumTailBytes
    }

    /// Whether a file laid out as `layout` should be compacted rather than grow by `frameBytes`.
    public func compacts(_ layout: FileLayout, adding frameBytes: Int) -> Bool {
        let tail = layout.tailLength + frameBytes
        return tail > minimumTailBytes && Double(tail) > Double(layout.snapshotLength) * tailFraction
    }
}

/// Callbacks for what an update or a delete meets on its way, so that a service can count them
/// (`carbonstore serve` turns them into Prometheus metrics). Each is called on the writer's task and
/// must return quickly.
public struct StoreEvents: Sendable {
    /// A writer got the user's lock after waiting this long.
    public var lockAcquired: @Sendable (_ userID: String, _ waited: Duration) -> Void
    /// A writer gave up waiting for the user's lock (`LockTimeoutError`).
    public var lockTimedOut: @Sendable (_ userID: String, _ waited: Duration) -> Void
    /// The fence refused a write because the file changed since it was read; the writer retries.
    public var fenceConflict: @Sendable (_ userID: String) -> Void
    /// A user file of this many bytes was written (committed).
    public var bytesWritten: @Sendable (_ userID: String, _ count: Int) -> Void
    /// A user file read whole has bytes after its valid content that are not one torn append
    /// (docs/FORMAT.md, 13.4): `length` bytes at `offset` that may hide acknowledged changes. The
    /// record read is the one before them, and writes to the user are refused until an operator
    /// deals with them (`carbonstore file verify`).
    public var damagedTail:
        @Sendable (_ userID: String, _ location: String, _ offset: Int, _ length: Int) -> Void

    public init(
        lockAcquired: @escaping @Sendable (String, Duration) -> Void = { _, _ in },
        lockTimedOut: @escaping @Sendable (String, Duration) -> Void = { _, _ in },
        fenceConflict: @escaping @Sendable (String) -> Void = { _ in },
        bytesWritten: @escaping @Sendable (String, Int) -> Void = { _, _ in },
        damagedTail: @escaping @Sendable (String, String, Int, Int) -> Void = { _, _, _, _ in }
    ) {
        self.lockAcquired = lockAcquired
        self.lockTimedOut = lockTimedOut
        self.fenceConflict = fenceConflict
        self.bytesWritten = bytesWritten
        self.damagedTail = damagedTail
    }

    /// Reports nothing.
    public static let none = StoreEvents()
}

/// What an update or a delete did.
public enum CommitOutcome: Sendable, Hashable {
    /// This call wrote the change.
    case committed
    /// The user was already as requested when this call read it: nothing was written.
    case unchanged
    /// An earlier attempt of this call may have landed (its answer was lost and the fence then
    /// refused the retry), and the user is now as requested: by that attempt, or by another writer
    /// that made the same change. Nothing more was written. The state is as requested; whether this
    /// call made the change cannot be known.
    case asRequestedAfterRetry
}

/// What `Store.update` did.
public struct UpdateResult<Value: Sendable>: Sendable {
    /// What the mutation closure returned (on its last run, against the latest record).
    public var value: Value
    /// The record as it now stands.
    public var record: UserRecord
    /// What this call did.
    public var outcome: CommitOutcome
    /// True when this call wrote the record; false when nothing needed to change (see `outcome`).
    public var committed: Bool { outcome == .committed }
}

/// What `Store.delete` did.
public enum DeleteOutcome: Sendable, Hashable {
    /// This call deleted the user's file.
    case deleted
    /// There was no file to delete.
    case notFound
    /// The user is gone, after an attempt of this call whose answer was lost: that attempt or
    /// another writer deleted it.
    case goneAfterRetry

    /// Whether the user is gone now because of this call or one made just before it; false only
    /// when there was never anything to delete.
    public var userIsGone: Bool { self != .notFound }
}

/// The engine: reads, updates, deletes and lists users, whatever the storage and the locks.
///
/// An update takes the user's lock, reads the file and its version, applies the mutation, and
/// writes only if the file still has that version (the fence), then releases the lock with its
/// operation id (an append on a local file system lets a local lock go before its fdatasync:
/// `StoreOptions.releasesLockBeforeSync`). Reads take no lock.
public struct Store: Sendable {
    public let storage: any ObjectStorage
    public let locks: any LockService
    public let keys: UserKeys
    public var options: StoreOptions
    /// Decoded records, checked against the storage's version before use; shared by copies.
    let cache = RecordCache()
    /// The lines of concurrent updates, per user; shared by copies.
    let committer = GroupCommitter()

    public init(
        storage: any ObjectStorage, locks: any LockService, keys: UserKeys = UserKeys(),
        options: StoreOptions = .init()
    ) {
        self.storage = storage
        self.locks = locks
        self.keys = keys
        self.options = options
    }

    /// The user's record, or nil if the user has none. A record this process has decoded before
    /// is reused when the storage confirms that the file has not changed since (`cacheBytes`).
    public func read(_ userID: String) async throws -> UserRecord? {
        let key = try keys.key(for: userID)
        guard options.cacheBytes > 0 else {
            guard let object = try await storage.get(key) else { return nil }
            return try await decodeConfirmingDamage(object, userID: userID, key: key)?.record
        }
        return try await load(key, userID: userID)?.record
    }

    /// What the engine knows of a user's object: its version, the record and the file's layout,
    /// and (for storages that cannot append) its valid bytes.
    struct Current {
        var version: ObjectVersion
        /// The record and the file's layout; nil when the caller did not ask for them (a delete).
        var record: UserRecord?
        var layout: FileLayout?
        var bytes: [UInt8]?
        /// How many times other writers' frames were applied to the record since the file was
        /// last read whole.
        var appliedTails = 0
        /// Bytes after the valid content that are not one torn append (docs/FORMAT.md, 13.4), as
        /// found by the read: a write over the whole object would drop them.
        var damage: DamagedTailError?
    }

    /// The user's object as it stands: from the cache when the storage confirms its version, else
    /// read and decoded (and cached).
    func load(_ key: String, userID: String) async throws -> Current? {
        var object: StoredObject
        if options.cacheBytes > 0, let entry = cache.entry(key) {
            let answer = try await storage.getIfChanged(key, cached: entry.version)
            switch answer {
            case .unchanged, .confirmed:
                var version = entry.version
                if case .confirmed(let named) = answer {
                    // In place of the version asked about, unless another task of this process has
                    // cached a newer one meanwhile.
                    cache.replaceVersion(of: key, from: entry.version, to: named)
                    version = named
                }
                return Current(
                    version: version, record: entry.record, layout: entry.layout, bytes: entry.bytes,
                    appliedTails: entry.appliedTails)
            case .missing:
                cache.remove(key)
                return nil
            case .changed(let found):
                object = found
            case .appended(let tail, let version):
                // Other writers appended frames: apply them to the cached record rather than
                // decode the whole file. Anything unexpected reads the file whole, and so does
                // every 32nd time: the bytes before the cached end are not read again here, so
                // damage made to them in place while others append is found by that read.
                if entry.appliedTails < Self.appliedTailsBeforeWholeRead,
                    let applied = try? tail.withUnsafeBytes({
                        try options.codec.applyAppended($0, to: entry.record, layout: entry.layout)
                    }), applied.layout.ignoredLength == 0,
                    applied.layout.validLength == entry.layout.validLength + tail.count
                {
                    let current = Current(
                        version: version, record: applied.record, layout: applied.layout,
                        bytes: entry.bytes.map { $0 + tail }, appliedTails: entry.appliedTails + 1)
                    remember(key, current)
                    return current
                }
                guard let found = try await storage.get(key) else {
                    cache.remove(key)
                    return nil
                }
                object = found
            }
        } else {
            guard let found = try await storage.get(key) else {
                cache.remove(key)
                return nil
            }
            object = found
        }
        guard let decoded = try await decodeConfirmingDamage(object, userID: userID, key: key) else {
            cache.remove(key)
            return nil
        }
        let (record, layout, tail) = (decoded.record, decoded.layout, decoded.tail)
        object = decoded.object
        let damage =
            tail.isDamage
            ? DamagedTailError(
                path: storage.location(of: key), offset: layout.validLength, length: layout.ignoredLength)
            : nil
        let kept = storage.appendsInPlace ? nil : Array(object.bytes.prefix(layout.validLength))
        let current = Current(
            version: object.version, record: record, layout: layout, bytes: kept, damage: damage)
        // Not cached with damage: every read finds it again, and a write is refused (`attempts`).
        if damage == nil { remember(key, current) } else { cache.remove(key) }
        return current
    }

    func remember(_ key: String, _ current: Current) {
        guard options.cacheBytes > 0, let record = current.record, let layout = current.layout else { return }
        cache.store(
            key,
            RecordCache.Entry(
                version: current.version, record: record, layout: layout, bytes: current.bytes,
                appliedTails: current.appliedTails),
            limit: options.cacheBytes)
    }

    /// After this many applications of other writers' frames to a cached record, the next one
    /// reads the file whole (see `load`).
    static let appliedTailsBeforeWholeRead = 32

    /// The user's record; `UserNotFoundError` if there is none.
    public func get(_ userID: String) async throws -> UserRecord {
        guard let record = try await read(userID) else { throw UserNotFoundError(userID: userID) }
        return record
    }

    /// Applies `mutate` to the user's record (a new, empty record if the user has none) and commits
    /// the result durably. `mutate` may run more than once (after a conflict), each time on the
    /// latest record, so it must only change the record it is given. If it leaves the record
    /// unchanged, nothing is written and the revision stays as it was.
    ///
    /// Concurrent updates of one user in this process are committed together (`groupCommit`):
    /// each mutation runs in turn, in the order the calls arrived, on the record as the ones before
    /// it left it; each committed mutation adds one to the revision; each call gets its own value,
    /// record and outcome. A mutation that throws fails its own call only, and changes nothing.
    ///
    /// With group commit, cancelling the calling task can fail the call with `CancellationError`
    /// where it waits for a lock or backs off after a conflict, before its attempt writes anything
    /// (on a volume with file or in-process locks; elsewhere the call is committed all the same),
    /// and it never fails another call (`lead`).
    @discardableResult
    public func update<Value: Sendable>(
        _ userID: String, _ mutate: (inout UserRecord) throws -> Value
    ) async throws -> UpdateResult<Value> {
        let key = try keys.key(for: userID)
        try refuseWritesIfReadOnly(key)
        return try await withoutActuallyEscaping(mutate) { mutate in
            let job = UpdateJob { record in try mutate(&record) }
            if options.groupCommit {
                await committer.submit(key, job) { batch in await lead(batch, userID: userID, key: key) }
            } else {
                await commit(UpdateBatch(job), userID: userID, key: key)
                job.mutate = nil
            }
            guard let outcome = job.outcome else {
                preconditionFailure("a batch ended without an outcome for one of its updates")
            }
            let done = try outcome.get()
            return UpdateResult(value: done.value as! Value, record: done.record, outcome: done.outcome)
        }
    }

    /// A batch's write would pass a size limit: its mutations are committed one by one instead, so
    /// that `RecordTooLargeStoreError` fails only the call whose mutation made the record too large.
    private struct BatchTooLarge: Error {}

    /// Commits a batch that the caller leads (`GroupCommitter`). The batch commits the calls of
    /// other tasks too, so the cancellation of the leading call must fail none of them.
    ///
    /// On a volume with file or in-process locks (`inlineCommits`), the batch runs in the leading
    /// call's own task: an update then makes no hop to a task of its own and back (measured with
    /// the other changes of docs/BENCHMARKS.md's round nine: 9 to 17 µs of a W1 append on a local disk).
    /// Its cancellation can only stop it where it waits for a lock or backs off, with nothing of that
    /// attempt written and no lock left held; if the batch fails while the leading task is
    /// cancelled, `commit` commits its other calls again in a task of their own. Elsewhere (S3, a
    /// DynamoDB lock: requests that a cancellation would cut, and that take milliseconds anyway) the
    /// batch runs in a task of its own, which the leading call's cancellation does not reach.
    func lead(_ batch: UpdateBatch, userID: String, key: String) async {
        if inlineCommits {
            await commit(batch, userID: userID, key: key)
        } else {
            await Task { await commit(batch, userID: userID, key: key) }.value
        }
    }

    /// Whether a batch runs in the task of the call that leads it (`lead`).
    var inlineCommits: Bool { storage.cancelsOnlyBeforeWriting && locks.leavesNothingHeldWhenCancelled }

    /// Commits a batch of updates of one user: one lock, one read, every mutation in order, one
    /// write. The batch gathers the calls waiting in line once the lock is held and the user read.
    /// Every job leaves with an outcome. `afterWrite`: an earlier commit of these calls may have
    /// written (their changes found already made are then answered `asRequestedAfterRetry`).
    func commit(_ batch: UpdateBatch, userID: String, key: String, afterWrite: Bool = false) async {
        var refused = afterWrite
        do {
            try await fenced(
                userID, key: key, decoding: true, afterWrite: afterWrite, fenceRefused: { refused = true }
            ) { current, afterConflict in
                // Every call that joined the line until now, the user read and locked.
                try step(batch.gather(), current, userID: userID, afterConflict: afterConflict)
            }
        } catch is BatchTooLarge {
            let jobs = batch.all
            await commit(UpdateBatch(jobs[0]), userID: userID, key: key)
            // The other calls in a task of their own, which a cancellation of the leading call's
            // task (`lead`) does not reach.
            await Task {
                for job in jobs.dropFirst() { await commit(UpdateBatch(job), userID: userID, key: key) }
            }.value
        } catch {
            let jobs = batch.all
            // The batch was stopped by the cancellation of the leading call's task (`lead`), where
            // it waited for a lock or backed off, before its attempt wrote anything: the leading
            // call fails, and the others are committed again in a task of their own. Those whose
            // own mutation threw keep their error. Any other error fails them all, as below.
            if error is CancellationError, Task.isCancelled, jobs.count > 1 {
                if case .failure = jobs[0].outcome {} else { jobs[0].outcome = .failure(error) }
                let others = jobs.dropFirst().filter { job in
                    if case .failure = job.outcome { return false }
                    job.outcome = nil
                    return true
                }
                if !others.isEmpty {
                    let again = UpdateBatch(others)
                    // Only a write the fence refused may have landed all the same (`attempts`).
                    await Task { [refused] in
                        await commit(again, userID: userID, key: key, afterWrite: refused)
                    }.value
                }
                return
            }
            // The batch failed: every call fails with its error, except those whose own mutation
            // threw, which keep their own error.
            for job in jobs {
                if case .failure = job.outcome { continue }
                job.outcome = .failure(error)
            }
        }
    }

    /// Applies the batch's mutations, in order, to the current record, and says what to write.
    private func step(
        _ jobs: [UpdateJob], _ current: Current?, userID: String, afterConflict: Bool
    ) throws -> Step<Void> {
        let base = current?.record ?? UserRecord(userID: userID, revision: 0, createdAt: options.clock.now())
        var record = base
        var changed = 0
        for job in jobs {
            guard let mutate = job.mutate else { continue }
            var trial = record
            do {
                let value = try mutate(&trial)
                // A value every reader would refuse must fail this call: written, it would make the
                // user's whole file unreadable (and a cached record would hide it until restart).
                // Only the rows the mutation changed are looked at.
                if let bad = RecordCodec.firstUnwritableTransaction(from: record, to: trial) {
                    throw InvalidRequestError(
                        "transaction '\(bad.id)' of user '\(userID)': merchant category code \(bad.mcc!) is above 9999 (ISO 18245 codes are 0 to 9999); nothing was written"
                    )
                }
                // Preserved sections the encoder does not write back (a known or critical tag)
                // are dropped here as they are from the file, so that the record committed, answered
                // and cached is the one a reader decodes.
                trial.preservedSections.removeAll { !RecordCodec.isPreservable($0) }
                // Nothing to change: an idempotent repeat, or (after a conflict) our own earlier
                // write that did land although its answer was lost.
                if trial == record {
                    job.outcome = .success(
                        (value, record, afterConflict ? .asRequestedAfterRetry : .unchanged))
                    continue
                }
                trial.userID = userID
                trial.revision = record.revision + 1
                trial.createdAt = base.createdAt
                trial.updatedAt = max(options.clock.now(), record.updatedAt)
                record = trial
                changed += 1
                job.outcome = .success((value, trial, .committed))
            } catch {
                job.outcome = .failure(error)
            }
        }
        if changed == 0 { return .finished(()) }
        // A change frame when the file can take one; a new snapshot otherwise (the writer
        // enforces the readers' limits, so no file it writes can be refused later).
        // A compaction keeps the frame, to append it instead if the volume has no room for the
        // new snapshot (`NoRoomToRewriteError`).
        var frameInstead: ChangeFrame?
        if let layout = current?.layout, layout.formatVersion >= 2,
            let frame = options.codec.encodeChange(
                from: base, to: record, appendingTo: layout, id: .random())
        {
            if !options.compaction.compacts(layout, adding: frame.bytes.count) {
                return .append(frame, record, ())
            }
            frameInstead = frame
        }
        do {
            let (bytes, layout) = try snapshot(of: record)
            return .put(bytes, layout, record, (), orAppend: frameInstead)
        } catch {
            if changed > 1 { throw BatchTooLarge() }
            throw error
        }
    }

    /// A new snapshot of `record`, for a file that must be written anew rather than appended to.
    private func snapshot(of record: UserRecord) throws(RecordTooLargeStoreError) -> ([UInt8], FileLayout) {
        do {
            return try options.codec.encodeSnapshot(record, fileID: .random())
        } catch {
            throw RecordTooLargeStoreError(underlying: error)
        }
    }

    /// Deletes the user's file under the user's lock, with the same fence, conflict retries and
    /// lease checks as `update`.
    @discardableResult
    public func delete(_ userID: String) async throws -> DeleteOutcome {
        let key = try keys.key(for: userID)
        try refuseWritesIfReadOnly(key)
        return try await fenced(userID, key: key, decoding: false) { current, afterConflict in
            guard current != nil else { return .finished(afterConflict ? .goneAfterRetry : .notFound) }
            return .remove(.deleted, ifAlreadyGone: .goneAfterRetry)
        }
    }

    /// What one attempt of a fenced operation decided to do, given the current object.
    private enum Step<Result> {
        /// Nothing to write: the operation is over.
        case finished(Result)
        /// Write this whole file (a new snapshot), conditioned on the version read; `orAppend`: the
        /// change frame to append instead if the storage has no room for the new file.
        case put([UInt8], FileLayout, UserRecord, Result, orAppend: ChangeFrame? = nil)
        /// Append this change frame to the file read, conditioned on its version.
        case append(ChangeFrame, UserRecord, Result)
        /// Delete the object, conditioned on the version read; `ifAlreadyGone` when the storage
        /// finds nothing to delete.
        case remove(Result, ifAlreadyGone: Result)
    }

    /// The update protocol, shared by updates and deletes: take the user's lock; read the object
    /// and its version (`decoding`: and its record, through the cache); let `decide` say what to
    /// do; check (and renew) the lease; write, append or delete only if the object still has the
    /// version read (the fence); after a fence conflict, back off and start again from a fresh
    /// read; release the lock by its operation id.
    private func fenced<Result>(
        _ userID: String, key: String, decoding: Bool, afterWrite: Bool = false,
        fenceRefused: () -> Void = {},
        _ decide: (_ current: Current?, _ afterConflict: Bool) throws -> Step<Result>
    ) async throws -> Result {
        // One operation of the storage, from the lock to its release: a volume walks to the
        // user's folder once for all of its steps (`ObjectStorage.withOperation`).
        try await storage.withOperation(on: key) {
            let waitStart = options.clock.instant()
            let lease: Lease
            do {
                lease = try await locks.acquire(key, userID: userID, wait: options.lockWait)
            } catch let error as LockTimeoutError {
                options.events.lockTimedOut(userID, options.clock.instant() - waitStart)
                throw error
            }
            options.events.lockAcquired(userID, options.clock.instant() - waitStart)
            // Every blocking step and sync made from here to the release goes before those of
            // tasks that hold no lock (`LockHold`): on a network file system, a burst of reads must
            // not hold up the writers waiting for this lock.
            return try await LockHold.$active.withValue(true) {
                try await attempts(
                    userID, key: key, decoding: decoding, afterWrite: afterWrite, fenceRefused: fenceRefused,
                    holding: lease, decide)
            }
        }
    }

    /// The attempts of `fenced` once the lock is held (`lease`): read, decide, check the lease,
    /// write under the fence, and after a fence conflict back off and start again; the lock is let
    /// go on every way out.
    private func attempts<Result>(
        _ userID: String, key: String, decoding: Bool, afterWrite earlierWrite: Bool,
        fenceRefused: () -> Void, holding held: Lease,
        _ decide: (_ current: Current?, _ afterConflict: Bool) throws -> Step<Result>
    ) async throws -> Result {
        var lease = held
        do {
            var attempt = 0
            var backoff = Backoff()
            // Whether an earlier attempt tried to write (and the fence refused it), or an earlier
            // commit of the same calls may have written: only then may our own write have landed
            // although its answer was lost.
            var afterWrite = earlierWrite
            while true {
                attempt += 1
                let current: Current?
                if decoding {
                    current = try await load(key, userID: userID)
                } else {
                    current = try await storage.get(key).map { Current(version: $0.version) }
                }
                let step = try decide(current, afterWrite)
                if case .finished(let result) = step {
                    // An answer that writes nothing rests on what was read, which may hold a frame
                    // that another writer has written but not made durable: one still in its
                    // fdatasync (its writer let the lock go before it, or `locking=none`, or a lock
                    // lost), or one whose writer died before its fdatasync (the kernel let its
                    // locks go). It is given once that content is durable, or decided again if the
                    // frame was cut.
                    if let version = current?.version, storage.appendsInPlace,
                        try await !storage.confirmDurable(key, version: version)
                    {
                        cache.remove(key)
                        guard attempt <= options.maxConflictRetries else {
                            throw WriteConflictError(userID: userID, attempts: attempt)
                        }
                        try await options.clock.sleep(backoff.next())
                        continue
                    }
                    try? await locks.release(lease)
                    return result
                }
                guard attempt <= options.maxConflictRetries + 1 else {
                    throw WriteConflictError(userID: userID, attempts: attempt - 1)
                }
                // Never start a write on a lapsed (or nearly lapsed) lease; renew one that is a
                // third or more through its term, as long operations need.
                let now = options.clock.instant()
                if !lease.isValid(margin: options.leaseSafetyMargin, now: now) {
                    throw LeaseExpiredError(userID: userID, operationID: lease.operationID)
                }
                if lease.isDueForRenewal(now: now) { lease = try await locks.renew(lease) }
                if let beforeCommit = options.beforeCommit { await beforeCommit() }
                // A storage that writes objects whole would drop a damaged tail with the next
                // write (a volume's storage refuses it itself: `DamagedTailError`). Deleting the
                // user still works.
                if let damage = current?.damage, !storage.appendsInPlace {
                    switch step {
                    case .put, .append: throw damage
                    case .remove, .finished: break
                    }
                }
                let fence = !options.unsafeDisableFence
                let condition: WriteCondition =
                    !fence ? .unconditional : current.map { .mustMatch($0.version) } ?? .mustNotExist
                afterWrite = true
                // The lock was let go while an append was made durable (`releasesLockBeforeSync`).
                var releasedEarly = false
                // What is written: the step, or its frame when a compaction finds no room.
                var write = step
                do {
                    var result: Result
                    writing: while true {
                        switch write {
                        case .put(let bytes, let layout, let record, let done, let frameInstead):
                            let version: ObjectVersion
                            do {
                                version = try await storage.put(key, bytes: bytes, condition: condition)
                            } catch is NoRoomToRewriteError
                                where frameInstead != nil && storage.appendsInPlace
                            {
                                // Nothing was written: the change goes in as a frame, under the same
                                // lock and fence, and the compaction waits for a later update.
                                write = .append(frameInstead!, record, done)
                                continue writing
                            }
                            options.events.bytesWritten(userID, bytes.count)
                            remember(
                                key,
                                Current(
                                    version: version, record: record, layout: layout,
                                    bytes: storage.appendsInPlace ? nil : bytes))
                            result = done
                        case .append(let frame, let record, let done):
                            // Only a decoded version-2 file gets a frame (`step`).
                            guard let read = current, let layout = read.layout else {
                                preconditionFailure("a change frame for a file that was not read")
                            }
                            let version: ObjectVersion
                            var whole: [UInt8]? = nil
                            if storage.appendsInPlace {
                                let held = lease
                                do {
                                    version = try await storage.append(
                                        key, bytes: frame.bytes, expected: fence ? read.version : nil
                                    ) {
                                        if options.releasesLockBeforeSync, locks.releaseAtOnce(held) {
                                            releasedEarly = true
                                        }
                                    }
                                } catch is LinkedUserFileError {
                                    // The file has other names (a `cp -al` snapshot): nothing was
                                    // written; it is written anew, which leaves them as they were.
                                    let (bytes, layout) = try snapshot(of: record)
                                    write = .put(bytes, layout, record, done)
                                    continue writing
                                }
                            } else {
                                // S3 and memory cannot append: the object is written whole, the bytes
                                // read plus the frame, without encoding the record again.
                                var bytes = read.bytes ?? []
                                bytes.append(contentsOf: frame.bytes)
                                version = try await storage.put(key, bytes: bytes, condition: condition)
                                whole = bytes
                            }
                            options.events.bytesWritten(userID, whole?.count ?? frame.bytes.count)
                            remember(
                                key,
                                Current(
                                    version: version, record: record, layout: layout.appending(frame),
                                    bytes: whole, appliedTails: read.appliedTails))
                            result = done
                        case .remove(let done, let gone):
                            cache.remove(key)
                            result = try await storage.delete(key, condition: condition) ? done : gone
                        case .finished(let done):
                            result = done
                        }
                        break writing
                    }
                    // Committed: a failed release only leaves the lock to expire.
                    try? await locks.release(lease)
                    return result
                } catch let error as VersionMismatchError {
                    // Never tried again without the lock (a storage throws no conflict once the
                    // frame is written, so this is not expected).
                    if releasedEarly { throw error }
                    fenceRefused()
                    options.events.fenceConflict(userID)
                    cache.remove(key)
                    // The fence held: nothing of this attempt was written. Someone else wrote since
                    // our read (or our own retried write landed): read again and decide again. The
                    // next attempt checks the lease before it writes.
                    if attempt <= options.maxConflictRetries { try await options.clock.sleep(backoff.next()) }
                }
            }
        } catch {
            // The write's fate is unknown: the next read goes to the storage.
            cache.remove(key)
            try? await locks.release(lease)
            throw error
        }
    }

    /// Throws before any lock is taken when the store was opened for reading only
    /// (`StoreOptions.readOnly`), whatever the storage.
    func refuseWritesIfReadOnly(_ key: String) throws(ReadOnlyStoreError) {
        if options.readOnly { throw ReadOnlyStoreError(location: storage.location(of: key)) }
    }

    /// Checks that the storage and the lock service answer, with the operations the engine uses
    /// anyway (a one-key listing, a lock lookup), so that a readiness probe needs no extra
    /// permission, and, unless the store is read-only, that the storage can still be written
    /// (`ObjectStorage.checkWritable`: a volume gone read-only). Throws the backend's error when one
    /// does not answer or cannot be written.
    public func checkReachable() async throws {
        _ = try await storage.list(prefix: keys.prefix, startAfter: nil, limit: 1)
        if !options.readOnly { try await storage.checkWritable() }
        try await locks.checkReachable()
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

    /// `decodeFile`, and what the bytes after the valid content are.
    func decodeFileClassifyingTail(_ bytes: [UInt8], userID: String, key: String) throws -> (
        UserRecord, FileLayout, IgnoredTail
    ) {
        let decoded: (record: UserRecord, layout: FileLayout)
        do {
            decoded = try options.codec.decodeFile(bytes)
        } catch {
            throw CorruptUserFileError(
                userID: userID, location: storage.location(of: key), reason: error.description)
        }
        guard decoded.record.userID.utf8.elementsEqual(userID.utf8) else {
            throw CorruptUserFileError(
                userID: userID, location: storage.location(of: key),
                reason: "the file belongs to user '\(decoded.record.userID)'")
        }
        let layout = decoded.layout
        let tail = bytes[layout.validLength...].withUnsafeBytes {
            RecordCodec.classifyTail($0, at: layout.validLength)
        }
        return (decoded.record, layout, tail)
    }

    /// A user's object read and decoded, with what the bytes after its valid content are.
    struct DecodedObject {
        var object: StoredObject
        var record: UserRecord
        var layout: FileLayout
        var tail: IgnoredTail
    }

    /// Decodes `first` (the user's object as just read) and, when the bytes after its valid content
    /// look damaged, reads the object again: a read takes no lock, and on a volume it can see
    /// another writer's append in the middle of its write (some of the frame's pages and not
    /// others, or the end of one append and the start of the next). Damage is reported
    /// (`StoreEvents.damagedTail`) only when two reads in a row find the same bytes; a tail that
    /// keeps changing is another writer's appends, read before they were whole, and is taken for
    /// a torn append (the next read finds them). Nil when the object is gone meanwhile.
    func decodeConfirmingDamage(_ first: StoredObject, userID: String, key: String) async throws
        -> DecodedObject?
    {
        var object = first
        var (record, layout, tail) = try decodeFileClassifyingTail(object.bytes, userID: userID, key: key)
        var rereads = 0
        while tail.isDamage {
            guard rereads < Self.damageRereads else {
                tail = .tornAppend
                break
            }
            rereads += 1
            guard let again = try await storage.get(key) else { return nil }
            if again.bytes == object.bytes {
                options.events.damagedTail(
                    userID, storage.location(of: key), layout.validLength, layout.ignoredLength)
                break
            }
            object = again
            (record, layout, tail) = try decodeFileClassifyingTail(object.bytes, userID: userID, key: key)
        }
        return DecodedObject(object: object, record: record, layout: layout, tail: tail)
    }

    /// How many times a read that finds a tail that looks damaged reads the object again
    /// (`decodeConfirmingDamage`).
    static let damageRereads = 3

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
