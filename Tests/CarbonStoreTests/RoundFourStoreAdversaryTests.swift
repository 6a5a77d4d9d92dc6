import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// Attacks on the periodic whole read of a reader that applies other writers' frames to its cached
/// record (every 33rd catch-up reads and decodes the file whole): whatever happens
/// to the file between the version check and the whole read, the reader must serve what a fresh
/// decode of the file gives.
@Suite struct RoundFourStoreAdversaryTests {
    /// Runs `inject` once, right after a version check found frames appended (between
    /// `getIfChanged` and the whole read that may follow), when it is armed.
    final class Injector: ForwardingStorage, @unchecked Sendable {
        let armed = CarbonStore.Locked<(@Sendable () async throws -> Void)?>(nil)
        let injected = CarbonStore.Locked(0)
        override func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
            let result = try await super.getIfChanged(key, cached: cached)
            if case .appended = result,
                let action = armed.withLock({ a in
                    defer { a = nil }; return a
                })
            {
                try await action()
                injected.withLock { $0 += 1 }
            }
            return result
        }
    }

    static func fresh(_ dir: TemporaryDirectory) throws -> Store {
        Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
    }

    static func txn(_ id: String, _ n: Int) -> Transaction {
        AppendAndCacheTests.txn(id, at: 1_950_000_000_000 + Int64(n))
    }

    enum Injection: String, CaseIterable, Sendable {
        case thirdWriterAppends, compaction, tornTail, deleteAndRecreate, thirdWriterCompacts
    }

    /// Writes `bytes` in place where the file's valid content ends, as an append would.
    static func appendRaw(_ bytes: [UInt8], to path: String) throws {
        try TornAppend.write(bytes, intoUserFileAt: path)
    }

    @Test(arguments: Injection.allCases)
    func changesBetweenTheCheckAndTheWholeReadAreServedAsTheFileHasThem(_ injection: Injection) async throws {
        let dir = try TemporaryDirectory("round-four-inject")
        defer { dir.remove() }
        let writer = try Self.fresh(dir)
        let third = try Self.fresh(dir)
        let storage = try PathStorage(root: dir.path)
        let injector = Injector(try PathStorage(root: dir.path))
        let reader = Store(storage: injector, locks: NoLockService())
        var base = RecordGenerator.workload(.w1, seed: 43)
        base.userID = "pat"
        try await writer.update("pat") { $0 = base }
        _ = try await reader.get("pat")
        let key = try reader.keys.key(for: "pat")
        let path = storage.location(of: key)
        var expectedInjections = 0
        for n in 1...99 {
            try await writer.update("pat") { try $0.upsert(Self.txn("w-\(n)", n)) }
            // Armed at the catch-ups that check the file whole (the 33rd after each whole decode;
            // each injection makes that read decode the file, so the next is 33 later).
            if n % 33 == 0 {
                expectedInjections += 1
                let action: @Sendable () async throws -> Void
                switch injection {
                case .thirdWriterAppends:
                    action = { try await third.update("pat") { try $0.upsert(Self.txn("third-\(n)", n)) } }
                case .compaction:
                    action = {
                        var record = try await third.get("pat")
                        try record.upsert(Self.txn("compacted-\(n)", n))
                        record.revision += 1
                        try await storage.put(
                            key, bytes: RecordCodec().encode(record), condition: .unconditional)
                    }
                case .tornTail:
                    action = {
                        // The start of a frame chained to nothing: readers ignore it.
                        try Self.appendRaw(
                            RecordCodec.frameMarker + [0x80, 0, 0, 0] + [UInt8](repeating: 7, count: 40),
                            to: path)
                    }
                case .deleteAndRecreate:
                    action = {
                        var record = try await third.get("pat")
                        try await third.delete("pat")
                        try record.upsert(Self.txn("recreated-\(n)", n))
                        try await third.update("pat") { [record] in $0 = record }
                    }
                case .thirdWriterCompacts:
                    action = {
                        var options = StoreOptions()
                        options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
                        let compactor = Store(
                            storage: try PathStorage(root: dir.path), locks: NoLockService(), options: options
                        )
                        try await compactor.update("pat") { try $0.upsert(Self.txn("compactor-\(n)", n)) }
                    }
                }
                injector.armed.withLock { $0 = action }
            }
            let got = try await reader.get("pat")
            let want = try await Self.fresh(dir).get("pat")
            #expect(got == want, "\(injection) after append \(n)")
            if got != want { break }
        }
        #expect(injector.injected.withLock { $0 } == expectedInjections, "\(injection)")
    }

    /// The file changed in place while others append (its ids kept, every checksum valid: an edit
    /// by hand with the CRCs recomputed, a block rewritten from a backup): the catch-up that reads
    /// only the new frames cannot see it, but the periodic whole read must, so that the reader
    /// serves the file's record again within 33 catch-ups. (A check of the file's checksums
    /// instead of the decode, tried in this round, passed such a file and served the old record for
    /// ever: this test found it.)
    @Test func anEditInPlaceWhileOthersAppendIsServedWithinThirtyThreeCatchUps() async throws {
        let dir = try TemporaryDirectory("round-four-edit")
        defer { dir.remove() }
        let plain = StoreOptions(codec: RecordCodec(options: .init(compression: .none)))
        let writer = Store(storage: try PathStorage(root: dir.path), locks: NoLockService(), options: plain)
        let reader = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        var base = RecordGenerator.workload(.w1, seed: 44)
        base.userID = "pat"
        try await writer.update("pat") { $0 = base }
        _ = try await reader.get("pat")
        let path = try PathStorage(root: dir.path).location(of: try reader.keys.key(for: "pat"))
        for n in 1...5 {
            try await writer.update("pat") { try $0.upsert(Self.txn("w-\(n)", n)) }
            _ = try await reader.get("pat")
        }
        // Edit one transaction id's last byte in the snapshot, and its section's CRC, in place.
        var bytes = try #require(FileManager.default.contents(atPath: path).map { [UInt8]($0) })
        let report = try RecordCodec.inspect(bytes)
        let section = try #require(report.sections.first { $0.tag == SectionTag.transactions })
        #expect(!section.isCompressed)
        let id = Array(base.transactions.array[0].id.utf8)
        let bodyStart = section.offset + 8
        let at = try #require(
            (bodyStart..<(bodyStart + section.storedLength - id.count)).first {
                Array(bytes[$0..<($0 + id.count)]) == id
            })
        bytes[at + id.count - 1] =
            bytes[at + id.count - 1] == UInt8(ascii: "Q") ? UInt8(ascii: "R") : UInt8(ascii: "Q")
        let crcAt = bodyStart + section.storedLength
        let crc = CRC32C.checksum(bytes[section.offset..<crcAt])
        bytes.replaceSubrange(
            crcAt..<(crcAt + 4), with: (0..<4).map { UInt8(truncatingIfNeeded: crc >> (8 * $0)) })
        let h = try #require(FileHandle(forWritingAtPath: path))
        try h.seek(toOffset: UInt64(section.offset))
        try h.write(contentsOf: Data(bytes[section.offset..<(crcAt + 4)]))
        try h.close()
        let edited = try await Self.fresh(dir).get("pat")
        #expect(edited.transactions.array[0].id != base.transactions.array[0].id, "the edit decodes")
        var servedAfter: Int?
        for n in 6...(6 + 40) {
            try await writer.update("pat") { try $0.upsert(Self.txn("w-\(n)", n)) }
            let got = try await reader.get("pat")
            let want = try await Self.fresh(dir).get("pat")
            if got == want, servedAfter == nil { servedAfter = n - 5 }
            if servedAfter != nil { #expect(got == want, "after catch-up \(n)") }
        }
        let after = try #require(servedAfter, "the reader never served the edited file's record")
        #expect(after <= 33)
    }

    /// Several writers in tasks without locks (`locking=none`) append to one file while a cached
    /// reader reads; whenever they pause, the reader serves the file's record, through well over
    /// 33 catch-ups.
    @Test func unlockedWritersInTasksAndACachedReader() async throws {
        let dir = try TemporaryDirectory("round-four-unlocked")
        defer { dir.remove() }
        let writers = try (0..<4).map { _ in try Self.fresh(dir) }
        let reader = try Self.fresh(dir)
        var base = RecordGenerator.workload(.w1, seed: 45)
        base.userID = "pat"
        try await writers[0].update("pat") { $0 = base }
        _ = try await reader.get("pat")
        for round in 0..<25 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (w, writer) in writers.enumerated() {
                    group.addTask {
                        for k in 0..<3 {
                            try await writer.update("pat") {
                                try $0.upsert(Self.txn("r\(round)-w\(w)-\(k)", round))
                            }
                        }
                    }
                }
                group.addTask {
                    for _ in 0..<6 { _ = try await reader.get("pat") }
                }
                try await group.waitForAll()
            }
            let got = try await reader.get("pat")
            let want = try await Self.fresh(dir).get("pat")
            #expect(got == want, "round \(round)")
            #expect(want.transactions.count == base.transactions.count + (round + 1) * 12)
        }
    }
}
