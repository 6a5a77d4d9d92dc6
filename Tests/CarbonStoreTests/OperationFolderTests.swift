import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// One walk from the root to the user's folder per operation of the engine on `path:`
/// (`PathStorage.withOperation`): the user's lock, the version check, the append or the new
/// snapshot, and the delete share the folder the first writer's walk opened.
@Suite struct OperationFolderTests {
    static func txn(_ id: String) -> Transaction { SlowVolumeTests.txn(id) }

    /// A storage on the local disk, with its blocking steps on the caller's thread or (as on a
    /// network file system) on threads of their own.
    static func storage(_ dir: TemporaryDirectory, offloading: Bool) throws -> PathStorage {
        try PathStorage.onSlowVolume(root: dir.path, stepDelay: .zero, offloadingFileWork: offloading)
    }

    /// The walks from the root that `body` made.
    static func walks(_ storage: PathStorage, _ body: () async throws -> Void) async rethrows -> Int {
        let before = storage.walkCount
        try await body()
        return storage.walkCount - before
    }

    /// Updates that fail under the lock, `times`: a directory planted in the place of user "mo"'s
    /// file.
    static func failUnderTheLock(_ store: Store, _ storage: PathStorage, times: Int) async throws {
        let planted = storage.location(of: try store.keys.key(for: "mo"))
        try FileManager.default.createDirectory(
            atPath: PathStorage.parent(of: planted), withIntermediateDirectories: true)
        #expect(mkdir(planted, 0o700) == 0)
        for _ in 0..<times {
            await #expect(throws: UnsafePathError.self) {
                try await store.update("mo") { try $0.upsert(Self.txn("x")) }
            }
        }
    }

    @Test(arguments: [false, true])
    func anUpdateAndADeleteWalkToTheUsersFolderOnce(offloading: Bool) async throws {
        let dir = try TemporaryDirectory("operation-folder")
        defer { dir.remove() }
        let storage = try Self.storage(dir, offloading: offloading)
        #expect(storage.offloadsFileWork == offloading)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        // An append: the lock, the version check and the append share one walk.
        #expect(
            try await Self.walks(storage) { try await store.update("kim") { try $0.upsert(Self.txn("a")) } }
                == 1)
        // An update that changes nothing, and its check that what it read is durable.
        #expect(try await Self.walks(storage) { try await store.update("kim") { _ in } } == 1)
        // A compaction: a new snapshot in a folder already made durable by this storage.
        var options = StoreOptions()
        options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
        let compacting = Store(storage: storage, locks: FileLockService(storage: storage), options: options)
        #expect(
            try await Self.walks(storage) {
                try await compacting.update("kim") { try $0.upsert(Self.txn("b")) }
            }
                == 1)
        // A read is not an operation: its own walk.
        #expect(try await Self.walks(storage) { _ = try await store.read("kim") } == 1)
        #expect(try await Self.walks(storage) { try await store.delete("kim") } == 1)
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await fresh.read("kim") == nil)
    }

    /// Without a lock the version check is a reader's walk (not through `io`); the append's walk
    /// is the writer's, and its folder is the operation's from then on.
    @Test func withoutALockTheCheckAndTheAppendWalkOnceEach() async throws {
        let dir = try TemporaryDirectory("operation-folder-none")
        defer { dir.remove() }
        let storage = try Self.storage(dir, offloading: false)
        let store = Store(storage: storage, locks: NoLockService())
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        #expect(
            try await Self.walks(storage) { try await store.update("kim") { try $0.upsert(Self.txn("a")) } }
                == 2)
        #expect(try await Self.walks(storage) { try await store.update("kim") { _ in } } == 2)
    }

    /// A folder this storage made durable, removed from outside and made again by the lock's walk,
    /// is made durable again before a new user's first snapshot in it is acknowledged.
    @Test func aFolderMadeAgainIsMadeDurableAgain() async throws {
        let dir = try TemporaryDirectory("operation-folder-again")
        defer { dir.remove() }
        let folderSyncs = CarbonStore.Locked(0)
        var io = FileIO.posix
        let fsync = io.fsync
        io.fsync = { fd in
            var st = stat()
            if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { folderSyncs.withLock { $0 += 1 } }
            return fsync(fd)
        }
        let storage = try PathStorage(root: dir.path, io: io)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        let first = folderSyncs.withLock { $0 }
        #expect(first >= 3, "the two folders' entries and the snapshot's rename")
        try await store.update("lou") { try $0.upsert(Self.txn("a")) }
        let top = String(try store.keys.key(for: "kim").split(separator: "/")[0])
        try FileManager.default.removeItem(atPath: dir.path + "/" + top)
        let before = folderSyncs.withLock { $0 }
        try await store.update("kim") { try $0.upsert(Self.txn("b")) }
        #expect(folderSyncs.withLock { $0 } - before >= 3, "made durable again")
        let fresh = Store(storage: try PathStorage(root: dir.path), locks: NoLockService())
        #expect(try await fresh.get("kim").transactions.map(\.id) == ["b"])
    }

    /// Whether `fd` is open on the folder `path` (a closed number reused by another suite's open
    /// is not that folder).
    static func isOpen(_ fd: Int32, on path: String) -> Bool {
        var a = stat()
        var b = stat()
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    /// Once its operation is over, an operation's folder lends nothing and keeps nothing (a task
    /// started within the operation that outlives it walks by itself, and leaks nothing); until
    /// then the kept descriptor is lent, not duplicated, and a step's give-back does not close it.
    @Test func anEndedOperationLendsNothingAndKeepsNothing() throws {
        let dir = try TemporaryDirectory("operation-folder-end")
        defer { dir.remove() }
        let scope = PathStorage.OperationFolder(storage: ObjectIdentifier(Int.self), folders: ["a"])
        #expect(scope.lend() == nil, "nothing kept yet")
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(fd >= 0)
        #expect(scope.keepAndLend(fd))
        #expect(scope.lend() == fd, "the same descriptor, not a duplicate")
        #expect(scope.counts.lent == 2)
        #expect(scope.giveBack(fd) && scope.giveBack(fd))
        #expect(!scope.giveBack(fd), "no longer lent")
        #expect(Self.isOpen(fd, on: dir.path), "kept: given back, not closed")
        scope.end()
        #expect(!Self.isOpen(fd, on: dir.path), "closed when the operation ended")
        #expect(scope.lend() == nil)
        let late = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(!scope.keepAndLend(late), "an ended operation keeps nothing: the step closes it")
        #expect(Self.isOpen(late, on: dir.path))
        close(late)
        #expect(scope.counts == (0, false))
    }

    /// A descriptor still lent is closed by its last give-back, never before: when the operation
    /// ends, and when a later walk's folder replaces it (one not lent is closed at once then).
    @Test func aLentDescriptorIsClosedByItsLastGiveBack() throws {
        let dir = try TemporaryDirectory("operation-folder-lent")
        defer { dir.remove() }
        func openFolder() -> Int32 { open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        let scope = PathStorage.OperationFolder(storage: ObjectIdentifier(Int.self), folders: ["a"])
        // Replaced while lent twice: open until both give it back.
        let first = openFolder()
        #expect(scope.keepAndLend(first))
        #expect(scope.lend() == first)
        let second = openFolder()
        #expect(scope.keepAndLend(second))
        #expect(scope.lend() == second, "the newer one is lent from now on")
        #expect(scope.giveBack(first))
        #expect(Self.isOpen(first, on: dir.path), "one step still has it")
        #expect(scope.giveBack(first))
        #expect(!Self.isOpen(first, on: dir.path), "replaced, and no step has it")
        // Replaced while not lent: closed at once.
        #expect(scope.giveBack(second) && scope.giveBack(second))
        let third = openFolder()
        #expect(scope.keepAndLend(third))
        #expect(!Self.isOpen(second, on: dir.path), "replaced while no step had it")
        // Lent when the operation ends: open until given back, then closed.
        scope.end()
        #expect(Self.isOpen(third, on: dir.path), "a step still has it")
        #expect(scope.giveBack(third))
        #expect(!Self.isOpen(third, on: dir.path), "the operation is over and no step has it")
        #expect(scope.counts == (0, false))
    }

    /// Every descriptor the storage closes is closed once: a step that closed a lent folder itself
    /// (instead of giving it back) would have its operation close the number again, which fails
    /// with EBADF, or closes a file opened since under that number. Appends, changes that write
    /// nothing, compactions, new users, deletes and operations that fail under the lock, with the
    /// steps on the caller's thread and on threads of their own.
    @Test(arguments: [false, true])
    func noDescriptorIsClosedTwice(offloading: Bool) async throws {
        struct Refused: Error {}
        let dir = try TemporaryDirectory("operation-folder-twice")
        defer { dir.remove() }
        let failedCloses = CarbonStore.Locked<[Int32]>([])
        var io = FileIO.posix
        let close = io.close
        io.close = { fd in
            let result = close(fd)
            if result != 0 && errno == EBADF { failedCloses.withLock { $0.append(fd) } }
            return result
        }
        let storage = try PathStorage(root: dir.path, io: io, offloadFileWork: offloading)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        var options = StoreOptions()
        options.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
        let compacting = Store(storage: storage, locks: FileLockService(storage: storage), options: options)
        for n in 0..<60 {
            let user = "u\(n % 4)"
            _ = try? await store.update(user) { r in
                if n % 7 == 0 { throw Refused() }
                try r.upsert(Self.txn("t\(n)"))
            }
            try await store.update(user) { _ in }
            if n % 5 == 0 { try await compacting.update(user) { try $0.upsert(Self.txn("c\(n)")) } }
            if n % 11 == 0 { try await store.delete(user) }
        }
        try await Self.failUnderTheLock(store, storage, times: 5)
        #expect(failedCloses.withLock { $0 }.isEmpty)
        #expect(try await store.get("u1").transactions.count > 0)
    }

    /// The operation's folder is closed when the operation ends, whatever its end: many updates,
    /// some of whose mutations throw, and updates that fail under the lock leave no descriptor
    /// open.
    @Test(arguments: [false, true])
    func noDescriptorIsLeftOpen(offloading: Bool) async throws {
        struct Refused: Error {}
        let dir = try TemporaryDirectory("operation-folder-fds")
        defer { dir.remove() }
        let storage = try Self.storage(dir, offloading: offloading)
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        func openDescriptors() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        }
        let before = try openDescriptors()
        for n in 0..<200 {
            _ = try? await store.update(n % 2 == 0 ? "kim" : "lou") { r in
                if n % 5 == 0 { throw Refused() }
                try r.upsert(Self.txn("t\(n)"))
            }
        }
        _ = try await store.delete("lou")
        try await Self.failUnderTheLock(store, storage, times: 20)
        // Other suites may open descriptors meanwhile: a leak of one per operation would show as
        // far more than a few.
        #expect(try openDescriptors() - before < 20)
        let record = try await store.get("kim")
        #expect(record.transactions.count == 1 + 80)
    }
}
