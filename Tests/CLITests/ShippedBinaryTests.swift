import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// What ships carries no test switch: the reliability hooks live in `carbonstore-testhost` only.
@Suite struct ShippedBinaryTests {
    static let testVariables = [
        "CARBONSTORE_TEST_FILE_FAULT": "crash:after-rename",
        "CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS": "60000",
        "CARBONSTORE_TEST_UNSAFE_NO_FENCE": "1",
        "CARBONSTORE_TEST_COMMIT_WINDOW_MS": "60000",
    ]

    @Test func theShippedBinaryIgnoresTheTestVariables() async throws {
        let dir = try TemporaryDirectory("shipped")
        defer { dir.remove() }
        var env = Self.testVariables
        env["CARBONSTORE_STORAGE"] = "path:" + dir.path
        let shipped = try CommandRunner(environment: env)
        let start = ContinuousClock.now
        let out = try shipped.run(["txn", "add", "alice", "--id", "t1", "--amount", "1", "--currency", "EUR"])
        #expect(out.status == 0, "no crash fault fired: \(out.stderr)")
        #expect(!out.stderr.contains("pausing") && !out.stderr.contains("test fault"))
        #expect(ContinuousClock.now - start < .seconds(30), "no pause before the commit")
        // The same variables do act in the test host, which proves that they are the real ones.
        // (A new user: its first write is a snapshot, renamed into place, where the fault is set.)
        let host = try CommandRunner(.testHost, environment: env)
        let faulty = try host.run(["txn", "add", "bob", "--id", "t2", "--amount", "1", "--currency", "EUR"])
        #expect(faulty.status == FileFault.crashExitStatus, "\(faulty.stderr)")
    }

    @Test func theShippedBinaryHasNoTortureWorkerAndNoTestVariableNames() throws {
        let shipped = try CommandRunner()
        let out = try shipped.run(["torture", "worker"])
        #expect(out.status != 0, "no torture commands in what ships: \(out.stdout)")
        let binary = try Data(contentsOf: URL(fileURLWithPath: shipped.executable))
        for name in Self.testVariables.keys {
            #expect(binary.range(of: Data(name.utf8)) == nil, "the shipped binary mentions \(name)")
        }
        #expect(binary.range(of: Data("CARBONSTORE_TEST_".utf8)) == nil)
    }
}

@Suite struct FileInspectTests {
    @Test func aFIFOIsRefusedAtOnce() throws {
        let dir = try TemporaryDirectory("inspect-fifo")
        defer { dir.remove() }
        let fifo = dir.path + "/user.cstore"
        #expect(mkfifo(fifo, 0o600) == 0)
        let out = try CommandRunner().run(["file", "inspect", fifo])
        #expect(out.status == 64 && out.stderr.contains("not a regular file"), "\(out.stderr)")
    }
}
