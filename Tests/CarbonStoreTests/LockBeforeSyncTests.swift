import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// On a local file system an update that appends lets the user's lock go once its frame is in the
/// file, while the frame is made durable (`StoreOptions.releasesLockBeforeSync`). The next writer
/// reads the file and runs its mutation meanwhile; it cannot write before the first frame is
/// durable (the commit lock is held through the fdatasync), and if that fdatasync fails and the
/// frame is cut, the fence turns the next writer back to a fresh read.
///
/// Two stores over one folder, each with its own lock service, stand for two processes: `flock`
/// locks of two open files conflict in one process as they do between processes. The first
/// writer's fdatasync is held up (`DurableAnswerTests.SlowSync`) on a thread of its own.
@Suite(.serialized) struct LockBeforeSyncTests {
    typealias SlowSync = DurableAnswerTests.SlowSync
    typealias BlockingWriter = DurableAnswerTests.BlockingWriter

    /// A store over `dir` with its own `path:` storage (seen through `wrap`), committing each update
    /// in its caller's task (a batch commits in a task of its own, which would not run on
    /// `BlockingWriter`).
    static func store(
        _ dir: String, io: FileIO = .posix, releasesLockBeforeSync: Bool = true,
        wrap: (PathStorage) -> any ObjectStorage = { $0 },
        locks: (PathStorage) -> any LockService = { FileLockService(storage: $0) },
        configure: (inout StoreOptions) -> Void = { _ in }
    ) throws -> Store {
        let storage = try PathStorage(root: dir, io: io)
        var options = StoreOptions()
        options.groupCommit = false
        options.releasesLockBeforeSync = releasesLockBeforeSync
        configure(&options)
        return Store(storage: wrap(storage), locks: locks(storage), options: options)
    }

    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 250, currency: CurrencyCode("EUR")!))
    }

    static let first = txn("first", at: 1_900_000_000_000)
    static let second = txn("second", at: 1_900_000_000_001)
    static let third = txn("third", at: 1_900_000_000_002)

    /// What the second writer's mutation saw, each time it ran.
    struct Seen: Sendable {
        var duringFirstSync: Bool
        var sawFirst: Bool
    }

    /// Writer A (holding `sync`) appends `first` and is held in its fdatasync; then writer B appends
    /// `second`. Returns both tasks and what B's mutation saw each time it ran.
    static func race(
        _ dir: String, user: String, sync: SlowSync, releasesLockBeforeSync: Bool = true,
        locks: @escaping @Sendable (PathStorage) -> any LockService = { FileLockService(storage: $0) }
    ) async throws -> (
        a: Task<UpdateResult<UpsertOutcome>, any Error>, b: Task<UpdateResult<UpsertOutcome>, any Error>,
        seen: CarbonStore.Locked<[Seen]>
    ) {
        let seeder = try store(dir, locks: locks)
        var base = RecordGenerator.workload(.w1, seed: 11)
        base.userID = user
        try await seeder.update(user) { $0 = base }

        let a = try store(dir, io: sync.io, releasesLockBeforeSync: releasesLockBeforeSync, locks: locks)
        let b = try store(dir, releasesLockBeforeSync: releasesLockBeforeSync, locks: locks)
        let t1 = first
        let t2 = second
        let taskA = Task(executorPreference: BlockingWriter()) {
            try await a.update(user) { try $0.upsert(t1) }
        }
        try await DurableAnswerTests.waitUntil { sync.inSync }
        let seen = CarbonStore.Locked<[Seen]>([])
        let taskB = Task {
            try await b.update(user) { r in
                seen.withLock {
                    $0.append(Seen(duringFirstSync: sync.inSync, sawFirst: r.transaction(id: "first") != nil))
                }
                return try r.upsert(t2)
            }
        }
        return (taskA, taskB, seen)
    }

    @Test func theNextWriterPreparesWhileTheFirstFrameIsMadeDurable() async throws {
        let dir = try TemporaryDirectory("lock-before-sync")
        defer { dir.remove() }
        let sync = SlowSync(fails: false)
        let (a, b, seen) = try await Self.race(dir.path, user: "amy", sync: sync)
        // B's mutation runs while A is still in its fdatasync: the user's lock was let go.
        try await DurableAnswerTests.waitUntil { !seen.withLock { $0 }.isEmpty }
        #expect(seen.withLock { $0 }.first?.duringFirstSync == true)
        #expect(seen.withLock { $0 }.first?.sawFirst == true, "B read A's frame")
        // B cannot commit before A's frame is durable: it waits for the commit lock.
        try await Task.sleep(for: .milliseconds(150))
        #expect(sync.inSync)
        #expect(sync.calls == 1, "no other fdatasync ran while the first was held: B has not appended")
        sync.letGo()
        let one = try await a.value
        let two = try await b.value
        #expect(one.committed && two.committed)
        #expect(seen.withLock { $0 }.count == 1, "B's mutation ran once: its fence held")
        #expect(two.record.revision == one.record.revision + 1)
        let fresh = try Self.store(dir.path)
        let record = try await fresh.get("amy")
        #expect(record.transaction(id: "first") == Self.first)
        #expect(record.transaction(id: "second") == Self.second)
        #expect(record == two.record)
        // Two frames chained after the snapshot: B appended after A, nothing was rewritten.
        let path = fresh.storage.location(of: try fresh.keys.key(for: "amy"))
        let bytes = try #require(FileManager.default.contents(atPath: path))
        #expect(try RecordCodec().decodeFile([UInt8](bytes)).layout.frameCount == 2)
    }

    @Test func aFailedFirstSyncTurnsTheNextWriterBackToAFreshRead() async throws {
        // A's fdatasync fails: A cuts its frame (holding the commit lock) and fails. B, which ran
        // its mutation on a record holding A's frame, finds the file changed when it writes, and
        // runs its mutation again on the file without that frame.
        let dir = try TemporaryDirectory("lock-before-sync-fails")
        defer { dir.remove() }
        let sync = SlowSync(fails: true)
        let (a, b, seen) = try await Self.race(dir.path, user: "bob", sync: sync)
        try await DurableAnswerTests.waitUntil { !seen.withLock { $0 }.isEmpty }
        try await Task.sleep(for: .milliseconds(100))
        sync.letGo()
        await #expect(throws: StorageIOError.self) { try await a.value }
        let two = try await b.value
        #expect(two.committed)
        let runs = seen.withLock { $0 }
        #expect(runs.count == 2, "\(runs)")
        #expect(runs.first?.sawFirst == true && runs.first?.duringFirstSync == true)
        #expect(runs.last?.sawFirst == false, "the retry read the file without the cut frame")
        let record = try await Self.store(dir.path).get("bob")
        #expect(record.transaction(id: "first") == nil, "the frame whose fdatasync failed is gone")
        #expect(record.transaction(id: "second") == Self.second)
        #expect(record == two.record)
    }

    @Test func withTheOptionOffTheLockIsHeldThroughTheSync() async throws {
        let dir = try TemporaryDirectory("lock-through-sync")
        defer { dir.remove() }
        let sync = SlowSync(fails: false)
        let (a, b, seen) = try await Self.race(
            dir.path, user: "cy", sync: sync, releasesLockBeforeSync: false)
        try await Task.sleep(for: .milliseconds(200))
        #expect(seen.withLock { $0 }.isEmpty, "B waits for the user's lock while A is in its fdatasync")
        sync.letGo()
        _ = try await a.value
        _ = try await b.value
        #expect(seen.withLock { $0 }.map(\.duringFirstSync) == [false])
    }

    /// A lock service that lets a lease go only by `release` (as DynamoDB's does): the default
    /// `releaseAtOnce` keeps it.
    final class OnlyReleasedAfter: LockService {
        let inner: any LockService
        init(_ inner: any LockService) { self.inner = inner }
        func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
            try await inner.acquire(name, userID: userID, wait: wait)
        }
        func renew(_ lease: Lease) async throws -> Lease { try await inner.renew(lease) }
        func release(_ lease: Lease) async throws { try await inner.release(lease) }
    }

    @Test func aLockThatCannotBeLetGoAtOnceIsHeldThroughTheSync() async throws {
        let dir = try TemporaryDirectory("lock-kept")
        defer { dir.remove() }
        let sync = SlowSync(fails: false)
        let (a, b, seen) = try await Self.race(dir.path, user: "di", sync: sync) {
            OnlyReleasedAfter(FileLockService(storage: $0))
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(seen.withLock { $0 }.isEmpty)
        sync.letGo()
        _ = try await a.value
        _ = try await b.value
        #expect(seen.withLock { $0 }.map(\.duringFirstSync) == [false])
    }

    @Test func theLockServicesSayWhetherTheyLetGoAtOnce() async throws {
        let dir = try TemporaryDirectory("lock-at-once")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let files = FileLockService(storage: storage)
        let lease = try await files.acquire("ab/cd/u", userID: "u", wait: .seconds(1))
        #expect(files.releaseAtOnce(lease))
        // Let go: another holder takes it at once, and the later release does nothing to it.
        let other = FileLockService(storage: storage)
        let next = try await other.acquire("ab/cd/u", userID: "u", wait: .milliseconds(200))
        try await files.release(lease)
        await #expect(throws: LockTimeoutError.self) {
            _ = try await files.acquire("ab/cd/u", userID: "u", wait: .milliseconds(100))
        }
        try await other.release(next)

        let turns = InProcessLockService()
        let held = try await turns.acquire("k", userID: "u", wait: .seconds(1))
        #expect(turns.releaseAtOnce(held))
        _ = try await turns.acquire("k", userID: "u", wait: .milliseconds(100))
        #expect(NoLockService().releaseAtOnce(held))
        #expect(!OnlyReleasedAfter(turns).releaseAtOnce(held))
    }
}

/// A storage written before `append` could say when its bytes are written: it implements the
/// three-argument `append` only. The engine's appends still go through it, holding the lock until
/// they are durable.
@Suite struct OlderAppendingStorageTests {
    struct OlderStorage: ObjectStorage {
        let base: PathStorage
        let appends = CarbonStore.Locked(0)
        func get(_ key: String) async throws -> StoredObject? { try await base.get(key) }
        func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
            try await base.put(key, bytes: bytes, condition: condition)
        }
        func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
            try await base.delete(key, condition: condition)
        }
        func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
            try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
        }
        func location(of key: String) -> String { base.location(of: key) }
        func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
            try await base.getIfChanged(key, cached: cached)
        }
        var appendsInPlace: Bool { true }
        func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion {
            appends.withLock { $0 += 1 }
            return try await base.append(key, bytes: bytes, expected: expected)
        }
        func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool {
            try await base.confirmDurable(key, version: version)
        }
    }

    @Test func itsAppendsAreUsed() async throws {
        let dir = try TemporaryDirectory("older-storage")
        defer { dir.remove() }
        let storage = OlderStorage(base: try PathStorage(root: dir.path))
        let store = Store(storage: storage, locks: FileLockService(storage: storage.base))
        var base = RecordGenerator.workload(.w1, seed: 3)
        base.userID = "old"
        try await store.update("old") { $0 = base }
        for k in 0..<3 {
            try await store.update("old") {
                try $0.upsert(LockBeforeSyncTests.txn("o\(k)", at: 1_900_000_000_000 + Int64(k)))
            }
        }
        #expect(storage.appends.withLock { $0 } == 3)
        let fresh = try await Store(storage: try PathStorage(root: dir.path), locks: NoLockService()).get(
            "old")
        #expect(fresh.transaction(id: "o2") != nil)
    }
}
