import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Adversarial probes of `ObjectStorage.confirmDurable` and of the engine's use of it before an
/// answer that writes nothing: files replaced, deleted or grown between the read and the check,
/// version-1 files, a commit lock held by a stuck writer, group commit, retries exhausted.
@Suite(.serialized) struct DurableAnswerAdversaryTests {
    /// A `path:` storage with a hook run before each `confirmDurable` (given its call number, from
    /// 1), and an answer that may be forced.
    final class Hooked: ForwardingStorage, @unchecked Sendable {
        let path: PathStorage
        let confirms = CarbonStore.Locked(0)
        let reads = CarbonStore.Locked(0)
        let hook: @Sendable (Int, PathStorage) async throws -> Void
        let forced: Bool?

        init(
            _ inner: PathStorage, forced: Bool? = nil,
            hook: @escaping @Sendable (Int, PathStorage) async throws -> Void = { _, _ in }
        ) {
            self.path = inner
            self.forced = forced
            self.hook = hook
            super.init(inner)
        }
        override func get(_ key: String) async throws -> StoredObject? {
            reads.withLock { $0 += 1 }
            return try await super.get(key)
        }
        override func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
            reads.withLock { $0 += 1 }
            return try await super.getIfChanged(key, cached: cached)
        }
        override func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool {
            let n = confirms.withLock {
                $0 += 1
                return $0
            }
            try await hook(n, path)
            let real = try await super.confirmDurable(key, version: version)
            return forced ?? real
        }
    }

    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    static func store(
        _ storage: any ObjectStorage, groupCommit: Bool = false, retries: Int = 20
    ) -> Store {
        var options = StoreOptions()
        options.groupCommit = groupCommit
        options.maxConflictRetries = retries
        return Store(storage: storage, locks: InProcessLockService(), options: options)
    }

    /// A user "u" with a generated record and one more transaction, written by a store of its own
    /// (a snapshot and one change frame); returns that transaction.
    static func seed(_ root: String, user: String = "u") async throws -> Transaction {
        let writer = store(try PathStorage(root: root))
        var base = RecordGenerator.workload(.w1, seed: 11)
        base.userID = user
        try await writer.update(user) { $0 = base }
        let t = txn("repeat", at: 1_900_000_000_000)
        try await writer.update(user) { try $0.upsert(t) }
        return t
    }

    /// Between the read and the check, the file is replaced by a compaction (the same record, a
    /// new snapshot renamed in place): the check fails, the call reads again and finds the user
    /// still as requested. It wrote nothing, in any attempt: the answer is `.unchanged`, not
    /// `.asRequestedAfterRetry` (which says an earlier attempt of this call may have written).
    @Test func aCheckFailedByACompactionAnswersUnchanged() async throws {
        let dir = try TemporaryDirectory("adv2-compacted")
        defer { dir.remove() }
        let t = try await Self.seed(dir.path)
        let storage = Hooked(try PathStorage(root: dir.path)) { n, inner in
            guard n == 1 else { return }
            let key = try UserKeys().key(for: "u")
            let record = try RecordCodec().decodeFile(try #require(try await inner.get(key)).bytes).record
            let (bytes, _) = try RecordCodec().encodeSnapshot(record, fileID: .random())
            _ = try await inner.put(key, bytes: bytes, condition: .unconditional)
        }
        let store = Self.store(storage)
        let answer = try await store.update("u") { try $0.upsert(t) }
        #expect(storage.confirms.withLock { $0 } == 2, "checked again after the compaction")
        #expect(answer.value == .unchanged)
        #expect(!answer.committed)
        #expect(answer.outcome == .unchanged, "no attempt of this call wrote anything: \(answer.outcome)")
    }

    /// The same with group commit: a batch of repeats whose check fails once (another writer
    /// appended an unrelated frame meanwhile) answers every call `.unchanged`.
    @Test func aBatchOfRepeatsWhoseCheckFailsOnceAnswersUnchanged() async throws {
        let dir = try TemporaryDirectory("adv2-batch")
        defer { dir.remove() }
        let t = try await Self.seed(dir.path)
        let storage = Hooked(try PathStorage(root: dir.path)) { n, _ in
            guard n == 1 else { return }
            let other = Self.store(try PathStorage(root: dir.path))
            try await other.update("u") { try $0.upsert(Self.txn("other", at: 1_950_000_000_000)) }
        }
        let store = Self.store(storage, groupCommit: true)
        let answers = try await withThrowingTaskGroup(of: UpdateResult<UpsertOutcome>.self) { group in
            for _ in 0..<6 { group.addTask { try await store.update("u") { try $0.upsert(t) } } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.count == 6)
        #expect(answers.allSatisfy { $0.value == .unchanged && !$0.committed })
        #expect(
            answers.allSatisfy { $0.record.transaction(id: "other") != nil }, "answered on the latest record")
        #expect(storage.confirms.withLock { $0 } >= 2)
        #expect(answers.allSatisfy { $0.outcome == .unchanged }, "\(answers.map(\.outcome))")
    }

    /// Between the read and the check the user is deleted: the check fails, and the call decides
    /// again on no user, and inserts the transaction itself.
    @Test func aUserDeletedBeforeTheCheckIsWrittenAgain() async throws {
        let dir = try TemporaryDirectory("adv2-deleted")
        defer { dir.remove() }
        let t = try await Self.seed(dir.path)
        let storage = Hooked(try PathStorage(root: dir.path)) { n, inner in
            guard n == 1 else { return }
            _ = try await inner.delete(try UserKeys().key(for: "u"), condition: .unconditional)
        }
        let store = Self.store(storage)
        let answer = try await store.update("u") { try $0.upsert(t) }
        #expect(answer.value == .inserted && answer.committed, "\(answer.outcome)")
        #expect(answer.record.transactions.count == 1)
        let fresh = try await Self.store(try PathStorage(root: dir.path)).get("u")
        #expect(fresh == answer.record)
    }

    /// A check that never succeeds: the call gives up after `maxConflictRetries` more attempts,
    /// with `WriteConflictError`, reading the user again (not from the cache) at each attempt.
    @Test(arguments: [0, 1, 3])
    func retriesExhaustedIsAWriteConflict(retries: Int) async throws {
        let dir = try TemporaryDirectory("adv2-exhausted")
        defer { dir.remove() }
        let t = try await Self.seed(dir.path)
        let storage = Hooked(try PathStorage(root: dir.path), forced: false)
        let store = Self.store(storage, retries: retries)
        let started = ContinuousClock.now
        await #expect(throws: WriteConflictError.self) { try await store.update("u") { try $0.upsert(t) } }
        do {
            try await store.update("u") { try $0.upsert(t) }
        } catch let error as WriteConflictError {
            #expect(error.attempts == retries + 1)
            #expect(error.description.contains("'u'"))
        }
        #expect(storage.confirms.withLock { $0 } == 2 * (retries + 1))
        #expect(storage.reads.withLock { $0 } == 2 * (retries + 1))
        #expect(ContinuousClock.now - started < .seconds(10))
        // Nothing was written: the file is as seeded.
        let fresh = try await Self.store(try PathStorage(root: dir.path)).get("u")
        #expect(fresh.transaction(id: "repeat") == t && fresh.revision == 2)
    }

    /// A version-1 file (replaced only by renames) needs no check: a repeat answers at once, even
    /// while a stuck writer holds the folder's commit lock.
    @Test func aRepeatOnAVersion1FileNeedsNoCommitLock() async throws {
        let dir = try TemporaryDirectory("adv2-v1")
        defer { dir.remove() }
        let path = try PathStorage(root: dir.path)
        var record = RecordGenerator.workload(.w1, seed: 12)
        record.userID = "u"
        let t = Self.txn("repeat", at: 1_900_000_000_000)
        try record.upsert(t)
        let key = try UserKeys().key(for: "u")
        _ = try await path.put(key, bytes: RecordCodec().encodeVersion1(record), condition: .mustNotExist)
        let holder = try Self.holdCommitLock(of: path.location(of: key))
        defer { holder.release() }
        let storage = Hooked(try PathStorage(root: dir.path, io: .posix, commitLockWait: .milliseconds(300)))
        let store = Self.store(storage)
        let answer = try await store.update("u") { try $0.upsert(t) }
        #expect(answer.value == .unchanged && !answer.committed)
        #expect(storage.confirms.withLock { $0 } == 1)
    }

    /// The commit lock of a folder, held as a stuck writer would hold it, until `release`.
    final class Holder: Sendable {
        let fd: Int32
        let released = CarbonStore.Locked(false)
        init(_ fd: Int32) { self.fd = fd }
        func release() {
            let first = released.withLock { r -> Bool in
                defer { r = true }
                return !r
            }
            if first { _ = Glibc.close(fd) }
        }
    }

    /// Takes the commit lock of the folder of the file at `file`.
    static func holdCommitLock(of file: String) throws -> Holder {
        let folder = (file as NSString).deletingLastPathComponent
        let fd = open(folder + "/.commit.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageIOError(operation: "open", path: folder, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            _ = Glibc.close(fd)
            throw StorageIOError(operation: "flock", path: folder, errno: code)
        }
        return Holder(fd)
    }

    /// A stuck writer holds the commit lock: a repeat on a version-2 file fails after the commit
    /// lock's wait, with an error that names the lock, not a hang.
    @Test func aStuckCommitLockFailsTheRepeatClearlyAndInTime() async throws {
        let dir = try TemporaryDirectory("adv2-stuck")
        defer { dir.remove() }
        let t = try await Self.seed(dir.path)
        let key = try UserKeys().key(for: "u")
        let storage = Hooked(try PathStorage(root: dir.path, io: .posix, commitLockWait: .milliseconds(300)))
        let holder = try Self.holdCommitLock(of: storage.location(of: key))
        defer { holder.release() }
        let store = Self.store(storage)
        let started = ContinuousClock.now
        do {
            try await store.update("u") { try $0.upsert(t) }
            Issue.record("a repeat answered without its check, the commit lock being held")
        } catch let error as CommitLockTimeoutError {
            // A lock timeout (exit 6, HTTP 503), as the user's lock's: nothing was written.
            #expect(error.kind == .lockTimeout)
            #expect(error.path.hasSuffix(".commit.lock"), "\(error)")
            #expect(error.description.contains("hung"), "\(error)")
            #expect(error.description.contains("timed out after 300 ms"), "\(error)")
            #expect(error.description.contains("lslocks "), "\(error)")
            #expect(error.description.contains("nothing was written"), "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(5))
        // Once the writer lets go, the repeat answers.
        holder.release()
        let again = try await store.update("u") { try $0.upsert(t) }
        #expect(again.value == .unchanged && !again.committed)
    }

    /// `confirmDurable` itself against every state of the file: the same, a torn tail after it, a
    /// committed frame after it, another snapshot, no file, no folder.
    @Test func confirmDurableAgainstEveryStateOfTheFile() async throws {
        let dir = try TemporaryDirectory("adv2-direct")
        defer { dir.remove() }
        _ = try await Self.seed(dir.path)
        let storage = try PathStorage(root: dir.path)
        let key = try UserKeys().key(for: "u")
        let path = storage.location(of: key)
        let read = try #require(try await storage.get(key))
        #expect(try await storage.confirmDurable(key, version: read.version))

        // A torn append after the content: still the version's content.
        let codec = RecordCodec()
        let (record, layout) = try codec.decodeFile(read.bytes)
        var next = record
        next.revision += 1
        try next.upsert(Self.txn("torn", at: 1_960_000_000_000))
        let frame = try #require(
            codec.encodeChange(from: record, to: next, appendingTo: layout, id: .random()))
        try TornAppend.write(Array(frame.bytes.prefix(frame.bytes.count / 2)), intoUserFileAt: path)
        #expect(try await storage.confirmDurable(key, version: read.version), "a torn tail is not content")

        // A committed frame after it: changed.
        let store = Self.store(storage)
        try await store.update("u") { try $0.upsert(Self.txn("grown", at: 1_970_000_000_000)) }
        #expect(try await storage.confirmDurable(key, version: read.version) == false)
        let grown = try #require(try await storage.get(key))
        #expect(try await storage.confirmDurable(key, version: grown.version))

        // Another snapshot with the same record: changed.
        let (bytes, _) = try codec.encodeSnapshot(try codec.decodeFile(grown.bytes).record, fileID: .random())
        _ = try await storage.put(key, bytes: bytes, condition: .unconditional)
        #expect(try await storage.confirmDurable(key, version: grown.version) == false)

        // No file; no folder.
        _ = try await storage.delete(key, condition: .unconditional)
        #expect(try await storage.confirmDurable(key, version: grown.version) == false)
        try FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent)
        #expect(try await storage.confirmDurable(key, version: grown.version) == false)
    }
}
