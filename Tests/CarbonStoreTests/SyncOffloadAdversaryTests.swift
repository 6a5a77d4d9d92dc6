import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Attacks on the syncs handed to threads of their own (`SyncThreads`, `PathStorage.sync`): the
/// pool's accounting under many calls at once, a pool that cannot start threads, a writer cancelled
/// while its fdatasync runs on a sync thread, many writers of one user on a slow disk in every
/// locking mode (with and without group commit, with a failing fdatasync among them), and a disk
/// whose speed goes back and forth under concurrent writers.
///
/// Syncs are slowed by sleeping on the thread that makes them: a sync thread once the storage
/// offloads, so the cooperative pool is held at most for the few syncs made before that.
@Suite(.serialized) struct SyncOffloadAdversaryTests {
    typealias Disk = SyncOffloadTests.Disk

    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 125, currency: CurrencyCode("EUR")!))
    }

    /// Polls `condition` every 2 ms for up to 60 s (the machine is small and shared).
    static func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting until \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    // MARK: - SyncThreads accounting

    /// What the calls of one run saw: each call's id once per run of its work, and how many ran at
    /// once.
    final class Tally: Sendable {
        struct State {
            var ran: [Int: Int] = [:]
            var now = 0
            var most = 0
            var onSyncThread = 0
        }
        let state = CarbonStore.Locked(State())

        /// The work of call `id`: counted, held `micros`, and answering its own result and errno.
        func work(_ id: Int, micros: UInt32) -> (result: Int32, errno: Int32) {
            state.withLock {
                $0.ran[id, default: 0] += 1
                $0.now += 1
                $0.most = max($0.most, $0.now)
                if Thread.current.name == "sync" { $0.onSyncThread += 1 }
            }
            if micros > 0 { usleep(micros) }
            state.withLock { $0.now -= 1 }
            errno = Int32(1_000 + id)
            return (Int32(-id), errno)
        }

        var seen: State { state.withLock { $0 } }
    }

    /// Runs `count` calls on `threads` from `count` tasks, in waves separated by idle pauses, with
    /// calls of 0 µs and of a few ms mixed; returns each call's answer by id.
    static func hammer(_ threads: SyncThreads, _ tally: Tally, waves: Int, perWave: Int) async -> [Int: (
        Int32, Int32
    )] {
        var answers: [Int: (Int32, Int32)] = [:]
        for wave in 0..<waves {
            let part = await withTaskGroup(of: (Int, Int32, Int32).self) { group in
                for i in 0..<perWave {
                    let id = wave * perWave + i
                    // Every fifth call takes 2 ms, every seventh 200 µs, the others nothing.
                    let micros: UInt32 = id % 5 == 0 ? 2_000 : id % 7 == 0 ? 200 : 0
                    group.addTask {
                        let (result, code) = await threads.run { tally.work(id, micros: micros) }
                        return (id, result, code)
                    }
                }
                var part: [(Int, Int32, Int32)] = []
                for await answer in group { part.append(answer) }
                return part
            }
            for (id, result, code) in part {
                #expect(answers[id] == nil, "call \(id) answered twice")
                answers[id] = (result, code)
            }
            // Idle: the threads wait, and the next wave wakes them in a burst.
            if wave % 2 == 1 { try? await Task.sleep(for: .milliseconds(30)) }
        }
        return answers
    }

    static func checkAnswers(_ answers: [Int: (Int32, Int32)], _ tally: Tally, count: Int) {
        #expect(answers.count == count)
        for id in 0..<count {
            guard let (result, code) = answers[id] else {
                Issue.record("call \(id) never answered")
                continue
            }
            #expect(result == Int32(-id), "call \(id) got another call's result \(result)")
            #expect(code == Int32(1_000 + id), "call \(id) got another call's errno \(code)")
        }
        let seen = tally.seen
        #expect(seen.ran.count == count)
        #expect(seen.ran.values.allSatisfy { $0 == 1 }, "a call's work ran more than once")
    }

    @Test(.timeLimit(.minutes(5)))
    func hundredsOfCallsInBurstsAreEachAnsweredOnceWithTheirOwnErrno() async {
        let threads = SyncThreads(maximum: 4)
        let tally = Tally()
        let answers = await Self.hammer(threads, tally, waves: 6, perWave: 120)
        Self.checkAnswers(answers, tally, count: 720)
        #expect(tally.seen.most <= 4, "\(tally.seen.most) calls ran at once on a pool of 4")
        #expect(tally.seen.onSyncThread == 720, "every call ran on a sync thread")
    }

    @Test(.timeLimit(.minutes(5)))
    func withoutThreadsEveryCallRunsOnItsCallersThread() async {
        // No thread can ever be started: every call runs where it was made, once, with its errno.
        let threads = SyncThreads(maximum: 4, mayStartThread: { false })
        let tally = Tally()
        let answers = await Self.hammer(threads, tally, waves: 2, perWave: 100)
        Self.checkAnswers(answers, tally, count: 200)
        #expect(tally.seen.onSyncThread == 0)
    }

    @Test(.timeLimit(.minutes(5)))
    func threadsThatSometimesCannotStartStrandNoCall() async {
        // Every other start fails: the calls queued then run on their callers' threads, the others
        // on the threads that did start; none is left waiting.
        let starts = CarbonStore.Locked(0)
        let threads = SyncThreads(
            maximum: 6,
            mayStartThread: {
                starts.withLock {
                    $0 += 1
                    return $0 % 2 == 0
                }
            })
        let tally = Tally()
        let answers = await Self.hammer(threads, tally, waves: 4, perWave: 150)
        Self.checkAnswers(answers, tally, count: 600)
        #expect(starts.withLock { $0 } >= 2)
        #expect(tally.seen.onSyncThread > 0, "no call ran on a thread that did start")
    }

    // MARK: - Cancellation while the fdatasync is on a sync thread

    /// A disk whose fdatasyncs can be held (on the thread that makes them) until let go, then
    /// succeed or fail with EIO; other syncs take `delay` more.
    final class HeldDisk: Sendable {
        struct State {
            var hold = false
            var fail = false
            var inSync = false
            var letGo = false
            var heldOnSyncThread: Bool?
            var datasyncs = 0
        }
        let state = CarbonStore.Locked(State())
        let delay: Duration

        init(delay: Duration) { self.delay = delay }

        var io: FileIO {
            var io = FileIO.posix
            let posix = FileIO.posix
            io.fsync = { fd in self.slow(posix.fsync(fd)) }
            io.datasync = { fd in
                let (holds, fails) = self.state.withLock { s -> (Bool, Bool) in
                    s.datasyncs += 1
                    guard s.hold else { return (false, false) }
                    s.hold = false
                    s.inSync = true
                    s.heldOnSyncThread = Thread.current.name == "sync"
                    return (true, s.fail)
                }
                guard holds else { return self.slow(posix.datasync(fd)) }
                let deadline = ContinuousClock.now + .seconds(60)
                while !self.state.withLock({ $0.letGo }) && ContinuousClock.now < deadline { usleep(1_000) }
                let result = posix.datasync(fd)
                self.state.withLock { $0.inSync = false }
                if fails {
                    errno = EIO
                    return -1
                }
                return result
            }
            return io
        }

        func slow(_ result: Int32) -> Int32 {
            let code = errno
            usleep(UInt32(delay.nanoseconds / 1_000))
            errno = code
            return result
        }

        var seen: State { state.withLock { $0 } }
    }

    static func pathStore(
        _ dir: String, io: FileIO = .posix,
        locks: (PathStorage) -> any LockService = { FileLockService(storage: $0) },
        configure: (inout StoreOptions) -> Void = { _ in }
    ) throws -> (Store, PathStorage) {
        let storage = try PathStorage(root: dir, io: io)
        var options = StoreOptions(lockWait: .seconds(20))
        configure(&options)
        return (Store(storage: storage, locks: locks(storage), options: options), storage)
    }

    @Test(.timeLimit(.minutes(5)), arguments: [false, true], [false, true])
    func aCancelledWriterStillWaitsForItsSyncAndLeavesNoLockHeld(fails: Bool, groupCommit: Bool) async throws
    {
        let dir = try TemporaryDirectory("sync-adv-cancel")
        defer { dir.remove() }
        let disk = HeldDisk(delay: .milliseconds(3))
        let (store, storage) = try Self.pathStore(
            dir.path, io: disk.io, configure: { $0.groupCommit = groupCommit })
        // A snapshot, then an append: by then the syncs average 3 ms, and the next ones are handed
        // over.
        try await store.update("amy") { try $0.upsert(Self.txn("t0", at: 1_900_000_000_000)) }
        try await store.update("amy") { try $0.upsert(Self.txn("t1", at: 1_900_000_000_001)) }
        #expect(storage.offloadsSyncs)
        let key = try store.keys.key(for: "amy")
        let path = storage.location(of: key)
        // Where the valid content ends (the file may have a reserve of zero bytes after it).
        let validBefore = try AppendAndCacheTests.scan(
            Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        )
        .validLength

        disk.state.withLock {
            $0.hold = true
            $0.fail = fails
        }
        let finished = CarbonStore.Locked(false)
        let writer = Task {
            defer { finished.withLock { $0 = true } }
            return try await store.update("amy") { try $0.upsert(Self.txn("t2", at: 1_900_000_000_002)) }
        }
        try await Self.waitUntil("the append is in its fdatasync") { disk.seen.inSync }
        #expect(disk.seen.heldOnSyncThread == true)
        writer.cancel()
        // The sync once asked for is waited for: the cancelled update has not answered.
        try await Task.sleep(for: .milliseconds(100))
        #expect(!finished.withLock { $0 }, "the cancelled update answered before its fdatasync returned")
        disk.state.withLock { $0.letGo = true }
        let outcome = await writer.result

        let plain = try PathStorage(root: dir.path)
        let reader = Store(storage: plain, locks: FileLockService(storage: plain))
        let record = try #require(try await reader.read("amy"))
        if fails {
            // The error is reported, and the frame cut (with the reserve after it): the file ends
            // where its valid content did.
            #expect(throws: StorageIOError.self) { try outcome.get() }
            if case .failure(let error as StorageIOError) = outcome {
                #expect(error.errno == EIO && error.operation == "fdatasync", "\(error)")
            }
            #expect(record.transaction(id: "t2") == nil)
            #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == validBefore)
        } else {
            // Durable and reported.
            #expect(throws: Never.self) { try outcome.get() }
            #expect(record.transaction(id: "t2") != nil)
        }

        // The user's lock and the commit lock were let go: another "process" (its own storage and
        // locks) updates at once, and so does this one.
        let (other, _) = try Self.pathStore(dir.path, configure: { $0.lockWait = .seconds(5) })
        try await other.update("amy") { try $0.upsert(Self.txn("t3", at: 1_900_000_000_003)) }
        try await store.update("amy") { try $0.upsert(Self.txn("t4", at: 1_900_000_000_004)) }
        let after = try #require(try await reader.read("amy"))
        #expect(after.transaction(id: "t3") != nil && after.transaction(id: "t4") != nil)
        #expect(after.transactions.count == (fails ? 4 : 5))
    }

    // MARK: - Many writers of one user on a slow disk

    enum Locking: String, Sendable, CaseIterable, CustomTestStringConvertible {
        case localReleasingBeforeSync, localHoldingThroughSync, none
        var testDescription: String { rawValue }
    }

    /// Two stores (two processes: their own storage, locks and caches) over one slow disk, three
    /// tasks each, updating one user. Each update adds a transaction whose id says who made it and
    /// how many transactions the record had then: an update applied twice would add a second id.
    /// Returns the ids acknowledged, and the errors of the updates that were not.
    static func manyWriters(
        _ dir: String, disk: Disk, locking: Locking, groupCommit: Bool, updates: Int = 8
    ) async throws -> (acknowledged: [String], errors: [any Error]) {
        let stores = try (0..<2).map { _ in
            let storage = try PathStorage(root: dir, io: disk.io)
            var options = StoreOptions(lockWait: .seconds(60), maxConflictRetries: 200)
            options.groupCommit = groupCommit
            options.releasesLockBeforeSync = locking != .localHoldingThroughSync
            options.clock = StoreClock(
                now: Timestamp.now, instant: { ContinuousClock.now },
                sleep: { try await Task.sleep(for: min($0, .milliseconds(20))) })
            let locks: any LockService =
                locking == .none ? NoLockService() : FileLockService(storage: storage)
            return Store(storage: storage, locks: locks, options: options)
        }
        let results = await withTaskGroup(of: [Result<String, any Error>].self) { group in
            for (s, store) in stores.enumerated() {
                for t in 0..<3 {
                    group.addTask {
                        var out: [Result<String, any Error>] = []
                        for k in 0..<updates {
                            do {
                                let id = try await store.update("amy") { r -> String in
                                    let n = r.transactions.count
                                    let id = "s\(s)-t\(t)-k\(k)-at\(n)"
                                    try r.upsert(Self.txn(id, at: 1_900_000_000_000 + Int64(n)))
                                    return id
                                }.value
                                out.append(.success(id))
                            } catch {
                                out.append(.failure(error))
                            }
                        }
                        return out
                    }
                }
            }
            var all: [Result<String, any Error>] = []
            for await part in group { all += part }
            return all
        }
        var acknowledged: [String] = []
        var errors: [any Error] = []
        for r in results {
            switch r {
            case .success(let id): acknowledged.append(id)
            case .failure(let e): errors.append(e)
            }
        }
        return (acknowledged, errors)
    }

    /// Every acknowledged update is in the file, once; nothing else is (a failed update is absent).
    static func checkFile(_ dir: String, acknowledged: [String], seedIDs: Set<String>) async throws {
        let plain = try PathStorage(root: dir)
        let reader = Store(storage: plain, locks: FileLockService(storage: plain))
        let record = try #require(try await reader.read("amy"))
        let inFile = record.transactions.map(\.id)
        #expect(Set(inFile).count == inFile.count)
        #expect(Set(acknowledged).count == acknowledged.count, "an id acknowledged twice")
        let missing = Set(acknowledged).subtracting(inFile)
        let extra = Set(inFile).subtracting(acknowledged).subtracting(seedIDs)
        #expect(missing.isEmpty, "acknowledged updates lost: \(missing.sorted())")
        #expect(
            extra.isEmpty,
            "updates in the file that were not acknowledged (twice, or failed): \(extra.sorted())")
        // Each id says how many transactions the record had when its mutation ran: in the file, in
        // all, they are n, n+1, n+2, ... after the n seeded (none was applied to a stale record).
        let counts = inFile.filter { !seedIDs.contains($0) }.compactMap { id in
            id.split(separator: "-").last.flatMap { Int($0.dropFirst(2)) }
        }
        #expect(counts.sorted() == Array(seedIDs.count..<(seedIDs.count + counts.count)), "\(inFile)")
    }

    static func seed(_ dir: String, disk: Disk) async throws -> PathStorage {
        let storage = try PathStorage(root: dir, io: disk.io)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("amy") { try $0.upsert(Self.txn("seed0", at: 1_800_000_000_000)) }
        try await store.update("amy") { try $0.upsert(Self.txn("seed1", at: 1_800_000_000_001)) }
        return storage
    }

    @Test(.timeLimit(.minutes(10)), arguments: Locking.allCases, [true, false])
    func manyWritersOfOneUserOnASlowDiskLoseNothing(locking: Locking, groupCommit: Bool) async throws {
        let dir = try TemporaryDirectory("sync-adv-writers")
        defer { dir.remove() }
        let disk = Disk(delay: .milliseconds(2))
        let seeded = try await Self.seed(dir.path, disk: disk)
        #expect(seeded.offloadsSyncs)
        disk.reset()
        let (acknowledged, errors) = try await Self.manyWriters(
            dir.path, disk: disk, locking: locking, groupCommit: groupCommit)
        #expect(errors.isEmpty, "\(errors)")
        #expect(acknowledged.count == 48)
        #expect(disk.seen.onSyncThread.contains(true), "no sync was handed over")
        try await Self.checkFile(dir.path, acknowledged: acknowledged, seedIDs: ["seed0", "seed1"])
    }

    @Test(.timeLimit(.minutes(10)), arguments: Locking.allCases, [true, false])
    func aFailingFdatasyncAmongManyWritersLosesNoAcknowledgedUpdate(locking: Locking, groupCommit: Bool)
        async throws
    {
        let dir = try TemporaryDirectory("sync-adv-eio")
        defer { dir.remove() }
        // The seed makes one fdatasync (its append); the 12th fdatasync fails with EIO.
        let disk = Disk(delay: .milliseconds(2), failAt: 12)
        _ = try await Self.seed(dir.path, disk: disk)
        let (acknowledged, errors) = try await Self.manyWriters(
            dir.path, disk: disk, locking: locking, groupCommit: groupCommit)
        #expect(!errors.isEmpty, "the failing fdatasync failed no update")
        for error in errors {
            let io = error as? StorageIOError
            #expect(io?.errno == EIO && io?.operation == "fdatasync", "\(error)")
        }
        #expect(acknowledged.count + errors.count == 48)
        try await Self.checkFile(dir.path, acknowledged: acknowledged, seedIDs: ["seed0", "seed1"])
    }

    // MARK: - A disk that turns slow, fast and slow again

    @Test(.timeLimit(.minutes(10)), arguments: [Locking.localReleasingBeforeSync, .none])
    func aDiskGoingSlowAndFastUnderWritersNeitherHangsNorLoses(locking: Locking) async throws {
        let dir = try TemporaryDirectory("sync-adv-flap")
        defer { dir.remove() }
        let disk = Disk(delay: .zero)
        _ = try await Self.seed(dir.path, disk: disk)
        disk.reset()
        let flapping = Task {
            var slow = true
            while !Task.isCancelled {
                disk.state.withLock { $0.delay = slow ? .milliseconds(3) : .zero }
                slow.toggle()
                try? await Task.sleep(for: .milliseconds(slow ? 15 : 40))
            }
        }
        let (acknowledged, errors) = try await Self.manyWriters(
            dir.path, disk: disk, locking: locking, groupCommit: true, updates: 14)
        flapping.cancel()
        _ = await flapping.value
        #expect(errors.isEmpty, "\(errors)")
        #expect(acknowledged.count == 6 * 14)
        let placed = disk.seen.onSyncThread
        #expect(placed.contains(true) && placed.contains(false), "the syncs never moved: \(placed)")
        try await Self.checkFile(dir.path, acknowledged: acknowledged, seedIDs: ["seed0", "seed1"])
    }
}
