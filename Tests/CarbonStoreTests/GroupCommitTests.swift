import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// Group commit: concurrent updates of one user in one process share one lock hold, one read and
/// one write, and each call still gets its own answer.
@Suite struct GroupCommitTests {
    /// Counts the lock service's acquisitions, and holds the first one until told, so that the
    /// calls made meanwhile pile up behind it. The hold is not cut by a cancellation. `inline`:
    /// what it says of cancellations (`leavesNothingHeldWhenCancelled`), so that over a volume a
    /// batch runs in its leader's task (`Store.lead`), as it does with file locks.
    final class CountingLocks: LockService, @unchecked Sendable {
        let inner = InProcessLockService()
        let acquired = CarbonStore.Locked(0)
        let gate = CarbonStore.Locked<CheckedContinuation<Void, Never>?>(nil)
        let holdFirst: Bool
        let inline: Bool
        init(holdFirst: Bool, inline: Bool = true) {
            self.holdFirst = holdFirst
            self.inline = inline
        }
        var leavesNothingHeldWhenCancelled: Bool { inline }

        func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
            let n = acquired.withLock { n -> Int in
                n += 1
                return n
            }
            let lease = try await inner.acquire(name, userID: userID, wait: wait)
            if holdFirst && n == 1 {
                await withCheckedContinuation { c in gate.withLock { $0 = c } }
            }
            return lease
        }
        func renew(_ lease: Lease) async throws -> Lease { try await inner.renew(lease) }
        func release(_ lease: Lease) async throws { try await inner.release(lease) }
        func open() {
            let c = gate.withLock { c -> CheckedContinuation<Void, Never>? in
                defer { c = nil }
                return c
            }
            c?.resume()
        }
        var isHolding: Bool { gate.withLock { $0 != nil } }
    }

    /// Counts the storage's writes.
    final class CountingStorage: ForwardingStorage, @unchecked Sendable {
        let writes = CarbonStore.Locked(0)
        override func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws
            -> ObjectVersion
        {
            writes.withLock { $0 += 1 }
            return try await super.put(key, bytes: bytes, condition: condition)
        }
        override func append(
            _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
        ) async throws -> ObjectVersion {
            writes.withLock { $0 += 1 }
            return try await super.append(key, bytes: bytes, expected: expected, whenWritten: whenWritten)
        }
    }

    struct Refused: Error, Equatable { var n: Int }

    static func txn(_ id: String, minor: Int64 = 100, at ms: Int64 = 1_700_000_000_000) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    enum Backend: String, CaseIterable, Sendable { case memory, path }

    static func storage(_ backend: Backend, _ dir: TemporaryDirectory) throws -> any ObjectStorage {
        switch backend {
        case .memory: MemoryStorage()
        case .path: try PathStorage(root: dir.path)
        }
    }

    static func attempt<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// Starts `count` updates while the first holds the lock, then lets it go.
    static func pileUp(
        _ store: Store, _ locks: CountingLocks, count: Int,
        _ mutation: @escaping @Sendable (Int, inout UserRecord) throws -> String
    ) async -> [Result<UpdateResult<String>, any Error>] {
        await withTaskGroup(of: (Int, Result<UpdateResult<String>, any Error>).self) { group in
            group.addTask {
                (0, await Self.attempt { try await store.update("alice") { try mutation(0, &$0) } })
            }
            while !locks.isHolding { try? await Task.sleep(for: .milliseconds(1)) }
            for i in 1..<count {
                group.addTask {
                    (i, await Self.attempt { try await store.update("alice") { try mutation(i, &$0) } })
                }
                // In arrival order: each call joins the line before the next is started.
                try? await Task.sleep(for: .milliseconds(5))
            }
            locks.open()
            var results = [Result<UpdateResult<String>, any Error>?](repeating: nil, count: count)
            for await (i, r) in group { results[i] = r }
            return results.map { $0! }
        }
    }

    @Test(arguments: Backend.allCases)
    func waitingUpdatesAreCommittedInOneBatchEachWithItsOwnAnswer(backend: Backend) async throws {
        let dir = try TemporaryDirectory("group")
        defer { dir.remove() }
        let storage = CountingStorage(try Self.storage(backend, dir))
        let locks = CountingLocks(holdFirst: true)
        var options = StoreOptions()
        options.lockWait = .seconds(300)
        let store = Store(storage: storage, locks: locks, options: options)
        let results = await Self.pileUp(store, locks, count: 8) { i, record in
            if i == 3 { throw Refused(n: i) }
            if i == 5 { return "nothing" }  // leaves the record as it is
            try record.upsert(Self.txn("t\(i)", at: 1_700_000_000_000 + Int64(i)))
            return "added t\(i)"
        }
        // The first call leads; it gathers its batch once it holds the lock and has read the
        // user, so the seven that came while it waited for the lock are in it: one lock hold,
        // one write.
        #expect(locks.acquired.withLock { $0 } == 1)
        #expect(storage.writes.withLock { $0 } == 1)
        // Each call got its own answer; the throwing one failed alone.
        for (i, result) in results.enumerated() {
            switch (i, result) {
            case (3, .failure(let error)):
                #expect(error as? Refused == Refused(n: 3))
            case (5, .success(let r)):
                #expect(r.value == "nothing" && r.outcome == .unchanged)
                #expect(r.record.revision == 4, "the record as the calls before it left it")
            case (_, .success(let r)):
                #expect(r.value == "added t\(i)")
                #expect(r.outcome == .committed)
                #expect(r.record.transaction(id: "t\(i)") != nil)
                #expect(r.record.transaction(id: "t\(i + 1)") == nil, "a later call's change is not in it")
            default:
                Issue.record("call \(i): \(result)")
            }
        }
        // Mutations ran in arrival order, one revision each.
        let revisions = results.compactMap { try? $0.get() }.filter { $0.committed }.map {
            $0.record.revision
        }
        #expect(revisions == [1, 2, 3, 4, 5, 6])
        let stored = try await Store(storage: storage.inner, locks: NoLockService()).get("alice")
        #expect(stored.revision == 6)
        #expect(stored.transactions.map(\.id) == ["t0", "t1", "t2", "t4", "t6", "t7"])
        #expect(stored == (try results[7].map(\.record).get()))
    }

    /// A leader yields before gathering its batch while yields find callers; after 8 in a row
    /// that found nobody, only every 16th leader does, or another task leading the same user right
    /// after its last batch (a burst run in turn on a busy pool); a caller that joins a line starts
    /// the yields again (`YieldPolicy`).
    @Test func leadersStopYieldingWhileNobodyJoinsAndStillProbe() {
        let t0 = ContinuousClock.now
        var policy = YieldPolicy()
        var yieldingLeads: [Int] = []
        // One task updating one user in a loop.
        for lead in 1...40 {
            let now = t0 + .microseconds(lead * 200)
            if policy.leaderYields(key: "a", leader: 1, now: now) {
                yieldingLeads.append(lead)
                policy.yielded(joined: false)
            }
            policy.batchEnded(key: "a", leader: 1, now: now + .microseconds(150))
        }
        #expect(yieldingLeads == [1, 2, 3, 4, 5, 6, 7, 8, 16, 32])
        #expect(policy.quietYields == YieldPolicy.quietLimit)
        let after = t0 + .microseconds(41 * 200)
        // Another task, for another user, or later than the gap: still quiet.
        var other = policy
        let otherUser = other.leaderYields(key: "b", leader: 2, now: after)
        let later = other.leaderYields(key: "a", leader: 2, now: after + .milliseconds(2))
        #expect(!otherUser && !later)
        // Another task leading the same user right after its batch: a burst.
        var burst = policy
        let burstYields = burst.leaderYields(key: "a", leader: 2, now: after)
        #expect(burstYields && burst.quietYields == 0)
        // A probe that finds a caller: every leader yields again.
        var probed = policy
        while !probed.leaderYields(key: "a", leader: 1, now: after) {}
        probed.yielded(joined: true)
        let afterProbe = probed.leaderYields(key: "a", leader: 1, now: after)
        #expect(afterProbe)
        // A caller joining a line by itself: the same.
        policy.callerJoined()
        let afterJoin = policy.leaderYields(key: "a", leader: 1, now: after)
        #expect(afterJoin)
    }

    /// On a pool with one thread, where a leader on a local disk runs its whole batch before the
    /// calls started with it can run: after a quiet spell of updates one at a time, a burst of 8
    /// concurrent updates is still committed in at most two lock holds.
    @Test func aBurstOnAOneThreadPoolAfterAQuietSpellIsBatched() async throws {
        let dir = try TemporaryDirectory("group-one-thread")
        defer { dir.remove() }
        let holds = CarbonStore.Locked(0)
        var options = StoreOptions()
        options.events.lockAcquired = { _, _ in holds.withLock { $0 += 1 } }
        let storage = try PathStorage(root: dir.path)
        let store = Store(storage: storage, locks: FileLockService(storage: storage), options: options)
        let executor = DurableAnswerTests.BlockingWriter()
        try await withTaskExecutorPreference(executor) {
            for i in 0..<12 { try await store.update("alice") { try $0.upsert(Self.txn("q\(i)")) } }
        }
        #expect(store.committer.yieldCount == 8, "the quiet spell: 8 yields, then none")
        holds.withLock { $0 = 0 }
        try await withTaskExecutorPreference(executor) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<8 {
                    group.addTask { try await store.update("alice") { try $0.upsert(Self.txn("b\(i)")) } }
                }
                try await group.waitForAll()
            }
        }
        #expect(holds.withLock { $0 } <= 2, "\(holds.withLock { $0 }) lock holds for 8 concurrent updates")
        #expect(try await store.read("alice")?.transactions.count == 20)
    }

    /// The same, through a store: one call at a time yields 10 times in 40 updates; calls piled up
    /// behind a held lock join its line, and the leaders after them yield again.
    @Test func aStoreUpdatedOneCallAtATimeYieldsOnlyToProbe() async throws {
        let locks = CountingLocks(holdFirst: false)
        let store = Store(storage: MemoryStorage(), locks: locks)
        for i in 0..<40 { try await store.update("alice") { try $0.upsert(Self.txn("t\(i)")) } }
        #expect(store.committer.yieldCount == 10)
        let held = CountingLocks(holdFirst: true)
        var options = StoreOptions()
        options.lockWait = .seconds(300)
        let piled = Store(storage: MemoryStorage(), locks: held, options: options)
        // Not held until the count starts again at the pile-up.
        held.acquired.withLock { $0 = 1_000 }
        for i in 0..<20 { try await piled.update("bob") { try $0.upsert(Self.txn("s\(i)")) } }
        #expect(piled.committer.yieldCount == 9)
        _ = held.acquired.withLock { $0 = 0 }
        let results = await Self.pileUp(piled, held, count: 3) { i, record in
            try record.upsert(Self.txn("t\(i)"))
            return ""
        }
        for (i, r) in results.enumerated() { #expect((try? r.get().committed) == true, "call \(i): \(r)") }
        let before = piled.committer.yieldCount
        try await piled.update("alice") { try $0.upsert(Self.txn("after")) }
        #expect(piled.committer.yieldCount == before + 1, "a caller joined: leaders yield again")
    }

    @Test func withoutGroupCommitEachUpdateTakesTheLock() async throws {
        let locks = CountingLocks(holdFirst: true)
        var options = StoreOptions()
        options.groupCommit = false
        // The held lock is let go once every call waits; the suite may share the machine's
        // threads with CPU-bound suites, so the waits must not time out first.
        options.lockWait = .seconds(300)
        let store = Store(storage: MemoryStorage(), locks: locks, options: options)
        let results = await Self.pileUp(store, locks, count: 4) { i, record in
            try record.upsert(Self.txn("t\(i)"))
            return ""
        }
        for (i, r) in results.enumerated() { #expect((try? r.get().committed) == true, "call \(i): \(r)") }
        #expect(locks.acquired.withLock { $0 } == 4)
    }

    @Test(arguments: Backend.allCases)
    func aBatchTooLargeForTheLimitsFailsOnlyTheCallThatMadeItSo(backend: Backend) async throws {
        let dir = try TemporaryDirectory("group-large")
        defer { dir.remove() }
        // The limit admits a few small transactions; one call adds a large one.
        var limits = RecordCodec.Limits()
        limits.maxDecodedSize = 4_000
        var options = StoreOptions(codec: RecordCodec(options: .init(compression: .none), limits: limits))
        options.cacheBytes = 1 << 20
        options.lockWait = .seconds(300)
        let locks = CountingLocks(holdFirst: true)
        let store = Store(storage: try Self.storage(backend, dir), locks: locks, options: options)
        #expect(store.inlineCommits == (backend == .path))
        let results = await Self.pileUp(store, locks, count: 4) { i, record in
            var t = Self.txn("t\(i)", at: 1_700_000_000_000 + Int64(i))
            if i == 2 { t.description = String(repeating: "x", count: 5_000) }
            try record.upsert(t)
            return ""
        }
        for (i, r) in results.enumerated() {
            if i == 2 {
                #expect(throws: RecordTooLargeStoreError.self) { try r.get() }
            } else {
                #expect((try? r.get().committed) == true, "call \(i)")
            }
        }
        let stored = try await store.get("alice")
        #expect(stored.transactions.map(\.id) == ["t0", "t1", "t3"])
    }

    /// The leader of a batch is cancelled. Its batch runs in its own task (a volume and locks that a
    /// cancellation leaves nothing held by), and fails where the leader then waits: for the folder's
    /// commit lock, which writer A (another process, held in its fdatasync) holds. The leader fails
    /// with `CancellationError`, once the two calls of its batch are committed all the same.
    @Test func aCancelledLeaderFailsAloneAndTheRestOfItsBatchIsCommitted() async throws {
        typealias Held = LockBeforeSyncAdversaryTests
        let dir = try TemporaryDirectory("group-cancel")
        defer { dir.remove() }
        let base = try await Held.seed(dir.path, user: "kim")
        let sync = Held.SlowSync(fails: false)
        let a = try await Held.startFirst(dir.path, user: "kim", sync: sync)
        let locks = CountingLocks(holdFirst: true)
        var options = StoreOptions()
        options.lockWait = .seconds(300)
        let store = Store(storage: try PathStorage(root: dir.path), locks: locks, options: options)
        #expect(store.inlineCommits)
        let key = try store.keys.key(for: "kim")
        let lead = Task { try await store.update("kim") { try $0.upsert(Self.txn("lead")) } }
        try await Held.waitUntil { locks.isHolding }
        let others = ["j1", "j2"].map { id in
            Task { try await store.update("kim") { try $0.upsert(Self.txn(id)) } }
        }
        try await Held.waitUntil { store.committer.waiting(key) == 2 }
        // A call that changes nothing: its answer must not claim a write that never was.
        let idle = Task { try await store.update("kim") { _ in } }
        try await Held.waitUntil { store.committer.waiting(key) == 3 }
        lead.cancel()
        locks.open()
        // The leader's attempt fails at the commit lock and lets the user's lock go; the rest of its
        // batch takes it again (and then waits for the commit lock). The leader answers once they
        // are committed.
        try await Held.waitUntil { locks.acquired.withLock { $0 } == 2 }
        sync.letGo()
        await #expect(throws: CancellationError.self) { try await lead.value }
        #expect(try await a.value.committed)
        for (id, task) in zip(["j1", "j2"], others) {
            let done = try await task.value
            #expect(done.committed, "\(id)")
            #expect(done.record.transaction(id: id) != nil)
            #expect(done.record.transaction(id: "lead") == nil)
        }
        #expect(try await idle.value.outcome == .unchanged, "no write of this batch was refused")
        let fresh = try await Held.store(dir.path).get("kim")
        #expect(fresh.transaction(id: "lead") == nil, "the cancelled leader's change is not written")
        #expect(fresh.transaction(id: "j1") != nil && fresh.transaction(id: "j2") != nil)
        #expect(fresh.transaction(id: "first") != nil)
        #expect(fresh.revision == base.revision + 3)
    }

    /// The leader of a batch is cancelled, but the batch fails for another reason (its append's
    /// fdatasync fails; the frame is cut): every call of the batch fails with that error, and none
    /// is committed again on the strength of the cancellation.
    @Test func aCancelledLeadersBatchThatFailsOtherwiseFailsWhole() async throws {
        let dir = try TemporaryDirectory("group-cancel-io")
        defer { dir.remove() }
        let base = try await LockBeforeSyncAdversaryTests.seed(dir.path, user: "kim")
        // The first fdatasync fails; the cut's and every later one succeed.
        let syncs = CarbonStore.Locked(0)
        var io = FileIO.posix
        let real = io.datasync
        io.datasync = { fd in
            if syncs.withLock({ n -> Int in
                n += 1
                return n
            }) == 1 {
                errno = EIO
                return -1
            }
            return real(fd)
        }
        let locks = CountingLocks(holdFirst: true)
        var options = StoreOptions()
        options.lockWait = .seconds(300)
        let store = Store(storage: try PathStorage(root: dir.path, io: io), locks: locks, options: options)
        let key = try store.keys.key(for: "kim")
        let lead = Task { try await store.update("kim") { try $0.upsert(Self.txn("lead")) } }
        try await DurableAnswerTests.waitUntil { locks.isHolding }
        let other = Task { try await store.update("kim") { try $0.upsert(Self.txn("j1")) } }
        try await DurableAnswerTests.waitUntil { store.committer.waiting(key) == 1 }
        lead.cancel()
        locks.open()
        await #expect(throws: StorageIOError.self) { try await lead.value }
        await #expect(throws: StorageIOError.self) { try await other.value }
        #expect(locks.acquired.withLock { $0 } == 1, "the batch was not committed again")
        let fresh = try await LockBeforeSyncAdversaryTests.store(dir.path).get("kim")
        #expect(fresh.revision == base.revision)
        #expect(fresh.transaction(id: "lead") == nil && fresh.transaction(id: "j1") == nil)
    }

    @Test func manyConcurrentWritersLoseNothing() async throws {
        for backend in Backend.allCases {
            let dir = try TemporaryDirectory("group-many")
            defer { dir.remove() }
            let storage = try Self.storage(backend, dir)
            let store = Store(storage: storage, locks: InProcessLockService())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<8 {
                    group.addTask {
                        for n in 0..<25 {
                            try await store.update("alice") {
                                try $0.upsert(Self.txn("w\(w)-\(n)", at: 1_700_000_000_000 + Int64(n)))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            // Read by a fresh store (no cache): everything acknowledged is there, once.
            let fresh = Store(
                storage: backend == .memory ? storage : try Self.storage(backend, dir), locks: NoLockService()
            )
            let record = try await fresh.get("alice")
            #expect(record.transactions.count == 200, "\(backend)")
            #expect(record.revision == 200, "\(backend)")
            #expect(try await store.get("alice") == record)
        }
    }
}
