import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// The engine's behaviour, the same on every local backend.
@Suite struct StoreTests {
    enum Backend: String, CaseIterable, Sendable {
        case memoryLocal = "memory:"
        case memoryNone = "memory:?locking=none"
        case pathLocal = "path:DIR"
        case pathNone = "path:DIR?locking=none"
    }

    static func withStore(_ backend: Backend, _ body: (Store, String?) async throws -> Void) async throws {
        let dir = try TemporaryDirectory("store")
        defer { dir.remove() }
        let uri = backend.rawValue.replacingOccurrences(of: "DIR", with: dir.path)
        let store = try await StoreFactory().makeStore(uri)
        try await body(store, backend.rawValue.contains("DIR") ? dir.path : nil)
    }

    static func txn(_ id: String, minor: Int64 = 100, at ms: Int64 = 1_700_000_000_000) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    @Test(arguments: Backend.allCases)
    func createReadUpdateDelete(backend: Backend) async throws {
        try await Self.withStore(backend) { store, _ in
            #expect(try await store.read("alice") == nil)
            await #expect(throws: UserNotFoundError.self) { try await store.get("alice") }

            let first = try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
            #expect(first.committed && first.value == .inserted)
            #expect(first.record.revision == 1)
            #expect(first.record.userID == "alice")

            let again = try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
            #expect(!again.committed && again.value == .unchanged && again.record.revision == 1)

            await #expect(throws: IDConflictError.self) {
                try await store.update("alice") { try $0.upsert(Self.txn("t1", minor: 999)) }
            }
            let replaced = try await store.update("alice") {
                try $0.upsert(Self.txn("t1", minor: 999), replace: true)
            }
            #expect(replaced.value == .replaced && replaced.record.revision == 2)

            let read = try await store.get("alice")
            #expect(read == replaced.record)
            #expect(read.createdAt <= read.updatedAt)

            #expect(try await store.delete("alice") == .deleted)
            #expect(try await store.read("alice") == nil)
            #expect(try await store.delete("alice") == .notFound)
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentTasksLoseNothing(backend: Backend) async throws {
        try await Self.withStore(backend) { store, _ in
            let tasks = 8
            let adds = 25
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<tasks {
                    group.addTask {
                        for a in 0..<adds {
                            for user in ["u1", "u2"] {
                                try await store.update(user) {
                                    try $0.upsert(Self.txn("t\(t)-\(a)", at: Int64(a)))
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            for user in ["u1", "u2"] {
                let record = try await store.get(user)
                #expect(record.transactions.count == tasks * adds)
                #expect(record.revision == UInt64(tasks * adds))
                #expect(Set(record.transactions.map(\.id)).count == tasks * adds)
            }
        }
    }

    @Test(arguments: [Backend.memoryLocal, .pathLocal])
    func listingPagesThroughEveryUserOnce(backend: Backend) async throws {
        try await Self.withStore(backend) { store, _ in
            var ids = Set<String>()
            for i in 0..<300 { ids.insert("user-\(i)") }
            ids.formUnion(["../../etc/passwd", "a/b", "Ωμέγα", String(repeating: "z", count: 256)])
            for id in ids {
                try await store.update(id) {
                    $0.setPreference("k", value: "v", at: Timestamp(millisecondsSince1970: 0))
                }
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await store.listUsers(after: cursor, limit: 37)
                #expect(page.userIDs.count <= 37)
                seen += page.userIDs
                cursor = page.cursor
                pages += 1
            } while cursor != nil
            #expect(pages >= 300 / 37)
            #expect(seen.count == ids.count)
            #expect(Set(seen) == ids)
            var streamed: [String] = []
            for try await id in store.allUsers(pageSize: 50) { streamed.append(id) }
            #expect(streamed == seen)
        }
    }

    @Test func awkwardIDsStayInsideTheDataDirectory() async throws {
        let outer = try TemporaryDirectory("confine")
        defer { outer.remove() }
        let dataDir = outer.path + "/data"
        let store = try await StoreFactory().makeStore("path:" + dataDir)
        for id in UserKeysTests.awkwardIDs {
            try await store.update(id) { try $0.upsert(Self.txn("t")) }
            #expect(try await store.get(id).userID == id)
        }
        // Nothing was written outside the data directory.
        #expect(outer.allFiles().allSatisfy { $0.hasPrefix("data/") })
        let files = outer.allFiles().filter { $0.hasSuffix(".cstore") }
        #expect(files.count == UserKeysTests.awkwardIDs.count)
        await #expect(throws: InvalidUserIDError.self) { try await store.update("") { _ in } }
        await #expect(throws: InvalidUserIDError.self) {
            try await store.update(String(repeating: "x", count: 10_240)) { _ in }
        }
    }

    @Test func corruptFileIsReportedAndNeverReplaced() async throws {
        try await Self.withStore(.pathLocal) { store, dir in
            try await store.update("carol") { try $0.upsert(Self.txn("t1")) }
            let path = dir! + "/" + (try store.keys.key(for: "carol"))
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: path))

            await #expect {
                try await store.read("carol")
            } throws: { error in
                let e = error as! CorruptUserFileError
                return e.location == path && e.description.contains("carol") && e.kind == .corrupt
            }
            await #expect(throws: CorruptUserFileError.self) {
                try await store.update("carol") { try $0.upsert(Self.txn("t2")) }
            }
            #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
            let report = try await store.verify()
            #expect(report.damaged.count == 1 && report.damaged[0].location == path)
        }
    }

    /// `verify` of a store checks the files of stores whose prefix is a sub-folder of its own (one
    /// per tenant) as their own stores would: healthy ones count as healthy, damage in them is
    /// reported; a file of no store's shape is still damage.
    @Test func verifyChecksTheFilesOfLongerPrefixes() async throws {
        let dir = try TemporaryDirectory("verify-prefixes")
        defer { dir.remove() }
        let root = try await StoreFactory().makeStore("path:\(dir.path)")
        let tenant = try await StoreFactory().makeStore("path:\(dir.path)?prefix=tenants/eu")
        try await root.update("bob") { try $0.upsert(Self.txn("t1")) }
        try await tenant.update("alice") { try $0.upsert(Self.txn("t1")) }
        try await tenant.update("carol") { try $0.upsert(Self.txn("t1")) }
        let clean = try await root.verify()
        #expect(clean.isHealthy && clean.healthy == 3, "\(clean.damaged)")

        let carol = dir.path + "/" + (try tenant.keys.key(for: "carol"))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: carol)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: carol))
        let stray = dir.path + "/tenants/eu/ab/cd/zed.cstore"
        try FileManager.default.createDirectory(
            atPath: PathStorage.parent(of: stray), withIntermediateDirectories: true)
        try Data(try [UInt8](Data(contentsOf: URL(fileURLWithPath: carol)))).write(
            to: URL(fileURLWithPath: stray))
        let damaged = try await root.verify()
        #expect(damaged.healthy == 2)
        #expect(Set(damaged.damaged.map(\.location)) == [carol, stray], "\(damaged.damaged)")
        #expect(
            damaged.damaged.first { $0.location == stray }?.reason
                == "the file name is not one CarbonStore writes")
        // The tenant's own verify checks its folder alone: not the root's bob.
        let own = try await tenant.verify()
        #expect(own.healthy == 1 && Set(own.damaged.map(\.location)) == [carol, stray], "\(own.damaged)")
    }

    @Test func fileOfAnotherUserIsCorrupt() async throws {
        try await Self.withStore(.pathLocal) { store, dir in
            try await store.update("dave") { try $0.upsert(Self.txn("t1")) }
            try await store.update("erin") { try $0.upsert(Self.txn("t1")) }
            let dave = dir! + "/" + (try store.keys.key(for: "dave"))
            let erin = dir! + "/" + (try store.keys.key(for: "erin"))
            try FileManager.default.removeItem(atPath: erin)
            try FileManager.default.copyItem(atPath: dave, toPath: erin)
            await #expect {
                try await store.read("erin")
            } throws: { ($0 as? CorruptUserFileError)?.reason.contains("belongs to user 'dave'") == true }
        }
    }

    @Test(arguments: [Backend.memoryLocal, .pathLocal])
    func lockTimeoutNamesUserAndHolder(backend: Backend) async throws {
        try await Self.withStore(backend) { store, _ in
            let key = try store.keys.key(for: "frank")
            let lease = try await store.locks.acquire(key, userID: "frank", wait: .seconds(1))
            var quick = store
            quick.options.lockWait = .milliseconds(150)
            let start = ContinuousClock.now
            await #expect {
                try await quick.update("frank") { try $0.upsert(Self.txn("t1")) }
            } throws: { error in
                let e = error as! LockTimeoutError
                return e.userID == "frank" && e.holder?.contains(lease.operationID) == true
                    && e.kind == .lockTimeout
            }
            #expect(ContinuousClock.now - start >= .milliseconds(150))
            try await store.locks.release(lease)
            try await quick.update("frank") { try $0.upsert(Self.txn("t1")) }
            #expect(try await store.get("frank").transactions.count == 1)
        }
    }

    @Test func expiredLeaseNeverCommits() async throws {
        // A clock the test moves by hand: no busy wait, no sleep.
        let start = ContinuousClock.now
        let elapsed = CarbonStoreTestSupport.Locked(Duration.zero)
        let instant: @Sendable () -> ContinuousClock.Instant = { start + elapsed.withLock { $0 } }
        var options = StoreOptions(leaseSafetyMargin: .milliseconds(10))
        options.clock = StoreClock(now: Timestamp.now, instant: instant, sleep: { _ in })
        let store = Store(
            storage: MemoryStorage(), locks: ExpiringLocks(lease: .milliseconds(50), now: instant),
            options: options)
        try await store.update("gina") { try $0.upsert(Self.txn("t1")) }
        await #expect(throws: LeaseExpiredError.self) {
            try await store.update("gina") { record in
                // A writer that stalls past its lease (as if paused) must not write.
                elapsed.withLock { $0 += .milliseconds(120) }
                try record.upsert(Self.txn("t2"))
            }
        }
        #expect(try await store.get("gina").transactions.map(\.id) == ["t1"])
    }

    @Test func fenceRejectsStaleWrites() async throws {
        try await Self.withStore(.pathNone) { store, _ in
            let key = try store.keys.key(for: "hank")
            try await store.update("hank") { try $0.upsert(Self.txn("t1")) }
            let stale = try await store.storage.get(key)!
            try await store.update("hank") { try $0.upsert(Self.txn("t2")) }
            await #expect(throws: VersionMismatchError.self) {
                try await store.storage.put(key, bytes: stale.bytes, condition: .mustMatch(stale.version))
            }
            await #expect(throws: VersionMismatchError.self) {
                try await store.storage.put(key, bytes: stale.bytes, condition: .mustNotExist)
            }
            await #expect(throws: VersionMismatchError.self) {
                try await store.storage.delete(key, condition: .mustMatch(stale.version))
            }
            #expect(try await store.get("hank").transactions.count == 2)
        }
    }

    @Test func aVersionNamesTheContent() async throws {
        // As an S3 ETag does: the same bytes keep their version (a writer that read them has seen
        // exactly what is there), and any other content, of any size, has another version.
        try await Self.withStore(.pathNone) { store, _ in
            let key = "aa/bb/x.cstore"
            let v1 = try await store.storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
            let v2 = try await store.storage.put(key, bytes: [1, 2, 3], condition: .mustMatch(v1))
            #expect(v1 == v2)
            let v3 = try await store.storage.put(key, bytes: [1, 2, 4], condition: .mustMatch(v2))
            #expect(v3 != v1)
            await #expect(throws: VersionMismatchError.self) {
                try await store.storage.put(key, bytes: [1, 2, 3], condition: .mustMatch(v1))
            }
            #expect(try await store.storage.get(key)?.bytes == [1, 2, 4])
        }
    }

    @Test func temporaryFilesOfCrashedWritersAreFoundAndRemoved() async throws {
        try await Self.withStore(.pathLocal) { store, dir in
            try await store.update("ivy") { try $0.upsert(Self.txn("t1")) }
            let path = store.storage as! PathStorage
            let leaf = dir! + "/" + PathStorage.parent(of: try store.keys.key(for: "ivy"))
            let stray = leaf + "/.tmp-ivy.cstore.999.abc"
            #expect(FileManager.default.createFile(atPath: stray, contents: Data([1, 2, 3])))
            #expect(try path.temporaryFiles().map(\.path) == [stray])
            // Young temporary files may belong to a live writer: they stay.
            #expect(try path.removeTemporaryFiles(olderThan: .seconds(600)).isEmpty)
            try FileManager.default.setAttributes(
                [.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: stray)
            let report = try await store.verify(removeTemporaryFilesOlderThan: .seconds(600))
            #expect(report.removedTemporaryFiles.map(\.path) == [stray])
            #expect(report.temporaryFiles.isEmpty && report.healthy == 1)
            #expect(try await store.get("ivy").transactions.count == 1)
        }
    }

    /// Only the temporary files the engine's writes make are listed and removed: `.tmp-` + a user
    /// file's name + `.PID.HEX`, in that user's folder (after any prefix). Files merely named
    /// `.tmp-…`, elsewhere under the root or of another shape, are never touched.
    @Test func onlyTheEnginesTemporaryFilesAreRemoved() async throws {
        let dir = try TemporaryDirectory("temporary-shapes")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let fm = FileManager.default
        func make(_ relative: String) throws -> String {
            let full = dir.path + "/" + relative
            try fm.createDirectory(
                atPath: PathStorage.parent(of: full), withIntermediateDirectories: true)
            #expect(fm.createFile(atPath: full, contents: Data([1, 2, 3])))
            try fm.setAttributes(
                [.modificationDate: Date(timeIntervalSinceNow: -2 * 86_400)], ofItemAtPath: full)
            return full
        }
        let ivy = PathStorage.parent(of: try UserKeys().key(for: "ivy"))
        let tenant = PathStorage.parent(of: try UserKeys(prefix: "tenants/eu").key(for: "ivy"))
        let long = String(repeating: "@", count: 100)  // 300 characters encoded: two folder levels
        let longKey = try UserKeys().key(for: long)
        let ours = [
            try make(ivy + "/.tmp-ivy.cstore.999.abc"),
            try make(tenant + "/.tmp-ivy.cstore.1.0"),
            try make(
                PathStorage.parent(of: longKey) + "/.tmp-" + PathStorage.baseName(of: longKey)
                    + ".42.ffffffff"),
        ].sorted()
        let notOurs = try [
            "project/src/.tmp-notes.txt.1.x", "project/.tmp-build", "ab/cd/.tmp-x",
            ".tmp-ivy.cstore.999.abc",  // at the root, not in ivy's folder
            "00/00/.tmp-ivy.cstore.999.abc",  // another hash folder than ivy's
            ivy + "/.tmp-ivy.cstore.999.ABC",  // upper-case hex
            ivy + "/.tmp-ivy.cstore.pid.abc", ivy + "/.tmp-ivy.cstore.999.123456789",
            ivy + "/.tmp-ivy.txt.999.abc", ivy + "/.tmp-.cstore.999.abc", ivy + "/.tmp-ivy.cstore.999.",
            ivy + "/.tmp-ivy_2.cstore.999.abc",  // a malformed escape: no user's name
        ].map { try make($0) }
        #expect(try storage.temporaryFiles().map(\.path) == ours)
        #expect(try storage.removeTemporaryFiles(olderThan: .seconds(60)).map(\.path) == ours)
        for path in notOurs { #expect(fm.fileExists(atPath: path), "\(path) was removed") }
        for path in ours { #expect(!fm.fileExists(atPath: path), "\(path) is still there") }
    }

    /// A data directory under a regular file, or a symbolic link to nothing, is a clear error for
    /// reading and for writing alike, and nothing is created.
    @Test func aDataDirectoryThatCannotBeIsNamedAsSuch() throws {
        let dir = try TemporaryDirectory("root-shapes")
        defer { dir.remove() }
        let file = dir.path + "/afile"
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        #expect(symlink(dir.path + "/nowhere", dir.path + "/dangling") == 0)
        for readOnly in [false, true] {
            #expect(throws: InvalidRequestError.self) { try PathStorage(root: file, readOnly: readOnly) }
            #expect {
                try PathStorage(root: file + "/sub", readOnly: readOnly)
            } throws: { "\($0)".contains("its parent \(file) is not a directory") }
            #expect {
                try PathStorage(root: dir.path + "/dangling", readOnly: readOnly)
            } throws: { "\($0)".contains("is a symbolic link to something that does not exist") }
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/nowhere"))
        // Reading a directory that does not exist under one that does: no users, nothing made.
        let reader = try PathStorage(root: dir.path + "/never", readOnly: true)
        #expect(try reader.listNow(prefix: "", startAfter: nil, limit: 10).keys.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/never"))
    }

    /// A read that finds bytes after the valid content that are not one torn append reports them
    /// (`StoreEvents.damagedTail`) and serves the record before them; a torn append and a reserve
    /// are not reported.
    @Test func aDamagedTailIsReportedWhenReadAndATornOneIsNot() async throws {
        let dir = try TemporaryDirectory("damaged-tail-event")
        defer { dir.remove() }
        let writer = try await StoreFactory().makeStore("path:" + dir.path)
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            try await writer.update("zed") {
                $0.setPreference(k, value: v, at: Timestamp(millisecondsSince1970: 0))
            }
        }
        let path = dir.path + "/" + (try UserKeys().key(for: "zed"))
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let layout = try RecordCodec().decodeFile(original).layout
        let reports = CarbonStore.Locked([(String, String, Int, Int)]())
        func reader() async throws -> Store {
            var options = StoreOptions()
            options.events.damagedTail = { user, location, offset, length in
                reports.withLock { $0.append((user, location, offset, length)) }
            }
            return try await StoreFactory(options: options).makeStore("path:" + dir.path)
        }
        // Healthy, with a reserve after the frames: nothing to report.
        #expect(try await reader().get("zed").preferences.count == 3)
        #expect(reports.withLock { $0.isEmpty })
        // The first frame damaged, the second committed after it.
        let first = layout.snapshotLength
        var damaged = original
        damaged[first + 20] ^= 0xFF
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        #expect(try await reader().get("zed").preferences.count == 1)
        let seen = reports.withLock { $0 }
        #expect(seen.count == 1)
        #expect(seen.first?.0 == "zed" && seen.first?.1 == path && seen.first?.2 == first)
        #expect(seen.first?.3 == original.count - first)
        // The last frame cut short, as a crash leaves it: not reported.
        reports.withLock { $0 = [] }
        try Data(original.prefix(layout.validLength - 10)).write(to: URL(fileURLWithPath: path))
        #expect(try await reader().get("zed").preferences.count == 2)
        #expect(reports.withLock { $0.isEmpty })
    }

    /// A storage that writes objects whole (S3, memory) would drop a damaged tail with the next
    /// write: the update is refused, as on a volume, and the object is left as it was; deleting the
    /// user still works. With the cache off, the read reports the damage too.
    @Test func aWholeObjectWriteIsRefusedOverADamagedTail() async throws {
        let storage = MemoryStorage()
        let writer = Store(storage: storage, locks: InProcessLockService())
        for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
            try await writer.update("zed") {
                $0.setPreference(k, value: v, at: Timestamp(millisecondsSince1970: 0))
            }
        }
        let key = try UserKeys().key(for: "zed")
        let original = try #require(try await storage.getBytes(key))
        let layout = try RecordCodec().decodeFile(original).layout
        #expect(layout.ignoredLength == 0 && layout.tailLength > 0, "two frames after the snapshot")
        var damaged = original
        damaged[layout.snapshotLength + 20] ^= 0xFF
        _ = try await storage.put(key, bytes: damaged, condition: .unconditional)

        let reports = CarbonStore.Locked(0)
        for cache in [64 << 20, 0] {
            var options = StoreOptions()
            options.cacheBytes = cache
            options.events.damagedTail = { _, _, _, _ in reports.withLock { $0 += 1 } }
            let store = Store(storage: storage, locks: InProcessLockService(), options: options)
            #expect(try await store.read("zed")?.preferences.count == 1, "cache \(cache)")
            await #expect(throws: DamagedTailError.self) {
                try await store.update("zed") {
                    $0.setPreference("d", value: "4", at: Timestamp(millisecondsSince1970: 0))
                }
            }
            #expect(
                try await storage.getBytes(key) == damaged,
                "cache \(cache): the damaged object was written over")
        }
        #expect(reports.withLock { $0 } >= 4, "each read reports the damage")
        #expect(try await writer.delete("zed") == .deleted)
        #expect(try await storage.getBytes(key) == nil)
    }

    /// A store opened for reading only refuses updates and deletes before it takes a lock or
    /// touches the storage, on every backend: no folder, no lock file is made.
    @Test func aReadOnlyStoreRefusesWritesBeforeLocking() async throws {
        let dir = try TemporaryDirectory("read-only-store")
        defer { dir.remove() }
        var options = StoreOptions()
        options.readOnly = true
        for uri in ["path:" + dir.path, "memory:"] {
            let store = try await StoreFactory(options: options).makeStore(uri)
            await #expect {
                try await store.update("zed") {
                    $0.setPreference("k", value: "v", at: Timestamp(millisecondsSince1970: 0))
                }
            } throws: { ($0 as? ReadOnlyStoreError)?.kind == .permissionDenied }
            await #expect(throws: ReadOnlyStoreError.self) { try await store.delete("zed") }
            if uri.hasPrefix("path:") {
                await #expect(throws: ReadOnlyStoreError.self) {
                    try await store.verify(removeTemporaryFilesOlderThan: .zero)
                }
            } else {
                // No temporary files there: the age asks for nothing.
                #expect(try await store.verify(removeTemporaryFilesOlderThan: .zero).isHealthy)
            }
            #expect(try await store.read("zed") == nil, "\(uri)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "nothing was made")
    }

    @Test func missingVolumeIsAnError() async throws {
        await #expect {
            try await StoreFactory().makeStore(
                "path:///nonexistent-mount-\(UInt32.random(in: 0...UInt32.max))/users")
        } throws: { "\($0)".contains("is the volume mounted?") }
    }

    @Test func awsURIsNeedTheAWSModule() async throws {
        await #expect(throws: UnsupportedError.self) {
            try await StoreFactory().makeStore("s3:my-bucket?locking=dynamo&table=locks")
        }
    }
}

/// Locks whose leases run out after a fixed time, as DynamoDB leases do.
struct ExpiringLocks: LockService {
    let lease: Duration
    var now: @Sendable () -> ContinuousClock.Instant = { .now }
    func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        Lease(name: name, userID: userID, operationID: OperationID.make(), validUntil: now() + lease)
    }
    func renew(_ lease: Lease) async throws -> Lease {
        guard lease.isValid(now: now()) else {
            throw LeaseExpiredError(userID: lease.userID, operationID: lease.operationID)
        }
        return lease
    }
    func release(_ lease: Lease) async throws {}
}

/// Storage whose first write or delete lands but answers as if refused, as when a retried request
/// finds that its first attempt (whose answer was lost) already applied: S3 answers the retry 412.
final class LostAnswerStorage: ObjectStorage, @unchecked Sendable {
    let base = MemoryStorage()
    private let lock = NSLock()
    private var lost = false

    private func loseOnce() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if lost { return false }
        lost = true
        return true
    }

    func get(_ key: String) async throws -> StoredObject? { try await base.get(key) }

    func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        let v = try await base.put(key, bytes: bytes, condition: condition)
        if loseOnce() { throw VersionMismatchError(location: key, expected: "the retry's") }
        return v
    }

    func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        let done = try await base.delete(key, condition: condition)
        if loseOnce() { throw VersionMismatchError(location: key, expected: "the retry's") }
        return done
    }

    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }

    func location(of key: String) -> String { key }
}

@Suite struct LostAnswerTests {
    @Test func anUpdateWhoseFirstAttemptLandedSaysTheStateIsAsRequested() async throws {
        let store = Store(storage: LostAnswerStorage(), locks: NoLockService())
        let result = try await store.update("alice") {
            $0.setPreference("units", value: "metric", at: .init(millisecondsSince1970: 1))
        }
        #expect(result.outcome == .asRequestedAfterRetry)
        #expect(!result.committed)
        #expect(try await store.get("alice").preferences["units"]?.value == "metric")
        // Without a lost answer, a repeat is plainly unchanged.
        let again = try await store.update("alice") {
            $0.setPreference("units", value: "metric", at: .init(millisecondsSince1970: 1))
        }
        #expect(again.outcome == .unchanged)
    }

    @Test func aDeleteWhoseFirstAttemptLandedIsNotReportedAsNotFound() async throws {
        let storage = LostAnswerStorage()
        let setup = Store(storage: storage.base, locks: NoLockService())
        try await setup.update("bob") { try $0.upsert(StoreTests.txn("t1")) }
        let store = Store(storage: storage, locks: NoLockService())
        #expect(try await store.delete("bob") == .goneAfterRetry)
        #expect(try await store.read("bob") == nil)
        #expect(try await store.delete("bob") == .notFound)
    }
}
