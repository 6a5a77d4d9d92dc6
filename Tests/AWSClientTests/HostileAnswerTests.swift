import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

/// Whether every `(` in `text` is closed, in order.
func parenthesesBalance(_ text: String) -> Bool {
    var depth = 0
    for c in text {
        if c == "(" { depth += 1 }
        if c == ")" {
            depth -= 1
            if depth < 0 { return false }
        }
    }
    return depth == 0
}

/// Whether `text` holds any 8 consecutive characters of `secret`.
func leaks(_ secret: String, in text: String) -> Bool {
    let chars = Array(secret)
    guard chars.count >= 8 else { return text.contains(secret) }
    for start in 0...(chars.count - 8) where text.contains(String(chars[start..<(start + 8)])) {
        return true
    }
    return false
}

/// A server that sends the head and then a byte every few hundred milliseconds: the request's
/// deadline must cover the body, and the command must end, retried or with a clear error.
@Suite("Request deadline") struct RequestDeadlineTests {
    static let credentials = StaticCredentialProvider(
        AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret"))

    /// 100 bytes at 200 ms each: 20 s to read in full, far beyond the deadlines below.
    static func tricklingServer() async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { _ in
            .trickling(
                Array(repeating: 0x61, count: 100), every: .milliseconds(200), headers: [("ETag", "\"e\"")])
        }
    }

    @Test(.timeLimit(.minutes(1))) func transportCutsOffATricklingBodyAtTheDeadline() async throws {
        let server = try await Self.tricklingServer()
        defer { Task { try? await server.shutdown() } }
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: TransportError.self) {
            _ = try await AsyncHTTPTransport.shared.send(
                HTTPRequest(method: "GET", url: server.baseURL.appendingPathComponent("k")),
                timeout: .milliseconds(700))
        }
        let elapsed = clock.now - start
        #expect(elapsed < .seconds(5), "took \(elapsed)")
        #expect(error?.reason.contains("700 ms deadline") == true, "\(String(describing: error))")
        #expect(error?.mayHaveBeenSent == true)
    }

    @Test(.timeLimit(.minutes(1))) func getObjectRetriesThenNamesServiceOperationAndDeadline() async throws {
        let server = try await Self.tricklingServer()
        defer { Task { try? await server.shutdown() } }
        let s3 = S3Client(
            client: AWSServiceClient(
                service: "s3", region: "eu-west-1", endpoint: server.baseURL, credentials: Self.credentials,
                transport: AsyncHTTPTransport.shared,
                retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)),
                timeout: .milliseconds(800)),
            pathStyle: true)
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: AWSUnreachableError.self) {
            _ = try await s3.getObject(bucket: "b", key: "k")
        }
        let elapsed = clock.now - start
        #expect(elapsed < .seconds(6), "took \(elapsed)")
        #expect(server.requestCount == 2, "the timed-out GET was retried once")
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("S3 GetObject s3://b/k failed"), "\(text)")
        #expect(text.contains("after 2 attempts"), "\(text)")
        #expect(text.contains("800 ms deadline"), "\(text)")
        #expect(parenthesesBalance(text), "\(text)")
    }

    @Test func aSlowBodyWithinTheDeadlineIsRead() async throws {
        let server = try await LoopbackHTTPServer.start { _ in
            .trickling(Array("hello".utf8), every: .milliseconds(20))
        }
        defer { Task { try? await server.shutdown() } }
        let response = try await AsyncHTTPTransport.shared.send(
            HTTPRequest(method: "GET", url: server.baseURL.appendingPathComponent("k")), timeout: .seconds(10)
        )
        #expect(response.status == 200 && response.bodyText == "hello")
    }
}

/// Error bodies built to exhaust the stack or memory are refused with a clear error.
@Suite("Hostile XML") struct HostileXMLTests {
    static func nested(_ depth: Int) -> [UInt8] {
        Array((String(repeating: "<a>", count: depth) + "x" + String(repeating: "</a>", count: depth)).utf8)
    }

    @Test func sixtyThousandNestedElementsAreRefused() {
        let deep = Self.nested(60_000)
        #expect(throws: XMLError(reason: .tooDeep)) { try XMLElement.read(deep) }
        #expect(XMLElement.parse(deep) == nil)
        #expect(XMLElement.awsError(deep) == nil)
        // The limit itself is readable, one more is not.
        #expect((try? XMLElement.read(Self.nested(XMLLimits.maxDepth))) != nil)
        #expect(throws: XMLError(reason: .tooDeep)) {
            try XMLElement.read(Self.nested(XMLLimits.maxDepth + 1))
        }
    }

    @Test func overSizeDocumentsAreRefused() {
        let big = Array(
            ("<Error><Message>" + String(repeating: "m", count: XMLLimits.maxBytes) + "</Message></Error>")
                .utf8)
        #expect(throws: XMLError(reason: .tooLarge(bytes: big.count))) { try XMLElement.read(big) }
        #expect(XMLElement.awsError(big) == nil)
        let description = String(describing: XMLError(reason: .tooLarge(bytes: big.count)))
        #expect(description.contains("\(big.count) bytes") && description.contains("\(XMLLimits.maxBytes)"))
    }

    @Test func aDeeplyNestedErrorAnswerBecomesAClearAWSError() async throws {
        let deep = Self.nested(60_000)
        let server = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(status: 400, headers: [("Content-Type", "application/xml")], body: deep)
        }
        defer { Task { try? await server.shutdown() } }
        let s3 = S3ClientTests.client(server)
        let error = await #expect(throws: AWSError.self) {
            _ = try await s3.putObject(bucket: "b", key: "k", body: [1])
        }
        #expect(error?.code == "HTTP400")
        #expect(
            error?.message.contains("nested deeper than the limit of 64") == true,
            "\(String(describing: error))")
        // A listing answer beyond the limits is refused as malformed, not read.
        let listing = try await LoopbackHTTPServer.start { _ in
            HTTPResponseSpec(status: 200, body: Array("<ListBucketResult>".utf8) + deep)
        }
        defer { Task { try? await listing.shutdown() } }
        let listError = await #expect(throws: AWSError.self) {
            _ = try await S3ClientTests.client(listing).listObjects(bucket: "b", prefix: nil)
        }
        #expect(listError?.code == "MalformedResponse")
        #expect(listError?.message.contains("nested deeper") == true)
    }
}

/// Credential endpoints that answer something unreadable: the error says what was wrong but
/// never quotes a secret.
@Suite("Secrets in errors") struct SecretRedactionTests {
    static let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETKEY"
    static let token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDtoken"
    static let keyID = "ASIAQWERTYUIOP123456"

    /// A credentials document cut off in the middle: not JSON.
    static let truncatedJSON =
        #"{"Code":"Success","AccessKeyId":"\#(keyID)","SecretAccessKey":"\#(secret)","Token":"\#(token)","Expiration":"2026-"#
    /// A document that is not JSON at all, with the secrets as bare text.
    static let garbage = "AccessKeyId=\(keyID)\nSecretAccessKey: \(secret)\nsession token \(token)\n<html>"

    func expectNoSecrets(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for s in [Self.secret, Self.token, Self.keyID] {
            #expect(!leaks(s, in: text), "\(text)", sourceLocation: sourceLocation)
        }
    }

    @Test(arguments: [truncatedJSON, garbage])
    func ecsAnswerThatDoesNotParse(_ body: String) async throws {
        try await withLoopbackServer({ _ in .json(body) }) { server in
            let p = ECSCredentialProvider(
                environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/creds"],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            let text = error.map(String.init(describing:)) ?? ""
            #expect(text.contains("is not a credentials JSON document"), "\(text)")
            #expect(text.contains("<redacted>"), "\(text)")
            expectNoSecrets(text)
        }
    }

    @Test func ecsErrorStatusWithSecretsInTheBody() async throws {
        try await withLoopbackServer({ _ in .json(Self.truncatedJSON, status: 500) }) { server in
            let p = ECSCredentialProvider(
                environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/creds"],
                transport: transport, timeout: .seconds(10), maxAttempts: 1)
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            let text = error.map(String.init(describing:)) ?? ""
            #expect(text.contains("answered HTTP 500"), "\(text)")
            expectNoSecrets(text)
        }
    }

    @Test(arguments: [truncatedJSON, garbage])
    func instanceMetadataAnswerThatDoesNotParse(_ body: String) async throws {
        try await withLoopbackServer(fakeIMDS(credentials: body)) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            let text = error.map(String.init(describing:)) ?? ""
            #expect(
                text.contains("EC2 instance metadata") && text.contains("is not a credentials JSON document"))
            expectNoSecrets(text)
        }
    }

    @Test func instanceMetadataFailureCodeWithSecretsInTheMessage() async throws {
        let body =
            #"{"Code":"Failure","Message":"cannot refresh SecretAccessKey=\#(Self.secret) token \#(Self.token)"}"#
        try await withLoopbackServer(fakeIMDS(credentials: body)) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            let text = error.map(String.init(describing:)) ?? ""
            #expect(text.contains("the service reported Failure: cannot refresh"), "\(text)")
            expectNoSecrets(text)
        }
    }

    @Test func webIdentityAnswerWithoutASessionToken() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write("oidc-token", to: home.path + "/token")
        // Credentials present but the session token missing, and the document cut short.
        let body = """
            <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
            <AccessKeyId>\(Self.keyID)</AccessKeyId><SecretAccessKey>\(Self.secret)</SecretAccessKey>
            <Expiration>2026-01-01T00:00:00Z</Expiration></Credentials><Extra>\(Self.token)
            """
        try await withLoopbackServer({ _ in .xml(body) }) { server in
            let p = WebIdentityCredentialProvider(
                environment: [
                    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r",
                    "AWS_WEB_IDENTITY_TOKEN_FILE": home.path + "/token",
                    "AWS_ENDPOINT_URL_STS": server.baseURL.absoluteString,
                ], transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            let text = error.map(String.init(describing:)) ?? ""
            #expect(
                text.contains("lacks Credentials/AccessKeyId, SecretAccessKey or SessionToken"), "\(text)")
            expectNoSecrets(text)
        }
    }

    @Test func endpointWithAPasswordIsRefusedWithoutQuotingIt() {
        let password = "pa55w0rd-Of-The-Operator"
        let error = #expect(throws: AWSConfigurationError.self) {
            try AWSConfiguration.validatedEndpoint(
                "https://user:\(password)@example.com", origin: "AWS_ENDPOINT_URL")
        }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("passwords are not allowed"), "\(text)")
        #expect(!leaks(password, in: text), "\(text)")
    }

    @Test func s3ErrorBodyThatEchoesCredentials() async throws {
        let body =
            "<html>proxy error; request had X-Amz-Security-Token: \(Self.token) and Authorization: AWS4-HMAC-SHA256 Credential=\(Self.keyID)/20260101/eu-west-1/s3/aws4_request, Signature=\(Self.secret)</html>"
        let server = try await LoopbackHTTPServer.start { _ in .text(body, status: 400) }
        defer { Task { try? await server.shutdown() } }
        let error = await #expect(throws: AWSError.self) {
            _ = try await S3ClientTests.client(server).putObject(bucket: "b", key: "k", body: [1])
        }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("HTTP400") && text.contains("proxy error"), "\(text)")
        expectNoSecrets(text)
    }

    /// Redaction is linear: a long run of name characters (no separator anywhere) cannot make an
    /// error path slow.
    @Test func redactionIsLinear() {
        let clock = ContinuousClock()
        let start = clock.now
        let long = String(repeating: "a", count: 100_000) + " " + String(repeating: "token", count: 20_000)
        #expect(SecretRedaction.redact(long) == long)
        #expect(clock.now - start < .seconds(5))
    }

    @Test func redactionRules() {
        let r = SecretRedaction.redact
        #expect(
            r(#"{"SecretAccessKey" : "abc\"def", "Code": "Success"}"#, true)
                == #"{"SecretAccessKey" : "<redacted>", "Code": "Success"}"#)
        #expect(
            r("<SessionToken>abc</SessionToken><RequestId>1</RequestId>", true)
                == "<SessionToken><redacted></SessionToken><RequestId>1</RequestId>")
        #expect(
            r("aws_secret_access_key = abc\nregion = eu-west-1", true)
                == "aws_secret_access_key = <redacted>\nregion = eu-west-1")
        #expect(r("Authorization: Bearer abc.def", true) == "Authorization: <redacted>")
        #expect(r("password: hunter", false) == "password: <redacted>")
        // An error code and its message are not a field and its value.
        let code = "InvalidIdentityToken: Incorrect token audience"
        #expect(r(code, true) == code)
        #expect(r("https://u:pw@host/x", true) == "https://u:<redacted>@host/x")
        // Cut off in the middle of the value: redacted to the end.
        #expect(r(#"{"Token":"IQoJb3Jp"#, true) == #"{"Token":"<redacted>"#)
        // By shape: long mixed-case base64 and access key ids; not UUIDs, request ids or names.
        #expect(r("x \(Self.secret) y", true) == "x <redacted> y")
        #expect(r("id AKIAIOSFODNN7EXAMPLE", true) == "id <redacted>")
        let plain =
            "request 4442587FB7D0A2F9 uuid 550e8400-e29b-41d4-a716-446655440000 ProvisionedThroughputExceededException"
        #expect(r(plain, true) == plain)
        #expect(r("x \(Self.secret) y", false) == "x \(Self.secret) y")
    }
}

/// Nothing listens on the port: the error says the connection was refused, not reset.
@Suite("Refused connections") struct RefusedConnectionTests {
    /// A loopback URL on which nothing listens any more.
    static func closedPort() async throws -> URL {
        let server = try await LoopbackHTTPServer.start { _ in .text("") }
        let url = server.baseURL
        try await server.shutdown()
        return url
    }

    @Test func transportSaysRefused() async throws {
        let url = try await Self.closedPort()
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: TransportError.self) {
            _ = try await AsyncHTTPTransport.shared.send(
                HTTPRequest(method: "GET", url: url), timeout: .seconds(10))
        }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("connection refused"), "\(text)")
        #expect(!text.lowercased().contains("reset"), "\(text)")
        #expect(error?.mayHaveBeenSent == false, "a refused request was never sent")
        // Refused at once: the connection is not retried until the 3 s connect timeout.
        #expect(clock.now - start < .seconds(2))
        #expect(parenthesesBalance(text), "\(text)")
    }

    @Test func serviceClientSaysRefused() async throws {
        let url = try await Self.closedPort()
        let s3 = S3Client(
            client: AWSServiceClient(
                service: "s3", region: "eu-west-1", endpoint: url,
                credentials: RequestDeadlineTests.credentials,
                transport: AsyncHTTPTransport.shared,
                retry: RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5))),
            pathStyle: true)
        let error = await #expect(throws: AWSUnreachableError.self) {
            try await s3.putObject(bucket: "b", key: "k", body: [1])
        }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(
            text.contains("S3 PutObject s3://b/k failed") && text.contains("connection refused"), "\(text)")
        #expect(!text.lowercased().contains("reset"), "\(text)")
        #expect(parenthesesBalance(text), "\(text)")
    }

    @Test func credentialsEndpointSaysRefused() async throws {
        let url = try await Self.closedPort()
        let p = ECSCredentialProvider(
            environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": url.absoluteString + "/creds"],
            transport: transport, timeout: .seconds(10), maxAttempts: 1)
        let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains("connection refused"), "\(text)")
        #expect(!text.lowercased().contains("reset"), "\(text)")
        #expect(parenthesesBalance(text), "\(text)")
    }
}
