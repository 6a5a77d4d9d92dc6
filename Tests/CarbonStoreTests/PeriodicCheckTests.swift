import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// A reader that applies other writers' frames to its cached record reads and decodes the file
/// whole every 33rd time, so that damage made in place while others append is reported, never
/// served.
@Suite struct PeriodicCheckTests {
    /// Counts whole reads; `damage` flips one byte of the snapshot in what they return, as a disk
    /// that rotted under the page cache would (the file's ids and change time as they were).
    final class Reader: ForwardingStorage, @unchecked Sendable {
        let wholeReads = CarbonStore.Locked(0)
        let damage = CarbonStore.Locked(false)
        override func get(_ key: String) async throws -> StoredObject? {
            wholeReads.withLock { $0 += 1 }
            guard var object = try await super.get(key) else { return nil }
            if damage.withLock({ $0 }) {
                let sections = try RecordCodec.layout(of: object.bytes).sections
                let s = try #require(sections.first)
                object.bytes[s.offset + 8 + s.storedLength / 2] ^= 0x04
            }
            return object
        }
    }

    func stores(_ dir: TemporaryDirectory) throws -> (writer: Store, reader: Store, counter: Reader) {
        let writer = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        let counter = Reader(try PathStorage(root: dir.path))
        let reader = Store(storage: counter, locks: NoLockService())
        return (writer, reader, counter)
    }

    @Test func every33rdCatchUpReadsTheWholeFile() async throws {
        let dir = try TemporaryDirectory("periodic-check")
        defer { dir.remove() }
        let (writer, reader, counter) = try stores(dir)
        var base = RecordGenerator.workload(.w1, seed: 41)
        base.userID = "pat"
        try await writer.update("pat") { $0 = base }
        _ = try await reader.get("pat")
        counter.wholeReads.withLock { $0 = 0 }
        for n in 1...70 {
            try await writer.update("pat") {
                try $0.upsert(AppendAndCacheTests.txn("p-\(n)", at: 1_950_000_000_000 + Int64(n)))
            }
            let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
            #expect(try await reader.get("pat") == (try await fresh.get("pat")), "after append \(n)")
        }
        // 32 applied, the 33rd checked whole; 32 more, the 66th checked whole. No compaction (the
        // frames stay under half the snapshot), so nothing else reads whole.
        #expect(counter.wholeReads.withLock { $0 } == 2)
        // The record is the file's, and updates go on from it.
        try await reader.update("pat") { try $0.upsert(AppendAndCacheTests.txn("last")) }
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await fresh.get("pat").transactions.count == base.transactions.count + 71)
    }

    @Test func damageFoundByTheCheckIsReportedNeverServed() async throws {
        let dir = try TemporaryDirectory("periodic-damage")
        defer { dir.remove() }
        let (writer, reader, counter) = try stores(dir)
        var base = RecordGenerator.workload(.w1, seed: 42)
        base.userID = "pat"
        try await writer.update("pat") { $0 = base }
        _ = try await reader.get("pat")
        counter.damage.withLock { $0 = true }
        var reported = 0
        for n in 1...33 {
            try await writer.update("pat") {
                try $0.upsert(AppendAndCacheTests.txn("d-\(n)", at: 1_950_000_000_000 + Int64(n)))
            }
            do {
                _ = try await reader.get("pat")
            } catch let error as CorruptUserFileError {
                reported += 1
                #expect(n == 33, "only the whole read sees the damaged bytes: \(error)")
                #expect(error.reason.contains("checksum mismatch"), "\(error)")
            }
        }
        #expect(reported == 1)
    }
}
