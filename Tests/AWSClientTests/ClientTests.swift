import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite struct RetryPolicyTests {
    func error(_ code: String, _ status: Int) -> AWSError {
        AWSError(
            service: "S3", operation: "PutObject", resource: "s3://b/k", statusCode: status, code: code,
            message: "", requestID: nil)
    }

    @Test func retriesThrottlingAndServerErrorsWithGrowingJitteredDelays() {
        let p = RetryPolicy(
            maxAttempts: 4, baseDelay: .milliseconds(25), maxDelay: .seconds(2),
            throttlingBaseDelay: .milliseconds(100))
        // The random source returns its upper bound, so the decision shows the ceiling.
        let top: (ClosedRange<Int64>) -> Int64 = { $0.upperBound }
        #expect(
            p.decide(attempt: 1, error: error("SlowDown", 503), idempotent: true, random: top)
                == .retry(after: .milliseconds(100)))
        #expect(
            p.decide(attempt: 2, error: error("ThrottlingException", 400), idempotent: true, random: top)
                == .retry(after: .milliseconds(200)))
        #expect(
            p.decide(attempt: 3, error: error("InternalError", 500), idempotent: true, random: top)
                == .retry(after: .milliseconds(100)))
        #expect(
            p.decide(attempt: 4, error: error("InternalError", 500), idempotent: true, random: top) == .giveUp
        )
        #expect(
            p.decide(
                attempt: 1, error: error("ProvisionedThroughputExceededException", 400), idempotent: true,
                random: { $0.lowerBound }) == .retry(after: .zero))
    }

    @Test func neverRetriesClientErrors() {
        let p = RetryPolicy.standard
        for (code, status) in [
            ("AccessDenied", 403), ("SignatureDoesNotMatch", 403), ("NoSuchBucket", 404),
            ("PreconditionFailed", 412), ("ConditionalCheckFailedException", 400),
            ("ValidationException", 400),
        ] {
            #expect(p.decide(attempt: 1, error: error(code, status), idempotent: true) == .giveUp, "\(code)")
        }
    }

    @Test func connectionFailuresAreRetriedOnlyWhenHarmless() {
        let p = RetryPolicy.standard
        let refused = TransportError(method: "PUT", url: "u", reason: "refused", mayHaveBeenSent: false)
        let reset = TransportError(method: "PUT", url: "u", reason: "reset", mayHaveBeenSent: true)
        #expect(p.decide(attempt: 1, error: refused, idempotent: false) != .giveUp)
        #expect(p.decide(attempt: 1, error: reset, idempotent: false) == .giveUp)
        #expect(p.decide(attempt: 1, error: reset, idempotent: true) != .giveUp)
    }

    @Test func delaysAreCappedAtMaxDelay() {
        let p = RetryPolicy(maxAttempts: 50, baseDelay: .milliseconds(25), maxDelay: .seconds(2))
        #expect(
            p.decide(
                attempt: 40, error: error("InternalError", 500), idempotent: true, random: { $0.upperBound })
                == .retry(after: .seconds(2)))
    }
}

@Suite struct XMLTests {
    @Test func readsListBucketResult() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
            <Contents><Key>a/b&amp;c.cstore</Key><ETag>&quot;x&quot;</ETag></Contents><Contents><Key><![CDATA[d<e>]]></Key></Contents>
            <NextContinuationToken>1/abc=</NextContinuationToken><Empty/></ListBucketResult>
            """
        let root = try #require(XMLElement.parse(Array(xml.utf8)))
        #expect(root.name == "ListBucketResult")
        #expect(root.all("Contents").compactMap { $0["Key"] } == ["a/b&c.cstore", "d<e>"])
        #expect(root.child("Contents")?["ETag"] == "\"x\"")
        #expect(root["NextContinuationToken"] == "1/abc=" && root["IsTruncated"] == "true")
        #expect(root.child("Empty")?.text == "")
    }

    @Test func readsErrorDocumentsOfBothShapes() {
        let s3 =
            "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"
        #expect(
            XMLElement.awsError(Array(s3.utf8))! == ("NoSuchBucket", "The specified bucket does not exist"))
        let query =
            "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>m &#233;</Message></Error></Errors></ErrorResponse>"
        #expect(XMLElement.awsError(Array(query.utf8))! == ("SignatureDoesNotMatch", "m é"))
        #expect(XMLElement.awsError(Array("not xml".utf8)) == nil)
        #expect(XMLElement.parse(Array("<a><b></a>".utf8)) == nil)
    }
}

/// The S3 client against a loopback fake: what goes on the wire, and how answers are read.
@Suite(.serialized) struct S3ClientTests {
    static let credentials = StaticCredentialProvider(
        AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret"))

    static func client(
        _ server: LoopbackHTTPServer,
        retry: RetryPolicy = RetryPolicy(
            maxAttempts: 4, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5),
            throttlingBaseDelay: .milliseconds(1)), metrics: RequestMetrics? = nil
    ) -> S3Client {
        S3Client(
            client: AWSServiceClient(
                service: "s3", region: "eu-west-1", endpoint: server.baseURL, credentials: credentials,
                transport: AsyncHTTPTransport.shared, retry: retry, timeout: .seconds(30), metrics: metrics),
            pathStyle: true)
    }

    @Test func conditionalPutSendsTheFenceAndSignsIt() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(status: 200, headers: [("ETag", "\"e2\"")], body: [])
        }
        defer { Task { try? await server.shutdown() } }
        let s3 = Self.client(server)
        let etag = try await s3.putObject(
            bucket: "b", key: "87/22/a_2fb.cstore", body: [1, 2], precondition: .ifMatch("\"e1\""),
            encryption: .kms(keyID: "alias/k"))
        #expect(etag == "\"e2\"")
        _ = try await s3.putObject(bucket: "b", key: "k", body: [], precondition: .ifNoneMatchAny)
        // Found by content, not position: a slow machine may make the client repeat a request.
        let put = try #require(server.requests.first { $0.path == "/b/87/22/a_2fb.cstore" })
        #expect(put.method == "PUT")
        #expect(put.header("If-Match") == "\"e1\"")
        #expect(put.header("x-amz-server-side-encryption") == "aws:kms")
        #expect(put.header("x-amz-server-side-encryption-aws-kms-key-id") == "alias/k")
        #expect(put.header("Authorization")?.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") == true)
        #expect(put.header("x-amz-content-sha256") != nil)
        let create = try #require(server.requests.first { $0.path == "/b/k" })
        #expect(create.header("If-None-Match") == "*")
    }

    @Test func throttlingIsRetriedThenSucceeds() async throws {
        let calls = Locked(0)
        let server = try await LoopbackHTTPServer.start { _ in
            let n = calls.withLock { c in
                c += 1; return c
            }
            if n <= 2 {
                return .xml(
                    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
                    status: 503)
            }
            return HTTPResponseSpec(status: 200, headers: [("ETag", "\"ok\"")], body: Array("hello".utf8))
        }
        defer { Task { try? await server.shutdown() } }
        let metrics = RequestMetrics()
        let object = try await Self.client(server, metrics: metrics).getObject(bucket: "b", key: "k")
        #expect(object?.body == Array("hello".utf8) && object?.eTag == "\"ok\"")
        #expect(metrics.total == 3)
    }

    @Test func serverErrorsGiveUpAfterBoundedAttemptsWithAClearError() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(
                status: 500, headers: [("x-amz-request-id", "REQ123")],
                body: Array(
                    "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
                        .utf8))
        }
        defer { Task { try? await server.shutdown() } }
        await #expect {
            _ = try await Self.client(server).putObject(bucket: "b", key: "k", body: [1])
        } throws: { error in
            let e = error as! AWSError
            return e.code == "InternalError" && e.statusCode == 500 && e.requestID == "REQ123"
                && e.description.contains("S3 PutObject s3://b/k failed: InternalError (HTTP 500)")
        }
        #expect(server.requestCount == 4)
    }

    @Test func droppedConnectionsAreRetriedThenReported() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .drop }
        defer { Task { try? await server.shutdown() } }
        await #expect {
            _ = try await Self.client(server).getObject(bucket: "b", key: "k")
        } throws: { error in
            (error as? AWSUnreachableError)?.description.contains("after 4 attempts") == true
        }
        #expect(server.requestCount == 4)
    }

    @Test func missingKeyIsNilAndCacheRevalidationIsNotModified() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            if request.header("If-None-Match") == "\"same\"" { return HTTPResponseSpec(status: 304) }
            return .xml(
                "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
                status: 404)
        }
        defer { Task { try? await server.shutdown() } }
        let s3 = Self.client(server)
        #expect(try await s3.getObject(bucket: "b", key: "missing") == nil)
        let cached = try await s3.getObject(bucket: "b", key: "k", ifNoneMatch: "\"same\"")
        #expect(cached?.notModified == true && cached?.body.isEmpty == true)
    }

    @Test func listingReadsKeysAndContinuation() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            .xml(
                "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>p/aa/bb/x.cstore</Key></Contents><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"
            )
        }
        defer { Task { try? await server.shutdown() } }
        let page = try await Self.client(server).listObjects(
            bucket: "b", prefix: "p/", startAfter: "p/aa/aa/z.cstore", maxKeys: 5)
        #expect(page.keys == ["p/aa/bb/x.cstore"] && page.isTruncated && page.nextContinuationToken == "tok")
        let q = server.requests[0].query ?? ""
        #expect(
            q.contains("list-type=2") && q.contains("prefix=p%2F")
                && q.contains("start-after=p%2Faa%2Faa%2Fz.cstore") && q.contains("max-keys=5"))
    }

    @Test func wrongRegionSaysWhichRegion() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(status: 301, headers: [("x-amz-bucket-region", "ap-southeast-2")], body: [])
        }
        defer { Task { try? await server.shutdown() } }
        await #expect {
            _ = try await Self.client(server).getObject(bucket: "b", key: "k")
        } throws: { error in
            let d = String(describing: error)
            return d.contains("PermanentRedirect") && d.contains("ap-southeast-2")
                && d.contains("set region=")
        }
    }
}

@Suite struct DynamoDBErrorTests {
    @Test func conditionFailuresAndThrottlingAreRecognised() async throws {
        let calls = Locked(0)
        let server = try await LoopbackHTTPServer.start { request in
            let n = calls.withLock { c in
                c += 1; return c
            }
            if n == 1 {
                return .json(
                    #"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#,
                    status: 400)
            }
            return .json(
                #"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#,
                status: 400)
        }
        defer { Task { try? await server.shutdown() } }
        let dynamo = DynamoDBClient(
            client: AWSServiceClient(
                service: "dynamodb", region: "eu-west-1", endpoint: server.baseURL,
                credentials: S3ClientTests.credentials,
                transport: AsyncHTTPTransport.shared,
                retry: RetryPolicy(
                    maxAttempts: 3, baseDelay: .milliseconds(1), throttlingBaseDelay: .milliseconds(1))))
        await #expect {
            try await dynamo.putItem(
                table: "locks", item: ["id": .s("x"), "expires": .number(5)],
                condition: DynamoExpression(
                    "attribute_not_exists(id) OR expires < :now", values: [":now": .number(10)]))
        } throws: { DynamoDBClient.isConditionFailure($0) }
        let body = server.requests[1].bodyText
        #expect(server.requests[1].header("X-Amz-Target") == "DynamoDB_20120810.PutItem")
        #expect(body.contains(#""ConditionExpression":"attribute_not_exists(id) OR expires < :now""#))
        #expect(body.contains(#"":now":{"N":"10"}"#) && body.contains(#""id":{"S":"x"}"#))
    }
}

/// What an operator is told about AWS errors that only a change on this machine fixes.
@Suite struct AWSErrorAdviceTests {
    @Test(arguments: [
        (
            "RequestTimeTooSkewed", 403,
            "The difference between the request time and the current time is too large."
        ),
        (
            "InvalidSignatureException", 400,
            "Signature expired: 20261127T100000Z is now earlier than 20261127T103000Z"
        ),
        ("RequestExpired", 400, "Request has expired."),
    ])
    func aWrongClockIsNamedAsSuchAndIsNotAPermissionProblem(code: String, status: Int, message: String) {
        let e = AWSError(
            service: "S3", operation: "GetObject", resource: "s3://b/k", statusCode: status, code: code,
            message: message, requestID: nil)
        #expect(e.isClockSkew)
        #expect(e.isAuthenticationFailure)
        #expect(!e.isAccessDenied)
        #expect(!e.isRetryable)
        #expect(e.description.contains("this machine's clock differs from AWS's"), "\(e)")
    }

    /// S3 names the bucket's region in `x-amz-bucket-region`: the advice names it too.
    @Test(arguments: [(301, "PermanentRedirect"), (400, "AuthorizationHeaderMalformed")])
    func aBucketInAnotherRegionIsNamed(status: Int, code: String) async throws {
        try await withLoopbackServer({ _ in
            HTTPResponseSpec(
                status: status,
                headers: [("x-amz-bucket-region", "eu-west-1"), ("Content-Type", "application/xml")],
                body: Array("<Error><Code>\(code)</Code><Message>m</Message></Error>".utf8))
        }) { server in
            let s3 = S3Client(
                client: AWSServiceClient(
                    service: "s3", region: "us-east-1", endpoint: server.baseURL,
                    credentials: StaticCredentialProvider(keys("AKIDEXAMPLE")), transport: transport),
                pathStyle: true)
            let error = await #expect(throws: AWSError.self) {
                _ = try await s3.getObject(bucket: "b", key: "k")
            }
            #expect(error?.bucketRegion == "eu-west-1")
            #expect(error?.isWrongRegion == true)
            #expect(
                error?.description.contains("set region=eu-west-1 in the storage URI or AWS_REGION=eu-west-1")
                    == true,
                "\(String(describing: error))")
        }
    }

    @Test func aSignatureThatDoesNotMatchIsNotAClockProblem() {
        let e = AWSError(
            service: "DynamoDB", operation: "PutItem", resource: "table t", statusCode: 400,
            code: "InvalidSignatureException", message: "The request signature we calculated does not match",
            requestID: nil)
        #expect(!e.isClockSkew)
        #expect(e.isAuthenticationFailure)
    }
}
