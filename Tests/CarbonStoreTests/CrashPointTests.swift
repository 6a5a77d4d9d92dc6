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

    var testDescription: String { spec }
    var isCrash: Bool { spec.hasPrefix("crash:") }

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

    static let all = crashes + failures
}

enum CrashPointFixtures {
    static func txn(_ id: String, minor: Int64 = 100) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    /// A store on `dir` whose file writes go through `io`.
    static func store(_ dir: String, io: FileIO = .posix, locking: String = "local") async throws -> Store {
        var options = StoreOptions()
        options.fileIO = io
        return try await StoreFactory(options: options).makeStore("path:\(dir)?locking=\(locking)")
    }

    /// A user with a few transactions (revision 1), enough bytes for a short write to matter.
    static func seed(_ dir: String) async throws -> UserRecord {
        let store = try await store(dir)
        return try await store.update("alice") { record in
            for i in 0..<20 { _ = try record.upsert(txn("t\(i)", minor: Int64(i))) }
        }.record
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

    @Test(arguments: FaultCase.all)
    func updateWithFault(_ c: FaultCase) async throws {
        let dir = try TemporaryDirectory("fault-update")
        defer { dir.remove() }
        let old = try await F.seed(dir.path)
        let injector = FileFaultInjector(try FileFault(parsing: c.spec), crashMode: .simulate)
        let faulty = try await F.store(dir.path, io: injector.io)
        let outcome = await F.error { try await faulty.update("alice") { try $0.upsert(F.txn("new")) } }
        #expect(injector.hasFired, "the fault never fired")
        if c.succeeds {
            #expect(outcome == nil)
        } else {
            #expect(outcome != nil, "a faulty write reported success")
        }
        if let code = c.errno, let operation = c.failedOperation {
            let error = try #require(outcome as? StorageIOError, "\(String(describing: outcome))")
            #expect(error.errno == code)
            #expect(error.operation.hasPrefix(operation))
            #expect(error.description.contains("(errno \(code))") && !error.description.contains("\n"))
        }
        #expect(injector.hasCrashed == c.isCrash)

        let clean = try await F.store(dir.path)
        let now = try await clean.get("alice")
        #expect(now.revision == (c.leavesNewRevision ? 2 : 1))
        #expect(now.transactions.contains { $0.id == "new" } == c.leavesNewRevision)
        if !c.leavesNewRevision { #expect(now == old) }
        #expect(try F.temporaryFiles(dir.path).count == c.temporaryFilesLeft)

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
        let faulty = try await F.store(dir.path, io: injector.io)
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
        let faulty = try await F.store(dir.path, io: injector.io)
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

    @Test(arguments: FaultCase.all)
    func updateInAProcessWithFault(_ c: FaultCase) async throws {
        let dir = try TemporaryDirectory("crash-proc")
        defer { dir.remove() }
        let clean = try CommandRunner(environment: ["CARBONSTORE_STORAGE": "path:" + dir.path])
        let faulty = try CommandRunner(
            .testHost,
            environment: [
                "CARBONSTORE_STORAGE": "path:" + dir.path, "CARBONSTORE_TEST_FILE_FAULT": c.spec,
            ])
        let first = try clean.run(Self.add("t1"))
        #expect(first.status == 0, "\(first.stderr)")
        let old = try await F.store(dir.path).get("alice")

        let out = try faulty.run(Self.add("t2"))
        if c.isCrash {
            #expect(out.status == FileFault.crashExitStatus, "\(out.stderr)")
            #expect(out.stdout.isEmpty)
            #expect(out.stderr.contains("test fault \(c.spec): crashing now"))
        } else if c.succeeds {
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
        if c.leavesNewRevision {
            #expect(now.revision == 2 && now.transactions.map(\.id) == ["t1", "t2"])
        } else {
            #expect(now == old)
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
