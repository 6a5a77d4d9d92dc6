import AWSClient
import AWSSigning
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// `S3Storage.getIfChanged` against a loopback fake of S3: what is sent, and how each answer is read.
@Suite struct S3ConditionalReadTests {
    static let credentials = StaticCredentialProvider(
        AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret"))

    static func storage(_ server: LoopbackHTTPServer, metrics: RequestMetrics? = nil) -> S3Storage {
        S3Storage(
            s3: S3Client(
                client: AWSServiceClient(
                    service: "s3", region: "eu-west-1", endpoint: server.baseURL, credentials: credentials,
                    transport: AsyncHTTPTransport.shared,
                    retry: RetryPolicy(
                        maxAttempts: 4, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5),
                        throttlingBaseDelay: .milliseconds(1)),
                    timeout: .seconds(30), metrics: metrics),
                pathStyle: true),
            bucket: "b")
    }

    /// A fake bucket holding one object `k` with ETag `"v2"` and body [7, 8, 9], which answers
    /// `If-None-Match` as S3 does.
    static func fakeS3() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            guard request.path == "/b/k" else {
                return .xml(
                    "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
                    status: 404)
            }
            if request.header("If-None-Match") == "\"v2\"" {
                return HTTPResponseSpec(status: 304, headers: [("ETag", "\"v2\"")])
            }
            return HTTPResponseSpec(status: 200, headers: [("ETag", "\"v2\"")], body: [7, 8, 9])
        }
    }

    @Test func unchangedObjectIsOneConditionalGetAnsweredBy304() async throws {
        let server = try await Self.fakeS3()
        defer { Task { try? await server.shutdown() } }
        let metrics = RequestMetrics()
        let read = try await Self.storage(server, metrics: metrics).getIfChanged(
            "k", cached: ObjectVersion("\"v2\""))
        guard case .unchanged = read else {
            Issue.record("expected .unchanged, got \(read)")
            return
        }
        // One request, not retried, carrying the ETag exactly as S3 gave it (quoted), and signed.
        #expect(server.requestCount == 1)
        #expect(metrics.snapshot == ["s3:GetObject": 1])
        let sent = try #require(server.requests.first)
        #expect(sent.method == "GET" && sent.header("If-None-Match") == "\"v2\"")
        #expect(sent.header("Authorization")?.contains("if-none-match") == true)
    }

    @Test func changedObjectComesBackWholeWithItsNewETag() async throws {
        let server = try await Self.fakeS3()
        defer { Task { try? await server.shutdown() } }
        let read = try await Self.storage(server).getIfChanged("k", cached: ObjectVersion("\"v1\""))
        guard case .changed(let object) = read else {
            Issue.record("expected .changed, got \(read)")
            return
        }
        #expect(object.bytes == [7, 8, 9] && object.version == ObjectVersion("\"v2\""))
        #expect(server.requestCount == 1)
        #expect(server.requests.first?.header("If-None-Match") == "\"v1\"")
    }

    @Test func deletedObjectIsMissing() async throws {
        let server = try await Self.fakeS3()
        defer { Task { try? await server.shutdown() } }
        let read = try await Self.storage(server).getIfChanged("gone", cached: ObjectVersion("\"v2\""))
        guard case .missing = read else {
            Issue.record("expected .missing, got \(read)")
            return
        }
        #expect(server.requestCount == 1)
    }

    /// A store that ignores `If-None-Match` answers 200 with the same ETag: that is still the
    /// version the caller holds.
    @Test func sameETagInA200IsUnchanged() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(status: 200, headers: [("ETag", "\"v2\"")], body: [7, 8, 9])
        }
        defer { Task { try? await server.shutdown() } }
        let read = try await Self.storage(server).getIfChanged("k", cached: ObjectVersion("\"v2\""))
        guard case .unchanged = read else {
            Issue.record("expected .unchanged, got \(read)")
            return
        }
    }

    /// A 304 is an answer only to a conditional GET: to a plain one it must not pass for an empty
    /// object.
    @Test func notModifiedToAnUnconditionalGetIsAnError() async throws {
        let server = try await LoopbackHTTPServer.start { _ in HTTPResponseSpec(status: 304) }
        defer { Task { try? await server.shutdown() } }
        let storage = Self.storage(server)
        await #expect {
            _ = try await storage.s3.getObject(bucket: "b", key: "k")
        } throws: { error in
            (error as? AWSError)?.statusCode == 304
        }
        await #expect {
            _ = try await storage.get("k")
        } throws: { error in
            (error as? StoreAWSError)?.description.contains("HTTP 304") == true
        }
        #expect(server.requestCount == 2)  // not retried either
    }
}

/// The same against moto with IAM enforcement, as the engine's least-privilege user. Answers are
/// counted by status at the HTTP layer, so a 304 is told apart from a whole read.
@Suite(AWSTestEnvironment.enabled) struct S3ConditionalReadMotoTests {
    /// Records the status of every answer, around the shared transport.
    final class StatusRecorder: HTTPTransport {
        let statuses = CarbonStoreTestSupport.Locked<[Int]>([])

        func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
            let response = try await AsyncHTTPTransport.shared.send(request, timeout: timeout)
            statuses.withLock { $0.append(response.status) }
            return response
        }

        func take() -> [Int] {
            statuses.withLock { statuses in
                defer { statuses = [] }
                return statuses
            }
        }
    }

    static func storage(
        _ env: AWSTestEnvironment, prefix: String, metrics: RequestMetrics, recorder: StatusRecorder
    ) async throws -> S3Storage {
        let store = try await AWSBackends(
            environment: env.engineEnvironment(), transport: recorder, metrics: metrics
        ).storeFactory().makeStore(env.s3URI(prefix: prefix, locking: "none"))
        return try #require(store.storage as? S3Storage)
    }

    @Test func unchangedObjectIsOne304Request() async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("ifnonematch")
        let metrics = RequestMetrics()
        let recorder = StatusRecorder()
        let storage = try await Self.storage(env, prefix: prefix, metrics: metrics, recorder: recorder)
        let key = prefix + "aa/bb/x.cstore"
        let written = try await storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
        let readVersion = try #require(try await storage.get(key)).version
        #expect(readVersion == written)
        // Both the version a write returned and the one a read returned revalidate.
        for cached in [written, readVersion] {
            metrics.reset()
            _ = recorder.take()
            let read = try await storage.getIfChanged(key, cached: cached)
            guard case .unchanged = read else {
                Issue.record("expected .unchanged, got \(read)")
                return
            }
            #expect(metrics.snapshot == ["s3:GetObject": 1])
            #expect(recorder.take() == [304])
        }
    }

    @Test func changedObjectComesBackWithItsNewBytesAndETag() async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("ifnonematch")
        let metrics = RequestMetrics()
        let recorder = StatusRecorder()
        let storage = try await Self.storage(env, prefix: prefix, metrics: metrics, recorder: recorder)
        let key = prefix + "aa/bb/x.cstore"
        let v1 = try await storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
        let v2 = try await storage.put(key, bytes: [4, 5], condition: .mustMatch(v1))
        metrics.reset()
        _ = recorder.take()
        let read = try await storage.getIfChanged(key, cached: v1)
        guard case .changed(let object) = read else {
            Issue.record("expected .changed, got \(read)")
            return
        }
        #expect(object.bytes == [4, 5] && object.version == v2 && v2 != v1)
        #expect(metrics.snapshot == ["s3:GetObject": 1])
        #expect(recorder.take() == [200])
    }

    @Test func deletedObjectIsMissing() async throws {
        let env = try AWSTestEnvironment.get()
        let prefix = AWSTestEnvironment.uniquePrefix("ifnonematch")
        let metrics = RequestMetrics()
        let recorder = StatusRecorder()
        let storage = try await Self.storage(env, prefix: prefix, metrics: metrics, recorder: recorder)
        let key = prefix + "aa/bb/x.cstore"
        let v1 = try await storage.put(key, bytes: [1, 2, 3], condition: .mustNotExist)
        #expect(try await storage.delete(key, condition: .mustMatch(v1)))
        metrics.reset()
        _ = recorder.take()
        let read = try await storage.getIfChanged(key, cached: v1)
        guard case .missing = read else {
            Issue.record("expected .missing, got \(read)")
            return
        }
        #expect(metrics.snapshot == ["s3:GetObject": 1])
        #expect(recorder.take() == [404])
    }
}

/// A listing answer that says it goes on but makes no progress is refused, not followed for ever
/// (as the SDKs' paginators stop on a repeated token).
@Suite struct S3ListingProgressTests {
    static func page(_ keys: [String], truncated: Bool, token: String? = nil) -> String {
        "<ListBucketResult>" + keys.map { "<Contents><Key>\($0)</Key></Contents>" }.joined()
            + "<IsTruncated>\(truncated)</IsTruncated>"
            + (token.map { "<NextContinuationToken>\($0)</NextContinuationToken>" } ?? "")
            + "</ListBucketResult>"
    }

    @Test(
        .timeLimit(.minutes(1)),
        arguments: [
            // The same page again and again, with the same token or none.
            [page(["87/22/alice.cstore"], truncated: true, token: "same")],
            [page(["87/22/alice.cstore"], truncated: true)],
            // Truncated, and no key at all.
            [page([], truncated: true, token: "t")],
        ])
    func aListingThatMakesNoProgressIsRefused(answers: [String]) async throws {
        let server = try await LoopbackHTTPServer.start { _ in .xml(answers[0]) }
        defer { Task { try? await server.shutdown() } }
        let store = Store(storage: S3ConditionalReadTests.storage(server), locks: InProcessLockService())
        var seen = 0
        let error = await #expect(throws: StoreAWSError.self) {
            for try await _ in store.allUsers() { seen += 1 }
        }
        #expect(error?.description.contains("MalformedResponse") == true, "\(String(describing: error))")
        #expect(error?.description.contains("no key after") == true)
        #expect(server.requestCount <= 2)
        #expect(seen <= 1)
    }

    @Test func aListingThatMovesOnIsFollowedToItsEnd() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            request.uri.contains("start-after=") && !request.uri.contains("start-after=&")
                ? .xml(Self.page([(try? UserKeys().key(for: "bob")) ?? "?"], truncated: false))
                : .xml(Self.page(["87/22/alice.cstore"], truncated: true, token: "t"))
        }
        defer { Task { try? await server.shutdown() } }
        let store = Store(storage: S3ConditionalReadTests.storage(server), locks: InProcessLockService())
        var ids: [String] = []
        for try await id in store.allUsers() { ids.append(id) }
        #expect(ids == ["alice", "bob"])
    }
}

/// A write whose object was deleted between its read and its conditional PUT: S3 answers `If-Match`
/// on a missing key with 404 NoSuchKey. That is a changed object, not a storage failure: the update
/// starts again from a fresh read (and creates the user again), as after a 412.
@Suite struct S3WriteAfterDeleteTests {
    static func txn(_ id: String) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: 1_700_000_000_000),
            amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!))
    }

    @Test func anUpdateWhoseObjectWasDeletedMeanwhileStartsAgain() async throws {
        // One object store, whose next If-Match PUT finds the object deleted (a racing delete).
        let objects = CarbonStoreTestSupport.Locked<[String: (body: [UInt8], etag: String)]>([:])
        let deleteBeforeNextIfMatch = CarbonStoreTestSupport.Locked(false)
        let server = try await LoopbackHTTPServer.start { request in
            switch request.method {
            case "GET":
                guard let o = objects.withLock({ $0[request.path] }) else {
                    return .xml("<Error><Code>NoSuchKey</Code><Message>none</Message></Error>", status: 404)
                }
                if request.header("If-None-Match") == o.etag { return HTTPResponseSpec(status: 304) }
                return HTTPResponseSpec(status: 200, headers: [("ETag", o.etag)], body: o.body)
            case "PUT":
                if request.header("If-Match") != nil, deleteBeforeNextIfMatch.withLock({ $0 }) {
                    deleteBeforeNextIfMatch.withLock { $0 = false }
                    objects.withLock { $0[request.path] = nil }
                }
                let current = objects.withLock { $0[request.path] }
                if let ifMatch = request.header("If-Match") {
                    guard let current else {
                        return .xml(
                            "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
                            status: 404)
                    }
                    if current.etag != ifMatch {
                        return .xml("<Error><Code>PreconditionFailed</Code></Error>", status: 412)
                    }
                }
                if request.header("If-None-Match") == "*", current != nil {
                    return .xml("<Error><Code>PreconditionFailed</Code></Error>", status: 412)
                }
                let etag = "\"\(UUID().uuidString)\""
                objects.withLock { $0[request.path] = (request.body, etag) }
                return HTTPResponseSpec(status: 200, headers: [("ETag", etag)])
            default:
                return HTTPResponseSpec(status: 405)
            }
        }
        defer { Task { try? await server.shutdown() } }
        let store = Store(storage: S3ConditionalReadTests.storage(server), locks: InProcessLockService())
        _ = try await store.update("u") { try $0.upsert(Self.txn("t1")) }
        deleteBeforeNextIfMatch.withLock { $0 = true }
        let result = try await store.update("u") { try $0.upsert(Self.txn("t2")) }
        #expect(result.record.transactions.map(\.id) == ["t2"])
        #expect(try await store.read("u")?.transactions.map(\.id) == ["t2"])
    }
}
