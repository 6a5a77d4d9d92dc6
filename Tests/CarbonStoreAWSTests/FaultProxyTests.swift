import AWSClient
import AWSSigning
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// The fault proxy against a loopback server: forwarding and each fault, seen over HTTP.
@Suite struct FaultProxyForwardingTests {
    let transport = AsyncHTTPTransport.shared

    @Test func forwardsTheRequestAndTheAnswerAsTheyCame() async throws {
        let upstream = try await LoopbackHTTPServer.start { request in
            HTTPResponseSpec(
                status: 207, headers: [("ETag", "\"abc\""), ("X-Echo", request.header("X-Custom") ?? "")],
                body: Array("answer to \(request.method)".utf8))
        }
        let proxy = try await FaultProxy.start(upstream: upstream.baseURL, plan: .none, seed: 1)
        let uri = "/bucket/a%2Fb%20c/%E2%82%AC~x?list-type=2&prefix=a%2Fb&empty=&flag"
        func request(to base: URL) -> HTTPRequest {
            HTTPRequest(
                method: "PUT", url: URL(string: base.absoluteString + uri)!,
                headers: [
                    HTTPHeader("X-Custom", "v 1"), HTTPHeader("x-amz-date", "20240101T000000Z"),
                    HTTPHeader("Authorization", "AWS4-HMAC-SHA256 Credential=x"),
                ], body: [0, 1, 2, 255])
        }
        // The same request straight to the server, then through the proxy: the server must see
        // the same thing, but for Host, which is the address the client used (and signed).
        _ = try await transport.send(request(to: upstream.baseURL), timeout: .seconds(5))
        let response = try await transport.send(request(to: proxy.baseURL), timeout: .seconds(5))
        #expect(response.status == 207)
        #expect(response.header("ETag") == "\"abc\"" && response.header("X-Echo") == "v 1")
        #expect(response.bodyText == "answer to PUT")

        let received = upstream.requests
        try #require(received.count == 2)
        let (direct, proxied) = (received[0], received[1])
        #expect(proxied.method == direct.method)
        #expect(proxied.uri == direct.uri)
        #expect(proxied.uri == uri)
        #expect(proxied.body == [0, 1, 2, 255])
        #expect(proxied.header("Host") == "127.0.0.1:\(proxy.baseURL.port!)")
        #expect(direct.header("Host") == "127.0.0.1:\(upstream.port)")
        let withoutHost = { (r: RecordedRequest) in
            r.headers.filter { $0.name.lowercased() != "host" }.map { "\($0.name): \($0.value)" }
        }
        #expect(withoutHost(proxied) == withoutHost(direct))
        #expect(proxy.forwarded == 1 && proxy.counts.isEmpty)
        try await proxy.shutdown()
        try await upstream.shutdown()
    }

    @Test func decisionsAreDeterministicGivenTheSeed() {
        let plan = FaultPlan.mixed(0.15)
        func run(_ seed: UInt64) -> [FaultDecision] {
            (0..<2000).map { plan.decide(seed: seed, request: $0, target: .s3, operation: "PutObject") }
        }
        #expect(run(42) == run(42))
        #expect(run(42) != run(43))
        let decisions = run(7)
        for kind in FaultKind.exclusive {
            let n = decisions.filter { $0.fault == kind }.count
            #expect((200...400).contains(n), "\(kind): \(n) of 2000 at p=0.15")
        }
        let slow = decisions.filter { $0.latency != nil }
        #expect((200...400).contains(slow.count))
        #expect(slow.allSatisfy { $0.latency! >= .zero && $0.latency! <= .milliseconds(50) })
        // Filters: other targets and operations pass untouched.
        var only = FaultPlan.always(.serverError, targets: [.dynamoDB], operations: ["PutItem"])
        #expect(
            only.decide(seed: 1, request: 0, target: .dynamoDB, operation: "PutItem").fault == .serverError)
        #expect(only.decide(seed: 1, request: 0, target: .dynamoDB, operation: "GetItem").fault == nil)
        #expect(only.decide(seed: 1, request: 0, target: .s3, operation: "PutItem").fault == nil)
        only.probabilities[.throttle] = 0.5
        #expect(throws: FaultPlanError.self) { try only.validate() }
    }

    @Test func classifiesRequests() {
        func op(_ method: String, _ uri: String, _ headers: [(name: String, value: String)] = []) -> String {
            FaultProxy.classify(RecordedRequest(method: method, uri: uri, headers: headers, body: []))
                .operation
        }
        #expect(op("POST", "/", [("X-Amz-Target", "DynamoDB_20120810.PutItem")]) == "PutItem")
        #expect(op("PUT", "/b/87/22/alice.cstore") == "PutObject")
        #expect(op("GET", "/b/k") == "GetObject")
        #expect(op("DELETE", "/b/k") == "DeleteObject")
        #expect(op("GET", "/b?list-type=2&prefix=p%2F") == "ListObjectsV2")
        #expect(op("HEAD", "/b") == "HeadBucket")
        #expect(op("PUT", "/b") == "CreateBucket")
        #expect(op("PUT", "/b?encryption") == "PutBucket?encryption")
    }

    @Test(arguments: [
        FaultKind.dropBeforeSend, .dropAfterSend, .throttle, .serverError, .serverErrorAfterApply,
    ])
    func eachFaultIsObservable(kind: FaultKind) async throws {
        let upstream = try await LoopbackHTTPServer.start { _ in .text("ok") }
        let proxy = try await FaultProxy.start(upstream: upstream.baseURL, plan: .always(kind), seed: 9)
        defer {
            Task {
                try? await proxy.shutdown(); try? await upstream.shutdown()
            }
        }
        let s3 = HTTPRequest(method: "PUT", url: proxy.baseURL.appending(path: "bucket/key"), body: [1])
        let dynamo = HTTPRequest(
            method: "POST", url: proxy.baseURL,
            headers: [
                HTTPHeader("X-Amz-Target", "DynamoDB_20120810.PutItem"),
                HTTPHeader("Content-Type", "application/x-amz-json-1.0"),
            ], body: Array("{}".utf8))
        for request in [s3, dynamo] {
            let before = upstream.requestCount
            let outcome: Result<HTTPResponse, any Error>
            do {
                outcome = .success(try await transport.send(request, timeout: .seconds(5)))
            } catch {
                outcome = .failure(error)
            }
            let reached = upstream.requestCount - before
            let isDynamo = request.method == "POST"
            switch (kind, outcome) {
            case (.dropBeforeSend, .failure(let e)):
                #expect(e is TransportError && reached == 0)
            case (.dropAfterSend, .failure(let e)):
                #expect(e is TransportError && reached == 1)
            case (.throttle, .success(let r)):
                #expect(reached == 0)
                if isDynamo {
                    #expect(r.status == 400 && r.bodyText.contains("#ThrottlingException"))
                } else {
                    #expect(r.status == 503 && r.bodyText.contains("<Code>SlowDown</Code>"))
                }
            case (.serverError, .success(let r)), (.serverErrorAfterApply, .success(let r)):
                #expect(r.status == 500)
                #expect(reached == (kind == .serverErrorAfterApply ? 1 : 0))
                let code = isDynamo ? "#InternalServerError" : "<Code>InternalError</Code>"
                #expect(r.bodyText.contains(code))
            default:
                Issue.record("\(kind) on \(request.method): unexpected \(outcome)")
            }
        }
        #expect(proxy.counts == [kind: 2])
        #expect(proxy.events.map(\.fault) == [kind, kind])
    }

    @Test func latencyDelaysButForwards() async throws {
        let upstream = try await LoopbackHTTPServer.start { _ in .text("ok") }
        let proxy = try await FaultProxy.start(
            upstream: upstream.baseURL, plan: .always(.latency, maxLatency: .milliseconds(300)), seed: 3)
        defer {
            Task {
                try? await proxy.shutdown(); try? await upstream.shutdown()
            }
        }
        for _ in 0..<3 {
            let r = try await transport.send(
                HTTPRequest(method: "GET", url: proxy.baseURL), timeout: .seconds(5))
            #expect(r.status == 200 && r.bodyText == "ok")
        }
        #expect(proxy.counts == [.latency: 3] && proxy.forwarded == 3)
    }
}

/// The fault proxy in front of moto: what each fault does to the AWS clients and to the data, and a
/// store under a mix of every fault.
@Suite(AWSTestEnvironment.enabled) struct FaultProxyTests {
    /// Clients straight to moto (for checking) and through the proxy with retries off.
    static func clients(_ env: AWSTestEnvironment, proxy: FaultProxy, retry: RetryPolicy) async throws -> (
        direct: AWSBackends.Clients, faulty: AWSBackends.Clients
    ) {
        let direct = try await env.backends().clients(region: env.region, endpoint: env.endpoint)
        let faulty = try await AWSBackends(environment: env.engineEnvironment(), retry: retry)
            .clients(region: env.region, endpoint: proxy.baseURL.absoluteString)
        return (direct, faulty)
    }

    enum Outcome: CustomStringConvertible {
        case ok
        case failed(any Error)
        var succeeded: Bool {
            if case .ok = self { return true }
            return false
        }
        var error: (any Error)? {
            if case .failed(let e) = self { return e }
            return nil
        }
        var description: String {
            switch self {
            case .ok: return "ok"
            case .failed(let e): return "\(type(of: e)): \(e)"
            }
        }
    }

    static func outcome(_ body: () async throws -> Void) async -> Outcome {
        do {
            try await body()
            return .ok
        } catch {
            return .failed(error)
        }
    }

    @Test(arguments: FaultKind.allCases)
    func eachFaultThroughTheAWSClients(kind: FaultKind) async throws {
        let env = try AWSTestEnvironment.get()
        let proxy = try await FaultProxy.start(
            upstream: URL(string: env.endpoint)!, plan: .always(kind), seed: 11)
        defer { Task { try? await proxy.shutdown() } }
        let (direct, faulty) = try await Self.clients(env, proxy: proxy, retry: RetryPolicy(maxAttempts: 1))
        let key = AWSTestEnvironment.uniquePrefix("fault-\(kind)") + "object"
        let lockID = "fault-proxy-test/\(key)"

        let put = await Self.outcome {
            _ = try await faulty.s3.putObject(bucket: env.bucket, key: key, body: [7, 7, 7])
        }
        let putItem = await Self.outcome {
            try await faulty.dynamo.putItem(
                table: env.table, item: ["id": .s(lockID), "op": .s("x")],
                condition: DynamoExpression("attribute_not_exists(id)"))
        }
        let stored = try await direct.s3.getObject(bucket: env.bucket, key: key)?.body
        let item = try await direct.dynamo.getItem(table: env.table, key: ["id": .s(lockID)])
        print("fault proxy \(kind): PutObject → \(put); PutItem → \(putItem); \(proxy.summary)")

        let applied = [.latency, .dropAfterSend, .serverErrorAfterApply].contains(kind)
        #expect((stored == [7, 7, 7]) == applied, "\(kind): object written: \(stored != nil)")
        #expect((item?["op"] == .s("x")) == applied, "\(kind): item written: \(item != nil)")
        for (name, result) in [("PutObject", put), ("PutItem", putItem)] {
            let isS3 = name == "PutObject"
            switch (kind, result) {
            case (.latency, .ok): break
            case (.dropBeforeSend, .failed(let e as AWSUnreachableError)),
                (.dropAfterSend, .failed(let e as AWSUnreachableError)):
                #expect(e.attempts == 1 && e.operation == name)
            case (.throttle, .failed(let e as AWSError)):
                #expect(e.isThrottling && e.isRetryable)
                #expect(
                    isS3
                        ? (e.statusCode == 503 && e.code == "SlowDown")
                        : (e.statusCode == 400 && e.code == "ThrottlingException"))
            case (.serverError, .failed(let e as AWSError)),
                (.serverErrorAfterApply, .failed(let e as AWSError)):
                #expect(e.statusCode == 500 && e.isRetryable && !e.isThrottling)
                #expect(e.code == (isS3 ? "InternalError" : "InternalServerError"))
            default:
                Issue.record("\(kind) on \(name): unexpected \(result)")
            }
        }

        // With retries on and the fault injected once: the retry absorbs it, except that a
        // conditional write whose answer was lost after it applied fails its own condition when
        // repeated. The callers handle that: S3Storage's 412 makes the store re-read and find its
        // update there; the lock service reads the item and finds its own op.
        try proxy.setPlan(FaultPlan.always(kind, maxFaults: 1))
        let (_, retrying) = try await Self.clients(env, proxy: proxy, retry: RetryPolicy(maxAttempts: 3))
        let key2 = key + "-retried"
        let put2 = await Self.outcome {
            _ = try await retrying.s3.putObject(
                bucket: env.bucket, key: key2, body: [8], precondition: .ifNoneMatchAny)
        }
        try proxy.setPlan(FaultPlan.always(kind, maxFaults: 1))
        let putItem2 = await Self.outcome {
            try await retrying.dynamo.putItem(
                table: env.table, item: ["id": .s(lockID + "-retried"), "op": .s("y")],
                condition: DynamoExpression("attribute_not_exists(id)"))
        }
        print("fault proxy \(kind), retried: PutObject → \(put2); PutItem → \(putItem2)")
        #expect(try await direct.s3.getObject(bucket: env.bucket, key: key2)?.body == [8])
        #expect(
            try await direct.dynamo.getItem(table: env.table, key: ["id": .s(lockID + "-retried")])?["op"]
                == .s("y"))
        if applied && kind != .latency {
            if case .failed(let e as AWSError) = put2 {
                #expect(e.statusCode == 412)
            } else {
                Issue.record("\(kind): the repeated PutObject should fail its own If-None-Match: \(put2)")
            }
            #expect(
                putItem2.error.map(DynamoDBClient.isConditionFailure) == true,
                "\(kind): the repeated PutItem should fail its own condition: \(putItem2)")
        } else {
            #expect(put2.succeeded, "\(kind): \(put2)")
            #expect(putItem2.succeeded, "\(kind): \(putItem2)")
        }
        try await direct.dynamo.deleteItem(table: env.table, key: ["id": .s(lockID)])
        try await direct.dynamo.deleteItem(table: env.table, key: ["id": .s(lockID + "-retried")])
    }

    /// The lock service through lost answers: a PutItem that applied but whose answer was lost is
    /// recognised by its op on the retry; a DeleteItem likewise (the retry's condition fails, which
    /// release treats as done).
    @Test(arguments: [FaultKind.dropAfterSend, .serverErrorAfterApply])
    func lockServiceRecognisesItsOwnLostWrites(kind: FaultKind) async throws {
        let env = try AWSTestEnvironment.get()
        let proxy = try await FaultProxy.start(upstream: URL(string: env.endpoint)!, plan: .none, seed: 5)
        let (direct, faulty) = try await Self.clients(env, proxy: proxy, retry: RetryPolicy(maxAttempts: 3))
        let namespace = "fault-proxy-test/" + AWSTestEnvironment.uniquePrefix("lock-\(kind)")
        let locks = DynamoDBLockService(dynamo: faulty.dynamo, table: env.table, namespace: namespace)
        try proxy.setPlan(.always(kind, operations: ["PutItem"], maxFaults: 1))
        let lease = try await locks.acquire("u", userID: "u", wait: .seconds(2))
        let item = try await direct.dynamo.getItem(table: env.table, key: ["id": .s(namespace + "u")])
        #expect(item?["op"] == .s(lease.operationID))
        try proxy.setPlan(.always(kind, operations: ["DeleteItem"], maxFaults: 1))
        try await locks.release(lease)
        #expect(try await direct.dynamo.getItem(table: env.table, key: ["id": .s(namespace + "u")]) == nil)
        #expect(proxy.counts[kind] == 2)
        try await proxy.shutdown()
    }

    /// When the lock is held and reading the holder fails, acquire fails with an engine error of
    /// kind `unavailable` (exit code 6, HTTP 503), like every other AWS failure. Before the fix in
    /// `DynamoDBLockService.currentHolder`, the raw `AWSError` escaped `acquire` unwrapped (its
    /// catch-all clause does not see errors thrown inside the condition-failure clause), and the
    /// CLI reported it with exit code 1.
    @Test func failedHolderReadIsAnUnavailableStoreError() async throws {
        let env = try AWSTestEnvironment.get()
        let proxy = try await FaultProxy.start(
            upstream: URL(string: env.endpoint)!, plan: .always(.serverError, operations: ["GetItem"]),
            seed: 5)
        let (direct, faulty) = try await Self.clients(env, proxy: proxy, retry: RetryPolicy(maxAttempts: 1))
        let namespace = "fault-proxy-test/" + AWSTestEnvironment.uniquePrefix("held")
        let holder = DynamoDBLockService(
            dynamo: direct.dynamo, table: env.table, namespace: namespace, leaseDuration: .seconds(30))
        let lease = try await holder.acquire("u", userID: "u", wait: .seconds(1))
        let waiter = DynamoDBLockService(dynamo: faulty.dynamo, table: env.table, namespace: namespace)
        do {
            _ = try await waiter.acquire("u", userID: "u", wait: .seconds(1))
            Issue.record("acquired a held lock")
        } catch let e as any CarbonStoreError {
            #expect(e.kind == .unavailable, "\(e)")
        } catch {
            Issue.record("the GetItem failure escaped unwrapped: \(type(of: error)): \(error)")
        }
        try await holder.release(lease)
        try await proxy.shutdown()
    }

    /// Several tasks upsert transactions with unique ids into one user through the proxy while it
    /// injects every fault at 12%: no acknowledged update is lost, none is applied twice, and every
    /// update that threw is either wholly there or wholly absent.
    @Test func storeLosesAndDuplicatesNothingUnderFaults() async throws {
        var env = try AWSTestEnvironment.get()
        let seed = UInt64(ProcessInfo.processInfo.environment["FAULT_PROXY_SEED"] ?? "") ?? 20_240_611
        var plan = FaultPlan.mixed(0.12, maxLatency: .milliseconds(40))
        plan.probabilities[.latency] = 0.25
        let proxy = try await FaultProxy.start(upstream: URL(string: env.endpoint)!, plan: plan, seed: seed)
        defer { Task { try? await proxy.shutdown() } }
        let moto = env.endpoint
        env.endpoint = proxy.baseURL.absoluteString
        let prefix = AWSTestEnvironment.uniquePrefix("faults")
        // A short lease, so that a lock whose release was lost holds the others up briefly.
        let uri = env.s3URI(prefix: prefix, extra: "&lease=1500&wait=20000")
        let backends = AWSBackends(
            environment: env.engineEnvironment(),
            retry: RetryPolicy(maxAttempts: 6, baseDelay: .milliseconds(10), maxDelay: .milliseconds(200)))
        let store = try await backends.storeFactory().makeStore(uri)

        struct Results: Sendable {
            var acknowledged: [String] = []
            var failed: [(id: String, error: String)] = []
        }
        let tasks = 4
        let perTask = 10
        let r = await withTaskGroup(of: Results.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    var mine = Results()
                    for a in 0..<perTask {
                        let id = "t\(t)-\(a)"
                        do {
                            try await store.update("shared") { try $0.upsert(S3StoreTests.txn(id)) }
                            mine.acknowledged.append(id)
                        } catch {
                            mine.failed.append((id, "\(type(of: error)): \(error)"))
                        }
                    }
                    return mine
                }
            }
            var all = Results()
            for await part in group {
                all.acknowledged += part.acknowledged
                all.failed += part.failed
            }
            return all
        }
        let faultsDuringRun = proxy.summary
        try proxy.setPlan(.none)

        // Check straight against moto.
        env.endpoint = moto
        let checker = try await env.store(env.s3URI(prefix: prefix))
        let record = try await checker.get("shared")
        let ids = record.transactions.map(\.id)
        let present = Set(ids)
        let lost = r.acknowledged.filter { !present.contains($0) }
        let duplicated = Dictionary(grouping: ids, by: { $0 }).filter { $0.value.count > 1 }.keys.sorted()
        let failedPresent = r.failed.filter { present.contains($0.id) }
        let failedAbsent = r.failed.filter { !present.contains($0.id) }
        let unexpected = present.subtracting(r.acknowledged).subtracting(r.failed.map(\.id))

        print(faultsDuringRun)
        print(
            "fault proxy store run: \(r.acknowledged.count) acknowledged, \(r.failed.count) failed (\(failedPresent.count) applied, \(failedAbsent.count) not applied); record revision \(record.revision), \(ids.count) transactions"
        )
        for f in r.failed {
            print("  failed \(f.id) [\(present.contains(f.id) ? "applied" : "not applied")]: \(f.error)")
        }
        let stale = try await env.lockItems(namespacePrefix: "s3://\(env.bucket)/\(prefix)")
        if !stale.isEmpty { print("  lock items left behind: \(stale.count) (they expire with their lease)") }

        #expect(lost.isEmpty, "acknowledged but lost: \(lost)")
        #expect(duplicated.isEmpty, "duplicated: \(duplicated)")
        #expect(unexpected.isEmpty, "never written by anyone: \(unexpected)")
        #expect(record.transactions.allSatisfy { $0 == S3StoreTests.txn($0.id) }, "a transaction was altered")
        // One revision per transaction added: no update was committed twice.
        #expect(record.revision == ids.count)
        #expect(r.acknowledged.count + r.failed.count == tasks * perTask)
        #expect(proxy.upstreamFailures == 0)
        let counts = proxy.counts
        #expect(
            FaultKind.allCases.allSatisfy { (counts[$0] ?? 0) > 0 }, "every fault was injected: \(counts)")
    }
}

/// Lock items not written by an engine: without `expires` they hold nobody; with an `expires` that
/// is not epoch milliseconds the lease never ends, and the timeout says so and how to clear it (it
/// said the lease had ended 57 years ago).
@Suite(AWSTestEnvironment.enabled) struct MalformedLockItemTests {
    @Test func anItemWithoutExpiresIsTakenOver() async throws {
        let env = try AWSTestEnvironment.get()
        let dynamo = try await env.backends().clients(region: env.region, endpoint: env.endpoint).dynamo
        let namespace = "malformed/" + AWSTestEnvironment.uniquePrefix("noexp")
        try await dynamo.putItem(
            table: env.table, item: ["id": .s(namespace + "u"), "op": .s("planted"), "owner": .s("someone")])
        let locks = DynamoDBLockService(dynamo: dynamo, table: env.table, namespace: namespace)
        let lease = try await locks.acquire("u", userID: "u", wait: .seconds(2))
        try await locks.release(lease)
    }

    @Test(arguments: ["99999999999999999999999999999", "1e29"])
    func anExpiryThatIsNotEpochMillisecondsIsNamedWithItsRemedy(expires: String) async throws {
        let env = try AWSTestEnvironment.get()
        let dynamo = try await env.backends().clients(region: env.region, endpoint: env.endpoint).dynamo
        let namespace = "malformed/" + AWSTestEnvironment.uniquePrefix("badexp")
        try await dynamo.putItem(
            table: env.table,
            item: [
                "id": .s(namespace + "u"), "op": .s("planted"), "owner": .s("h pid 1"),
                "expires": .n(expires),
            ])
        defer { Task { try? await dynamo.deleteItem(table: env.table, key: ["id": .s(namespace + "u")]) } }
        let locks = DynamoDBLockService(dynamo: dynamo, table: env.table, namespace: namespace)
        let error = await #expect(throws: LockTimeoutError.self) {
            _ = try await locks.acquire("u", userID: "u", wait: .milliseconds(300))
        }
        let text = error?.description ?? ""
        #expect(text.contains("not a time in epoch milliseconds, so its lease never ends"), "\(text)")
        #expect(text.contains("aws dynamodb delete-item --table-name \(env.table)"), "\(text)")
        #expect(!text.contains("lease ends in -"), "\(text)")
    }

    /// The command given in the message survives a prefix with quotes: JSON inside shell quotes.
    @Test func theDeleteCommandsKeyIsQuotedForJSONAndTheShell() {
        #expect(
            DynamoDBLockService.shellQuotedKey(#"path:/d/o'k"/87/22/a.cstore"#)
                == #"{"id":{"S":"path:/d/o'\''k\"/87/22/a.cstore"}}"#)
    }

    @Test func aFractionalExpiryIsReadAsMilliseconds() {
        #expect(DynamoDBLockService.epochMilliseconds(.n("1795809278319.5")) == 1_795_809_278_319)
        #expect(DynamoDBLockService.epochMilliseconds(.n("1795809278319")) == 1_795_809_278_319)
        #expect(DynamoDBLockService.epochMilliseconds(.n("1e29")) == nil)
        #expect(DynamoDBLockService.epochMilliseconds(.s("soon")) == nil)
    }
}
