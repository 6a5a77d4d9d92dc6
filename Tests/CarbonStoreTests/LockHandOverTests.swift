import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// With `locking=local` on `path:`, a writer lets the user's lock go once its change frame is
/// written and read back, while the frame is made durable under the commit lock: the next writer
/// (here a second store, with its own lock descriptors, as another process has) reads and decides
/// meanwhile, and writes only once the frame is durable, or cut.
///
/// The held-up `fdatasync` blocks the thread it runs on: the first writer runs on a queue of its own
/// (`BlockingWriter`), never on the cooperative pool, whose few threads the other tests need.
@Suite(.serialized) struct LockHandOverTests {
    /// Runs the tasks that prefer it on a serial dispatch queue, outside the cooperative pool.
    final class BlockingWriter: TaskExecutor, @unchecked Sendable {
        let queue = DispatchQueue(label: "carbonstore.tests.blocking-writer")

        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }
    }

    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    /// The first append's `fdatasync` of a storage is held up until `proceed` says so, then
    /// succeeds or fails with EIO.
    final class SlowSync: Sendable {
        struct State {
            var calls = 0
            var inSync = false
            var proceed = false
        }
        let state = CarbonStore.Locked(State())
        let fails: Bool

        init(fails: Bool) { self.fails = fails }

        var io: FileIO {
            var io = FileIO.posix
            let real = io.datasync
            io.datasync = { fd in
                let first = self.state.withLock { s -> Bool in
                    s.calls += 1
                    if s.calls == 1 { s.inSync = true }
                    return s.calls == 1
                }
                guard first else { return real(fd) }
                let deadline = ContinuousClock.now + .seconds(20)
                while !self.state.withLock({ $0.proceed }) && ContinuousClock.now < deadline {
                    usleep(2_000)
                }
                defer { self.state.withLock { $0.inSync = false } }
                if self.fails {
                    errno = EIO
                    return -1
                }
                return real(fd)
            }
            return io
        }

        var inSync: Bool { state.withLock { $0.inSync } }
        func letGo() { state.withLock { $0.proceed = true } }
    }

    /// A store over `dir` with its own `path:` storage and lock descriptors.
    static func store(_ dir: String, io: FileIO = .posix, events: StoreEvents = StoreEvents()) throws -> Store
    {
        let storage = try PathStorage(root: dir, io: io)
        var options = StoreOptions()
        options.events = events
        // A batch commits in a task of its own, which would not run on `BlockingWriter`: each
        // update here commits in its caller's task.
        options.groupCommit = false
        return Store(storage: storage, locks: FileLockService(storage: storage), options: options)
    }

    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    @Test func theNextWriterReadsAFrameWhileItIsMadeDurable() async throws {
        let dir = try TemporaryDirectory("handover")
        defer { dir.remove() }
        let sync = SlowSync(fails: false)
        let a = try Self.store(dir.path, io: sync.io)
        // What the second writer saw when it got the lock: the first one's frame not yet durable.
        let acquiredDuringSync = CarbonStore.Locked<Bool?>(nil)
        let b = try Self.store(
            dir.path,
            events: StoreEvents(lockAcquired: { _, _ in acquiredDuringSync.withLock { $0 = sync.inSync } }))
        var base = RecordGenerator.workload(.w1, seed: 5)
        base.userID = "ann"
        try await a.update("ann") { $0 = base }

        let first = Task(executorPreference: BlockingWriter()) {
            try await a.update("ann") { try $0.upsert(Self.txn("from-a", at: 1_900_000_000_000)) }
        }
        try await Self.waitUntil { sync.inSync }
        let second = Task {
            try await b.update("ann") { try $0.upsert(Self.txn("from-b", at: 1_900_000_000_001)) }
        }
        try await Self.waitUntil { acquiredDuringSync.withLock { $0 } != nil }
        // The second writer holds the user's lock and has read; it cannot write before the first
        // frame is durable.
        try await Task.sleep(for: .milliseconds(100))
        let fileBefore = try #require(
            FileManager.default.contents(atPath: a.storage.location(of: try a.keys.key(for: "ann"))))
        sync.letGo()
        let one = try await first.value
        let two = try await second.value

        #expect(acquiredDuringSync.withLock { $0 } == true, "the lock was let go before the fdatasync")
        let layoutBefore = try Array(fileBefore).withUnsafeBytes { try RecordCodec().scanLayout($0) }
        #expect(layoutBefore.frameCount == 1, "only the first frame, until it is durable")
        #expect(one.committed && two.committed)
        #expect(two.record.revision == one.record.revision + 1)
        #expect(two.record.transaction(id: "from-a") != nil && two.record.transaction(id: "from-b") != nil)
        let fresh = try await Self.store(dir.path).get("ann")
        #expect(fresh == two.record)
    }

    @Test func aFrameThatFailsToBeDurableIsCutAndTheWriterThatReadItReadsAgain() async throws {
        let dir = try TemporaryDirectory("handover-fail")
        defer { dir.remove() }
        let sync = SlowSync(fails: true)
        let a = try Self.store(dir.path, io: sync.io)
        let acquiredDuringSync = CarbonStore.Locked<Bool?>(nil)
        let conflicts = CarbonStore.Locked(0)
        let b = try Self.store(
            dir.path,
            events: StoreEvents(
                lockAcquired: { _, _ in acquiredDuringSync.withLock { if $0 == nil { $0 = sync.inSync } } },
                fenceConflict: { _ in conflicts.withLock { $0 += 1 } }))
        var base = RecordGenerator.workload(.w1, seed: 6)
        base.userID = "bob"
        try await a.update("bob") { $0 = base }

        let first = Task(executorPreference: BlockingWriter()) {
            try await a.update("bob") { try $0.upsert(Self.txn("from-a", at: 1_900_000_000_000)) }
        }
        try await Self.waitUntil { sync.inSync }
        let second = Task {
            try await b.update("bob") { try $0.upsert(Self.txn("from-b", at: 1_900_000_000_001)) }
        }
        try await Self.waitUntil { acquiredDuringSync.withLock { $0 } != nil }
        try await Task.sleep(for: .milliseconds(100))
        sync.letGo()

        await #expect(throws: StorageIOError.self) { try await first.value }
        let two = try await second.value
        #expect(
            acquiredDuringSync.withLock { $0 } == true,
            "the second writer read the first frame before its fdatasync")
        // It decided on a frame that was then cut: its fence failed, and it read again.
        #expect(conflicts.withLock { $0 } >= 1)
        #expect(two.committed)
        #expect(two.record.transaction(id: "from-b") != nil)
        #expect(
            two.record.transaction(id: "from-a") == nil,
            "the frame that failed is not in what was acknowledged")
        let fresh = try await Self.store(dir.path).get("bob")
        #expect(fresh == two.record)
        #expect(fresh.transaction(id: "from-a") == nil)
    }

    @Test func anUpdateThatChangesNothingIsAnsweredOnlyOnDurableContent() async throws {
        // The second writer finds its transaction already there, in the first writer's frame that
        // is not durable yet. Answering "unchanged" then would acknowledge a transaction that the
        // failed fdatasync cuts: it must wait, find the frame cut, and insert the transaction.
        let dir = try TemporaryDirectory("handover-noop")
        defer { dir.remove() }
        let sync = SlowSync(fails: true)
        let a = try Self.store(dir.path, io: sync.io)
        let acquiredDuringSync = CarbonStore.Locked<Bool?>(nil)
        let b = try Self.store(
            dir.path,
            events: StoreEvents(lockAcquired: { _, _ in
                acquiredDuringSync.withLock { if $0 == nil { $0 = sync.inSync } }
            }))
        var base = RecordGenerator.workload(.w1, seed: 7)
        base.userID = "cat"
        try await a.update("cat") { $0 = base }
        let same = Self.txn("both", at: 1_900_000_000_000)

        let first = Task(executorPreference: BlockingWriter()) {
            try await a.update("cat") { try $0.upsert(same) }
        }
        try await Self.waitUntil { sync.inSync }
        let second = Task { try await b.update("cat") { try $0.upsert(same) } }
        try await Self.waitUntil { acquiredDuringSync.withLock { $0 } != nil }
        try await Task.sleep(for: .milliseconds(100))
        sync.letGo()

        await #expect(throws: StorageIOError.self) { try await first.value }
        let two = try await second.value
        #expect(acquiredDuringSync.withLock { $0 } == true)
        #expect(two.value == .inserted && two.committed, "\(two.outcome)")
        let fresh = try await Self.store(dir.path).get("cat")
        #expect(fresh.transaction(id: "both") == same)
        #expect(fresh == two.record)
    }

    @Test func anUpdateThatChangesNothingWaitsForTheFrameItReadToBeDurable() async throws {
        let dir = try TemporaryDirectory("handover-noop-ok")
        defer { dir.remove() }
        let sync = SlowSync(fails: false)
        let a = try Self.store(dir.path, io: sync.io)
        let acquiredDuringSync = CarbonStore.Locked<Bool?>(nil)
        let b = try Self.store(
            dir.path,
            events: StoreEvents(lockAcquired: { _, _ in
                acquiredDuringSync.withLock { if $0 == nil { $0 = sync.inSync } }
            }))
        var base = RecordGenerator.workload(.w1, seed: 8)
        base.userID = "dan"
        try await a.update("dan") { $0 = base }
        let same = Self.txn("both", at: 1_900_000_000_000)

        let first = Task(executorPreference: BlockingWriter()) {
            try await a.update("dan") { try $0.upsert(same) }
        }
        try await Self.waitUntil { sync.inSync }
        let answered = CarbonStore.Locked(false)
        let second = Task {
            defer { answered.withLock { $0 = true } }
            return try await b.update("dan") { try $0.upsert(same) }
        }
        try await Self.waitUntil { acquiredDuringSync.withLock { $0 } != nil }
        try await Task.sleep(for: .milliseconds(150))
        // Read and decided, but not answered while the frame it rests on is not durable.
        #expect(answered.withLock { $0 } == false)
        sync.letGo()
        let one = try await first.value
        let two = try await second.value
        #expect(acquiredDuringSync.withLock { $0 } == true)
        #expect(one.committed)
        #expect(two.value == .unchanged && !two.committed)
        #expect(two.record == one.record)
    }
}
