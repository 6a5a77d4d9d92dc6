import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// What a fault at one step of a write must leave behind (docs/RELIABILITY.md, "Crash points and
/// I/O errors").
struct FaultCase: Sendable, CustomTestStringConvertible {
    var spec: String
    /// The user file afterwards is the new revision (else the old one).
    var leavesNewRevision: Bool
    /// How many `.tmp-…` files the fault leaves (only crashes before the rename leave one).
    var temporaryFilesLeft: Int
    /// For a failing call: the words the one-line error starts with, and the errno.
    var failedOperation: String? = nil
    var errno: Int32? = nil
    /// The write still succeeds (a fault that is retried, such as EINTR).
    var succeeds = false
    /// The user file ends right after its valid content afterwards: no reserve, no zeros.
    var endsWithTheFrame = false

    var testDescription: String { spec }
    var isCrash: Bool { spec.hasPrefix("crash:") }
    /// A full volume or quota (ENOSPC, EDQUOT) met while a new snapshot is written beside the old
    /// file: an update that can append its change instead does (`NoRoomToRewriteError` otherwise).
    var appendsInsteadOfRewriting: Bool {
        guard let code = errno, code == ENOSPC || code == EDQUOT, let operation = failedOperation else {
            return false
        }
        return ["create", "write", "fsync", "close"].contains(operation)
    }

    static let crashes: [FaultCase] = [
        .init(spec: "crash:after-temp-write", leavesNewRevision: false, temporaryFilesLeft: 1),
        .init(spec: "crash:after-temp-fsync", leavesNewRevision: false, temporaryFilesLeft: 1),
        .init(spec: "crash:after-temp-close", leavesNewRevision: false, temporaryFilesLeft: 1),
        .init(spec: "crash:after-rename", leavesNewRevision: true, temporaryFilesLeft: 0),
        .init(spec: "crash:before-directory-fsync", leavesNewRevision: true, temporaryFilesLeft: 0),
        .init(spec: "crash:after-directory-fsync", leavesNewRevision: true, temporaryFilesLeft: 0),
        // A writer makes the entries of the folders on the way durable (fsyncs their parents)
        // before it writes, once per folder: a crash there leaves the old state.
        .init(spec: "crash:before-parent-fsync", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:after-parent-fsync@2", leavesNewRevision: false, temporaryFilesLeft: 0),
    ]

    /// Faults that only a user's first write meets: it creates the user's hash folders.
    static let newFolders: [FaultCase] = [
        .init(spec: "crash:after-mkdir", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:after-mkdir@2", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:before-parent-fsync@2", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(
            spec: "fail:mkdir:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "mkdir",
            errno: ENOSPC),
        .init(
            spec: "fail:parent-fsync:EIO@2", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fsync directory", errno: EIO),
    ]

    static let failures: [FaultCase] = [
        .init(
            spec: "fail:create:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "create", errno: ENOSPC),
        .init(
            spec: "fail:write:EIO", leavesNewRevision: false, temporaryFilesLeft: 0, failedOperation: "write",
            errno: EIO),
        .init(
            spec: "fail:write:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "write", errno: ENOSPC),
        .init(
            spec: "fail:short-write:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "write", errno: ENOSPC),
        .init(
            spec: "fail:short-write:EDQUOT", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "write", errno: EDQUOT),
        .init(
            spec: "fail:fsync:EIO", leavesNewRevision: false, temporaryFilesLeft: 0, failedOperation: "fsync",
            errno: EIO),
        .init(
            spec: "fail:fsync:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fsync", errno: ENOSPC),
        .init(
            spec: "fail:close:EIO", leavesNewRevision: false, temporaryFilesLeft: 0, failedOperation: "close",
            errno: EIO),
        .init(
            spec: "fail:close:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "close", errno: ENOSPC),
        .init(
            spec: "fail:rename:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "rename", errno: EIO),
        // The folders are opened on the way to the file, before anything is written.
        .init(
            spec: "fail:directory-open:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "open directory", errno: EIO),
        .init(
            spec: "fail:parent-fsync:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fsync directory", errno: EIO),
        .init(
            spec: "fail:directory-fsync:EIO", leavesNewRevision: true, temporaryFilesLeft: 0,
            failedOperation: "fsync directory", errno: EIO),
        .init(
            spec: "fail:write:EINTR", leavesNewRevision: true, temporaryFilesLeft: 0, succeeds: true),
    ]

    /// The faults of a snapshot write (temporary file, rename, directory fsync): a user's first
    /// write, a compaction, the upgrade of a version-1 file.
    static let all = crashes + failures

    /// Faults of an append: an update of a version-2 file that adds a change frame under the
    /// commit lock. A crash leaves the frame's bytes as far as they were written: none, half (a
    /// torn append, which readers ignore and the next writer cuts) or all of them (the new state,
    /// not yet acknowledged).
    static let appends: [FaultCase] = [
        .init(spec: "crash:before-append-write", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:mid-append-write", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:after-append-write", leavesNewRevision: true, temporaryFilesLeft: 0),
        .init(spec: "crash:after-append-datasync", leavesNewRevision: true, temporaryFilesLeft: 0),
        .init(
            spec: "fail:append-open:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "open for appending", errno: EIO),
        .init(
            spec: "fail:append-write:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "append to", errno: EIO),
        .init(
            spec: "fail:append-write:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "append to", errno: ENOSPC),
        .init(
            spec: "fail:short-append-write:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "append to", errno: ENOSPC),
        .init(
            spec: "fail:short-append-write:EDQUOT", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "append to", errno: EDQUOT),
        // A failed fdatasync leaves the frame's durability unknown: the writer cuts it, so that no
        // later frame is chained to one that a power cut may take.
        .init(
            spec: "fail:datasync:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fdatasync", errno: EIO),
        .init(
            spec: "fail:datasync:ENOSPC", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fdatasync", errno: ENOSPC),
        .init(
            spec: "fail:append-write:EINTR", leavesNewRevision: true, temporaryFilesLeft: 0, succeeds: true),
    ]

    /// Faults of an append that first cuts the torn append a crashed writer left (and with it the
    /// reserve after it, so that the append reserves room again before its frame).
    static let afterATornAppend: [FaultCase] = [
        .init(spec: "crash:after-truncate", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:after-reserve-write", leavesNewRevision: false, temporaryFilesLeft: 0),
        // No room for a reserve: what was written of it is cut, the frame is written without one,
        // and the update succeeds; the file ends with the frame.
        .init(
            spec: "fail:reserve-write:ENOSPC", leavesNewRevision: true, temporaryFilesLeft: 0, succeeds: true,
            endsWithTheFrame: true),
        .init(
            spec: "fail:short-reserve-write:ENOSPC", leavesNewRevision: true, temporaryFilesLeft: 0,
            succeeds: true, endsWithTheFrame: true),
        .init(
            spec: "fail:truncate:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "truncate a torn append of", errno: EIO),
        // The cut is synced before the frame is written where the torn bytes were.
        .init(
            spec: "fail:cut-datasync:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fdatasync after cutting a torn append of", errno: EIO),
        .init(spec: "crash:mid-append-write", leavesNewRevision: false, temporaryFilesLeft: 0),
        .init(spec: "crash:after-append-write", leavesNewRevision: true, temporaryFilesLeft: 0),
        .init(
            spec: "fail:datasync:EIO", leavesNewRevision: false, temporaryFilesLeft: 0,
            failedOperation: "fdatasync", errno: EIO),
    ]
}

enum CrashPointFixtures {
    static func txn(_ id: String, minor: Int64 = 100) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    /// A store on `dir` whose file writes go through `io`.
    static func store(
        _ dir: String, io: FileIO = .posix, locking: String = "local", compaction: CompactionPolicy = .init(),
        framesInPlace: Bool? = nil
    ) async throws -> Store {
        var options = StoreOptions()
        options.fileIO = io
        options.compaction = compaction
        options.framesInPlace = framesInPlace
        return try await StoreFactory(options: options).makeStore("path:\(dir)?locking=\(locking)")
    }

    /// Every update that can write a new snapshot does (no frame is ever appended).
    static let alwaysCompact = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)

    /// A user with a few transactions (revision 1), enough bytes for a short write to matter.
    static func seed(_ dir: String) async throws -> UserRecord {
        let store = try await store(dir)
        return try await store.update("alice") { record in
            for i in 0..<20 { _ = try record.upsert(txn("t\(i)", minor: Int64(i))) }
        }.record
    }

    /// The seeded user, then two updates appended as change frames: a version-2 file with a tail
    /// (revision 3).
    static func seedWithFrames(_ dir: String) async throws -> UserRecord {
        _ = try await seed(dir)
        let store = try await store(dir)
        try await store.update("alice") { try $0.upsert(txn("f1")) }
        let record = try await store.update("alice") { try $0.upsert(txn("f2")) }.record
        let layout = try self.layout(dir)
        #expect(try layout.formatVersion == 2 && layout.frameCount == 2 && endsCleanly(dir))
        return record
    }

    /// The seeded user written as a version-1 file (the format before change frames).
    static func seedVersion1(_ dir: String) async throws -> UserRecord {
        let record = try await seed(dir)
        let path = try userPath(dir)
        try Data(RecordCodec().encodeVersion1(record)).write(to: URL(fileURLWithPath: path))
        #expect(try layout(dir).formatVersion == 1)
        return record
    }

    static func userPath(_ dir: String, user: String = "alice") throws -> String {
        try PathStorage(root: dir).location(of: UserKeys().key(for: user))
    }

    static func userBytes(_ dir: String, user: String = "alice") throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: userPath(dir, user: user))))
    }

    /// The layout of the user's file as it stands.
    static func layout(_ dir: String, user: String = "alice") throws -> FileLayout {
        try userBytes(dir, user: user).withUnsafeBytes { try RecordCodec().scanLayout($0) }
    }

    /// Whether the user's file holds its valid content and nothing else but zero bytes after it (the
    /// reserve of appends: docs/STORAGE.md, "An update appends"): no torn or stray bytes.
    static func endsCleanly(_ dir: String, user: String = "alice") throws -> Bool {
        let bytes = try userBytes(dir, user: user)
        let layout = try bytes.withUnsafeBytes { try RecordCodec().scanLayout($0) }
        return bytes[layout.validLength...].allSatisfy { $0 == 0 }
    }

    /// Leaves a torn append on the user's file: a writer crashed with half of its frame written.
    static func tearAnAppend(_ dir: String) async throws {
        let injector = FileFaultInjector(
            try FileFault(parsing: "crash:mid-append-write"), crashMode: .simulate)
        let crashed = try await store(dir, io: injector.io)
        await #expect(throws: (any Error).self) {
            try await crashed.update("alice") { try $0.upsert(txn("torn")) }
        }
        #expect(injector.hasCrashed)
        #expect(try !endsCleanly(dir), "half a frame was left")
    }

    /// The error `body` throws, or nil.
    static func error(_ body: () async throws -> some Any) async -> (any Error)? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error
        }
    }

    static func temporaryFiles(_ dir: String) throws -> [String] {
        try PathStorage(root: dir).temporaryFiles().map(\.path)
    }
}

/// Faults injected in-process through `FileIO`: a simulated crash makes every later call fail and
/// change nothing, so the files stay as the crash left them.
@Suite struct FileFaultTests {
    typealias F = CrashPointFixtures

    @Test func specsParseAndPrint() throws {
        for spec in [
            "crash:after-rename", "crash:after-temp-write@3", "fail:fsync:EIO", "fail:short-write:ENOSPC@2",
            "fail:directory-fsync:EIO", "fail:unlink:ESTALE",
        ] {
            #expect(try FileFault(parsing: spec).description == spec)
        }
        #expect(
            try FileFault(parsing: "fail:fsync:EIO@2") == FileFault(.fail(.fsync, errno: EIO), occurrence: 2))
        for bad in [
            "", "crash", "crash:nowhere", "fail:fsync", "fail:fsync:EWHAT", "fail:seek:EIO",
            "crash:after-rename@0",
            "crash:after-rename@x", "boom:after-rename",
        ] {
            #expect(throws: InvalidRequestError.self, "\(bad)") { try FileFault(parsing: bad) }
        }
        for step in FileFault.Step.allCases {
            #expect(try FileFault(parsing: "crash:" + step.rawValue).action == .crash(step))
        }
    }

    /// The file a snapshot write replaces: a version-2 file with change frames that the update
    /// compacts, or a version-1 file that the update upgrades.
    enum Rewritten: String, Sendable, CaseIterable {
        case compaction, upgradeOfVersion1
    }

    /// A snapshot write (a compaction, or a version-1 file's upgrade) with a fault at each step:
    /// the old state or the new, never a mix; a clean writer carries on.
    @Test(arguments: FaultCase.all, Rewritten.allCases)
    func updateWithFault(_ c: FaultCase, rewriting: Rewritten) async throws {
        let dir = try TemporaryDirectory("fault-update")
        defer { dir.remove() }
        let old: UserRecord
        switch rewriting {
        case .compaction: old = try await F.seedWithFrames(dir.path)
        case .upgradeOfVersion1: old = try await F.seedVersion1(dir.path)
        }
        let before = try F.layout(dir.path)
        let injector = FileFaultInjector(try FileFault(parsing: c.spec), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io, compaction: F.alwaysCompact)
        let outcome = await F.error { try await faulty.update("alice") { try $0.upsert(F.txn("new")) } }
        #expect(injector.hasFired, "the fault never fired")
        // No room for the new snapshot: a version-2 file takes the change as a frame instead.
        let appendedInstead = rewriting == .compaction && c.appendsInsteadOfRewriting
        let leavesNewRevision = c.leavesNewRevision || appendedInstead
        if c.succeeds || appendedInstead {
            #expect(outcome == nil, "\(String(describing: outcome))")
        } else {
            #expect(outcome != nil, "a faulty write reported success")
        }
        if !appendedInstead, let code = c.errno, let operation = c.failedOperation {
            // A version-1 file cannot take a frame: the full volume is named as such.
            let noRoom = outcome as? NoRoomToRewriteError
            #expect((noRoom != nil) == c.appendsInsteadOfRewriting, "\(String(describing: outcome))")
            #expect(noRoom.map { $0.description.contains("free space") && $0.bytes > 0 } ?? true)
            let error = try #require(
                noRoom?.underlying ?? outcome as? StorageIOError, "\(String(describing: outcome))")
            #expect(error.errno == code)
            #expect(error.operation.hasPrefix(operation))
            let described = String(describing: outcome!)
            #expect(described.contains("(errno \(code))") && !described.contains("\n"))
        }
        #expect(injector.hasCrashed == c.isCrash)

        let clean = try await F.store(dir.path)
        let now = try await clean.get("alice")
        #expect(now.revision == old.revision + (leavesNewRevision ? 1 : 0))
        #expect(now.transactions.contains { $0.id == "new" } == leavesNewRevision)
        if !leavesNewRevision { #expect(now == old) }
        #expect(try F.temporaryFiles(dir.path).count == c.temporaryFilesLeft)
        let layout = try F.layout(dir.path)
        if appendedInstead {
            #expect(
                layout.fileID == before.fileID && layout.frameCount == before.frameCount + 1,
                "the frame appended: \(layout)")
        } else if c.leavesNewRevision {
            #expect(layout.formatVersion == 2 && layout.frameCount == 0, "a new snapshot: \(layout)")
        } else {
            #expect(layout.formatVersion == (rewriting == .compaction ? 2 : 1))
        }

        // A clean writer carries on; verify finds nothing damaged and removes what the crash left.
        let next = try await clean.update("alice") { try $0.upsert(F.txn("after")) }
        #expect(next.record.revision == now.revision + 1)
        let report = try await clean.verify(removeTemporaryFilesOlderThan: .zero)
        #expect(report.damaged.isEmpty && report.healthy == 1)
        #expect(report.removedTemporaryFiles.count == c.temporaryFilesLeft)
        #expect(try F.temporaryFiles(dir.path).isEmpty)
    }

    @Test(arguments: FaultCase.all + FaultCase.newFolders)
    func firstWriteOfANewUserWithFault(_ c: FaultCase) async throws {
        // No old file: the user either does not exist afterwards or has revision 1.
        let dir = try TemporaryDirectory("fault-create")
        defer { dir.remove() }
        let injector = FileFaultInjector(try FileFault(parsing: c.spec), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io)
        let outcome = await F.error { try await faulty.update("bob") { try $0.upsert(F.txn("first")) } }
        #expect(injector.hasFired && (outcome == nil) == c.succeeds)
        let clean = try await F.store(dir.path)
        let now = try await clean.read("bob")
        #expect(now?.revision == (c.leavesNewRevision ? 1 : nil))
        #expect(try F.temporaryFiles(dir.path).count == c.temporaryFilesLeft)
    }

    @Test func aFaultCanHitALaterWrite() async throws {
        let dir = try TemporaryDirectory("fault-nth")
        defer { dir.remove() }
        _ = try await F.seed(dir.path)
        let injector = FileFaultInjector(try FileFault(parsing: "fail:fsync:EIO@3"), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io, compaction: F.alwaysCompact)
        // The directory fsyncs do not count: only the temporary files' fsyncs.
        try await faulty.update("alice") { try $0.upsert(F.txn("a")) }
        try await faulty.update("alice") { try $0.upsert(F.txn("b")) }
        #expect(!injector.hasFired)
        await #expect(throws: StorageIOError.self) {
            try await faulty.update("alice") { try $0.upsert(F.txn("c")) }
        }
        #expect(injector.hasFired)
        // A fault fires once: the next write goes through.
        try await faulty.update("alice") { try $0.upsert(F.txn("d")) }
        let now = try await F.store(dir.path).get("alice")
        #expect(now.revision == 4 && Set(now.transactions.map(\.id)).isSuperset(of: ["a", "b", "d"]))
        #expect(!now.transactions.contains { $0.id == "c" })
        #expect(try F.temporaryFiles(dir.path).isEmpty)
    }

    @Test func crashOnALaterWriteLeavesTheEarlierOnes() async throws {
        let dir = try TemporaryDirectory("fault-nth-crash")
        defer { dir.remove() }
        _ = try await F.seed(dir.path)
        let injector = FileFaultInjector(
            try FileFault(parsing: "crash:after-temp-fsync@2"), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io, compaction: F.alwaysCompact)
        try await faulty.update("alice") { try $0.upsert(F.txn("a")) }
        await #expect(throws: (any Error).self) {
            try await faulty.update("alice") { try $0.upsert(F.txn("b")) }
        }
        // After the crash the "process" is dead: nothing it does reaches the files.
        await #expect(throws: (any Error).self) {
            try await faulty.update("alice") { try $0.upsert(F.txn("c")) }
        }
        let now = try await F.store(dir.path).get("alice")
        #expect(now.revision == 2 && now.transactions.contains { $0.id == "a" })
        #expect(try F.temporaryFiles(dir.path).count == 1)
    }

    /// An update that appends a change frame to a version-2 file with frames, with a fault at each
    /// step of the append: the old state or the new, never a lost acknowledged append, never a
    /// damaged file; a torn append is invisible and the next writer cuts it.
    @Test(arguments: FaultCase.appends)
    func appendWithFault(_ c: FaultCase) async throws {
        let dir = try TemporaryDirectory("fault-append")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        try await checkAppend(c, dir: dir.path, old: old)
    }

    /// The same after a crashed writer left a torn append: the faulty writer first cuts it.
    @Test(arguments: FaultCase.afterATornAppend)
    func appendAfterATornAppendWithFault(_ c: FaultCase) async throws {
        let dir = try TemporaryDirectory("fault-append-torn")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        try await F.tearAnAppend(dir.path)
        try await checkAppend(c, dir: dir.path, old: old)
    }

    func checkAppend(_ c: FaultCase, dir: String, old: UserRecord) async throws {
        let before = try F.layout(dir)
        let injector = FileFaultInjector(try FileFault(parsing: c.spec), crashMode: .simulate)
        let faulty = try await F.store(dir, io: injector.io)
        let outcome = await F.error { try await faulty.update("alice") { try $0.upsert(F.txn("new")) } }
        #expect(injector.hasFired, "the fault never fired")
        #expect((outcome == nil) == c.succeeds, "\(String(describing: outcome))")
        if let code = c.errno, let operation = c.failedOperation {
            let error = try #require(outcome as? StorageIOError, "\(String(describing: outcome))")
            #expect(error.errno == code)
            #expect(error.operation.hasPrefix(operation), "\(error)")
            #expect(error.description.contains("(errno \(code))") && !error.description.contains("\n"))
        }
        #expect(injector.hasCrashed == c.isCrash)

        // Readers (a fresh process, and the faulty process's own cache) see the old or the new.
        let clean = try await F.store(dir)
        let now = try await clean.get("alice")
        #expect(now.revision == old.revision + (c.leavesNewRevision ? 1 : 0))
        #expect(now.transactions.contains { $0.id == "new" } == c.leavesNewRevision)
        if !c.leavesNewRevision { #expect(now == old) }
        if !c.isCrash { #expect(try await faulty.get("alice") == now) }
        let after = try F.layout(dir)
        #expect(after.fileID == before.fileID, "an append never rewrites the snapshot")
        if c.endsWithTheFrame {
            #expect(try F.userBytes(dir).count == after.validLength, "no zeros of the failed reserve left")
        }
        #expect(after.frameCount == before.frameCount + (c.leavesNewRevision ? 1 : 0))
        #expect(try F.temporaryFiles(dir).isEmpty)

        // A clean writer appends after it, cutting any torn bytes; verify finds nothing damaged.
        let next = try await clean.update("alice") { try $0.upsert(F.txn("after")) }
        #expect(next.record.revision == now.revision + 1)
        let last = try F.layout(dir)
        #expect(last.frameCount == after.frameCount + 1, "\(last)")
        #expect(try F.endsCleanly(dir), "the torn bytes were cut")
        #expect(try await F.store(dir).get("alice") == next.record)
        let report = try await clean.verify()
        #expect(report.damaged.isEmpty && report.healthy == 1)
    }

    /// A crash in the middle of an append leaves half a frame: readers keep reading the old state
    /// (their caches too), version checks say unchanged, and the next writer succeeds.
    @Test func readersIgnoreATornAppendAndTheNextWriterCutsIt() async throws {
        let dir = try TemporaryDirectory("fault-torn-readers")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        let reader = try await F.store(dir.path)
        #expect(try await reader.get("alice") == old)
        #expect(try F.endsCleanly(dir.path))
        try await F.tearAnAppend(dir.path)
        #expect(try !F.endsCleanly(dir.path), "half a frame was written")
        #expect(try await reader.get("alice") == old, "a cached reader")
        #expect(try await F.store(dir.path).get("alice") == old, "a fresh reader")
        let storage = try PathStorage(root: dir.path)
        let key = try UserKeys().key(for: "alice")
        let version = try #require(try await storage.get(key)).version
        #expect(try await storage.getIfChanged(key, cached: version) == .unchanged)

        let writer = try await F.store(dir.path)
        let next = try await writer.update("alice") { try $0.upsert(F.txn("next")) }
        #expect(next.outcome == .committed && next.record.revision == old.revision + 1)
        #expect(try F.endsCleanly(dir.path))
        #expect(try await reader.get("alice") == next.record)
        #expect(!next.record.transactions.contains { $0.id == "torn" })
    }

    @Test func anAppendFaultCanHitALaterAppend() async throws {
        let dir = try TemporaryDirectory("fault-append-nth")
        defer { dir.remove() }
        _ = try await F.seedWithFrames(dir.path)
        let injector = FileFaultInjector(try FileFault(parsing: "fail:datasync:EIO@3"), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io)
        try await faulty.update("alice") { try $0.upsert(F.txn("a")) }
        try await faulty.update("alice") { try $0.upsert(F.txn("b")) }
        #expect(!injector.hasFired)
        await #expect(throws: StorageIOError.self) {
            try await faulty.update("alice") { try $0.upsert(F.txn("c")) }
        }
        #expect(injector.hasFired)
        try await faulty.update("alice") { try $0.upsert(F.txn("d")) }
        let now = try await F.store(dir.path).get("alice")
        #expect(Set(now.transactions.map(\.id)).isSuperset(of: ["f1", "f2", "a", "b", "d"]))
        #expect(!now.transactions.contains { $0.id == "c" })
        #expect(try F.layout(dir.path).frameCount == 5)
    }

    /// Deletes through `PathStorage.delete` and `Store.delete`.
    struct DeleteCase: Sendable, CustomTestStringConvertible {
        var spec: String
        var fileRemains: Bool
        var failedOperation: String?
        var errno: Int32?
        var testDescription: String { spec }
    }

    static let deleteCases: [DeleteCase] = [
        .init(spec: "crash:after-unlink", fileRemains: false),
        .init(spec: "crash:before-directory-fsync", fileRemains: false),
        .init(spec: "crash:after-directory-fsync", fileRemains: false),
        .init(spec: "fail:unlink:EIO", fileRemains: true, failedOperation: "unlink", errno: EIO),
        .init(spec: "fail:unlink:EROFS", fileRemains: true, failedOperation: "unlink", errno: EROFS),
        .init(
            spec: "fail:directory-open:EIO", fileRemains: true, failedOperation: "open directory", errno: EIO
        ),
        .init(
            spec: "fail:directory-fsync:EIO", fileRemains: false, failedOperation: "fsync directory",
            errno: EIO),
    ]

    @Test(arguments: deleteCases, [true, false])
    func deleteWithFault(_ c: DeleteCase, viaStore: Bool) async throws {
        let dir = try TemporaryDirectory("fault-delete")
        defer { dir.remove() }
        let old = try await F.seed(dir.path)
        let injector = FileFaultInjector(try FileFault(parsing: c.spec), crashMode: .simulate)
        let outcome: (any Error)?
        if viaStore {
            let faulty = try await F.store(dir.path, io: injector.io)
            outcome = await F.error { try await faulty.delete("alice") }
        } else {
            let storage = try PathStorage(root: dir.path, io: injector.io)
            let key = try UserKeys().key(for: "alice")
            let version = try #require(try await storage.get(key)).version
            outcome = await F.error { try await storage.delete(key, condition: .mustMatch(version)) }
        }
        #expect(injector.hasFired && outcome != nil)
        if let code = c.errno, let operation = c.failedOperation {
            let error = try #require(outcome as? StorageIOError, "\(String(describing: outcome))")
            #expect(error.errno == code && error.operation.hasPrefix(operation))
        }
        let clean = try await F.store(dir.path)
        let now = try await clean.read("alice")
        #expect(now == (c.fileRemains ? old : nil))
        let report = try await clean.verify()
        #expect(report.damaged.isEmpty && report.temporaryFiles.isEmpty)
    }
}

/// The same faults in a real `carbonstore` process: a crash is `_exit(86)` in the middle of the
/// write, with no cleanup at all.
@Suite(.serialized) struct CrashPointProcessTests {
    typealias F = CrashPointFixtures

    static func add(_ id: String) -> [String] {
        ["txn", "add", "alice", "--id", id, "--amount", "1.25", "--currency", "EUR", "--merchant", "M"]
    }

    /// A snapshot write (the faulty process compacts on every update) with a fault at each step.
    @Test(arguments: FaultCase.all)
    func updateInAProcessWithFault(_ c: FaultCase) async throws {
        try await checkInAProcess(c, environment: ["CARBONSTORE_TEST_COMPACTION": "always"])
    }

    /// An append to a version-2 file with a frame, with a fault at each step.
    @Test(arguments: FaultCase.appends)
    func appendInAProcessWithFault(_ c: FaultCase) async throws {
        try await checkInAProcess(c, appends: true)
    }

    func checkInAProcess(_ c: FaultCase, environment: [String: String] = [:], appends: Bool = false)
        async throws
    {
        let dir = try TemporaryDirectory("crash-proc")
        defer { dir.remove() }
        let clean = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        let faulty = try CommandRunner(
            .testHost,
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_TEST_FILE_FAULT": c.spec,
            ].merging(environment) { $1 })
        let first = try clean.run(Self.add("t1"))
        #expect(first.status == 0, "\(first.stderr)")
        let old = try await F.store(dir.path).get("alice")
        let before = try F.layout(dir.path)

        let out = try faulty.run(Self.add("t2"))
        if c.isCrash {
            #expect(out.status == FileFault.crashExitStatus, "\(out.stderr)")
            #expect(out.stdout.isEmpty)
            #expect(out.stderr.contains("test fault \(c.spec): crashing now"))
        } else if c.succeeds || (!appends && c.appendsInsteadOfRewriting) {
            // (With no room for the new snapshot, the change is appended as a frame instead.)
            #expect(out.status == 0 && out.stdout.hasPrefix("added transaction t2"), "\(out.stderr)")
        } else {
            #expect(out.status == 1, "\(out.stderr)")
            #expect(out.stdout.isEmpty, "a failed write printed: \(out.stdout)")
            let lines = out.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(out.stderr)")
            if let code = c.errno, let operation = c.failedOperation {
                #expect(out.stderr.hasPrefix("carbonstore: \(operation) "), "\(out.stderr)")
                #expect(out.stderr.contains("(errno \(code))"), "\(out.stderr)")
            }
        }

        // In-process: the file decodes and is exactly the old or the new revision.
        let now = try await F.store(dir.path).get("alice")
        let appendedInstead = !appends && c.appendsInsteadOfRewriting
        if c.leavesNewRevision || appendedInstead {
            #expect(now.revision == 2 && now.transactions.map(\.id) == ["t1", "t2"])
        } else {
            #expect(now == old)
        }
        let after = try F.layout(dir.path)
        if appends {
            #expect(after.fileID == before.fileID && after.frameCount == (c.leavesNewRevision ? 1 : 0))
        }
        if appendedInstead {
            #expect(after.fileID == before.fileID && after.frameCount == before.frameCount + 1, "\(after)")
        }
        #expect(try F.temporaryFiles(dir.path).count == c.temporaryFilesLeft)

        // A clean process carries on; verify reports the crash's temporary files and removes them.
        let next = try clean.run(Self.add("t3"))
        #expect(next.status == 0 && next.stdout.contains("(revision \(now.revision + 1))"), "\(next.stderr)")
        let verify = try clean.run(["verify"])
        #expect(verify.status == 0 && verify.stdout.contains("1 healthy, 0 damaged"), "\(verify.stdout)")
        #expect(
            verify.stdout.split(separator: "\n").filter { $0.hasPrefix("temporary file: ") }.count
                == c.temporaryFilesLeft, "\(verify.stdout)")
        let cleanup = try clean.run(["verify", "--remove-temp-older-than", "0"])
        #expect(cleanup.status == 0 && cleanup.stdout.contains("0 damaged"), "\(cleanup.stdout)")
        #expect(
            cleanup.stdout.split(separator: "\n").filter { $0.hasPrefix("removed temporary file: ") }.count
                == c.temporaryFilesLeft, "\(cleanup.stdout)")
        #expect(
            !cleanup.stdout.contains("\ntemporary file: ") && !cleanup.stdout.hasPrefix("temporary file: "))
        #expect(try F.temporaryFiles(dir.path).isEmpty)
        #expect(try F.endsCleanly(dir.path))
    }

    @Test func aCrashCanHitALaterWriteOfTheSameProcess() async throws {
        // `demo` or a batch writes several times in one process; @2 lets the first write through.
        let dir = try TemporaryDirectory("crash-proc-nth")
        defer { dir.remove() }
        let clean = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        #expect(try clean.run(Self.add("t1")).status == 0)
        // One process, one write: @2 never fires, and the write succeeds.
        let faulty = try CommandRunner(
            .testHost,
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path,
                "CARBONSTORE_TEST_FILE_FAULT": "crash:after-rename@2",
            ])
        let out = try faulty.run(Self.add("t2"))
        #expect(out.status == 0 && out.stdout.contains("(revision 2)"), "\(out.stderr)")
    }

    @Test func aBadFaultSpecIsRefused() throws {
        let dir = try TemporaryDirectory("crash-proc-bad")
        defer { dir.remove() }
        let faulty = try CommandRunner(
            .testHost,
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_TEST_FILE_FAULT": "crash:after-lunch",
            ])
        let out = try faulty.run(Self.add("t1"))
        #expect(out.status == 64 && out.stderr.contains("unknown step 'after-lunch'"), "\(out.stderr)")
    }

    @Test func deleteInAProcessWithDirectoryFsyncFailureReportsFailure() async throws {
        let dir = try TemporaryDirectory("crash-proc-delete")
        defer { dir.remove() }
        let clean = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        #expect(try clean.run(Self.add("t1")).status == 0)
        let faulty = try CommandRunner(
            .testHost,
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path,
                "CARBONSTORE_TEST_FILE_FAULT": "fail:directory-fsync:EIO",
            ])
        let out = try faulty.run(["user", "delete", "alice"])
        #expect(out.status == 1 && out.stdout.isEmpty, "\(out.stdout)")
        #expect(out.stderr.hasPrefix("carbonstore: fsync directory ") && out.stderr.contains("(errno 5)"))
        #expect(try await F.store(dir.path).read("alice") == nil)
    }
}

/// The window of issue 7 on NFS and EFS, for appends: a writer holds the directory's commit lock,
/// checks the fence and its hold, and is paused before its write; the server's lease lapses and
/// another writer takes the lock and appends. With `O_APPEND` the paused writer's frame lands after
/// the other's, chained to nothing there: it must report a version mismatch (the engine retries),
/// never success; readers ignore the stray frame, and the next writer cuts it. Every writer here
/// takes that path (`framesInPlace: false`), as on NFS: on a local file system, where the commit
/// lock cannot lapse, frames are written in place into the file's reserve.
///
/// The paused writer blocks the thread that runs its `write` (a `FileIO` call is synchronous), so
/// the suite runs its tests one at a time: two of them paused at once could take every thread of
/// the cooperative pool (as wide as the machine's cores) from the writer they wait for.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.activeProcessorCount >= 2, "needs 2 cores"))
struct LostCommitLockTests {
    typealias F = CrashPointFixtures

    /// A `FileIO` that stops its first append write until released, so that the test can take the
    /// commit lock away meanwhile; and that records the user file as the next append finds it.
    final class PausedAppend: Sendable {
        private struct State {
            var appendDescriptors: Set<Int32> = []
            var appendOpens = 0
            var paused = false
            var released = false
            var pausedOnce = false
            /// The user file's bytes when the writer opened it for its next append (its retry).
            var seenAtRetry: [UInt8]?
        }
        private let state = CarbonStore.Locked(State())
        let userPath: String

        init(userPath: String) { self.userPath = userPath }

        var isPaused: Bool { state.withLock { $0.paused } }
        var seenAtRetry: [UInt8]? { state.withLock { $0.seenAtRetry } }
        func release() { state.withLock { $0.released = true } }

        var io: FileIO {
            let base = FileIO.posix
            return FileIO(
                openat: { dir, name, flags, mode in
                    let fd = base.openat(dir, name, flags, mode)
                    guard flags & O_APPEND != 0, fd >= 0 else { return fd }
                    let again = self.state.withLock { s -> Bool in
                        s.appendDescriptors.insert(fd)
                        s.appendOpens += 1
                        return s.appendOpens == 2
                    }
                    if again, let bytes = FileManager.default.contents(atPath: self.userPath) {
                        self.state.withLock { $0.seenAtRetry = Array(bytes) }
                    }
                    return fd
                },
                mkdirat: base.mkdirat,
                write: { fd, buffer in
                    let pause = self.state.withLock { s -> Bool in
                        guard s.appendDescriptors.contains(fd), !s.pausedOnce else { return false }
                        s.pausedOnce = true
                        s.paused = true
                        return true
                    }
                    if pause {
                        // Blocks this thread (a writer stopped by the scheduler), for at most 20 s.
                        for _ in 0..<4000 where !self.state.withLock({ $0.released }) { usleep(5000) }
                        self.state.withLock { $0.paused = false }
                    }
                    return base.write(fd, buffer)
                },
                fsync: base.fsync,
                close: { fd in
                    _ = self.state.withLock { $0.appendDescriptors.remove(fd) }
                    return base.close(fd)
                },
                renameat: base.renameat, unlinkat: base.unlinkat, ftruncate: base.ftruncate,
                datasync: base.datasync)
        }
    }

    /// What the NFS server does when a lease lapses: the paused writer's commit locks are gone
    /// (its descriptors stay open, so its own release later is harmless).
    static func dropCommitLocks(under dir: String) throws -> Int {
        let resolved = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        var dropped = 0
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            guard let fd = Int32(entry),
                let target = try? FileManager.default.destinationOfSymbolicLink(
                    atPath: "/proc/self/fd/" + entry),
                target.hasPrefix(resolved + "/") || target.hasPrefix(dir + "/"),
                target.hasSuffix("/.commit.lock")
            else { continue }
            if flock(fd, LOCK_UN) == 0 { dropped += 1 }
        }
        return dropped
    }

    static func waitUntilPaused(_ gate: PausedAppend) async throws {
        for _ in 0..<2000 where !gate.isPaused { try await Task.sleep(for: .milliseconds(5)) }
        #expect(gate.isPaused, "the writer reached its append")
    }

    /// The storage's own answer: `append` reports the mismatch, and the stray frame is ignored and
    /// then cut.
    @Test func aStrayAppendIsAMismatchThatReadersIgnoreAndTheNextWriterCuts() async throws {
        let dir = try TemporaryDirectory("lost-commit-lock")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        let key = try UserKeys().key(for: "alice")
        let gate = PausedAppend(userPath: try F.userPath(dir.path))
        let paused = try PathStorage(root: dir.path, io: gate.io, framesInPlace: false)
        let current = try #require(try await paused.get(key))
        let (record, layout) = try RecordCodec().decodeFile(current.bytes)
        #expect(record == old)
        var mine = record
        try mine.upsert(F.txn("from-a"))
        mine.revision += 1
        let frame = try #require(
            RecordCodec().encodeChange(from: record, to: mine, appendingTo: layout, id: .random()))
        let a = Task { try await paused.append(key, bytes: frame.bytes, expected: current.version) }
        try await Self.waitUntilPaused(gate)
        #expect(try Self.dropCommitLocks(under: dir.path) == 1)

        // Another writer takes the lock and appends: acknowledged.
        let other = try await F.store(dir.path, locking: "none", framesInPlace: false)
        let b = try await other.update("alice") { try $0.upsert(F.txn("from-b")) }
        #expect(b.outcome == .committed)
        gate.release()
        await #expect(throws: VersionMismatchError.self) { _ = try await a.value }

        // The stray frame is in the file, after B's, and nobody reads it.
        let bytes = try F.userBytes(dir.path)
        let strayLayout = try F.layout(dir.path)
        #expect(bytes.count == strayLayout.validLength + frame.bytes.count, "the stray frame landed last")
        #expect(strayLayout.ignoredLength == frame.bytes.count)
        #expect(try RecordCodec().decodeFile(bytes).record == b.record)
        #expect(try await F.store(dir.path).get("alice") == b.record)
        #expect(try await other.get("alice") == b.record, "a cached reader")
        let bVersion = try #require(try await paused.get(key)).version
        #expect(try await paused.getIfChanged(key, cached: bVersion) == .unchanged)

        // The next writer cuts it and appends after B's frame.
        let c = try await F.store(dir.path, framesInPlace: false).update("alice") {
            try $0.upsert(F.txn("from-c"))
        }
        let final = try F.layout(dir.path)
        #expect(try final.ignoredLength == 0 && F.userBytes(dir.path).count == final.validLength)
        let now = try await F.store(dir.path).get("alice")
        #expect(now == c.record && now.revision == old.revision + 2)
        #expect(Set(now.transactions.map(\.id)).isSuperset(of: ["f1", "f2", "from-b", "from-c"]))
        #expect(!now.transactions.contains { $0.id == "from-a" })
    }

    /// Through the engine: the paused update is retried after the mismatch, so both updates are
    /// in the file once each, and neither acknowledged update is lost.
    @Test(arguments: ["none", "local"])
    func aPausedUpdateIsRetriedAndNothingAcknowledgedIsLost(locking: String) async throws {
        let dir = try TemporaryDirectory("lost-commit-lock-store")
        defer { dir.remove() }
        let old = try await F.seedWithFrames(dir.path)
        let gate = PausedAppend(userPath: try F.userPath(dir.path))
        let conflicts = CarbonStore.Locked(0)
        var options = StoreOptions()
        options.fileIO = gate.io
        options.framesInPlace = false
        options.events = StoreEvents(fenceConflict: { _ in conflicts.withLock { $0 += 1 } })
        // Its own lock service (locking=local in another process): only the commit lock is shared.
        let paused = try await StoreFactory(options: options).makeStore("path:\(dir.path)?locking=none")
        let a = Task { try await paused.update("alice") { try $0.upsert(F.txn("from-a")) } }
        try await Self.waitUntilPaused(gate)
        #expect(try Self.dropCommitLocks(under: dir.path) == 1)
        let other = try await F.store(dir.path, locking: locking, framesInPlace: false)
        let b = try await other.update("alice") { try $0.upsert(F.txn("from-b")) }
        #expect(b.outcome == .committed && b.record.revision == old.revision + 1)
        gate.release()
        let done = try await a.value
        #expect(done.outcome == .committed, "acknowledged only after its retry landed")
        #expect(conflicts.withLock { $0 } == 1, "the stray append was reported as a conflict")

        // At its retry the writer found its stray frame after B's, ignored by the decoder.
        let seen = try #require(gate.seenAtRetry)
        let (seenRecord, seenLayout) = try RecordCodec().decodeFile(seen)
        #expect(seenRecord == b.record && seenLayout.ignoredLength > 0)

        let now = try await F.store(dir.path).get("alice")
        #expect(now == done.record && now.revision == old.revision + 2)
        #expect(now.transactions.filter { $0.id == "from-a" }.count == 1)
        #expect(now.transactions.contains { $0.id == "from-b" })
        let final = try F.layout(dir.path)
        #expect(final.ignoredLength == 0 && final.frameCount == 4)
    }
}
