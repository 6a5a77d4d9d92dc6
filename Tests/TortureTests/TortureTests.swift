import AWSClient
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import CarbonTorture
import Foundation
import Testing

/// Short torture runs of every deployment, with faults, checked against the workers' histories;
/// and their negative controls: with the fence switched off the checker must find lost updates.
/// TORTURE_SECONDS sets the run length (default 60; docs/RELIABILITY.md has the long runs).
@Suite(.serialized) struct TortureTests {
    static let seconds = Int(ProcessInfo.processInfo.environment["TORTURE_SECONDS"] ?? "") ?? 60
    static let controlSeconds = min(seconds, 20)

    /// The moto server of this run, and the environment its torture workers get.
    struct AWS {
        var endpoint: String
        var table: String
        var bucket: String
        var environment: [String: String]

        init(_ moto: MotoEnvironment) {
            endpoint = moto.endpoint
            table = moto.table
            bucket = moto.bucket
            environment = moto.engineEnvironment()
        }

        static func get() throws -> AWS { AWS(try MotoEnvironment.get()) }
    }

    static var awsEnabled: ConditionTrait {
        .enabled(
            if: MotoEnvironment.testsEnabled,
            "needs moto: run through scripts/test.sh")
    }

    /// Runs the coordinator and returns its report, printed for the CI log.
    static func torture(
        _ label: String, uri: String, faults: Set<TortureFault>, seconds: Int, aws: AWS? = nil,
        unsafeNoFence: Bool = false,
        stopFor: Duration = .seconds(3), checkEndpoint: String? = nil, workers: Int = 4,
        tasksPerWorker: Int = 1, appendWindow: Duration = .zero, commitWindow: Duration = .milliseconds(20),
        compaction: String? = nil
    ) async throws -> TortureReport {
        let logs = try TemporaryDirectory("torture-logs")
        defer { logs.remove() }
        var config = TortureConfig(
            executable: try CommandRunner(.testHost).executable, storageURI: uri, logDirectory: logs.path)
        config.label = label
        config.duration = .seconds(seconds)
        config.faults = faults
        config.stopFor = stopFor
        config.unsafeNoFence = unsafeNoFence
        config.workers = workers
        config.tasksPerWorker = tasksPerWorker
        config.appendWindow = appendWindow
        config.commitWindow = commitWindow
        config.environment = aws?.environment ?? [:]
        if let compaction { config.environment["CARBONSTORE_TEST_COMPACTION"] = compaction }
        // moto with IAM enforcement cannot verify ListObjectsV2 with a prefix (scripts/with_moto.sh):
        // on s3: the checker reads the workers' users directly.
        config.checkListsStorage = !uri.hasPrefix("s3:")
        // The checker reads straight from storage (not through a fault proxy).
        var checkURI = uri
        if let checkEndpoint, let range = uri.range(of: "endpoint=") {
            let rest = uri[range.upperBound...]
            let end = rest.firstIndex(of: "&") ?? rest.endIndex
            checkURI = String(uri[..<range.upperBound]) + checkEndpoint + String(rest[end...])
        }
        let store = try await AWSBackends(environment: aws?.environment ?? [:]).storeFactory().makeStore(
            checkURI)
        let report = try await TortureCoordinator.run(config, checkWith: store)
        print("TORTURE \(report)")
        return report
    }

    static func expectClean(_ r: TortureReport) {
        #expect(r.passed, "\(r)")
        #expect(
            r.lost == 0 && r.duplicated == 0 && r.phantom == 0 && r.failedButPresent == 0 && r.unreadable == 0
        )
        #expect(r.acknowledged > 50, "the run did real work: \(r)")
    }

    @Test func pathWithLocalLocks() async throws {
        let dir = try TemporaryDirectory("torture-path")
        defer { dir.remove() }
        let r = try await Self.torture(
            "path: locking=local", uri: "path:\(dir.path)/data", faults: [.kill, .stop], seconds: Self.seconds
        )
        Self.expectClean(r)
        #expect(
            (r.faults["kill"] ?? 0) > 0
                && (r.faults["stop-in-commit-window"] ?? 0) + (r.faults["stop-random"] ?? 0) > 0)
    }

    /// `locking=none`: the fence is the only defence. Worker processes, killed and stopped.
    @Test func pathWithoutLocksFenceOnly() async throws {
        let dir = try TemporaryDirectory("torture-path-none")
        defer { dir.remove() }
        let r = try await Self.torture(
            "path: locking=none (fence only)", uri: "path:\(dir.path)/data?locking=none",
            faults: [.kill, .stop],
            seconds: min(Self.seconds, 30))
        Self.expectClean(r)
    }

    /// `locking=none` with many writers that are tasks of one process, as in a server: the case
    /// in which the inode-based version of old lost updates. With `io=threads` every blocking step
    /// of the storage runs on threads of its own, as on a network file system, so the tasks' steps
    /// overlap on up to 16 threads.
    @Test(arguments: ["none", "local"], ["task", "threads"])
    func pathManyTasksInOneProcess(locking: String, io: String) async throws {
        let dir = try TemporaryDirectory("torture-path-tasks")
        defer { dir.remove() }
        let logs = try TemporaryDirectory("torture-task-logs")
        defer { logs.remove() }
        let store = try await StoreFactory().makeStore("path:\(dir.path)/data?locking=\(locking)&io=\(io)")
        let tasks = 16
        let users = 3
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    guard let log = try? HistoryLog(path: logs.path + "/task\(t).log") else { return }
                    await TortureWorker.run(
                        store: store, workerID: "task\(t)", users: users, log: log,
                        duration: .seconds(min(Self.seconds, 20)))
                }
            }
        }
        var r = try await TortureChecker.check(store: store, logDirectory: logs.path, users: users)
        r.label = "path: locking=\(locking) io=\(io), \(tasks) tasks in one process"
        print("TORTURE \(r)")
        Self.expectClean(r)
        #expect(r.acknowledged > 500, "the tasks did real work: \(r)")
    }

    /// The append window and compaction under contention: worker processes of 4 tasks each (group
    /// commit), which pause after the append fence and after the append write; workers are killed
    /// and stopped inside those windows; the tail is compacted constantly (5% of the snapshot,
    /// 256 bytes), so appends, compactions and their faults interleave. With `io=threads`, as on a
    /// network file system, the steps of every operation run on threads of their own.
    @Test(arguments: ["none", "local"], ["task", "threads"])
    func pathAppendWindowAndCompaction(locking: String, io: String) async throws {
        let dir = try TemporaryDirectory("torture-path-append")
        defer { dir.remove() }
        let r = try await Self.torture(
            "path: locking=\(locking) io=\(io), 4 processes x 4 tasks, append-window faults, compaction 0.05:256",
            uri: "path:\(dir.path)/data?locking=\(locking)&io=\(io)", faults: [.killInWindow, .stop],
            seconds: min(Self.seconds, 15), tasksPerWorker: 4, appendWindow: .milliseconds(5),
            commitWindow: .milliseconds(1), compaction: "0.05:256")
        Self.expectClean(r)
        let inAppend = r.faults.filter {
            $0.key.hasSuffix("append-window") || $0.key.hasSuffix("before-datasync")
        }
        #expect(inAppend.values.reduce(0, +) > 0, "faults hit the append window: \(r)")
    }

    /// The negative control of the run above: without the fence, appends and compactions lose
    /// updates, and the checker finds them.
    @Test func pathNegativeControlAppendsWithoutFence() async throws {
        let dir = try TemporaryDirectory("torture-path-append-nc")
        defer { dir.remove() }
        let r = try await Self.torture(
            "NEGATIVE CONTROL path: locking=none, no fence, 4 processes x 4 tasks, compaction 0.05:256",
            uri: "path:\(dir.path)/data?locking=none", faults: [.killInWindow],
            seconds: min(Self.controlSeconds, 10), unsafeNoFence: true, tasksPerWorker: 4,
            appendWindow: .milliseconds(2), compaction: "0.05:256")
        #expect(r.lost > 0, "the checker catches lost updates: \(r)")
    }

    @Test func pathNegativeControlWithoutFenceOrLock() async throws {
        let dir = try TemporaryDirectory("torture-path-nc")
        defer { dir.remove() }
        let r = try await Self.torture(
            "NEGATIVE CONTROL path: locking=none, no fence", uri: "path:\(dir.path)/data?locking=none",
            faults: [.kill],
            seconds: Self.controlSeconds, unsafeNoFence: true)
        #expect(r.lost > 0, "the checker catches lost updates: \(r)")
    }

    @Test(Self.awsEnabled) func pathWithDynamoLocks() async throws {
        let aws = try AWS.get()
        let dir = try TemporaryDirectory("torture-efs")
        defer { dir.remove() }
        let uri =
            "path://\(dir.path)/data?locking=dynamo&table=\(aws.table)&endpoint=\(aws.endpoint)&lease=2000&wait=15000"
        let r = try await Self.torture(
            "path: locking=dynamo", uri: uri, faults: [.kill, .stop], seconds: Self.seconds, aws: aws)
        Self.expectClean(r)
        #expect((r.faults["stop-in-commit-window"] ?? 0) > 0)
    }

    @Test(Self.awsEnabled) func dynamoNegativeControlPausedHolderWithoutFence() async throws {
        let aws = try AWS.get()
        let dir = try TemporaryDirectory("torture-efs-nc")
        defer { dir.remove() }
        let uri =
            "path://\(dir.path)/data?locking=dynamo&table=\(aws.table)&endpoint=\(aws.endpoint)&lease=2000&wait=15000"
        let r = try await Self.torture(
            "NEGATIVE CONTROL path: locking=dynamo, no fence, stopped holders", uri: uri, faults: [.stop],
            seconds: Self.controlSeconds, aws: aws, unsafeNoFence: true)
        #expect(
            r.lost > 0, "a holder stopped past its lease overwrites the next writer without the fence: \(r)")
    }

    /// Workers reach moto through the fault-injecting proxy: latency, connections dropped before
    /// and after the request reached moto, throttling, and 500s before and after moto applied it;
    /// plus SIGKILL and SIGSTOP of workers.
    @Test(Self.awsEnabled) func s3WithDynamoLocksThroughFaultProxy() async throws {
        let aws = try AWS.get()
        let plan = FaultPlan(
            [
                .latency: 0.2, .dropBeforeSend: 0.02, .dropAfterSend: 0.02, .throttle: 0.03,
                .serverError: 0.02,
                .serverErrorAfterApply: 0.02,
            ], maxLatency: .milliseconds(100))
        let proxy = try await FaultProxy.start(
            upstream: URL(string: aws.endpoint)!, plan: plan, seed: 20_261_125)
        let prefix = "torture-\(UInt32.random(in: 0...UInt32.max))/"
        let uri =
            "s3:\(aws.bucket)?locking=dynamo&table=\(aws.table)&endpoint=\(proxy.baseURL.absoluteString)&prefix=\(prefix)&lease=2000&wait=15000"
        var r = try await Self.torture(
            "s3: locking=dynamo via fault proxy", uri: uri, faults: [.kill, .stop], seconds: Self.seconds,
            aws: aws,
            checkEndpoint: aws.endpoint)
        for (kind, n) in proxy.counts { r.faults["proxy-\(kind)"] = n }
        print("TORTURE \(r)")
        try await proxy.shutdown()
        Self.expectClean(r)
        #expect(proxy.counts.values.reduce(0, +) > 20, "faults were injected: \(proxy.summary)")
    }

    @Test(Self.awsEnabled) func proxyNegativeControlSlowWritesWithoutFence() async throws {
        // Writes delayed past the lease by the proxy overwrite the next writer's without the fence.
        let aws = try AWS.get()
        let plan = FaultPlan([.latency: 0.5], maxLatency: .milliseconds(3500), operations: ["PutObject"])
        let proxy = try await FaultProxy.start(upstream: URL(string: aws.endpoint)!, plan: plan, seed: 7)
        let prefix = "torture-nc-\(UInt32.random(in: 0...UInt32.max))/"
        let uri =
            "s3:\(aws.bucket)?locking=dynamo&table=\(aws.table)&endpoint=\(proxy.baseURL.absoluteString)&prefix=\(prefix)&lease=1000&wait=15000"
        let r = try await Self.torture(
            "NEGATIVE CONTROL s3: locking=dynamo via slow proxy, no fence", uri: uri, faults: [],
            seconds: Self.controlSeconds,
            aws: aws, unsafeNoFence: true, checkEndpoint: aws.endpoint)
        try await proxy.shutdown()
        #expect(r.lost > 0, "the checker catches the lost updates: \(r)")
    }
}
