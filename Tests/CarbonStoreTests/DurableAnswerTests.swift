import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// An update that writes nothing (a repeat, a value already there) answers from what it read. On
/// `path:` that may include a change frame that another writer has written but not made durable:
/// one still in its fdatasync (with `locking=none`, or after a lock was lost), or one whose writer
/// died before its fdatasync. Such an answer is given only once that content is durable
/// (`ObjectStorage.confirmDurable`), and decided again if the frame was cut.
///
/// The held-up `fdatasync` blocks the thread it runs on: the first writer runs on a queue of its
/// own (`BlockingWriter`), never on the cooperative pool, whose few threads the other tests need.
@Suite(.serialized) struct DurableAnswerTests {
    /// Runs the tasks that prefer it on a serial dispatch queue, outside the cooperative pool.
    final class BlockingWriter: TaskExecutor, @unchecked Sendable {
        static let key = DispatchSpecificKey<Bool>()
        let queue: DispatchQueue = {
            let queue = DispatchQueue(label: "carbonstore.tests.blocking-writer")
            queue.setSpecific(key: BlockingWriter.key, value: true)
            return queue
        }()

        /// Whether the calling thread runs a job of a `BlockingWriter`.
        static var isCurrent: Bool { DispatchQueue.getSpecific(key: key) == true }

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

    /// The first append's `fdatasync` of a storage is held up until `letGo`, then succeeds or
    /// fails with EIO. Counts every `fdatasync`.
    final class SlowSync: Sendable {
        struct State {
            var calls = 0
            var inSync = false
            var proceed = false
            /// Whether the held-up fdatasync ran off the cooperative pool.
            var heldOnWriterQueue: Bool?
        }
        let state = CarbonStore.Locked(State())
        let fails: Bool
        let holds: Bool

        init(fails: Bool, holds: Bool = true) {
            self.fails = fails
            self.holds = holds
        }

        var io: FileIO {
            var io = FileIO.posix
            let real = io.datasync
            io.datasync = { fd in
                let first = self.state.withLock { s -> Bool in
                    s.calls += 1
                    if s.calls == 1 && self.holds { s.inSync = true }
                    return s.calls == 1 && self.holds
                }
                guard first else { return real(fd) }
                // Off the pool either way: on the writer's queue, or on a sync thread once the
                // storage's syncs average past `offloadSyncsAbove` (a loaded disk: `PathStorage.sync`).
                let offPool = BlockingWriter.isCurrent || Thread.current.name == "sync"
                self.state.withLock { $0.heldOnWriterQueue = offPool }
                // At most 60 s, should the test fail before it lets go.
                let deadline = ContinuousClock.now + .seconds(60)
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
        var calls: Int { state.withLock { $0.calls } }
        var heldOnWriterQueue: Bool? { state.withLock { $0.heldOnWriterQueue } }
        func letGo() { state.withLock { $0.proceed = true } }
    }

    /// A store over `dir` with its own `path:` storage, committing each update in its caller's
    /// task (a batch commits in a task of its own, which would not run on `BlockingWriter`).
    static func store(_ dir: String, io: FileIO = .posix, locks: (PathStorage) -> any LockService) throws
        -> Store
    {
        let storage = try PathStorage(root: dir, io: io)
        var options = StoreOptions()
        options.groupCommit = false
        return Store(storage: storage, locks: locks(storage), options: options)
    }

    /// Waits for `condition`, for at most 30 s: far longer than it takes, because on two busy cores
    /// the tasks of the whole suite can keep this one from running for seconds (a run next to
    /// other builds once took 56 s for this suite).
    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// `locking=none`: the second writer reads while the first one's frame is in its fdatasync.
    static func twoWriters(_ dir: String, _ sync: SlowSync, user: String) async throws -> (Store, Store) {
        let a = try Self.store(dir, io: sync.io) { _ in NoLockService() }
        let b = try Self.store(dir) { _ in NoLockService() }
        var base = RecordGenerator.workload(.w1, seed: 7)
        base.userID = user
        try await a.update(user) { $0 = base }
        return (a, b)
    }

    /// Writer A upserts `t` and is held in its fdatasync; then writer B upserts `t` too. Returns
    /// once B has decided (its mutation ran), with whether A was still held then.
    struct Race {
        let first: Task<UpdateResult<UpsertOutcome>, any Error>
        let second: Task<UpdateResult<UpsertOutcome>, any Error>
        let decidedDuringSync: Bool?
        let answered: CarbonStore.Locked<Bool>
    }

    static func race(fails: Bool, user: String, in dir: String) async throws -> (Race, SlowSync) {
        let sync = SlowSync(fails: fails)
        let (a, b) = try await twoWriters(dir, sync, user: user)
        let t = same
        let first = Task(executorPreference: BlockingWriter()) {
            try await a.update(user) { try $0.upsert(t) }
        }
        try await waitUntil { sync.inSync }
        #expect(sync.heldOnWriterQueue == true, "the held-up writer blocks its own thread, not the pool's")
        let decided = CarbonStore.Locked<Bool?>(nil)
        let answered = CarbonStore.Locked(false)
        let second = Task {
            defer { answered.withLock { $0 = true } }
            return try await b.update(user) { r in
                decided.withLock { if $0 == nil { $0 = sync.inSync } }
                return try r.upsert(t)
            }
        }
        try await waitUntil { decided.withLock { $0 } != nil }
        let race = Race(
            first: first, second: second, decidedDuringSync: decided.withLock { $0 }, answered: answered)
        return (race, sync)
    }

    /// The transaction both writers add.
    static let same = txn("both", at: 1_900_000_000_000)

    @Test func anUpdateThatChangesNothingIsAnsweredOnlyOnDurableContent() async throws {
        // The second writer finds its transaction already there, in the first writer's frame,
        // which is not durable yet. Answering "unchanged" then would acknowledge a transaction
        // that the failed fdatasync cuts: it must wait, find the frame cut, and insert it itself.
        let dir = try TemporaryDirectory("durable-answer")
        defer { dir.remove() }
        let (race, sync) = try await Self.race(fails: true, user: "cat", in: dir.path)
        try await Task.sleep(for: .milliseconds(100))
        sync.letGo()

        await #expect(throws: StorageIOError.self) { try await race.first.value }
        let two = try await race.second.value
        #expect(race.decidedDuringSync == true, "it first decided on the frame in its fdatasync")
        #expect(two.value == .inserted && two.committed, "\(two.outcome)")
        let fresh = try await Self.store(dir.path) { _ in NoLockService() }.get("cat")
        #expect(fresh.transaction(id: "both") == Self.same)
        #expect(fresh == two.record)
    }

    @Test func anUpdateThatChangesNothingWaitsForTheFrameItReadToBeDurable() async throws {
        let dir = try TemporaryDirectory("durable-answer-ok")
        defer { dir.remove() }
        let (race, sync) = try await Self.race(fails: false, user: "dan", in: dir.path)
        try await Task.sleep(for: .milliseconds(150))
        // Decided, but not answered while the frame it rests on is not durable.
        #expect(race.answered.withLock { $0 } == false)
        sync.letGo()
        let one = try await race.first.value
        let two = try await race.second.value
        #expect(race.decidedDuringSync == true)
        #expect(one.committed)
        #expect(two.value == .unchanged && !two.committed)
        #expect(two.record == one.record)
    }

    @Test func anUpdateThatChangesNothingMakesWhatItReadDurable() async throws {
        // A frame whose writer died between its write and its fdatasync is in the file, perhaps
        // not on the disk. A repeat of that write (the client retrying) finds it and changes
        // nothing; before answering, it makes the file durable.
        let dir = try TemporaryDirectory("durable-answer-repeat")
        defer { dir.remove() }
        let counted = SlowSync(fails: false, holds: false)
        let writer = try Self.store(dir.path) { FileLockService(storage: $0) }
        var base = RecordGenerator.workload(.w1, seed: 9)
        base.userID = "eve"
        try await writer.update("eve") { $0 = base }
        let t = Self.txn("repeat", at: 1_900_000_000_000)
        try await writer.update("eve") { try $0.upsert(t) }

        let again = try Self.store(dir.path, io: counted.io) { FileLockService(storage: $0) }
        let answer = try await again.update("eve") { try $0.upsert(t) }
        #expect(answer.value == .unchanged && !answer.committed)
        #expect(counted.calls == 1, "one fdatasync of the file read, before the answer")
    }
}
