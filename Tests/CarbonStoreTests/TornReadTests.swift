import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// A read takes no lock: on a volume it can see another writer's appends in the middle of their
/// writes (some pages and not others). Bytes after the valid content that look damaged are read
/// again, and reported as damage only when two reads in a row find the same bytes.
@Suite struct TornReadTests {
    /// Serves the reads queued in `reads` first, then the storage's own.
    final class QueuedReads: ForwardingStorage, @unchecked Sendable {
        let reads = CarbonStoreTestSupport.Locked<[[UInt8]]>([])
        override func get(_ key: String) async throws -> StoredObject? {
            let real = try await super.get(key)
            guard let next = reads.withLock({ $0.isEmpty ? nil : $0.removeFirst() }), let real else {
                return real
            }
            return StoredObject(bytes: next, version: ObjectVersion(real.version.rawValue + "-torn"))
        }
    }

    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    /// A file with two frames, and what a read racing the second append can see: the first
    /// frame's bytes not yet there (zeros) while the second, complete, is.
    static func setUp() async throws -> (QueuedReads, bytes: [UInt8], tornRead: [UInt8]) {
        let storage = QueuedReads(MemoryStorage())
        let writer = Store(storage: storage, locks: InProcessLockService())
        try await writer.update("kim") { try $0.upsert(txn("t0")) }
        let key = try UserKeys().key(for: "kim")
        let snapshot = try #require(try await storage.get(key)).bytes
        try await writer.update("kim") { try $0.upsert(txn("t1")) }
        let one = try #require(try await storage.get(key)).bytes
        try await writer.update("kim") { try $0.upsert(txn("t2")) }
        let bytes = try #require(try await storage.get(key)).bytes
        var torn = bytes
        torn.replaceSubrange(
            snapshot.count..<one.count, with: repeatElement(0, count: one.count - snapshot.count))
        let tail = torn[snapshot.count...].withUnsafeBytes {
            RecordCodec.classifyTail($0, at: snapshot.count)
        }
        #expect(tail == .damaged, "the racing read looks damaged")
        return (storage, bytes, torn)
    }

    @Test func anAppendReadInTheMiddleOfItsWriteIsReadAgainNotReported() async throws {
        let (storage, bytes, torn) = try await Self.setUp()
        let reported = CarbonStoreTestSupport.Locked(0)
        for cache in [0, 64 << 20] {
            var options = StoreOptions()
            options.cacheBytes = cache
            options.events = StoreEvents(damagedTail: { _, _, _, _ in reported.withLock { $0 += 1 } })
            let reader = Store(storage: storage, locks: InProcessLockService(), options: options)
            storage.reads.withLock { $0 = [torn] }
            let record = try await reader.get("kim")
            #expect(record.transactions.map(\.id) == ["t0", "t1", "t2"], "the second read, whole")
            #expect(reported.withLock { $0 } == 0, "cache \(cache)")
            // A scrub during the append: healthy.
            storage.reads.withLock { $0 = [torn] }
            let report = try await reader.verify()
            #expect(report.damaged.isEmpty && report.healthy == 1, "\(report.damaged)")
        }
        _ = bytes
    }

    @Test func theSameDamageFoundTwiceIsReported() async throws {
        let (storage, _, torn) = try await Self.setUp()
        let reported = CarbonStoreTestSupport.Locked(0)
        var options = StoreOptions()
        options.events = StoreEvents(damagedTail: { _, _, _, _ in reported.withLock { $0 += 1 } })
        let reader = Store(storage: storage, locks: InProcessLockService(), options: options)
        storage.reads.withLock { $0 = [torn, torn] }
        let record = try await reader.get("kim")
        #expect(record.transactions.map(\.id) == ["t0"], "the record before the damage")
        #expect(reported.withLock { $0 } == 1)
        storage.reads.withLock { $0 = [torn, torn] }
        let report = try await reader.verify()
        #expect(report.damaged.count == 1 && report.healthy == 0)
    }
}

/// A writer that cuts a torn append syncs the cut before it writes where the torn bytes were: on
/// disk they are then zeros, so a power cut during its own append cannot leave sectors of its frame
/// beside sectors of the torn one (a frame whose every sector holds bytes and whose CRC fails, which
/// readers take for damage).
@Suite struct TornAppendCutTests {
    typealias F = CrashPointFixtures

    @Test func theCutIsSyncedBeforeAnythingIsWrittenWhereTheTornBytesWere() async throws {
        let dir = try TemporaryDirectory("torn-cut-synced")
        defer { dir.remove() }
        _ = try await F.seedWithFrames(dir.path)
        try await F.tearAnAppend(dir.path)
        let calls = CarbonStoreTestSupport.Locked<[String]>([])
        var io = FileIO.posix
        let (truncate, datasync, pwrite, reserve) = (io.ftruncate, io.datasync, io.pwrite, io.reserve)
        io.ftruncate = { fd, length in
            calls.withLock { $0.append("ftruncate") }
            return truncate(fd, length)
        }
        io.datasync = { fd in
            calls.withLock { $0.append("datasync") }
            return datasync(fd)
        }
        io.pwrite = { fd, buffer, offset in
            calls.withLock { $0.append("write") }
            return pwrite(fd, buffer, offset)
        }
        io.reserve = { fd, from, to in
            calls.withLock { $0.append("write") }
            return reserve(fd, from, to)
        }
        let store = try await F.store(dir.path, io: io)
        try await store.update("alice") { try $0.upsert(F.txn("after-the-tear")) }
        let sequence = calls.withLock { $0 }
        let cut = try #require(sequence.firstIndex(of: "ftruncate"), "\(sequence)")
        let written = try #require(sequence[cut...].firstIndex(of: "write"), "\(sequence)")
        #expect(sequence[cut..<written].contains("datasync"), "\(sequence)")
        #expect(try await F.store(dir.path).get("alice").transactions.contains { $0.id == "after-the-tear" })
    }
}
