import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// A user's folder that exists is opened in one system call below the root, through no symbolic
/// link (`PathStorage.walk`, `openat2`); anything else takes the walk level by level.
@Suite struct OneCallWalkTests {
    static func txn(_ id: String) -> Transaction { SlowVolumeTests.txn(id) }

    /// The calls a storage's `io` made: the one-call opens (and the paths they were given) and the
    /// folders opened level by level.
    final class Calls: Sendable {
        let oneCall = CarbonStoreTestSupport.Locked<[String]>([])
        let levels = CarbonStoreTestSupport.Locked(0)
    }

    /// The real calls, counted; `oneCall` answers in place of `openat2` when given.
    static func io(_ calls: Calls, oneCall: (@Sendable (Int32, String) -> Int32)? = nil) -> FileIO {
        var io = FileIO.posix
        let openat = io.openat
        io.openat = { dir, name, flags, mode in
            if flags & O_DIRECTORY != 0 { calls.levels.withLock { $0 += 1 } }
            return openat(dir, name, flags, mode)
        }
        let real = io.openDirectoryBeneath
        io.openDirectoryBeneath = { dir, path in
            calls.oneCall.withLock { $0.append(path) }
            return (oneCall ?? real)(dir, path)
        }
        return io
    }

    static func folder(of userID: String) throws -> String {
        PathStorage.parent(of: try UserKeys().key(for: userID))
    }

    @Test func anUpdateOpensTheUsersFolderInOneCall() async throws {
        let dir = try TemporaryDirectory("one-call-walk")
        defer { dir.remove() }
        let calls = Calls()
        let storage = try PathStorage(root: dir.path, io: Self.io(calls))
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        calls.oneCall.withLock { $0 = [] }
        calls.levels.withLock { $0 = 0 }
        try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        #expect(calls.oneCall.withLock { $0 } == [try Self.folder(of: "kim")])
        #expect(calls.levels.withLock { $0 } == 0)
        let record = try #require(
            try await Store(storage: try PathStorage(root: dir.path), locks: NoLockService()).read("kim"))
        #expect(record.transactions.map(\.id).sorted() == ["a", "seed"])
    }

    /// The data directory may be a link; one that is pointed elsewhere while a process serves it
    /// (a volume switched) is followed by the next walk, as every walk opens the root by its path.
    @Test func aRootLinkPointedElsewhereIsFollowedByTheNextUpdate() async throws {
        let dir = try TemporaryDirectory("one-call-walk-root-link")
        defer { dir.remove() }
        let first = dir.path + "/v1"
        let second = dir.path + "/v2"
        try FileManager.default.createDirectory(atPath: first, withIntermediateDirectories: false)
        let link = dir.path + "/data"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: first)
        let calls = Calls()
        let storage = try PathStorage(root: link, io: Self.io(calls))
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        // A copy of the data directory, and the link pointed at it.
        try FileManager.default.copyItem(atPath: first, toPath: second)
        try FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: second)
        calls.oneCall.withLock { $0 = [] }
        try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        #expect(!calls.oneCall.withLock { $0 }.isEmpty, "the folder was opened in one call")
        func ids(_ root: String) async throws -> [String]? {
            try await Store(storage: try PathStorage(root: root), locks: NoLockService()).read("kim")?
                .transactions.map(\.id).sorted()
        }
        #expect(try await ids(second) == ["a", "seed"])
        #expect(try await ids(first) == ["seed"])
    }

    @Test func aFolderReplacedByALinkIsRefusedAndNothingIsWrittenWhereItLeads() async throws {
        let dir = try TemporaryDirectory("one-call-walk-link")
        defer { dir.remove() }
        let root = dir.path + "/data"
        let calls = Calls()
        let storage = try PathStorage(root: root, io: Self.io(calls))
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        // The user's first-level folder moved away and a link to it put in its place.
        let first = String(try Self.folder(of: "kim").split(separator: "/")[0])
        let moved = dir.path + "/moved"
        try FileManager.default.moveItem(atPath: root + "/" + first, toPath: moved)
        try FileManager.default.createSymbolicLink(atPath: root + "/" + first, withDestinationPath: moved)
        let file =
            moved + "/"
            + String(try UserKeys().key(for: "kim").split(separator: "/").dropFirst().joined(separator: "/"))
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        await #expect {
            try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        } throws: { error in
            (error as? UnsafePathError)?.path == root + "/" + first
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
        await #expect(throws: UnsafePathError.self) { try await store.read("kim") }
    }

    @Test func withoutTheCallEveryWalkTakesTheLevels() async throws {
        let dir = try TemporaryDirectory("one-call-walk-enosys")
        defer { dir.remove() }
        let calls = Calls()
        let storage = try PathStorage(
            root: dir.path,
            io: Self.io(calls) { _, _ in
                errno = ENOSYS
                return -1
            })
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        // Asked once, refused, and never again.
        #expect(calls.oneCall.withLock { $0.count } == 1)
        calls.levels.withLock { $0 = 0 }
        try await store.update("kim") { try $0.upsert(Self.txn("b")) }
        #expect(calls.levels.withLock { $0 } == 2, "two levels of folders, each opened")
        #expect(try await store.read("kim")?.transactions.map(\.id).sorted() == ["a", "b", "seed"])
    }

    @Test func anIOErrorOfTheOneCallFailsTheUpdateAndWritesNothing() async throws {
        let dir = try TemporaryDirectory("one-call-walk-eio")
        defer { dir.remove() }
        let failing = CarbonStoreTestSupport.Locked(false)
        let storage = try PathStorage(
            root: dir.path,
            io: Self.io(Calls()) { dir, path in
                if failing.withLock({ $0 }) {
                    errno = EIO
                    return -1
                }
                return systemOpenDirectoryBeneath(dir, path)
            })
        let store = Store(storage: storage, locks: FileLockService(storage: storage))
        try await store.update("kim") { try $0.upsert(Self.txn("seed")) }
        failing.withLock { $0 = true }
        await #expect {
            try await store.update("kim") { try $0.upsert(Self.txn("a")) }
        } throws: { error in
            let e = error as? StorageIOError
            return e?.operation == "open directory" && e?.errno == EIO
                && e?.path == dir.path + "/" + (try? Self.folder(of: "kim"))!
        }
        failing.withLock { $0 = false }
        #expect(try await store.read("kim")?.transactions.map(\.id) == ["seed"])
    }
}
