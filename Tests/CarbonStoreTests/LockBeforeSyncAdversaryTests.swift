import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Attacks on the early release of the user's lock (`StoreOptions.releasesLockBeforeSync`): writer
/// A appends a frame and is held in its fdatasync (on a thread of its own) after it let the user's
/// lock go; the next writers read, decide and try to write meanwhile. Each store stands for a
/// process (its own storage, lock service and record cache), unless a test shares one.
@Suite(.serialized) struct LockBeforeSyncAdversaryTests {
    typealias SlowSync = DurableAnswerTests.SlowSync
    typealias BlockingWriter = DurableAnswerTests.BlockingWriter

    static func waitUntil(_ condition: () -> Bool) async throws {
        try await DurableAnswerTests.waitUntil(condition)
    }

    static func store(
        _ dir: String, io: FileIO = .posix, wrap: (PathStorage) -> any ObjectStorage = { $0 },
        locks: (PathStorage) -> any LockService = { FileLockService(storage: $0) },
        configure: (inout StoreOptions) -> Void = { _ in }
    ) throws -> Store {
        try LockBeforeSyncTests.store(dir, io: io, wrap: wrap, locks: locks, configure: configure)
    }

    static let first = LockBeforeSyncTests.first
    static let second = LockBeforeSyncTests.second
    static let third = LockBeforeSyncTests.third

    /// A store (another process) whose storage counts what it reads and writes (`Watching`).
    static func watchingStore(
        _ dir: String, sync: SlowSync, configure: (inout StoreOptions) -> Void = { _ in }
    ) throws -> (Store, Watching) {
        var watching: Watching?
        let store = try store(
            dir,
            wrap: { inner in
                let w = Watching(inner, sync: sync)
                watching = w
                return w
            }, configure: configure)
        return (store, try #require(watching))
    }

    /// Seeds `user` (a version-3 snapshot) and returns its record.
    @discardableResult
    static func seed(_ dir: String, user: String) async throws -> UserRecord {
        var base = RecordGenerator.workload(.w1, seed: 21)
        base.userID = user
        return try await store(dir).update(user) { $0 = base }.record
    }

    /// Writer A (its own store over `sync.io`) upserts `first` on a thread of its own; returns once
    /// A is held in its fdatasync.
    static func startFirst(
        _ dir: String, user: String, sync: SlowSync,
        locks: @escaping (PathStorage) -> any LockService = { FileLockService(storage: $0) },
        wrap: (PathStorage) -> any ObjectStorage = { $0 },
        configure: (inout StoreOptions) -> Void = { _ in }
    ) async throws -> Task<UpdateResult<UpsertOutcome>, any Error> {
        let a = try store(dir, io: sync.io, wrap: wrap, locks: locks, configure: configure)
        return try await startFirst(a, user: user, sync: sync)
    }

    static func startFirst(_ a: Store, user: String, sync: SlowSync) async throws -> Task<
        UpdateResult<UpsertOutcome>, any Error
    > {
        let t = first
        let task = Task(executorPreference: BlockingWriter()) {
            try await a.update(user) { try $0.upsert(t) }
        }
        try await waitUntil { sync.inSync }
        return task
    }

    static func fileBytes(_ dir: String, user: String) throws -> [UInt8]? {
        let s = try store(dir)
        let path = s.storage.location(of: try s.keys.key(for: user))
        return FileManager.default.contents(atPath: path).map { [UInt8]($0) }
    }

    // MARK: - A second writer that answers without writing

    /// With `locking=local` (not only `none`), the next writer can now read A's frame while it is
    /// not durable. A repeat of A's change must not be answered before A's fdatasync is over.
    @Test(arguments: [false, true])
    func aRepeatUnderTheUserLockIsAnsweredOnlyOnDurableContent(fails: Bool) async throws {
        let dir = try TemporaryDirectory("lbs-adv-repeat")
        defer { dir.remove() }
        try await Self.seed(dir.path, user: "ann")
        let sync = SlowSync(fails: fails)
        let a = try await Self.startFirst(dir.path, user: "ann", sync: sync)
        let b = try Self.store(dir.path)
        let decided = CarbonStore.Locked<[Bool]>([])
        let answered = CarbonStore.Locked(false)
        let t = Self.first
        let taskB = Task {
            defer { answered.withLock { $0 = true } }
            return try await b.update("ann") { r in
                decided.withLock { $0.append(sync.inSync) }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { !decided.withLock { $0 }.isEmpty }
        #expect(decided.withLock { $0 }.first == true, "B decided on A's frame during A's fdatasync")
        try await Task.sleep(for: .milliseconds(150))
        #expect(!answered.withLock { $0 }, "B is not answered while the frame it read is not durable")
        sync.letGo()
        let two = try await taskB.value
        let fresh = try await Self.store(dir.path).get("ann")
        if fails {
            await #expect(throws: StorageIOError.self) { try await a.value }
            #expect(two.value == .inserted && two.committed, "\(two.outcome)")
        } else {
            let one = try await a.value
            #expect(one.committed)
            #expect(two.value == .unchanged && !two.committed)
            #expect(two.record == one.record)
        }
        #expect(fresh.transaction(id: "first") == Self.first)
        #expect(fresh == two.record)
    }

    // MARK: - Deletes and compactions racing the fdatasync

    /// Counts the conditional writes of a store and whether A was in its fdatasync at each.
    final class Watching: ForwardingStorage, @unchecked Sendable {
        let sync: SlowSync
        let reads = CarbonStore.Locked<[Bool]>([])
        let deletes = CarbonStore.Locked(0)
        let puts = CarbonStore.Locked(0)
        init(_ inner: any ObjectStorage, sync: SlowSync) {
            self.sync = sync
            super.init(inner)
        }
        override func get(_ key: String) async throws -> StoredObject? {
            reads.withLock { $0.append(sync.inSync) }
            return try await super.get(key)
        }
        override func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
            deletes.withLock { $0 += 1 }
            return try await super.delete(key, condition: condition)
        }
        override func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws
            -> ObjectVersion
        {
            puts.withLock { $0 += 1 }
            return try await super.put(key, bytes: bytes, condition: condition)
        }
    }

    @Test(arguments: [false, true])
    func aDeleteDecidedDuringTheFirstSyncWaitsForItAndSeesACut(fails: Bool) async throws {
        let dir = try TemporaryDirectory("lbs-adv-delete")
        defer { dir.remove() }
        try await Self.seed(dir.path, user: "bea")
        let sync = SlowSync(fails: fails)
        let a = try await Self.startFirst(dir.path, user: "bea", sync: sync)
        let (b, w) = try Self.watchingStore(dir.path, sync: sync)
        let taskB = Task { try await b.delete("bea") }
        try await Self.waitUntil { w.deletes.withLock { $0 } > 0 }
        #expect(w.reads.withLock { $0 }.first == true, "B read the file during A's fdatasync")
        try await Task.sleep(for: .milliseconds(100))
        #expect(
            try Self.fileBytes(dir.path, user: "bea") != nil, "B cannot delete before A's frame is durable")
        sync.letGo()
        if fails {
            await #expect(throws: StorageIOError.self) { try await a.value }
        } else {
            #expect(try await a.value.committed)
        }
        #expect(try await taskB.value == .deleted)
        // After a cut, B's first delete was refused by the fence and it read again.
        #expect(w.deletes.withLock { $0 } == (fails ? 2 : 1))
        #expect(try Self.fileBytes(dir.path, user: "bea") == nil)
        #expect(try await Self.store(dir.path).read("bea") == nil)
    }

    @Test(arguments: [false, true])
    func aCompactionDecidedDuringTheFirstSyncWaitsForItAndSeesACut(fails: Bool) async throws {
        let dir = try TemporaryDirectory("lbs-adv-compact")
        defer { dir.remove() }
        let base = try await Self.seed(dir.path, user: "cid")
        let sync = SlowSync(fails: fails)
        let a = try await Self.startFirst(dir.path, user: "cid", sync: sync)
        let (b, w) = try Self.watchingStore(dir.path, sync: sync) {
            $0.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
        }
        let runs = CarbonStore.Locked<[Bool]>([])
        let t = Self.second
        let taskB = Task {
            try await b.update("cid") { r in
                runs.withLock { $0.append(r.transaction(id: "first") != nil) }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { w.puts.withLock { $0 } > 0 }
        #expect(runs.withLock { $0 } == [true], "B compacts a record holding A's frame")
        try await Task.sleep(for: .milliseconds(100))
        sync.letGo()
        let two = try await taskB.value
        #expect(two.committed)
        let record = try await Self.store(dir.path).get("cid")
        let bytes = try #require(try Self.fileBytes(dir.path, user: "cid"))
        let layout = try RecordCodec().decodeFile(bytes).layout
        #expect(layout.frameCount == 0, "B wrote a snapshot")
        #expect(record == two.record)
        #expect(record.transaction(id: "second") == Self.second)
        if fails {
            await #expect(throws: StorageIOError.self) { try await a.value }
            #expect(
                runs.withLock { $0 } == [true, false], "the fence turned B back to the file without A's frame"
            )
            #expect(record.transaction(id: "first") == nil)
            #expect(record.revision == base.revision + 1)
        } else {
            #expect(try await a.value.committed)
            #expect(runs.withLock { $0 } == [true])
            #expect(record.transaction(id: "first") == Self.first)
            #expect(record.revision == base.revision + 2)
        }
    }

    // MARK: - The record cache of the next writer's process

    @Test func theNextProcessForgetsARecordItReadFromAFrameThatIsCut() async throws {
        let dir = try TemporaryDirectory("lbs-adv-cache")
        defer { dir.remove() }
        try await Self.seed(dir.path, user: "dot")
        let b = try Self.store(dir.path)
        // B's cache holds the user before A's frame.
        #expect(try await b.get("dot").transaction(id: "first") == nil)
        let sync = SlowSync(fails: true)
        let a = try await Self.startFirst(dir.path, user: "dot", sync: sync)
        // B's update runs its mutation on A's frame (applied to its cached record) and waits for
        // the commit lock; a read of B's process caches that record too.
        let runs = CarbonStore.Locked<[Bool]>([])
        let t = Self.second
        let taskB = Task {
            try await b.update("dot") { r in
                runs.withLock { $0.append(r.transaction(id: "first") != nil) }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { !runs.withLock { $0 }.isEmpty }
        #expect(runs.withLock { $0 } == [true])
        sync.letGo()
        await #expect(throws: StorageIOError.self) { try await a.value }
        let two = try await taskB.value
        #expect(runs.withLock { $0 } == [true, false])
        // Neither B's cache nor a fresh reader shows the cut frame.
        let cached = try await b.get("dot")
        let fresh = try await Self.store(dir.path).get("dot")
        #expect(cached.transaction(id: "first") == nil)
        #expect(cached == fresh && fresh == two.record)
        // A read of B's process made while A was held, then one after the cut.
        let sync2 = SlowSync(fails: true)
        let a2 = try await Self.startFirst(dir.path, user: "dot", sync: sync2)
        #expect(try await b.get("dot").transaction(id: "first") == Self.first, "a read takes no lock")
        sync2.letGo()
        await #expect(throws: StorageIOError.self) { try await a2.value }
        #expect(try await b.get("dot") == fresh, "the cached record built on the cut frame is not used")
    }

    // MARK: - A third writer

    /// A's fdatasync fails while B (holding the user's lock) waits for the commit lock and C waits
    /// for the user's lock: C never runs its mutation before B has written, and nothing of A stays.
    @Test func aThirdWriterWaitsForTheSecondAndNothingOfACutFrameStays() async throws {
        let dir = try TemporaryDirectory("lbs-adv-third")
        defer { dir.remove() }
        let base = try await Self.seed(dir.path, user: "eli")
        let sync = SlowSync(fails: true)
        let a = try await Self.startFirst(dir.path, user: "eli", sync: sync)
        let b = try Self.store(dir.path)
        let c = try Self.store(dir.path)
        let log = CarbonStore.Locked<[String]>([])
        let t2 = Self.second
        let t3 = Self.third
        let taskB = Task {
            try await b.update("eli") { r in
                log.withLock { $0.append("b:\(r.transaction(id: "first") != nil)") }
                return try r.upsert(t2)
            }
        }
        try await Self.waitUntil { !log.withLock { $0 }.isEmpty }
        let taskC = Task {
            try await c.update("eli") { r in
                log.withLock {
                    $0.append("c:\(r.transaction(id: "first") != nil):\(r.transaction(id: "second") != nil)")
                }
                return try r.upsert(t3)
            }
        }
        try await Task.sleep(for: .milliseconds(150))
        #expect(log.withLock { $0 } == ["b:true"], "C waits for the user's lock that B holds")
        sync.letGo()
        await #expect(throws: StorageIOError.self) { try await a.value }
        let two = try await taskB.value
        let three = try await taskC.value
        #expect(log.withLock { $0 } == ["b:true", "b:false", "c:false:true"])
        #expect(two.committed && three.committed)
        let record = try await Self.store(dir.path).get("eli")
        #expect(record == three.record)
        #expect(record.transaction(id: "first") == nil)
        #expect(record.revision == base.revision + 2)
    }

    // MARK: - The fence off

    /// Counts `whenWritten` calls.
    final class CountingWhenWritten: ForwardingStorage, @unchecked Sendable {
        let calls = CarbonStore.Locked(0)
        override func append(
            _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
        ) async throws -> ObjectVersion {
            try await super.append(key, bytes: bytes, expected: expected) {
                calls.withLock { $0 += 1 }
                whenWritten()
            }
        }
    }

    @Test(arguments: [false, true])
    func withTheFenceOffTheFrameIsNeverSaidWrittenAndTheLockIsKept(fenceOff: Bool) async throws {
        let dir = try TemporaryDirectory("lbs-adv-nofence")
        defer { dir.remove() }
        try await Self.seed(dir.path, user: "fay")
        let sync = SlowSync(fails: false)
        var counting: CountingWhenWritten?
        let a = try await Self.startFirst(
            dir.path, user: "fay", sync: sync,
            wrap: { inner in
                let c = CountingWhenWritten(inner)
                counting = c
                return c
            },
            configure: { $0.unsafeDisableFence = fenceOff })
        let b = try Self.store(dir.path)
        let runs = CarbonStore.Locked<[Bool]>([])
        let t = Self.second
        let taskB = Task {
            try await b.update("fay") { r in
                runs.withLock { $0.append(sync.inSync) }
                return try r.upsert(t)
            }
        }
        try await Task.sleep(for: .milliseconds(150))
        #expect(runs.withLock { $0 }.isEmpty == fenceOff, "without the fence B waits for the user's lock")
        sync.letGo()
        #expect(try await a.value.committed)
        #expect(try await taskB.value.committed)
        #expect(try #require(counting).calls.withLock { $0 } == (fenceOff ? 0 : 1))
        let record = try await Self.store(dir.path).get("fay")
        #expect(record.transaction(id: "first") == Self.first)
        #expect(record.transaction(id: "second") == Self.second)
    }

    // MARK: - The lease let go early

    /// Two stores of one process share one lock service (tasks of one process, group commit off).
    /// A lets its lease go early; B takes the lock and holds it in its mutation; A's own release,
    /// after its fdatasync, must leave B's lock alone.
    @Test func theReleaseAfterTheSyncLeavesTheNextHoldersLockAlone() async throws {
        let dir = try TemporaryDirectory("lbs-adv-release")
        defer { dir.remove() }
        try await Self.seed(dir.path, user: "gus")
        let shared = FileLockService(storage: try PathStorage(root: dir.path))
        let sync = SlowSync(fails: false)
        let a = try await Self.startFirst(dir.path, user: "gus", sync: sync, locks: { _ in shared })
        let b = try Self.store(dir.path, locks: { _ in shared })
        let proceed = CarbonStore.Locked(false)
        let inMutation = CarbonStore.Locked(false)
        let t = Self.second
        // B's mutation blocks its thread: a queue of its own.
        let taskB = Task(executorPreference: BlockingWriter()) {
            try await b.update("gus") { r in
                inMutation.withLock { $0 = true }
                let deadline = ContinuousClock.now + .seconds(30)
                while !proceed.withLock({ $0 }) && ContinuousClock.now < deadline { usleep(2_000) }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { inMutation.withLock { $0 } }
        sync.letGo()
        #expect(try await a.value.committed)
        // A has returned (its release ran). B still holds the lock: another process cannot take it.
        let other = FileLockService(storage: try PathStorage(root: dir.path))
        let key = try b.keys.key(for: "gus")
        await #expect(throws: LockTimeoutError.self) {
            _ = try await other.acquire(key, userID: "gus", wait: .milliseconds(150))
        }
        proceed.withLock { $0 = true }
        #expect(try await taskB.value.committed)
        let lease = try await other.acquire(key, userID: "gus", wait: .seconds(5))
        try await other.release(lease)
    }

    // MARK: - One store, two tasks; cancellation; a neighbour in the folder

    /// Two tasks of one store (one lock service, one record cache, group commit off): B prepares
    /// on A's frame while A is held; whatever A's fdatasync does, the cache ends as the file.
    @Test(arguments: [false, true])
    func twoTasksOfOneStoreEndWithTheCacheAsTheFile(fails: Bool) async throws {
        let dir = try TemporaryDirectory("lbs-adv-one-store")
        defer { dir.remove() }
        let base = try await Self.seed(dir.path, user: "jo")
        let sync = SlowSync(fails: fails)
        let s = try Self.store(dir.path, io: sync.io)
        #expect(try await s.get("jo") == base)
        let a = try await Self.startFirst(s, user: "jo", sync: sync)
        let runs = CarbonStore.Locked<[Bool]>([])
        let t = Self.second
        let taskB = Task {
            try await s.update("jo") { r in
                runs.withLock { $0.append(r.transaction(id: "first") != nil) }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { !runs.withLock { $0 }.isEmpty }
        sync.letGo()
        if fails {
            await #expect(throws: StorageIOError.self) { try await a.value }
        } else {
            #expect(try await a.value.committed)
        }
        let two = try await taskB.value
        #expect(runs.withLock { $0 } == (fails ? [true, false] : [true]))
        let fresh = try await Self.store(dir.path).get("jo")
        #expect(try await s.get("jo") == fresh)
        #expect(fresh == two.record)
        #expect((fresh.transaction(id: "first") != nil) == !fails)
        #expect(fresh.revision == base.revision + (fails ? 1 : 2))
    }

    /// The leading writer's task is cancelled while it is held in its fdatasync, after it let the
    /// lock go: its frame was written and is made durable, so it answers committed.
    @Test func aWriterCancelledInItsSyncStillAnswersWhatItWrote() async throws {
        let dir = try TemporaryDirectory("lbs-adv-cancel-a")
        defer { dir.remove() }
        let base = try await Self.seed(dir.path, user: "kim")
        let sync = SlowSync(fails: false)
        let a = try await Self.startFirst(dir.path, user: "kim", sync: sync)
        a.cancel()
        try await Task.sleep(for: .milliseconds(50))
        sync.letGo()
        let one = try await a.value
        #expect(one.committed)
        let fresh = try await Self.store(dir.path).get("kim")
        #expect(fresh == one.record && fresh.revision == base.revision + 1)
    }

    /// B holds the user's lock and waits for the commit lock while A is in its fdatasync; B's task
    /// is cancelled. B writes nothing and lets the user's lock go; C then commits.
    @Test func aNextWriterCancelledWhileItWaitsForTheCommitLockWritesNothing() async throws {
        let dir = try TemporaryDirectory("lbs-adv-cancel-b")
        defer { dir.remove() }
        let base = try await Self.seed(dir.path, user: "lou")
        let sync = SlowSync(fails: false)
        let a = try await Self.startFirst(dir.path, user: "lou", sync: sync)
        let b = try Self.store(dir.path)
        let ran = CarbonStore.Locked(false)
        let t2 = Self.second
        let taskB = Task {
            try await b.update("lou") { r in
                ran.withLock { $0 = true }
                return try r.upsert(t2)
            }
        }
        try await Self.waitUntil { ran.withLock { $0 } }
        try await Task.sleep(for: .milliseconds(50))
        taskB.cancel()
        await #expect(throws: CancellationError.self) { try await taskB.value }
        // B let the user's lock go: C takes it (A still holds the commit lock) and decides.
        let c = try Self.store(dir.path)
        let t3 = Self.third
        let cDecided = CarbonStore.Locked(false)
        let taskC = Task {
            try await c.update("lou") { r in
                cDecided.withLock { $0 = true }
                return try r.upsert(t3)
            }
        }
        try await Self.waitUntil { cDecided.withLock { $0 } }
        sync.letGo()
        #expect(try await a.value.committed)
        #expect(try await taskC.value.committed)
        let fresh = try await Self.store(dir.path).get("lou")
        #expect(fresh.transaction(id: "second") == nil, "the cancelled writer wrote nothing")
        #expect(fresh.transaction(id: "first") == Self.first && fresh.transaction(id: "third") == Self.third)
        #expect(fresh.revision == base.revision + 2)
    }

    /// Two users whose files share a folder share its user lock and commit lock. A (one user) lets
    /// the folder's lock go in its fdatasync, which fails; B updates the other user meanwhile.
    @Test func aNeighbourInTheFolderWritesAfterTheCut() async throws {
        let dir = try TemporaryDirectory("lbs-adv-neighbour")
        defer { dir.remove() }
        let keys = UserKeys()
        var byFolder: [String: String] = [:]
        var pair: (String, String)?
        for n in 0..<100_000 where pair == nil {
            let id = "n\(n)"
            let folder = String(try keys.key(for: id).split(separator: "/").dropLast().joined(separator: "/"))
            if let other = byFolder[folder] { pair = (other, id) } else { byFolder[folder] = id }
        }
        let (u1, u2) = try #require(pair)
        let base1 = try await Self.seed(dir.path, user: u1)
        let base2 = try await Self.seed(dir.path, user: u2)
        let sync = SlowSync(fails: true)
        let a = try await Self.startFirst(dir.path, user: u1, sync: sync)
        let b = try Self.store(dir.path)
        let decided = CarbonStore.Locked<Bool?>(nil)
        let t = Self.second
        let taskB = Task {
            try await b.update(u2) { r in
                decided.withLock { if $0 == nil { $0 = sync.inSync } }
                return try r.upsert(t)
            }
        }
        try await Self.waitUntil { decided.withLock { $0 } != nil }
        #expect(decided.withLock { $0 } == true, "the folder's lock was let go")
        try await Task.sleep(for: .milliseconds(50))
        sync.letGo()
        await #expect(throws: StorageIOError.self) { try await a.value }
        #expect(try await taskB.value.committed)
        let fresh = try Self.store(dir.path)
        #expect(try await fresh.get(u1) == base1)
        let two = try await fresh.get(u2)
        #expect(two.transaction(id: "second") == Self.second && two.revision == base2.revision + 1)
    }

    // MARK: - Many writers, failing fdatasyncs

    /// The fdatasync of every store fails now and then (EIO, before writing anything). Many
    /// writers in tasks of several stores (processes) update two users, with compactions among
    /// the appends; every acknowledged update must be there once, every failed one absent, and
    /// the revision must count exactly the updates there.
    @Test(arguments: [("local", false), ("local", true), ("none", false), ("none", true)])
    func manyWritersWithFailingSyncsLoseNothingAndApplyNothingTwice(locking: String, groupCommit: Bool)
        async throws
    {
        let dir = try TemporaryDirectory("lbs-adv-many")
        defer { dir.remove() }
        let users = ["hal", "ivy"]
        var bases: [String: UserRecord] = [:]
        for u in users { bases[u] = try await Self.seed(dir.path, user: u) }
        let failures = CarbonStore.Locked(0)
        var io = FileIO.posix
        let real = io.datasync
        io.datasync = { fd in
            if UInt32.random(in: 0..<100) < 15 {
                failures.withLock { $0 += 1 }
                errno = EIO
                return -1
            }
            return real(fd)
        }
        let processes = 3
        let tasks = 3
        let perTask = 12
        var stores: [Store] = []
        for _ in 0..<processes {
            stores.append(
                try Self.store(
                    dir.path, io: io,
                    locks: {
                        locking == "local" ? FileLockService(storage: $0) as any LockService : NoLockService()
                    },
                    configure: {
                        $0.groupCommit = groupCommit
                        $0.compaction = CompactionPolicy(tailFraction: 0.05, minimumTailBytes: 256)
                    }))
        }
        struct Outcome: Sendable {
            var id: String
            var user: String
            var revision: Int64?
            var error: String?
        }
        let outcomes = try await withThrowingTaskGroup(of: [Outcome].self) { group in
            for p in 0..<processes {
                for k in 0..<tasks {
                    let s = stores[p]
                    group.addTask {
                        var out: [Outcome] = []
                        for n in 0..<perTask {
                            let user = users[(p + k + n) % users.count]
                            let id = "p\(p)-t\(k)-\(n)"
                            let t = LockBeforeSyncTests.txn(
                                id, at: 1_900_000_000_000 + Int64(p * 10_000 + k * 100 + n))
                            do {
                                let r = try await s.update(user) { try $0.upsert(t) }
                                out.append(Outcome(id: id, user: user, revision: Int64(r.record.revision)))
                            } catch {
                                out.append(Outcome(id: id, user: user, error: "\(error)"))
                            }
                        }
                        return out
                    }
                }
            }
            var all: [Outcome] = []
            for try await part in group { all += part }
            return all
        }
        #expect(failures.withLock { $0 } > 0, "some fdatasyncs failed")
        let fresh = try Self.store(dir.path)
        for u in users {
            let record = try await fresh.get(u)
            let mine = outcomes.filter { $0.user == u }
            let base = try #require(bases[u])
            var present = 0
            for o in mine {
                let there = record.transaction(id: o.id) != nil
                if there { present += 1 }
                if o.error == nil {
                    #expect(there, "acknowledged \(o.id) is lost (\(locking), group commit \(groupCommit))")
                } else {
                    #expect(!there, "failed \(o.id) is there: \(o.error ?? "")")
                }
            }
            #expect(
                Int64(record.revision) - Int64(base.revision) == Int64(present),
                "\(u): revision \(record.revision) from \(base.revision) for \(present) updates there")
            // No two acknowledged updates were answered with the same revision.
            let acked = mine.compactMap(\.revision)
            #expect(Set(acked).count == acked.count)
        }
    }
}
