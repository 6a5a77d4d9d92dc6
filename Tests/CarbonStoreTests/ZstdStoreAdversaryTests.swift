import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// Stores of different `compression` settings taking turns on the same files (docs/FORMAT.md §7,
/// docs/STORAGE.md): appends keep the snapshot's version, a new snapshot takes the writer's,
/// nothing is lost, and the fence and the read cache follow the file across the changes.
@Suite struct ZstdStoreAdversaryTests {
    static func txn(_ id: String, at ms: Int64) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: 250, currency: CurrencyCode("EUR")!))
    }

    /// A store on `dir` with `compression`; `compacting`: every update writes a new snapshot.
    func store(_ dir: TemporaryDirectory, _ compression: String, compacting: Bool = false, cache: Bool = true)
        async throws -> Store
    {
        var options = StoreOptions()
        if compacting { options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0) }
        return try await StoreFactory(options: options).makeStore(
            "path:" + dir.path + "?compression=" + compression + (cache ? "" : "&cache=0"))
    }

    /// The one user file under `dir`: its bytes and its layout.
    func file(_ dir: TemporaryDirectory) throws -> (path: String, bytes: [UInt8], layout: FileLayout) {
        let files = dir.allFiles().filter { $0.hasSuffix(".cstore") }
        #expect(files.count == 1)
        let path = dir.path + "/" + files[0]
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        return (path, bytes, try RecordCodec().decodeFile(bytes).layout)
    }

    /// What a store that has never seen the file reads, and what the format reader decodes.
    func fresh(_ dir: TemporaryDirectory, _ user: String) async throws -> UserRecord? {
        let read = try await store(dir, "zlib", cache: false).read(user)
        #expect(try read == RecordCodec().decodeFile(file(dir).bytes).record)
        return read
    }

    @Test func storesOfEitherSettingTakeTurnsAndLoseNothing() async throws {
        let dir = try TemporaryDirectory("zstd-mixed")
        defer { dir.remove() }
        var record = RecordGenerator.workload(.w1, seed: 51)
        record.userID = "mixed"
        let user = record.userID
        let zlib = try await store(dir, "zlib")
        let zstd = try await store(dir, "zstd")
        let zlibCompacting = try await store(dir, "zlib", compacting: true)
        let zstdCompacting = try await store(dir, "zstd", compacting: true)

        var expected = try await zlib.update(user) { $0 = record }.record
        var f = try file(dir)
        #expect(f.layout.formatVersion == 2 && f.layout.frameCount == 0)

        // Each step: which store, whether it appends, and the version the file then has.
        let steps: [(Store, String, appends: Bool, version: UInt16)] = [
            (zstd, "zstd appends to a version-2 file: the header stays 2", true, 2),
            (zstdCompacting, "a zstd snapshot: version 3", false, 3),
            (zlib, "zlib appends to a version-3 file: the header stays 3", true, 3),
            (zstd, "zstd appends too", true, 3),
            (zlibCompacting, "a zlib snapshot: back to version 2", false, 2),
            (zstdCompacting, "and to version 3 again", false, 3),
        ]
        for (i, (s, what, appends, version)) in steps.enumerated() {
            let frames = f.layout.frameCount
            let result = try await s.update(user) {
                try $0.upsert(Self.txn("step-\(i)", at: 1_900_000_000_000 + Int64(i)))
            }
            #expect(result.committed, "\(what)")
            expected = result.record
            f = try file(dir)
            #expect(f.layout.formatVersion == version, "\(what)")
            #expect(f.layout.frameCount == (appends ? frames + 1 : 0), "\(what)")
            #expect(try await fresh(dir, user) == expected, "\(what)")
            // Every store, cached or not, reads the newest record.
            for other in [zlib, zstd, zlibCompacting, zstdCompacting] {
                #expect(try await other.read(user) == expected, "\(what)")
            }
        }
        #expect(expected.transactions.count == record.transactions.count + steps.count)
    }

    @Test func theFenceAndTheCacheFollowAVersionChange() async throws {
        let dir = try TemporaryDirectory("zstd-fence")
        defer { dir.remove() }
        var record = RecordGenerator.workload(.w1, seed: 52)
        record.userID = "fenced"
        let user = record.userID
        let cached = try await store(dir, "zstd")
        try await cached.update(user) { $0 = record }
        #expect(try file(dir).layout.formatVersion == 3)
        #expect(try await cached.read(user) != nil)  // now in its cache
        // Another process-like store rewrites the file as version 2 with a change.
        let other = try await store(dir, "zlib", compacting: true)
        let changed = try await other.update(user) { try $0.upsert(Self.txn("other", at: 1_900_000_000_000)) }
        #expect(try file(dir).layout.formatVersion == 2)
        #expect(try await cached.read(user) == changed.record)
        // The cached store's next update starts from that record: both changes are kept.
        let both = try await cached.update(user) { try $0.upsert(Self.txn("cached", at: 1_900_000_000_001)) }
        #expect(both.record.transactions.contains { $0.id == "other" })
        #expect(both.record.transactions.contains { $0.id == "cached" })
        #expect(try await fresh(dir, user) == both.record)
    }

    @Test func aTornTailOnAVersion3FileIsIgnoredAndThenReplaced() async throws {
        let dir = try TemporaryDirectory("zstd-torn")
        defer { dir.remove() }
        var record = RecordGenerator.workload(.w1, seed: 53)
        record.userID = "torn"
        let user = record.userID
        let writer = try await store(dir, "zstd", cache: false)
        try await writer.update(user) { $0 = record }
        let appended = try await writer.update(user) { try $0.upsert(Self.txn("one", at: 1_900_000_000_000)) }
        var f = try file(dir)
        #expect(f.layout.formatVersion == 3 && f.layout.frameCount == 1)
        // Half of a second frame, as a crash in the middle of an append leaves it.
        let valid = f.layout.validLength
        let frame = Array(f.bytes[f.layout.snapshotLength..<valid])
        let half = Array(frame.prefix(frame.count / 2))
        try TornAppend.write(half, intoUserFileAt: f.path)
        f = try file(dir)
        #expect(f.layout.validLength == valid && Array(f.bytes[valid..<(valid + half.count)]) == half)
        #expect(try await fresh(dir, user) == appended.record)
        // The next update of a zlib store: the tail is not read as data, the file keeps version 3.
        let zlib = try await store(dir, "zlib", cache: false)
        let next = try await zlib.update(user) { try $0.upsert(Self.txn("two", at: 1_900_000_000_001)) }
        f = try file(dir)
        #expect(f.layout.formatVersion == 3 && f.bytes[f.layout.validLength...].allSatisfy { $0 == 0 })
        #expect(try await fresh(dir, user) == next.record)
        #expect(
            next.record.transactions.contains { $0.id == "one" }
                && next.record.transactions.contains { $0.id == "two" })
    }

    @Test func theMemoryStorageKeepsVersionsAsThePathStorageDoes() async throws {
        var record = RecordGenerator.workload(.w1, seed: 54)
        record.userID = "memory"
        let user = record.userID
        let storage = MemoryStorage()
        func make(_ compression: RecordCodec.Compression, compacting: Bool) -> Store {
            var options = StoreOptions()
            options.codec.options.compression = compression
            if compacting { options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0) }
            return Store(storage: storage, locks: InProcessLockService(), options: options)
        }
        func version() async throws -> UInt16 {
            let key = try #require(try await storage.list(prefix: "", startAfter: nil, limit: 10).keys.first)
            let object = try #require(try await storage.get(key))
            return try RecordCodec.readHeader(object.bytes).formatVersion
        }
        let zlib = make(.zlib(level: 1), compacting: false)
        let zstd = make(.zstd(level: 1), compacting: true)
        try await zlib.update(user) { $0 = record }
        #expect(try await version() == 2)
        let r = try await zstd.update(user) { try $0.upsert(Self.txn("m", at: 1_900_000_000_000)) }
        #expect(try await version() == 3)
        let s = try await zlib.update(user) { try $0.upsert(Self.txn("n", at: 1_900_000_000_001)) }
        #expect(try await version() == 3)
        #expect(try await zstd.read(user) == s.record && s.record.revision == r.record.revision + 1)
    }
}
