import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// Lock files left open between holds (`KeptLockFiles`): used again while the name is that file,
/// opened anew once it was replaced, so that the lock still excludes every other process.
@Suite struct KeptLockFilesTests {
    static func txn(_ id: String) -> Transaction { SlowVolumeTests.txn(id) }

    static func lockFolder(_ root: String, of userID: String) throws -> String {
        root + "/" + PathStorage.parent(of: try UserKeys().key(for: userID))
    }

    /// Whether `fd` is open on the file now at `path`.
    static func isSameFile(_ fd: Int32, _ path: String) -> Bool {
        guard let a = FileStatus.of(fd), let b = FileStatus.of(atPath: path) else { return false }
        return a.isSameFile(as: b)
    }

    /// Whether `fd` is an open descriptor of this process.
    static func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) != -1 }

    /// The descriptors kept, by path, looked at without taking them.
    static func kept(_ storage: PathStorage, _ paths: [String]) -> [String: Int32] {
        var out: [String: Int32] = [:]
        for path in paths {
            if let entry = storage.keptLockFiles.take(path) {
                out[path] = entry.fd
                storage.keptLockFiles.keep(path, fd: entry.fd, status: entry.status)
            }
        }
        return out
    }

    @Test func anUpdateKeepsItsTwoLockFilesOpenAndTheNextUsesTheSameDescriptors() async throws {
        let dir = try TemporaryDirectory("kept-locks")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        let folder = try Self.lockFolder(dir.path, of: "kim")
        let paths = [folder + "/.lock", folder + "/.commit.lock"]
        let first = Self.kept(storage, paths)
        #expect(first.count == 2)
        try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        #expect(Self.kept(storage, paths) == first)
        #expect(storage.keptLockFiles.count == 2)
        // Each hold described itself in the user's lock file, through the kept descriptor.
        let holder = try String(contentsOfFile: paths[0], encoding: .utf8)
        #expect(holder.hasPrefix("pid \(getpid()) on "))
    }

    @Test(arguments: [".lock", ".commit.lock"])
    func aLockFileReplacedWhileKeptIsOpenedAnewAndStillExcludesOthers(name: String) async throws {
        let dir = try TemporaryDirectory("kept-locks-replaced")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path, io: .posix, commitLockWait: .milliseconds(300))
        var options = StoreOptions()
        options.lockWait = .milliseconds(300)
        let store = Store(storage: storage, locks: FileLockService(storage: storage), options: options)
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        let folder = try Self.lockFolder(dir.path, of: "kim")
        let path = folder + "/" + name
        #expect(Self.kept(storage, [path])[path] != nil, "kept after the first update")
        // Replaced from outside (which docs/STORAGE.md forbids under a serving process): a new
        // file renamed over the name.
        try Data().write(to: URL(fileURLWithPath: folder + "/replacement"))
        #expect(rename(folder + "/replacement", path) == 0)
        // Another process (a storage of its own) holds the new file's lock.
        let other = try PathStorage(root: dir.path)
        let folderFD = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(folderFD >= 0)
        defer { close(folderFD) }
        let held = try #require(
            try await FileLock.acquire(
                name, in: folderFD, path: path, mode: other.fileMode, wait: .seconds(1), on: other))
        // This process must wait for it, not lock the file it kept: the user's lock times out, or
        // the commit lock's wait does.
        await #expect {
            try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        } throws: { error in
            name == ".lock"
                ? error is LockTimeoutError
                : (error as? CommitLockTimeoutError).map { $0.path == path && $0.kind == .lockTimeout }
                    == true
        }
        // What is kept now, if anything, is the new file.
        #expect(Self.kept(storage, [path])[path].map { Self.isSameFile($0, path) } ?? true)
        held.release()
        try await store.update("kim") { try $0.upsert(Self.txn("b")) }
        let ids = try await Store(storage: other, locks: NoLockService()).read("kim")?.transactions.map(\.id)
        #expect(ids?.sorted() == ["b", "seed"])
    }

    /// Two holds of one lock file in one process (two users of one folder without a user lock, or
    /// a commit lock wanted while another task holds it) never share the kept descriptor: the second
    /// waits for the first.
    @Test func aKeptDescriptorServesOneHolderAtATime() async throws {
        let dir = try TemporaryDirectory("kept-locks-one-holder")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        let folder = try Self.lockFolder(dir.path, of: "kim")
        let path = folder + "/.commit.lock"
        #expect(Self.kept(storage, [path]).count == 1)
        let folderFD = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(folderFD >= 0)
        defer { close(folderFD) }
        let first = try #require(
            try await FileLock.acquire(
                ".commit.lock", in: folderFD, path: path, mode: storage.fileMode, wait: .seconds(1),
                on: storage))
        let second = try await FileLock.acquire(
            ".commit.lock", in: folderFD, path: path, mode: storage.fileMode, wait: .milliseconds(200),
            on: storage)
        #expect(second == nil, "the second hold waited for the first and timed out")
        first.release()
        let third = try #require(
            try await FileLock.acquire(
                ".commit.lock", in: folderFD, path: path, mode: storage.fileMode, wait: .seconds(1),
                on: storage))
        #expect(third.fd == first.fd, "the descriptor let go is used again")
        third.release()
    }

    @Test func atMostCapacityDescriptorsAreKeptAndTheOldestGoesFirst() throws {
        let dir = try TemporaryDirectory("kept-locks-capacity")
        defer { dir.remove() }
        let kept = KeptLockFiles(capacity: 2)
        var fds: [Int32] = []
        for i in 0..<3 {
            let path = dir.path + "/lock\(i)"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            #expect(fd >= 0)
            fds.append(fd)
            kept.keep(path, fd: fd, status: try #require(FileStatus.of(fd)))
        }
        #expect(kept.count == 2)
        #expect(!Self.isOpen(fds[0]), "the one let go first was closed")
        #expect(Self.isOpen(fds[1]) && Self.isOpen(fds[2]))
        // A second descriptor of a file already kept is closed, not kept beside it.
        let again = open(dir.path + "/lock2", O_RDWR | O_CLOEXEC)
        kept.keep(dir.path + "/lock2", fd: again, status: try #require(FileStatus.of(again)))
        #expect(!Self.isOpen(again))
        #expect(kept.take(dir.path + "/lock2")?.fd == fds[2])
        #expect(kept.take(dir.path + "/lock2") == nil, "taken once")
        close(fds[2])
    }
}
