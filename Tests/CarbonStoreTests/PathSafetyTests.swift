import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// What a planted link, a careless umask or a power cut must not do to a `path:` data directory.
@Suite struct PathSafetyTests {
    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    static func mode(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    static func contents(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// The user's folder below the root, e.g. `87/22`.
    static func folder(of user: String) throws -> String {
        PathStorage.parent(of: try UserKeys().key(for: user))
    }

    // MARK: - Symbolic links below the root

    @Test(arguments: ["local", "none"])
    func aPlantedLockFileLinkIsRefusedAndItsTargetUntouched(locking: String) async throws {
        let dir = try TemporaryDirectory("safety-lock")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)?locking=\(locking)")
        let leaf = root + "/" + (try Self.folder(of: "alice"))
        try FileManager.default.createDirectory(atPath: leaf, withIntermediateDirectories: true)
        let victim = dir.path + "/victim.txt"
        try "precious".write(toFile: victim, atomically: true, encoding: .utf8)
        // With local locks the user lock file comes first; without, the commit lock.
        let planted = leaf + (locking == "local" ? "/.lock" : "/.commit.lock")
        try FileManager.default.createSymbolicLink(atPath: planted, withDestinationPath: victim)
        await #expect {
            try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        } throws: { error in
            let e = error as? UnsafePathError
            return e?.path == planted && "\(error)".contains("symbolic link")
        }
        #expect(Self.contents(victim) == "precious")
        #expect(try await store.read("alice") == nil)
    }

    @Test(arguments: ["local", "none"])
    func aPlantedFolderLinkIsRefusedAndNothingLandsOutsideTheRoot(locking: String) async throws {
        let dir = try TemporaryDirectory("safety-folder")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)?locking=\(locking)")
        let outside = dir.path + "/outside"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        let first = try Self.folder(of: "alice").split(separator: "/")[0]
        try FileManager.default.createSymbolicLink(atPath: root + "/" + first, withDestinationPath: outside)
        await #expect {
            try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        } throws: { error in
            (error as? UnsafePathError)?.path == root + "/" + first
        }
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing written outside")
        await #expect(throws: UnsafePathError.self) { try await store.read("alice") }
    }

    @Test func aPlantedUserFileLinkIsNeitherReadNorReplaced() async throws {
        let dir = try TemporaryDirectory("safety-file")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let file = root + "/" + (try UserKeys().key(for: "alice"))
        let victim = dir.path + "/victim.cstore"
        try FileManager.default.moveItem(atPath: file, toPath: victim)
        try FileManager.default.createSymbolicLink(atPath: file, withDestinationPath: victim)
        let before = try Data(contentsOf: URL(fileURLWithPath: victim))
        await #expect(throws: UnsafePathError.self) { try await store.read("alice") }
        await #expect(throws: UnsafePathError.self) {
            try await store.update("alice") { try $0.upsert(Self.txn("t2")) }
        }
        await #expect(throws: UnsafePathError.self) { try await store.delete("alice") }
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == before)
        #expect(Self.mode(file).map { $0 } != nil, "the link is left for an operator")
    }

    @Test func theRootItselfMayBeALink() async throws {
        let dir = try TemporaryDirectory("safety-root")
        defer { dir.remove() }
        try FileManager.default.createDirectory(
            atPath: dir.path + "/volume", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: dir.path + "/mnt", withDestinationPath: dir.path + "/volume")
        let store = try await StoreFactory().makeStore("path:\(dir.path)/mnt")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        #expect(try await store.get("alice").transactions.count == 1)
        let real = dir.path + "/volume/" + (try UserKeys().key(for: "alice"))
        #expect(FileManager.default.fileExists(atPath: real))
    }

    // MARK: - Permissions

    @Test func filesAreOwnerOnlyByDefault() async throws {
        let dir = try TemporaryDirectory("safety-mode")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let folder = try Self.folder(of: "alice")
        let first = String(folder.split(separator: "/")[0])
        #expect(Self.mode(root) == 0o700)
        #expect(Self.mode(root + "/" + first) == 0o700)
        #expect(Self.mode(root + "/" + folder) == 0o700)
        #expect(Self.mode(root + "/" + (try UserKeys().key(for: "alice"))) == 0o600)
        #expect(Self.mode(root + "/" + folder + "/.lock") == 0o600)
        #expect(Self.mode(root + "/" + folder + "/.commit.lock") == 0o600)
    }

    @Test func aModeKeyLetsAGroupRead() async throws {
        let dir = try TemporaryDirectory("safety-mode-group")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)?mode=0640")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let folder = try Self.folder(of: "alice")
        #expect(Self.mode(root) == 0o750)
        #expect(Self.mode(root + "/" + folder) == 0o750)
        #expect(Self.mode(root + "/" + (try UserKeys().key(for: "alice"))) == 0o640)
        // A rewrite keeps the mode; an existing file written under an older default gets it too.
        let file = root + "/" + (try UserKeys().key(for: "alice"))
        chmod(file, 0o644)
        try await store.update("alice") { try $0.upsert(Self.txn("t2")) }
        #expect(Self.mode(file) == 0o640)
    }

    @Test(arguments: ["mode=0644x", "mode=999", "mode=0400", "mode=0666", "mode=07777"])
    func badModesAreRefused(query: String) {
        #expect(throws: InvalidStorageURIError.self) { try StorageURI("path:/tmp/x?\(query)") }
    }

    @Test func theModeKeyIsForPathOnly() {
        #expect(throws: InvalidStorageURIError.self) { try StorageURI("memory:?mode=0640") }
        #expect(throws: InvalidStorageURIError.self) {
            try StorageURI("s3:my-bucket?locking=none&mode=0640")
        }
    }

    // MARK: - Power cuts

    /// Which directory entries a power cut could still lose: an entry (a folder or file created,
    /// renamed or removed) is durable once its directory has been fsynced after the change.
    final class DurabilityModel: @unchecked Sendable {
        private let lock = NSLock()
        private var pending: Set<String> = []

        static func path(of fd: Int32) -> String? {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
        }

        func markPending(_ path: String) {
            lock.lock()
            pending.insert(path)
            lock.unlock()
        }

        func notDurable(_ paths: [String]) -> [String] {
            lock.lock()
            defer { lock.unlock() }
            return paths.filter { pending.contains($0) }
        }

        private func changed(_ dir: Int32, _ name: String) {
            if let p = Self.path(of: dir) { markPending(p + "/" + name) }
        }

        var io: FileIO {
            let base = FileIO.posix
            return FileIO(
                openat: { dir, name, flags, mode in
                    var st = stat()
                    let existed = fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0
                    let fd = base.openat(dir, name, flags, mode)
                    if fd >= 0 && flags & O_CREAT != 0 && !existed { self.changed(dir, name) }
                    return fd
                },
                mkdirat: { dir, name, mode in
                    let r = base.mkdirat(dir, name, mode)
                    if r == 0 { self.changed(dir, name) }
                    return r
                },
                write: base.write,
                fsync: { fd in
                    let r = base.fsync(fd)
                    var st = stat()
                    if r == 0, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR,
                        let p = Self.path(of: fd)
                    {
                        self.lock.lock()
                        self.pending = self.pending.filter { PathStorage.parent(of: $0) != p }
                        self.lock.unlock()
                    }
                    return r
                },
                close: base.close,
                renameat: { dir, from, to in
                    let r = base.renameat(dir, from, to)
                    if r == 0 {
                        self.changed(dir, from)
                        self.changed(dir, to)
                    }
                    return r
                },
                unlinkat: { dir, name in
                    let r = base.unlinkat(dir, name)
                    if r == 0 { self.changed(dir, name) }
                    return r
                })
        }
    }

    /// Every entry from the root down to a user's file.
    static func chain(root: String, key: String) -> [String] {
        var paths: [String] = []
        var path = root
        for part in key.split(separator: "/") {
            path += "/" + part
            paths.append(path)
        }
        return paths
    }

    @Test func aNewUsersFirstWriteIsDurableWhenAcknowledged() async throws {
        let dir = try TemporaryDirectory("safety-durable")
        defer { dir.remove() }
        let model = DurabilityModel()
        var options = StoreOptions()
        options.fileIO = model.io
        let store = try await StoreFactory(options: options).makeStore("path:\(dir.path)?locking=none")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let chain = Self.chain(root: dir.path, key: try UserKeys().key(for: "alice"))
        #expect(chain.count == 3)
        #expect(model.notDurable(chain).isEmpty, "a power cut now could lose: \(model.notDurable(chain))")
    }

    @Test func foldersAnotherWriterCreatedAreMadeDurableToo() async throws {
        // Another process created the user's folders and has not fsynced their parents yet (it
        // may be paused right there, or have crashed). A write acknowledged in them must not
        // depend on that process.
        let dir = try TemporaryDirectory("safety-durable-other")
        defer { dir.remove() }
        let model = DurabilityModel()
        let folder = try Self.folder(of: "alice")
        try FileManager.default.createDirectory(
            atPath: dir.path + "/" + folder, withIntermediateDirectories: true)
        for path in Self.chain(root: dir.path, key: folder) { model.markPending(path) }
        var options = StoreOptions()
        options.fileIO = model.io
        let store = try await StoreFactory(options: options).makeStore("path:\(dir.path)?locking=none")
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let chain = Self.chain(root: dir.path, key: try UserKeys().key(for: "alice"))
        #expect(model.notDurable(chain).isEmpty, "a power cut now could lose: \(model.notDurable(chain))")
    }

    // MARK: - NFS and EFS: a commit lock held too long

    @Test func aWriterThatHeldTheCommitLockTooLongDoesNotRename() async throws {
        let dir = try TemporaryDirectory("safety-commit-hold")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path, io: .posix, maximumCommitHold: .zero)
        let key = try UserKeys().key(for: "alice")
        await #expect(throws: CommitLockHeldTooLongError.self) {
            try await storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
        }
        #expect(try await storage.get(key) == nil)
        #expect(try storage.temporaryFiles().isEmpty)
    }
}

@Suite struct OversizedFileTests {
    @Test func aFileOverTheSizeLimitIsRefusedBeforeItIsRead() async throws {
        let dir = try TemporaryDirectory("safety-size")
        defer { dir.remove() }
        var options = StoreOptions()
        options.codec = RecordCodec(limits: .init(maxFileSize: 4096))
        let store = try await StoreFactory(options: options).makeStore("path:\(dir.path)")
        try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t1")) }
        let file = dir.path + "/" + (try UserKeys().key(for: "alice"))
        let big = [UInt8](repeating: 0x41, count: 4097)
        try Data(big).write(to: URL(fileURLWithPath: file))
        await #expect {
            try await store.read("alice")
        } throws: { error in
            (error as? FileTooLargeError)?.path == file && (error as? CarbonStoreError)?.kind == .corrupt
        }
        await #expect(throws: FileTooLargeError.self) {
            try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t2")) }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)).count == 4097, "left untouched")
        let report = try await store.verify()
        #expect(report.damaged.map(\.location) == [file] && report.healthy == 0)
    }
}

/// Entries planted below the root that are neither links nor regular files.
@Suite struct PlantedEntryTests {
    @Test func aFIFOInAUserFilesPlaceIsRefusedAtOnceAndReported() async throws {
        let dir = try TemporaryDirectory("safety-fifo")
        defer { dir.remove() }
        let store = try await StoreFactory().makeStore("path:\(dir.path)")
        try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t1")) }
        let file = dir.path + "/" + (try UserKeys().key(for: "alice"))
        try FileManager.default.removeItem(atPath: file)
        #expect(mkfifo(file, 0o600) == 0)
        await #expect(throws: UnsafePathError.self) { try await store.read("alice") }
        await #expect(throws: UnsafePathError.self) {
            try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t2")) }
        }
        let report = try await store.verify()
        #expect(report.damaged.map(\.location) == [file], "\(report.damaged)")
    }

    @Test func verifyReportsAFolderLinkAndAFolderNamedLikeAUserFile() async throws {
        let dir = try TemporaryDirectory("safety-verify")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)")
        try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t1")) }
        try await store.update("bob") { try $0.upsert(PathSafetyTests.txn("t1")) }
        let aliceFolder = root + "/" + PathStorage.parent(of: try UserKeys().key(for: "alice"))
        try FileManager.default.moveItem(atPath: aliceFolder, toPath: dir.path + "/moved")
        try FileManager.default.createSymbolicLink(
            atPath: aliceFolder, withDestinationPath: dir.path + "/moved")
        let bobFile = root + "/" + (try UserKeys().key(for: "bob"))
        try FileManager.default.removeItem(atPath: bobFile)
        try FileManager.default.createDirectory(atPath: bobFile, withIntermediateDirectories: false)
        let report = try await store.verify()
        #expect(Set(report.damaged.map(\.location)) == [aliceFolder, bobFile], "\(report.damaged)")
        #expect(!report.isHealthy)
    }

    @Test func aHardLinkedLockFileIsNeverWrittenThrough() async throws {
        let dir = try TemporaryDirectory("safety-hardlink")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let store = try await StoreFactory().makeStore("path:\(root)")
        try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t1")) }
        let lock = root + "/" + PathStorage.parent(of: try UserKeys().key(for: "alice")) + "/.lock"
        let victim = dir.path + "/victim"
        try "KEEP".write(toFile: victim, atomically: false, encoding: .utf8)
        try FileManager.default.removeItem(atPath: lock)
        #expect(link(victim, lock) == 0)
        // A hard-link snapshot of the data directory (cp -al) makes the same links: writes go on,
        // and nothing is written into the other name's file.
        try await store.update("alice") { try $0.upsert(PathSafetyTests.txn("t2")) }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "KEEP")
        #expect(try await store.get("alice").transactions.count == 2)
    }
}
