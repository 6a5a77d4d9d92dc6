import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// A user file with more than one name (a hard link, as a `cp -al` snapshot of the data directory
/// makes) is never changed in place: an update writes it anew, and the other names keep what they
/// had.
@Suite struct LinkedUserFileTests {
    typealias F = CrashPointFixtures

    @Test(arguments: ["local", "none"])
    func anUpdateLeavesAHardLinkedSnapshotAsItWas(locking: String) async throws {
        let dir = try TemporaryDirectory("linked-user-file")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        let path = try F.userPath(dir.path)
        let before = try F.layout(dir.path)
        #expect(before.frameCount > 0)
        let snapshot = dir.path + "/snapshot.cstore"
        #expect(link(path, snapshot) == 0)
        let snapshotBytes = try Data(contentsOf: URL(fileURLWithPath: snapshot))

        let store = try await F.store(dir.path, locking: locking)
        // The store holds alice in its cache: the update would append in place.
        #expect(try await store.get("alice") == old)
        let done = try await store.update("alice") { try $0.upsert(F.txn("after-snapshot")) }
        #expect(done.outcome == .committed && done.record.revision == old.revision + 1)

        // The snapshot's name still holds the old content, byte for byte, and is the only name of it.
        #expect(try Data(contentsOf: URL(fileURLWithPath: snapshot)) == snapshotBytes)
        var st = stat()
        #expect(lstat(snapshot, &st) == 0 && st.st_nlink == 1)
        #expect(lstat(path, &st) == 0 && st.st_nlink == 1)
        // The live file was written anew (a snapshot without frames) and holds the update.
        let after = try F.layout(dir.path)
        #expect(after.fileID != before.fileID && after.frameCount == 0)
        #expect(try await F.store(dir.path).get("alice") == done.record)
        // Later updates append again.
        try await store.update("alice") { try $0.upsert(F.txn("later")) }
        #expect(try F.layout(dir.path).frameCount == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: snapshot)) == snapshotBytes)
    }
}

/// `PathStorage.checkWritable`, which readiness probes call: the data directory must still be
/// there and writable by this process.
@Suite struct PathWritableCheckTests {
    @Test func aDataDirectoryThatIsGoneOrMayNotBeWrittenFailsTheCheck() async throws {
        let dir = try TemporaryDirectory("writable-check")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let storage = try PathStorage(root: root)
        try await storage.checkWritable()
        let reading = try PathStorage(root: root, readOnly: true)
        #expect(rmdir(root) == 0)
        let gone = await #expect(throws: StorageIOError.self) { try await storage.checkWritable() }
        #expect(gone?.errno == ENOENT && gone?.path == root)
        // A storage opened for reading only checks nothing.
        try await reading.checkWritable()
        // Permissions bind a process that is not root.
        #expect(mkdir(root, 0o500) == 0)
        if geteuid() != 0 {
            let denied = await #expect(throws: StorageIOError.self) { try await storage.checkWritable() }
            #expect(denied?.errno == EACCES && denied?.kind == .permissionDenied)
        }
    }
}

/// A process running as root on a service's data directory (owned by another user) gives every
/// file and folder it creates that user and the directory's group, so that the service can still
/// open them (a snapshot written anew by root would otherwise be root's, mode 0600).
@Suite struct RootWritesOnAServicesDirectoryTests {
    /// A lock file with another name (a hard link planted in its place) may be any file: root
    /// neither gives it away nor changes its mode.
    @Test func aLockFileLinkedToAnotherFileIsLeftAsItIs() async throws {
        guard geteuid() == 0 else { return }
        let dir = try TemporaryDirectory("root-owner-link")
        defer { dir.remove() }
        let data = dir.path + "/data"
        #expect(mkdir(data, 0o700) == 0 && chown(data, 65534, 65534) == 0)
        let store = try await StoreFactory().makeStore("path:" + data)
        try await store.update("u1") { try $0.upsert(CrashPointFixtures.txn("t0")) }
        let folder = URL(fileURLWithPath: try PathStorage(root: data).location(of: UserKeys().key(for: "u1")))
            .deletingLastPathComponent().path
        // Each lock file a link to a file of root's elsewhere (two files: one would be both locks).
        for lock in [".lock", ".commit.lock"] {
            let victim = dir.path + "/victim" + lock
            #expect(FileManager.default.createFile(atPath: victim, contents: Data("keep".utf8)))
            #expect(chmod(victim, 0o644) == 0)
            #expect(unlink(folder + "/" + lock) == 0 && link(victim, folder + "/" + lock) == 0)
        }
        let fresh = try await StoreFactory().makeStore("path:" + data)
        try await fresh.update("u1") { try $0.upsert(CrashPointFixtures.txn("t1")) }
        for lock in [".lock", ".commit.lock"] {
            let victim = dir.path + "/victim" + lock
            var st = stat()
            #expect(lstat(victim, &st) == 0)
            #expect(
                st.st_uid == 0 && st.st_gid == 0 && (st.st_mode & 0o777) == 0o644, "\(lock): \(st.st_mode)")
            #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep")
        }
    }

    @Test func everyEntryRootCreatesBelongsToTheDirectorysOwner() async throws {
        guard geteuid() == 0 else { return }
        let dir = try TemporaryDirectory("root-owner")
        defer { dir.remove() }
        let data = dir.path + "/data"
        #expect(mkdir(data, 0o700) == 0 && chown(data, 65534, 65534) == 0)
        var options = StoreOptions()
        options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
        let store = try await StoreFactory(options: options).makeStore("path:" + data)
        for user in ["u1", "u2", "u3"] {
            for n in 0..<3 { try await store.update(user) { try $0.upsert(CrashPointFixtures.txn("t\(n)")) } }
        }
        var entries = 0
        let walker = try #require(FileManager.default.enumerator(atPath: data))
        for case let relative as String in walker {
            var st = stat()
            #expect(lstat(data + "/" + relative, &st) == 0)
            #expect(st.st_uid == 65534 && st.st_gid == 65534, "\(relative) is \(st.st_uid):\(st.st_gid)")
            entries += 1
        }
        // Three users' files, their lock files and their folders.
        #expect(entries >= 9, "\(entries) entries")
        // A data directory of root's own: nothing is given away.
        let own = dir.path + "/own"
        let rootStore = try await StoreFactory().makeStore("path:" + own)
        try await rootStore.update("u1") { try $0.upsert(CrashPointFixtures.txn("t0")) }
        let path = try PathStorage(root: own).location(of: UserKeys().key(for: "u1"))
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_uid == 0)
    }
}
