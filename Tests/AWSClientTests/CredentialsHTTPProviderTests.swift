import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

let imdsCredentialsJSON = """
    {
      "Code" : "Success",
      "LastUpdated" : "2026-01-01T00:00:00Z",
      "Type" : "AWS-HMAC",
      "AccessKeyId" : "ASIAIMDS",
      "SecretAccessKey" : "imds-secret",
      "Token" : "imds-token",
      "Expiration" : "2026-01-01T06:00:00Z"
    }
    """

/// A fake instance metadata service: token, role listing, role credentials, region.
func fakeIMDS(credentials: String = imdsCredentialsJSON, role: String? = "carbon-role")
    -> LoopbackHTTPServer.Handler
{
    { request in
        if request.path == "/latest/api/token" {
            guard request.method == "PUT", request.header("X-aws-ec2-metadata-token-ttl-seconds") != nil
            else {
                return .text("bad token request", status: 400)
            }
            return .text("IMDS-TOKEN-123")
        }
        guard request.header("X-aws-ec2-metadata-token") == "IMDS-TOKEN-123" else {
            return .text("unauthorized", status: 401)
        }
        switch request.path {
        case "/latest/meta-data/iam/security-credentials/":
            return role.map { .text($0 + "\n") } ?? .text("not found", status: 404)
        case "/latest/meta-data/iam/security-credentials/" + (role ?? "-"):
            return .json(credentials)
        case "/latest/meta-data/placement/region":
            return .text("eu-north-1")
        default:
            return .text("not found", status: 404)
        }
    }
}

@Suite("Instance metadata credentials")
struct CredentialsInstanceMetadataTests {
    @Test func fetchesTokenThenRoleThenCredentials() async throws {
        try await withLoopbackServer(fakeIMDS()) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString + "/"],
                transport: transport, timeout: .seconds(10))
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIAIMDS")
            #expect(c.secretAccessKey == "imds-secret")
            #expect(c.sessionToken == "imds-token")
            #expect(c.expiration == Date(timeIntervalSince1970: 1_767_247_200))
            let requests = server.requests
            #expect(requests.map(\.method) == ["PUT", "GET", "GET"])
            #expect(requests[0].path == "/latest/api/token")
            #expect(requests[0].header("X-aws-ec2-metadata-token-ttl-seconds") == "21600")
            #expect(requests[1].path == "/latest/meta-data/iam/security-credentials/")
            #expect(requests[2].path == "/latest/meta-data/iam/security-credentials/carbon-role")
            #expect(
                requests.dropFirst().allSatisfy { $0.header("X-aws-ec2-metadata-token") == "IMDS-TOKEN-123" })
            #expect(try await p.region() == "eu-north-1")
        }
    }

    @Test func failureCodeIsAnError() async throws {
        let body =
            #"{"Code":"AssumeRoleUnauthorizedAccess","Message":"denied","LastUpdated":"2026-01-01T00:00:00Z"}"#
        try await withLoopbackServer(fakeIMDS(credentials: body)) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.kind == .providerFailed)
            #expect(error?.description.contains("AssumeRoleUnauthorizedAccess: denied") == true)
        }
    }

    @Test func noRoleIsNotConfigured() async throws {
        try await withLoopbackServer(fakeIMDS(role: nil)) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.kind == .notConfigured)
            #expect(error?.problem == "the instance has no IAM role")
        }
    }

    @Test func fallsBackToIMDSv1WhenTokenPUTIsUnknown() async throws {
        try await withLoopbackServer({ request in
            switch (request.method, request.path) {
            case ("PUT", _): return .text("", status: 405)
            case ("GET", "/latest/meta-data/iam/security-credentials/"): return .text("r")
            case ("GET", "/latest/meta-data/iam/security-credentials/r"): return .json(imdsCredentialsJSON)
            default: return .text("", status: 404)
            }
        }) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport, timeout: .seconds(10))
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIAIMDS")
            #expect(server.requests.dropFirst().allSatisfy { $0.header("X-aws-ec2-metadata-token") == nil })
        }
    }

    @Test func disabledMakesNoRequest() async throws {
        try await withLoopbackServer(fakeIMDS()) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: [
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString,
                    "AWS_EC2_METADATA_DISABLED": "TRUE",
                ], transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.kind == .notConfigured)
            #expect(server.requestCount == 0)
        }
    }

    @Test func silentServiceFailsFastAsNotConfigured() async throws {
        try await withLoopbackServer({ _ in
            try? await Task.sleep(for: .seconds(5))
            return .text("late")
        }) { server in
            let p = InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString],
                transport: transport,
                timeout: .seconds(1))
            let start = ContinuousClock.now
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            // It gives up on its own timeouts, not the server's 5 s (bounded only loosely: a
            // loaded machine is slow, and speed is not what a test checks). The timeout covers
            // connecting and sending too, so it leaves room for both attempts to reach the server
            // on a loaded machine.
            #expect(ContinuousClock.now - start < .seconds(30))
            #expect(error?.kind == .notConfigured)
            #expect(
                error?.problem.hasPrefix("no answer from 127.0.0.1:\(server.port) in 1 s, 2 attempts")
                    == true)
            #expect(server.requestCount == 2)
        }
    }

    @Test func refusedConnectionIsNotConfigured() async throws {
        let server = try await LoopbackHTTPServer.start { _ in .text("") }
        let url = server.baseURL.absoluteString
        try await server.shutdown()
        let p = InstanceMetadataCredentialProvider(
            environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": url], transport: transport,
            timeout: .seconds(10))
        let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
        #expect(error?.kind == .notConfigured)
    }

    @Test func endpointSelection() throws {
        #expect(
            try InstanceMetadataCredentialProvider(
                environment: [:], transport: transport, timeout: .seconds(10)
            ).endpoint()
                .absoluteString
                == "http://169.254.169.254")
        #expect(
            try InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE": "IPv6"], transport: transport,
                timeout: .seconds(10)
            ).endpoint().absoluteString == "http://[fd00:ec2::254]")
        #expect(throws: CredentialsError.self) {
            try InstanceMetadataCredentialProvider(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "169.254.169.254"], transport: transport,
                timeout: .seconds(10)
            ).endpoint()
        }
    }
}

@Suite("ECS container credentials")
struct CredentialsECSTests {
    static let body = """
        {"RoleArn":"arn:aws:iam::123456789012:role/task","AccessKeyId":"ASIAECS","SecretAccessKey":"ecs-secret",
         "Token":"ecs-token","Expiration":"2026-03-04T05:06:07Z"}
        """

    @Test func fullURIWithAuthorizationTokenFileReadEachTime() async throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("first-token\n", to: dir.path + "/auth")
        try await withLoopbackServer({ _ in .json(Self.body) }) { server in
            let p = ECSCredentialProvider(
                environment: [
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString
                        + "/v1/credentials?x=1",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": dir.path + "/auth",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "ignored-when-file-set",
                ], transport: transport, timeout: .seconds(10))
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIAECS")
            #expect(c.sessionToken == "ecs-token")
            #expect(c.expiration == ISO8601DateFormatter().date(from: "2026-03-04T05:06:07Z"))
            try write("second-token", to: dir.path + "/auth")
            _ = try await p.credentials()
            let requests = server.requests
            #expect(requests.map(\.uri) == ["/v1/credentials?x=1", "/v1/credentials?x=1"])
            #expect(requests.map { $0.header("Authorization") } == ["first-token", "second-token"])
        }
    }

    @Test func authorizationTokenFromVariable() async throws {
        try await withLoopbackServer({ _ in .json(Self.body) }) { server in
            let p = ECSCredentialProvider(
                environment: [
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/creds",
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Basic abc",
                ], transport: transport, timeout: .seconds(10))
            _ = try await p.credentials()
            #expect(server.requests.first?.header("Authorization") == "Basic abc")
        }
    }

    @Test func serverErrorsAreRetriedThenReported() async throws {
        try await withLoopbackServer({ _ in .text("agent unavailable", status: 500) }) { server in
            let p = ECSCredentialProvider(
                environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/creds"],
                transport: transport, timeout: .seconds(10), retryDelay: .zero)
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.kind == .providerFailed)
            #expect(error?.description.contains("HTTP 500 after 3 attempts: agent unavailable") == true)
            #expect(server.requestCount == 3)
        }
    }

    @Test func malformedAnswerIsAnError() async throws {
        try await withLoopbackServer({ _ in .json(#"{"AccessKeyId":"A"}"#) }) { server in
            let p = ECSCredentialProvider(
                environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/creds"],
                transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.description.contains("lacks AccessKeyId or SecretAccessKey") == true)
        }
    }

    @Test func relativeURIIsAppendedToTheAgentAddress() throws {
        let url = try ECSCredentialProvider.endpoint(environment: [
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/0f1e-2d3c",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/ignored",
        ])
        #expect(url.absoluteString == "http://169.254.170.2/v2/credentials/0f1e-2d3c")
        let noSlash = try ECSCredentialProvider.endpoint(environment: [
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "v2/credentials/x"
        ])
        #expect(noSlash.absoluteString == "http://169.254.170.2/v2/credentials/x")
    }

    @Test(arguments: [
        "http://127.0.0.1:51679/creds", "http://127.0.0.42/creds", "http://localhost/creds",
        "http://[::1]:8080/creds", "http://169.254.170.2/v2/x", "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials", "https://credentials.example.com/v1",
    ])
    func allowedFullURIs(_ uri: String) throws {
        #expect(
            try ECSCredentialProvider.endpoint(environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": uri])
                .absoluteString == uri)
    }

    @Test(arguments: [
        "http://example.com/creds", "http://10.0.0.1/creds", "ftp://127.0.0.1/x", "not a url", "/creds",
    ])
    func refusedFullURIs(_ uri: String) {
        let error = #expect(throws: CredentialsError.self) {
            try ECSCredentialProvider.endpoint(environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": uri])
        }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.description.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI") == true)
    }

    @Test func unsetIsNotConfigured() {
        let error = #expect(throws: CredentialsError.self) {
            try ECSCredentialProvider.endpoint(environment: [:])
        }
        #expect(error?.kind == .notConfigured)
        #expect(error?.problem == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI unset")
    }
}

@Suite("Web identity credentials")
struct CredentialsWebIdentityTests {
    /// A web identity provider for role `r`, with the token at `token`, asking STS at `sts`, retrying at once.
    static func provider(sts: LoopbackHTTPServer, token: String) -> WebIdentityCredentialProvider {
        WebIdentityCredentialProvider(
            environment: [
                "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE": token,
                "AWS_ENDPOINT_URL_STS": sts.baseURL.absoluteString,
            ], transport: transport, timeout: .seconds(10), retryDelay: .zero)
    }

    static func stsAnswer(_ key: String) -> String {
        """
        <AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
          <AssumeRoleWithWebIdentityResult>
            <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
            <AssumedRoleUser>
              <Arn>arn:aws:sts::123456789012:assumed-role/carbon/session</Arn>
              <AssumedRoleId>AROA:session</AssumedRoleId>
            </AssumedRoleUser>
            <Credentials>
              <SessionToken>FwoG&amp;token/+=</SessionToken>
              <SecretAccessKey>wJalr/secret</SecretAccessKey>
              <Expiration>2026-05-06T07:08:09.123Z</Expiration>
              <AccessKeyId>\(key)</AccessKeyId>
            </Credentials>
          </AssumeRoleWithWebIdentityResult>
          <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
        </AssumeRoleWithWebIdentityResponse>
        """
    }

    func form(_ body: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
            out[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return out
    }

    @Test func assumesRoleAndRereadsTheTokenFile() async throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("jwt.one\n", to: dir.path + "/token")
        try await withLoopbackServer({ _ in .xml(Self.stsAnswer("ASIASTS")) }) { server in
            let p = WebIdentityCredentialProvider(
                environment: [
                    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/carbon",
                    "AWS_WEB_IDENTITY_TOKEN_FILE": dir.path + "/token",
                    "AWS_ROLE_SESSION_NAME": "pod-1",
                    "AWS_ENDPOINT_URL_STS": server.baseURL.absoluteString,
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
                ], transport: transport, timeout: .seconds(10))
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIASTS")
            #expect(c.secretAccessKey == "wJalr/secret")
            #expect(c.sessionToken == "FwoG&token/+=")
            #expect(c.expiration == Date(timeIntervalSince1970: 1_778_051_289.123))
            try write("jwt.two", to: dir.path + "/token")
            _ = try await p.credentials()
            let requests = server.requests
            #expect(requests.count == 2)
            #expect(requests[0].method == "POST")
            #expect(requests[0].header("Authorization") == nil)
            #expect(
                requests[0].header("Content-Type")?.hasPrefix("application/x-www-form-urlencoded") == true)
            let first = form(requests[0].bodyText)
            #expect(first["Action"] == "AssumeRoleWithWebIdentity")
            #expect(first["Version"] == "2011-06-15")
            #expect(first["RoleArn"] == "arn:aws:iam::123456789012:role/carbon")
            #expect(first["RoleSessionName"] == "pod-1")
            #expect(first["WebIdentityToken"] == "jwt.one")
            #expect(form(requests[1].bodyText)["WebIdentityToken"] == "jwt.two")
        }
    }

    @Test func stsErrorIsReportedWithItsCode() async throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("jwt", to: dir.path + "/token")
        let fault = """
            <ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
              <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>
              <Message>Incorrect token audience</Message></Error>
            </ErrorResponse>
            """
        try await withLoopbackServer({ _ in .xml(fault, status: 400) }) { server in
            let p = WebIdentityCredentialProvider(
                environment: [
                    "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
                    "AWS_WEB_IDENTITY_TOKEN_FILE": dir.path + "/token",
                    "AWS_ENDPOINT_URL": server.baseURL.absoluteString,
                ], transport: transport, timeout: .seconds(10))
            let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
            #expect(error?.kind == .providerFailed)
            #expect(
                error?.description.contains("HTTP 400 (InvalidIdentityToken: Incorrect token audience)")
                    == true)
            #expect(error?.description.contains("\n") == false)
            #expect(error?.isTransient == false)
            #expect(server.requestCount == 1)
        }
    }

    @Test func transientFailuresAreRetried() async throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("jwt", to: dir.path + "/token")
        let count = CountingProvider([.success(keys("unused"))])
        try await withLoopbackServer({ _ in
            _ = try? await count.credentials()
            return count.calls == 1 ? .text("busy", status: 503) : .xml(Self.stsAnswer("ASIARETRY"))
        }) { server in
            let p = Self.provider(sts: server, token: dir.path + "/token")
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIARETRY")
            #expect(server.requestCount == 2)
        }
    }

    /// STS answers throttling with HTTP 400 and `Throttling`: retried as the SDKs do, and, when it
    /// lasts, reported as worth another try (not as a trust policy to fix).
    @Test func throttlingIsRetriedAndALastingOneIsTransient() async throws {
        let dir = try makeHome()
        defer { dir.remove() }
        try write("jwt", to: dir.path + "/token")
        let throttled = """
            <ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>
            """
        let count = CountingProvider([.success(keys("unused"))])
        try await withLoopbackServer({ _ in
            _ = try? await count.credentials()
            return count.calls == 1 ? .xml(throttled, status: 400) : .xml(Self.stsAnswer("ASIAAFTER"))
        }) { server in
            let p = Self.provider(sts: server, token: dir.path + "/token")
            let c = try await p.credentials()
            #expect(c.accessKeyID == "ASIAAFTER")
            #expect(server.requestCount == 2)
        }
        for (status, body) in [
            (400, throttled),
            (500, "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"),
        ] {
            try await withLoopbackServer({ _ in .xml(body, status: status) }) { server in
                let p = Self.provider(sts: server, token: dir.path + "/token")
                let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
                #expect(error?.isTransient == true)
                #expect(
                    error?.description.contains("try again later") == true, "\(String(describing: error))")
                #expect(error?.description.contains("trust policy") == false)
                #expect(server.requestCount == 3)
            }
        }
    }

    @Test func notConfiguredWithoutRoleOrTokenFile() async {
        let none = await #expect(throws: CredentialsError.self) {
            try await WebIdentityCredentialProvider(
                environment: [:], transport: transport, timeout: .seconds(10)
            ).credentials()
        }
        #expect(none?.kind == .notConfigured)
        #expect(none?.problem == "AWS_ROLE_ARN unset")
        let half = await #expect(throws: CredentialsError.self) {
            try await WebIdentityCredentialProvider(
                environment: ["AWS_ROLE_ARN": "arn:aws:iam::1:role/r"], transport: transport,
                timeout: .seconds(10)
            )
            .credentials()
        }
        #expect(half?.problem == "AWS_ROLE_ARN set but AWS_WEB_IDENTITY_TOKEN_FILE unset")
    }

    @Test func missingTokenFileIsAnError() async {
        let error = await #expect(throws: CredentialsError.self) {
            try await WebIdentityCredentialProvider(
                environment: [
                    "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
                    "AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent/token",
                ],
                transport: transport, timeout: .seconds(10)
            ).credentials()
        }
        #expect(error?.kind == .providerFailed)
        #expect(error?.description.contains("/nonexistent/token (file not found)") == true)
    }

    @Test func stsEndpointSelection() throws {
        func endpoint(_ env: [String: String]) throws -> String {
            try WebIdentityCredentialProvider(environment: env, transport: transport, timeout: .seconds(10))
                .stsEndpoint()
                .absoluteString
        }
        #expect(try endpoint(["AWS_REGION": "eu-west-1"]) == "https://sts.eu-west-1.amazonaws.com")
        #expect(
            try endpoint(["AWS_DEFAULT_REGION": "cn-north-1"]) == "https://sts.cn-north-1.amazonaws.com.cn")
        #expect(try endpoint([:]) == "https://sts.amazonaws.com")
        #expect(
            try endpoint(["AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://localhost:5000/"])
                == "http://localhost:5000")
        #expect(throws: CredentialsError.self) { try endpoint(["AWS_ENDPOINT_URL_STS": "localhost:5000"]) }
    }
}
