import AWSClient
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The two seed deployments driven by separate `carbonstore` processes, as engine instances would.
@Suite(AWSTestEnvironment.enabled, .serialized) struct ProcessTests {
    enum Deployment: String, CaseIterable, Sendable {
        case s3Dynamo = "s3 + dynamo"
        case pathDynamo = "path + dynamo"
    }

    /// The storage URI and the lock namespace of a fresh deployment.
    static func deployment(
        _ d: Deployment, env: AWSTestEnvironment, dir: TemporaryDirectory, extra: String = ""
    )
        -> (uri: String, namespace: String)
    {
        switch d {
        case .s3Dynamo:
            let prefix = AWSTestEnvironment.uniquePrefix("procs")
            return (env.s3URI(prefix: prefix, extra: extra), "s3://\(env.bucket)/\(prefix)")
        case .pathDynamo:
            return (env.pathURI(dir: dir.path, extra: extra), "path:\(dir.path)/")
        }
    }

    @Test(arguments: Deployment.allCases)
    func fourProcessesTimesFiftyAddsLeaveExactly200(deployment: Deployment) async throws {
        let env = try AWSTestEnvironment.get()
        let dir = try TemporaryDirectory("aws-procs")
        defer { dir.remove() }
        let (uri, namespace) = Self.deployment(deployment, env: env, dir: dir)
        var environment = env.engineEnvironment()
        environment["CARBONSTORE_STORAGE"] = uri
        let runner = try CommandRunner(environment: environment)
        let scripts = (0..<4).map { p in
            (0..<50).map { a in
                "\(shellQuote(runner.executable)) txn add shared --id p\(p)-a\(a) --amount 1.\(p)\(a % 10) --currency EUR || exit 1"
            }.joined(separator: "\n")
        }
        let shells = try scripts.map { try runShell($0, environment: runner.environment) }
        for s in shells {
            s.waitUntilExit()
            #expect(s.terminationStatus == 0)
        }
        let store = try await env.store(uri)
        let record = try await store.get("shared")
        #expect(record.transactions.count == 200)
        #expect(Set(record.transactions.map(\.id)).count == 200)
        #expect(record.revision == 200)
        #expect(
            try await env.lockItems(namespacePrefix: namespace).isEmpty, "the lock table is empty afterwards")
    }

    @Test(arguments: Deployment.allCases)
    func killedLockHolderReleasesTheUserWhenItsLeaseExpires(deployment: Deployment) async throws {
        let env = try AWSTestEnvironment.get()
        let dir = try TemporaryDirectory("aws-kill")
        defer { dir.remove() }
        let (uri, namespace) = Self.deployment(
            deployment, env: env, dir: dir, extra: "&lease=2000&wait=15000")
        var environment = env.engineEnvironment()
        environment["CARBONSTORE_STORAGE"] = uri
        let runner = try CommandRunner(environment: environment)
        #expect(
            try runner.run(["txn", "add", "kim", "--id", "t0", "--amount", "1", "--currency", "EUR"]).status
                == 0)

        var holderEnv = runner.environment
        holderEnv["CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS"] = "60000"
        let holder = try CommandRunner(.testHost, environment: holderEnv).start([
            "txn", "add", "kim", "--id", "from-killed", "--amount", "1", "--currency", "EUR",
        ])
        try holder.waitForStderr(containing: "pausing", timeout: .seconds(20))
        #expect(try await env.lockItems(namespacePrefix: namespace).count == 1, "the holder has the lock")
        kill(holder.pid, SIGKILL)
        _ = holder.finish()

        let start = ContinuousClock.now
        let next = try runner.run(["txn", "add", "kim", "--id", "t1", "--amount", "1", "--currency", "EUR"])
        #expect(next.status == 0, "\(next.stderr)")
        let waited = ContinuousClock.now - start
        #expect(waited < .seconds(12), "the next writer got the user once the 2 s lease expired")
        let ids = try await env.store(uri).get("kim").transactions.map(\.id)
        #expect(Set(ids) == ["t0", "t1"])
        #expect(try await env.lockItems(namespacePrefix: namespace).isEmpty)
    }

    @Test(arguments: Deployment.allCases)
    func writerPausedPastItsLeaseCannotCommit(deployment: Deployment) async throws {
        let env = try AWSTestEnvironment.get()
        let dir = try TemporaryDirectory("aws-pause")
        defer { dir.remove() }
        let (uri, _) = Self.deployment(deployment, env: env, dir: dir, extra: "&lease=2000&wait=15000")
        var environment = env.engineEnvironment()
        environment["CARBONSTORE_STORAGE"] = uri
        let runner = try CommandRunner(environment: environment)
        #expect(
            try runner.run(["txn", "add", "pat", "--id", "t0", "--amount", "1", "--currency", "EUR"]).status
                == 0)

        // The writer stops right before its conditional write, with the lease checked and valid.
        var slowEnv = runner.environment
        slowEnv["CARBONSTORE_TEST_PAUSE_BEFORE_COMMIT_MS"] = "300"
        let paused = try CommandRunner(.testHost, environment: slowEnv).start([
            "txn", "add", "pat", "--id", "from-paused", "--amount", "1", "--currency", "EUR",
        ])
        try paused.waitForStderr(containing: "pausing", timeout: .seconds(20))
        kill(paused.pid, SIGSTOP)
        // Another writer gets the user once the lease has expired, and commits.
        let other = try runner.run([
            "txn", "add", "pat", "--id", "from-other", "--amount", "1", "--currency", "EUR",
        ])
        #expect(other.status == 0, "\(other.stderr)")
        kill(paused.pid, SIGCONT)
        let out = paused.finish()
        #expect(out.status == 6, "the paused writer fails: \(out.stderr)")
        #expect(out.stderr.contains("expired before the update was committed"))

        let ids = try await env.store(uri).get("pat").transactions.map(\.id)
        #expect(
            Set(ids) == ["t0", "from-other"], "nobody's update was lost and the stale one was not written")
    }
}
