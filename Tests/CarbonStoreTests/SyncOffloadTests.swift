import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Slow syncs leave the cooperative pool (`PathStorage.sync`, `SyncThreads`): once a storage's
/// `fsync` and `fdatasync` calls take more than `offloadSyncsAbove` on average, they run on threads
/// of their own, so that one sync of a network volume does not stop every other task of the
/// process, and the syncs of different users overlap. Fast syncs stay on the caller's thread.
///
/// The disk here is made slow by a `FileIO` whose syncs sleep after the real call, and which
/// records, for every sync, whether it ran on a sync thread and how many syncs were in progress.
@Suite struct SyncOffloadTests {
    /// A disk whose syncs take `delay` longer (changeable), failing the `failAt`th fdatasync with
    /// EIO, and what its syncs saw.
    final class Disk: Sendable {
        struct State {
            var delay: Duration
            var failAt: Int?
            var datasyncs = 0
            var inFlight = 0
            var mostInFlight = 0
            /// For each sync, in order: whether it ran on a thread of `SyncThreads`.
            var onSyncThread: [Bool] = []
        }
        let state: CarbonStore.Locked<State>

        init(delay: Duration, failAt: Int? = nil) {
            state = CarbonStore.Locked(State(delay: delay, failAt: failAt))
        }

        var io: FileIO {
            var io = FileIO.posix
            io.fsync = { fd in self.sync(fd, Glibc.fsync, isData: false) }
            io.datasync = { fd in self.sync(fd, Glibc.fdatasync, isData: true) }
            return io
        }

        func sync(_ fd: Int32, _ call: (Int32) -> Int32, isData: Bool) -> Int32 {
            let (delay, fails) = state.withLock { s -> (Duration, Bool) in
                s.inFlight += 1
                s.mostInFlight = max(s.mostInFlight, s.inFlight)
                s.onSyncThread.append(Thread.current.name == "sync")
                if isData { s.datasyncs += 1 }
                return (s.delay, isData && s.failAt == s.datasyncs)
            }
            defer { state.withLock { $0.inFlight -= 1 } }
            let result = call(fd)
            if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.nanoseconds) / 1e9) }
            if fails {
                errno = EIO
                return -1
            }
            return result
        }

        var seen: State { state.withLock { $0 } }

        /// Forgets what the syncs so far saw.
        func reset() {
            state.withLock {
                $0.mostInFlight = 0
                $0.onSyncThread = []
            }
        }
    }

    static func store(_ dir: String, _ disk: Disk, offloadAbove: Duration = PathStorage.offloadSyncsAbove)
        throws -> (
            Store, PathStorage
        )
    {
        let storage = try PathStorage(root: dir, io: disk.io, offloadSyncsAbove: offloadAbove)
        return (Store(storage: storage, locks: FileLockService(storage: storage)), storage)
    }

    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 250, currency: CurrencyCode("EUR")!))
    }

    @Test func slowSyncsMoveToThreadsOfTheirOwnAndOverlap() async throws {
        let dir = try TemporaryDirectory("sync-offload")
        defer { dir.remove() }
        let disk = Disk(delay: .milliseconds(20))
        let (store, storage) = try Self.store(dir.path, disk)
        #expect(!storage.offloadsSyncs)
        // The first sync runs where the update runs: nothing has been measured yet. It takes 20 ms,
        // so the next ones run on sync threads, except the fsyncs that make a new folder durable
        // (once per folder), which stay where the update runs.
        let users = (1...8).map { "u\($0)" }
        for u in users {
            try await store.update(u) { try $0.upsert(Self.txn("seed", at: 1_900_000_000_000)) }
            #expect(storage.offloadsSyncs)
        }
        let first = disk.seen.onSyncThread
        #expect(first.first == false, "the first sync, before any was measured, ran in place")
        #expect(first.contains(true), "\(first)")
        disk.reset()

        // Eight users append at once: every fdatasync runs on a sync thread, and they are in
        // progress together, not two at a time (the cooperative pool's threads on two cores).
        try await withThrowingTaskGroup(of: Void.self) { group in
            for u in users {
                group.addTask {
                    try await store.update(u) { try $0.upsert(Self.txn("t", at: 1_900_000_000_001)) }
                }
            }
            try await group.waitForAll()
        }
        #expect(
            disk.seen.mostInFlight >= 4, "at most \(disk.seen.mostInFlight) syncs were in progress at once")
        #expect(disk.seen.onSyncThread.count == 8)
        #expect(disk.seen.onSyncThread.allSatisfy { $0 })
        for u in users {
            #expect(try await store.get(u).transaction(id: "t") == Self.txn("t", at: 1_900_000_000_001))
        }
    }

    @Test func fastSyncsStayOnTheCallersThread() async throws {
        let dir = try TemporaryDirectory("sync-in-place")
        defer { dir.remove() }
        // Under a limit that this disk's syncs stay far below, even on a busy machine.
        let disk = Disk(delay: .zero)
        let (store, storage) = try Self.store(dir.path, disk, offloadAbove: .seconds(1))
        for k in 0..<5 {
            try await store.update("amy") {
                try $0.upsert(Self.txn("t\(k)", at: 1_900_000_000_000 + Int64(k)))
            }
        }
        #expect(!storage.offloadsSyncs)
        #expect(disk.seen.onSyncThread.count >= 5)
        #expect(disk.seen.onSyncThread.allSatisfy { !$0 })
    }

    @Test func syncsComeBackOnceTheDiskIsFastAgain() async throws {
        let dir = try TemporaryDirectory("sync-back")
        defer { dir.remove() }
        // 40 ms syncs, then the disk's own (a few ms at most, even on a busy machine), against a
        // limit of 10 ms.
        let disk = Disk(delay: .milliseconds(40))
        let (store, storage) = try Self.store(dir.path, disk, offloadAbove: .milliseconds(10))
        try await store.update("amy") { try $0.upsert(Self.txn("t0", at: 1_900_000_000_000)) }
        try await store.update("amy") { try $0.upsert(Self.txn("t1", at: 1_900_000_000_001)) }
        #expect(storage.offloadsSyncs)
        disk.state.withLock { $0.delay = Duration.zero }
        var k = 2
        while storage.offloadsSyncs && k < 40 {
            try await store.update("amy") {
                try $0.upsert(Self.txn("t\(k)", at: 1_900_000_000_000 + Int64(k)))
            }
            k += 1
        }
        #expect(!storage.offloadsSyncs, "still offloading after \(k) fast updates")
        let before = disk.seen.onSyncThread.count
        try await store.update("amy") { try $0.upsert(Self.txn("last", at: 1_900_000_000_100)) }
        #expect(disk.seen.onSyncThread.count > before)
        #expect(disk.seen.onSyncThread.suffix(from: before).allSatisfy { !$0 })
        #expect(try await store.get("amy").transactions.count == k + 1)
    }

    @Test func aFailedOffloadedSyncKeepsItsErrorAndCutsTheFrame() async throws {
        let dir = try TemporaryDirectory("sync-offload-fails")
        defer { dir.remove() }
        // The user's creation is a snapshot (fsyncs, no fdatasync); the first append's fdatasync
        // succeeds; the second append's fails with EIO, on a sync thread by then, and the frame is
        // cut (an ftruncate and a third fdatasync).
        let disk = Disk(delay: .milliseconds(5), failAt: 2)
        let (store, storage) = try Self.store(dir.path, disk)
        try await store.update("amy") { try $0.upsert(Self.txn("t0", at: 1_900_000_000_000)) }
        disk.reset()
        try await store.update("amy") { try $0.upsert(Self.txn("t1", at: 1_900_000_000_001)) }
        #expect(storage.offloadsSyncs)
        let key = try store.keys.key(for: "amy")
        let path = storage.location(of: key)
        // Where the valid content ends (the file has a reserve of zero bytes after it).
        let valid = try AppendAndCacheTests.scan(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            .validLength
        await #expect {
            try await store.update("amy") { try $0.upsert(Self.txn("t2", at: 1_900_000_000_002)) }
        } throws: { error in
            guard let e = error as? StorageIOError else { return false }
            return e.errno == EIO && e.operation == "fdatasync"
        }
        // The three fdatasyncs (the first append's, the failed one and the cut's), on sync threads.
        #expect(disk.seen.onSyncThread == [true, true, true])
        // The frame was cut (with the reserve after it): the file ends where its valid content did,
        // and the update is not there.
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == valid)
        let plain = try PathStorage(root: dir.path)
        let record = try await Store(storage: plain, locks: FileLockService(storage: plain)).get("amy")
        #expect(record.transaction(id: "t1") != nil)
        #expect(record.transaction(id: "t2") == nil)
    }

    @Test func callsBeyondTheThreadsQueueAndAllFinishWithTheirErrno() async throws {
        let threads = SyncThreads(maximum: 3)
        let running = CarbonStore.Locked((now: 0, most: 0))
        let results = await withTaskGroup(of: (Int, Int32, Int32).self) { group in
            for i in 0..<12 {
                group.addTask {
                    let (result, code) = await threads.run {
                        running.withLock {
                            $0.now += 1
                            $0.most = max($0.most, $0.now)
                        }
                        Thread.sleep(forTimeInterval: 0.01)
                        running.withLock { $0.now -= 1 }
                        errno = Int32(100 + i)
                        return (Int32(i % 2 == 0 ? 0 : -1), errno)
                    }
                    return (i, result, code)
                }
            }
            var all: [(Int, Int32, Int32)] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(results.count == 12)
        for (i, result, code) in results {
            #expect(result == (i % 2 == 0 ? 0 : -1))
            #expect(code == Int32(100 + i))
        }
        #expect(running.withLock { $0.most } <= 3, "more calls ran at once than the pool has threads")
        #expect(running.withLock { $0.most } >= 2)
    }
}
