import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// Updates on `path:` append change frames under the fence, and reads reuse decoded records only
/// after the storage confirmed their version.
@Suite struct AppendAndCacheTests {
    static func txn(_ id: String, minor: Int64 = 100, at ms: Int64 = 1_700_000_000_000) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    static func scan(_ bytes: [UInt8]) throws -> FileLayout {
        try bytes.withUnsafeBytes { try RecordCodec().scanLayout($0) }
    }

    static func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : -1
    }

    /// Counts how the store reads: whole objects, and version checks that found them unchanged.
    final class ReadCounter: ForwardingStorage, @unchecked Sendable {
        let wholeReads = CarbonStore.Locked(0)
        let unchanged = CarbonStore.Locked(0)
        let appended = CarbonStore.Locked(0)
        override func get(_ key: String) async throws -> StoredObject? {
            wholeReads.withLock { $0 += 1 }
            return try await super.get(key)
        }
        override func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
            let r = try await super.getIfChanged(key, cached: cached)
            switch r {
            case .unchanged, .confirmed: unchanged.withLock { $0 += 1 }
            case .appended: appended.withLock { $0 += 1 }
            default: wholeReads.withLock { $0 += 1 }
            }
            return r
        }
    }

    @Test func anUpdateAppendsAFrameOfTheChangeNotTheFile() async throws {
        let dir = try TemporaryDirectory("append")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        var base = RecordGenerator.workload(.w1, seed: 3)
        base.userID = "alice"
        let created = try await store.update("alice") { $0 = base }
        let path = store.storage.location(of: try store.keys.key(for: "alice"))
        let snapshotSize = Self.fileSize(path)
        #expect(created.committed && snapshotSize > 20_000)
        let bytes = try #require(FileManager.default.contents(atPath: path))
        #expect(try Self.scan(Array(bytes)).frameCount == 0)
        var sizes: [Int] = []
        var lengths: [Int] = []
        for n in 0..<10 {
            try await store.update("alice") {
                try $0.upsert(Self.txn("new-\(n)", at: 1_900_000_000_000 + Int64(n)))
            }
            sizes.append(Self.fileSize(path))
            lengths.append(
                try Self.scan(Array(try #require(FileManager.default.contents(atPath: path)))).validLength)
        }
        // Each update added a small frame to the valid content; none rewrote the file.
        var previous = snapshotSize
        for length in lengths {
            #expect(length > previous && length - previous < 1_024, "a frame under 1 kB")
            previous = length
        }
        // The first append reserved room after its frame (the file ends on a 4 KiB boundary, at
        // least `minimumReserve` after the frame); the next ones were written into it in place, and
        // grew the file at most once more, by a page.
        #expect(sizes[0] % 4096 == 0 && sizes[0] - lengths[0] >= PathStorage.minimumReserve, "\(sizes)")
        #expect(sizes.allSatisfy { $0 % 4096 == 0 } && sizes.last! - sizes[0] <= 4096, "\(sizes)")
        #expect(Set(sizes).count <= 2, "\(sizes)")
        let after = Array(try #require(FileManager.default.contents(atPath: path)))
        let layout = try Self.scan(after)
        #expect(layout.frameCount == 10 && after[layout.validLength...].allSatisfy { $0 == 0 })
        // A reader with no cache sees every change.
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        let record = try await fresh.get("alice")
        #expect(record.revision == 11)
        #expect((0..<10).allSatisfy { record.transaction(id: "new-\($0)") != nil })
        #expect(record == (try await store.get("alice")))
    }

    @Test func theTailIsCompactedIntoANewSnapshotWhenItGrows() async throws {
        let dir = try TemporaryDirectory("compact")
        defer { dir.remove() }
        var options = StoreOptions()
        options.compaction = CompactionPolicy(tailFraction: 0.1, minimumTailBytes: 0)
        let store = Store(
            storage: try PathStorage(root: dir.path), locks: InProcessLockService(), options: options)
        var ids: [WriteID] = []
        for n in 0..<60 {
            try await store.update("bob") {
                try $0.upsert(Self.txn("t-\(n)", at: 1_700_000_000_000 + Int64(n)))
            }
            let path = store.storage.location(of: try store.keys.key(for: "bob"))
            let layout = try Self.scan(Array(try #require(FileManager.default.contents(atPath: path))))
            #expect(Double(layout.tailLength) <= Double(layout.snapshotLength) * 0.1 + 1_024)
            if let id = layout.fileID, ids.last != id { ids.append(id) }
        }
        #expect(ids.count > 2, "compacted more than once: \(ids.count) snapshots")
        #expect(Set(ids).count == ids.count, "every snapshot has a new id")
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        let record = try await fresh.get("bob")
        #expect(record.transactions.count == 60 && record.revision == 60)
    }

    @Test func aStaleAppendIsRefusedAndATornOneIsCut() async throws {
        let dir = try TemporaryDirectory("fence-append")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let codec = RecordCodec()
        let key = "ab/cd/alice.cstore"
        let r0 = UserRecord(userID: "alice", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0))
        let (snapshot, layout0) = try codec.encodeSnapshot(r0, fileID: .random())
        let v0 = try await storage.put(key, bytes: snapshot, condition: .mustNotExist)
        var r1 = r0
        try r1.upsert(Self.txn("t1"))
        r1.revision = 2
        let f1 = try #require(codec.encodeChange(from: r0, to: r1, appendingTo: layout0, id: .random()))
        let v1 = try await storage.append(key, bytes: f1.bytes, expected: v0)
        #expect(v1 != v0)
        // The version append returns names the content a read finds (a read also records the file's
        // change time, which an append does not ask for).
        let ids = { (v: ObjectVersion) in v.rawValue.split(separator: ":").prefix(4) }
        #expect(
            try await storage.get(key).map { ids($0.version) } == ids(v1),
            "the version append returns is the one a read gives")

        // A writer that read v0 is refused: its frame would follow one it never saw.
        var stale = r0
        try stale.upsert(Self.txn("stale"))
        stale.revision = 2
        let fs = try #require(codec.encodeChange(from: r0, to: stale, appendingTo: layout0, id: .random()))
        await #expect(throws: VersionMismatchError.self) {
            try await storage.append(key, bytes: fs.bytes, expected: v0)
        }
        // So is a writer whose snapshot was replaced by another one.
        let (other, _) = try codec.encodeSnapshot(r0, fileID: .random())
        let otherVersion = PathStorage.version(of: other)
        await #expect(throws: VersionMismatchError.self) {
            try await storage.append(key, bytes: f1.bytes, expected: otherVersion)
        }

        // A torn append (half a frame) after v1 is invisible to readers and to the version
        // check, and the next append cuts it.
        let path = storage.location(of: key)
        var r2 = r1
        try r2.upsert(Self.txn("t2"))
        r2.revision = 3
        let layout1 = layout0.appending(f1)
        let f2 = try #require(codec.encodeChange(from: r1, to: r2, appendingTo: layout1, id: .random()))
        try TornAppend.write(Array(f2.bytes.prefix(f2.bytes.count / 2)), intoUserFileAt: path)
        // The torn bytes are no content: the ids still say v1 (the change time moved, so a cache
        // reads the file again, and finds the same record).
        let torn = try #require(try await storage.get(key))
        #expect(ids(torn.version) == ids(v1))
        #expect(try codec.decode(torn.bytes) == r1)
        let v2 = try await storage.append(key, bytes: f2.bytes, expected: v1)
        let bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        #expect(try Self.scan(bytes).validLength == layout1.validLength + f2.bytes.count)
        #expect(
            bytes[(layout1.validLength + f2.bytes.count)...].allSatisfy { $0 == 0 }, "the torn bytes were cut"
        )
        #expect(try codec.decode(bytes) == r2)
        let afterV1 = try await storage.getIfChanged(key, cached: v1)
        guard case .appended(_, let grown) = afterV1 else {
            Issue.record("v1 is no longer the file's content: \(afterV1)")
            return
        }
        #expect(ids(grown) == ids(v2))
        // v2 is current: a read (outside an update) confirms it and records the file's change time,
        // which the append did not ask for; with it, the version is unchanged.
        let afterV2 = try await storage.getIfChanged(key, cached: v2)
        guard case .confirmed(let confirmed) = afterV2 else {
            Issue.record("v2 is the file's content: \(afterV2)")
            return
        }
        #expect(ids(confirmed) == ids(v2) && v2.rawValue.split(separator: ":").count == 4)
        #expect(confirmed.rawValue.split(separator: ":").count == 5, "\(confirmed)")
        #expect(try await storage.getIfChanged(key, cached: confirmed) == .unchanged)
    }

    @Test func aCachedReadCostsAVersionCheckAndSeesEveryOtherWriter() async throws {
        let dir = try TemporaryDirectory("cache")
        defer { dir.remove() }
        let counted = ReadCounter(try PathStorage(root: dir.path))
        let reader = Store(storage: counted, locks: InProcessLockService())
        // Another process's store (its own cache) on the same directory.
        let writer = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        var base = RecordGenerator.workload(.w1, seed: 5)
        base.userID = "carol"
        try await writer.update("carol") { $0 = base }
        let first = try await reader.get("carol")
        let reads = counted.wholeReads.withLock { $0 }
        for _ in 0..<5 { #expect(try await reader.get("carol") == first) }
        #expect(counted.wholeReads.withLock { $0 } == reads, "no whole read while unchanged")
        #expect(counted.unchanged.withLock { $0 } == 5)
        // An append by the other store, a compaction (a new file, perhaps on a reused inode), a
        // delete and a re-creation: each is seen by the next read.
        try await writer.update("carol") { try $0.upsert(Self.txn("appended")) }
        #expect(try await reader.get("carol").transaction(id: "appended") != nil)
        var small = UserRecord(userID: "carol", createdAt: Timestamp(millisecondsSince1970: 0))
        try small.upsert(Self.txn("only"))
        try await writer.update("carol") { $0.transactions = small.transactions }
        #expect(try await reader.get("carol").transactions.map(\.id) == ["only"])
        try await writer.delete("carol")
        #expect(try await reader.read("carol") == nil)
        try await writer.update("carol") { try $0.upsert(Self.txn("again")) }
        #expect(try await reader.get("carol").transactions.map(\.id) == ["again"])
    }

    @Test func theSameSnapshotRewrittenIsANewVersion() async throws {
        // Same record, same size, same inode perhaps: a new snapshot id all the same.
        let dir = try TemporaryDirectory("cache-rewrite")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let codec = RecordCodec()
        let key = "ab/cd/dave.cstore"
        let r = UserRecord(userID: "dave", revision: 1, createdAt: Timestamp(millisecondsSince1970: 0))
        let v1 = try await storage.put(
            key, bytes: try codec.encodeSnapshot(r, fileID: .random()).bytes, condition: .mustNotExist)
        let v2 = try await storage.put(
            key, bytes: try codec.encodeSnapshot(r, fileID: .random()).bytes, condition: .mustMatch(v1))
        #expect(v1 != v2)
        guard case .changed(let object) = try await storage.getIfChanged(key, cached: v1) else {
            Issue.record("a rewritten file reported unchanged")
            return
        }
        #expect(object.version == v2)
    }

    @Test func noCacheMeansEveryReadIsWhole() async throws {
        let counted = ReadCounter(MemoryStorage())
        var options = StoreOptions()
        options.cacheBytes = 0
        let store = Store(storage: counted, locks: InProcessLockService(), options: options)
        try await store.update("erin") { try $0.upsert(Self.txn("t")) }
        for _ in 0..<3 { _ = try await store.get("erin") }
        #expect(counted.unchanged.withLock { $0 } == 0)
    }
}

extension ConditionalRead: Equatable {
    public static func == (a: ConditionalRead, b: ConditionalRead) -> Bool {
        switch (a, b) {
        case (.unchanged, .unchanged), (.missing, .missing): true
        case (.changed(let x), .changed(let y)): x.version == y.version && x.bytes == y.bytes
        default: false
        }
    }
}

extension AppendAndCacheTests {
    @Test func aFileDamagedInPlaceIsReadAgainAndReported() async throws {
        // Bytes changed in place by anything but the engine keep the file's ids, not its change
        // time: the cache reads the file again, and the damage is reported, never written over.
        let dir = try TemporaryDirectory("cache-damage")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        try await store.update("fay") { try $0.upsert(Self.txn("t1")) }
        try await store.update("fay") { try $0.upsert(Self.txn("t2")) }
        _ = try await store.get("fay")
        let path = store.storage.location(of: try store.keys.key(for: "fay"))
        var bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        bytes[70] ^= 0xFF
        // Written in place (same inode, same size), a little later so the change time moves on
        // even where it is coarse.
        try await Task.sleep(for: .milliseconds(20))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: bytes)
        try handle.close()
        await #expect(throws: CorruptUserFileError.self) { try await store.read("fay") }
        await #expect(throws: CorruptUserFileError.self) {
            try await store.update("fay") { try $0.upsert(Self.txn("t3")) }
        }
        #expect(Array(try #require(FileManager.default.contents(atPath: path))) == bytes)
    }
}

extension AppendAndCacheTests {
    @Test func verifyReportsAnIgnoredTailAndTheNextUpdateCutsIt() async throws {
        let dir = try TemporaryDirectory("verify-tail")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        try await store.update("gus") { try $0.upsert(Self.txn("t1")) }
        try await store.update("gus") { try $0.upsert(Self.txn("t2")) }
        let path = store.storage.location(of: try store.keys.key(for: "gus"))
        let clean = Array(try #require(FileManager.default.contents(atPath: path)))
        // The reserve after the valid content is no ignored tail.
        #expect(try await store.verify().ignoredTails.isEmpty)
        // A frame cut short, where the append that crashed would have written it.
        let valid = try TornAppend.write([0x89, 0x43, 0x46, 0x52, 0x40, 0x00, 0x00], intoUserFileAt: path)
        let report = try await store.verify()
        #expect(report.isHealthy && report.healthy == 1)
        #expect(report.ignoredTails.count == 1)
        #expect(report.ignoredTails.first?.location == path)
        #expect(
            report.ignoredTails.first?.reason.contains("\(clean.count - valid) bytes after offset \(valid)")
                == true)
        try await store.update("gus") { try $0.upsert(Self.txn("t3")) }
        #expect(try await store.verify().ignoredTails.isEmpty)
        #expect(try await store.get("gus").transactions.map(\.id) == ["t1", "t2", "t3"])
    }
}

extension AppendAndCacheTests {
    @Test func framesAnotherWriterAppendedAreAppliedToTheCachedRecord() async throws {
        let dir = try TemporaryDirectory("cache-appended")
        defer { dir.remove() }
        let counted = ReadCounter(try PathStorage(root: dir.path))
        let reader = Store(storage: counted, locks: InProcessLockService())
        var options = StoreOptions()
        options.compaction = CompactionPolicy(tailFraction: 0.3, minimumTailBytes: 2_048)
        let writer = Store(
            storage: try PathStorage(root: dir.path), locks: InProcessLockService(), options: options)
        var base = RecordGenerator.workload(.w1, seed: 11)
        base.userID = "hal"
        try await writer.update("hal") { $0 = base }
        _ = try await reader.get("hal")
        var rng = SeededRandom(seed: 4)
        for n in 0..<120 {
            // Appends, inserts in the middle, replacements, removals, preferences; now and then a
            // compaction (a new snapshot) and a torn append.
            try await writer.update("hal") { r in
                switch rng.int(0...4) {
                case 0: try r.upsert(Self.txn("a-\(n)", at: 1_950_000_000_000 + Int64(n)))
                case 1: try r.upsert(Self.txn("m-\(n)", at: 1_600_000_000_000 + Int64(n)))
                case 2:
                    if !r.transactions.isEmpty {
                        r.transactions.remove(at: rng.int(0...(r.transactions.count - 1)))
                    }
                case 3:
                    r.setPreference(
                        "p\(n % 7)", value: "v\(n)", at: Timestamp(millisecondsSince1970: Int64(n)))
                default:
                    if !r.transactions.isEmpty {
                        r.transactions[rng.int(0...(r.transactions.count - 1))].description = "d\(n)"
                    }
                }
            }
            if n % 17 == 5 {
                let path = writer.storage.location(of: try writer.keys.key(for: "hal"))
                try TornAppend.write([0x89, 0x43, 0x46], intoUserFileAt: path)
            }
            let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
            let expected = try await fresh.get("hal")
            #expect(try await reader.get("hal") == expected, "after update \(n)")
        }
        // Most reads took only the appended frames; the rest were after compactions or torn bytes.
        let appended = counted.appended.withLock { $0 }
        let whole = counted.wholeReads.withLock { $0 }
        #expect(appended > 60, "\(appended) incremental reads, \(whole) whole reads")
    }
}

extension AppendAndCacheTests {
    @Test func aDamagedFrameWithFramesAfterItIsDamageNeverCut() async throws {
        let dir = try TemporaryDirectory("damaged-frame")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        try await store.update("ida") { try $0.upsert(Self.txn("t1")) }
        let path = store.storage.location(of: try store.keys.key(for: "ida"))
        let snapshotSize = Self.fileSize(path)
        try await store.update("ida") { try $0.upsert(Self.txn("t2")) }
        try await store.update("ida") { try $0.upsert(Self.txn("t3")) }
        // A byte of the first frame damaged on disk: the frames from there on are ignored by
        // readers, and the second frame (acknowledged) is hidden behind it.
        var bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        bytes[snapshotSize + 50] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        #expect(try await fresh.get("ida").transactions.map(\.id) == ["t1"])
        let report = try await fresh.verify()
        #expect(!report.isHealthy && report.damaged.count == 1)
        #expect(report.damaged.first?.reason.contains("not one torn append") == true)
        // No update cuts it or writes over it: the hidden frame stays for someone to recover.
        await #expect(throws: DamagedTailError.self) {
            try await fresh.update("ida") { try $0.upsert(Self.txn("t4")) }
        }
        var compacting = StoreOptions()
        compacting.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
        let compactor = Store(
            storage: try PathStorage(root: dir.path), locks: InProcessLockService(), options: compacting)
        await #expect(throws: DamagedTailError.self) {
            try await compactor.update("ida") { try $0.upsert(Self.txn("t5")) }
        }
        #expect(Array(try #require(FileManager.default.contents(atPath: path))) == bytes)
        // Deleting the user is still possible.
        #expect(try await fresh.delete("ida") == .deleted)
    }
}

/// The reserve: zero bytes after the valid content of a file on a local volume, which appends are
/// written into in place, so that most of them do not grow the file (docs/STORAGE.md, "An update
/// appends").
extension AppendAndCacheTests {
    @Test func appendsFillTheReserveAndGrowTheFileByWholePages() async throws {
        let dir = try TemporaryDirectory("reserve")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let store = Store(storage: storage, locks: InProcessLockService())
        try await store.update("kim") { try $0.upsert(Self.txn("t0")) }
        let path = store.storage.location(of: try store.keys.key(for: "kim"))
        var sizes: [Int] = []
        var snapshots: Set<WriteID> = []
        for n in 1...200 {
            try await store.update("kim") {
                try $0.upsert(Self.txn("t\(n)", at: 1_700_000_000_000 + Int64(n)))
            }
            let bytes = Array(try #require(FileManager.default.contents(atPath: path)))
            let layout = try Self.scan(bytes)
            if let id = layout.fileID { snapshots.insert(id) }
            // Nothing after the valid content but zeros; a file with a reserve ends on a page.
            #expect(bytes[layout.validLength...].allSatisfy { $0 == 0 }, "update \(n)")
            #expect(
                bytes.count == layout.validLength || bytes.count % 4096 == 0, "update \(n): \(bytes.count)")
            #expect(bytes.count < layout.validLength + PathStorage.minimumReserve + 4096, "update \(n)")
            if sizes.last != bytes.count { sizes.append(bytes.count) }
        }
        // The file grew a page or two at a time, once per 8 or more appends of these frames (under
        // 128 bytes each), a compaction's snapshot starting without a reserve.
        #expect(sizes.count <= 200 / 8 + 2 * snapshots.count, "\(sizes)")
        #expect(storage.reservedByteCount >= 1024)
        #expect(PathStorage.sizeWithoutTimeStamps(ofFileAt: path) == Self.fileSize(path))
        #expect(PathStorage.sizeWithoutTimeStamps(ofFileAt: path + ".missing") == nil)
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await fresh.get("kim").transactions.count == 201)
        #expect(try await fresh.verify().ignoredTails.isEmpty, "a reserve is no ignored tail")
    }

    /// Zeros where a frame should start, then bytes: the end of one append whose first sectors a
    /// power cut lost (torn, cut by the next writer) when no complete frame starts in them; damage
    /// (never cut) when one does.
    @Test func bytesInTheReserveAfterZerosAreTornUnlessAFrameIsThere() async throws {
        let dir = try TemporaryDirectory("reserve-damage")
        defer { dir.remove() }
        let store = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        try await store.update("lou") { try $0.upsert(Self.txn("t1")) }
        let path = store.storage.location(of: try store.keys.key(for: "lou"))
        let before = try Self.scan(Array(try #require(FileManager.default.contents(atPath: path))))
        try await store.update("lou") { try $0.upsert(Self.txn("t2")) }
        var bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        let layout = try Self.scan(bytes)
        let frame = Array(bytes[before.validLength..<layout.validLength])
        let valid = layout.validLength
        #expect(bytes.count > valid + frame.count + 100, "a reserve")

        // The second half of a frame, 60 bytes in: what a lost first sector leaves.
        let fragment = Array(frame[(frame.count / 2)...])
        bytes.replaceSubrange((valid + 60)..<(valid + 60 + fragment.count), with: fragment)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reader = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        #expect(try await reader.get("lou").transactions.map(\.id) == ["t1", "t2"])
        let report = try await reader.verify()
        #expect(report.damaged.isEmpty && report.ignoredTails.count == 1, "\(report)")
        try await reader.update("lou") { try $0.upsert(Self.txn("t3")) }
        #expect(
            try AppendAndCacheTests.scan(Array(try #require(FileManager.default.contents(atPath: path))))
                .frameCount == 2)

        // A whole frame (the last one again) 100 bytes into the reserve: a committed frame, which
        // may be someone's acknowledged change. Damage: never cut, never written over.
        bytes = Array(try #require(FileManager.default.contents(atPath: path)))
        let end = try Self.scan(bytes).validLength
        let last = Array(bytes[valid..<end])
        #expect(bytes.count >= end + 100 + last.count, "room in the reserve")
        bytes.replaceSubrange((end + 100)..<(end + 100 + last.count), with: last)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        #expect(try await fresh.get("lou").transactions.map(\.id) == ["t1", "t2", "t3"])
        #expect(try await fresh.verify().damaged.count == 1)
        await #expect(throws: DamagedTailError.self) {
            try await fresh.update("lou") { try $0.upsert(Self.txn("t4")) }
        }
        #expect(Array(try #require(FileManager.default.contents(atPath: path))) == bytes)
    }

    /// An append's version carries no change time (asking for it would make the next append's
    /// write stamp a fine-grained one); the next read records it, and from then on bytes changed in
    /// place are noticed.
    @Test func anAppendsVersionGetsItsChangeTimeAtTheNextRead() async throws {
        let dir = try TemporaryDirectory("reserve-ctime")
        defer { dir.remove() }
        let counted = ReadCounter(try PathStorage(root: dir.path))
        let store = Store(storage: counted, locks: InProcessLockService())
        try await store.update("max") { try $0.upsert(Self.txn("t1")) }
        let appended = try await store.update("max") { try $0.upsert(Self.txn("t2")) }
        #expect(appended.committed)
        let key = try store.keys.key(for: "max")
        let cached = try #require(store.cache.entry(key)).version
        #expect(cached.rawValue.split(separator: ":").count == 4, "no change time: \(cached)")
        // A read confirms it without reading the file, and keeps the change time with it.
        let before = counted.wholeReads.withLock { $0 }
        #expect(try await store.get("max") == appended.record)
        let confirmed = try #require(store.cache.entry(key)).version
        #expect(confirmed.rawValue.split(separator: ":").count == 5, "\(confirmed)")
        #expect(confirmed.rawValue.hasPrefix(cached.rawValue + ":"))
        #expect(try await store.get("max") == appended.record)
        #expect(counted.wholeReads.withLock { $0 } == before, "both reads were version checks")
    }
}

extension AppendAndCacheTests {
    /// A `FileIO` that replaces the folder's `.commit.lock` with a new file the first time a user
    /// file is opened to append to (the commit lock is held by then): what removing lock files
    /// under a serving process does.
    final class ReplacesCommitLock: Sendable {
        let replaced = CarbonStore.Locked(0)
        var io: FileIO {
            var io = FileIO.posix
            io.openat = { dir, name, flags, mode in
                let isAppend = flags & O_ACCMODE == O_RDWR && flags & (O_CREAT | O_DIRECTORY) == 0
                if isAppend,
                    self.replaced.withLock({
                        $0 += 1; return $0 == 1
                    })
                {
                    let fd = Glibc.openat(dir, ".commit.lock.new", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
                    if fd >= 0 { _ = Glibc.close(fd) }
                    _ = Glibc.renameat(dir, ".commit.lock.new", dir, ".commit.lock")
                }
                return FileIO.posix.openat(dir, name, flags, mode)
            }
            return io
        }
    }

    /// Written in place, a frame would land on any frame a writer holding the replaced lock file
    /// wrote: the append is refused as a conflict and retried under the new file's lock.
    @Test func anAppendUnderALockFileReplacedMeanwhileIsRefusedAndRetried() async throws {
        let dir = try TemporaryDirectory("reserve-lock-replaced")
        defer { dir.remove() }
        let plain = Store(storage: try PathStorage(root: dir.path), locks: InProcessLockService())
        try await plain.update("ned") { try $0.upsert(Self.txn("t1")) }
        try await plain.update("ned") { try $0.upsert(Self.txn("t2")) }
        let key = try plain.keys.key(for: "ned")
        let path = plain.storage.location(of: key)
        let before = Array(try #require(FileManager.default.contents(atPath: path)))

        // The storage itself: a version mismatch, and nothing written.
        let replacing = ReplacesCommitLock()
        let storage = try PathStorage(root: dir.path, io: replacing.io)
        let current = try #require(try await storage.get(key))
        let (record, layout) = try RecordCodec().decodeFile(current.bytes)
        var next = record
        try next.upsert(Self.txn("t3"))
        next.revision += 1
        let frame = try #require(
            RecordCodec().encodeChange(from: record, to: next, appendingTo: layout, id: .random()))
        await #expect(throws: VersionMismatchError.self) {
            try await storage.append(key, bytes: frame.bytes, expected: current.version)
        }
        #expect(Array(try #require(FileManager.default.contents(atPath: path))) == before)

        // Through the engine: the update is retried, under the new lock file, and lands once.
        let again = ReplacesCommitLock()
        let conflicts = CarbonStore.Locked(0)
        var options = StoreOptions()
        options.events = StoreEvents(fenceConflict: { _ in conflicts.withLock { $0 += 1 } })
        let store = Store(
            storage: try PathStorage(root: dir.path, io: again.io), locks: InProcessLockService(),
            options: options)
        let done = try await store.update("ned") { try $0.upsert(Self.txn("t4")) }
        #expect(done.committed && conflicts.withLock { $0 } == 1)
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await fresh.get("ned").transactions.map(\.id) == ["t1", "t2", "t4"])
    }
}
