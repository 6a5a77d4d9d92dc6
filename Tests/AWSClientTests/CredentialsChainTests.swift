import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

@Suite("Credential provider chain")
struct CredentialsChainTests {
    @Test func standardOrderIsTheSDKOrder() {
        let chain = CredentialProviderChain.standard(environment: [:], transport: transport)
        #expect(chain.providers.count == 5)
        #expect(chain.providers[0] is EnvironmentCredentialProvider)
        #expect(chain.providers[1] is WebIdentityCredentialProvider)
        #expect(chain.providers[2] is ProfileCredentialProvider)
        #expect(chain.providers[3] is ECSCredentialProvider)
        #expect(chain.providers[4] is InstanceMetadataCredentialProvider)
    }

    @Test func environmentWinsOverProfile() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[default]\naws_access_key_id=PROFILE\naws_secret_access_key=p\n",
            to: home.path + "/.aws/credentials")
        let env = isolatedEnvironment(
            home: home.path, ["AWS_ACCESS_KEY_ID": "ENV", "AWS_SECRET_ACCESS_KEY": "e"])
        #expect(
            try await CredentialProviderChain.standard(environment: env, transport: transport).credentials()
                .accessKeyID == "ENV")
        let profileOnly = isolatedEnvironment(home: home.path)
        #expect(
            try await CredentialProviderChain.standard(environment: profileOnly, transport: transport)
                .credentials().accessKeyID == "PROFILE")
    }

    @Test func unconfiguredSourcesPassToECS() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try await withLoopbackServer({ _ in .json(CredentialsECSTests.body) }) { server in
            let env = isolatedEnvironment(
                home: home.path, ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL.absoluteString + "/c"])
            let c = try await CredentialProviderChain.standard(environment: env, transport: transport)
                .credentials()
            #expect(c.accessKeyID == "ASIAECS")
        }
    }

    @Test func fallsThroughToInstanceMetadata() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try await withLoopbackServer(fakeIMDS()) { server in
            let env = ["HOME": home.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.baseURL.absoluteString]
            let c = try await CredentialProviderChain.standard(environment: env, transport: transport)
                .credentials()
            #expect(c.accessKeyID == "ASIAIMDS")
        }
    }

    @Test func missingNamedProfileStopsTheChain() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try await withLoopbackServer({ _ in .json(CredentialsECSTests.body) }) { ecs in
            let env = isolatedEnvironment(
                home: home.path,
                [
                    "AWS_PROFILE": "nope",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.baseURL.absoluteString + "/c",
                ])
            let error = await #expect(throws: CredentialsError.self) {
                try await CredentialProviderChain.standard(environment: env, transport: transport)
                    .credentials()
            }
            #expect(error?.source == "profile 'nope'")
            #expect(error?.kind == .invalidConfiguration)
            #expect(ecs.requestCount == 0)
        }
    }

    /// As in the SDKs: AWS_PROFILE naming a profile that holds only settings (a region) is not a
    /// source of credentials, and the container's role is used.
    @Test func aNamedProfileWithoutKeysPassesToTheContainersRole() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try write("[profile prod]\nregion = eu-west-1\noutput = json\n", to: home.path + "/.aws/config")
        try await withLoopbackServer({ _ in .json(CredentialsECSTests.body) }) { ecs in
            let env = isolatedEnvironment(
                home: home.path,
                [
                    "AWS_PROFILE": "prod",
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.baseURL.absoluteString + "/c",
                ])
            let c = try await CredentialProviderChain.standard(environment: env, transport: transport)
                .credentials()
            #expect(c.accessKeyID == "ASIAECS")
        }
        let alone = isolatedEnvironment(
            home: home.path, ["AWS_PROFILE": "prod", "AWS_EC2_METADATA_DISABLED": "true"])
        let error = await #expect(throws: CredentialsError.self) {
            try await CredentialProviderChain.standard(environment: alone, transport: transport).credentials()
        }
        #expect(error?.kind == .noCredentials)
        #expect(
            error?.description.contains("profile 'prod' (no aws_access_key_id in") == true,
            "\(String(describing: error))")
    }

    @Test func failingECSStopsTheChainBeforeInstanceMetadata() async throws {
        let home = try makeHome()
        defer { home.remove() }
        try await withLoopbackServer(fakeIMDS()) { imds in
            try await withLoopbackServer({ _ in .text("boom", status: 500) }) { ecs in
                let env = [
                    "HOME": home.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.baseURL.absoluteString,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs.baseURL.absoluteString + "/c",
                ]
                let chain = CredentialProviderChain([
                    EnvironmentCredentialProvider(environment: env),
                    ECSCredentialProvider(environment: env, transport: transport, retryDelay: .zero),
                    InstanceMetadataCredentialProvider(environment: env, transport: transport),
                ])
                let error = await #expect(throws: CredentialsError.self) { try await chain.credentials() }
                #expect(error?.source == "ECS container")
                #expect(error?.kind == .providerFailed)
                #expect(ecs.requestCount == 3)
                #expect(imds.requestCount == 0)
            }
        }
    }

    @Test func nothingConfiguredListsEverySourceTried() async throws {
        let home = try makeHome()
        defer { home.remove() }
        let env = isolatedEnvironment(home: home.path)
        let error = await #expect(throws: CredentialsError.self) {
            try await CredentialProviderChain.standard(environment: env, transport: transport).credentials()
        }
        #expect(error?.kind == .noCredentials)
        #expect(
            error?.description
                == "no AWS credentials found: tried environment (AWS_ACCESS_KEY_ID unset), "
                + "web identity (AWS_ROLE_ARN unset), "
                + "profile 'default' (\(home.path)/.aws/credentials not found), "
                + "ECS container (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI unset), "
                + "EC2 instance metadata (AWS_EC2_METADATA_DISABLED=true); "
                + "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    }

    @Test func otherErrorsStopTheChain() async {
        struct Boom: Error {}
        final class Failing: CredentialProvider {
            func credentials() async throws -> AWSCredentials { throw Boom() }
        }
        let later = CountingProvider([.success(keys("LATER"))])
        let chain = CredentialProviderChain([CountingProvider([.failure(notConfigured)]), Failing(), later])
        await #expect(throws: Boom.self) { try await chain.credentials() }
        #expect(later.calls == 0)
    }
}

@Suite("Refreshing credentials")
struct CredentialsRefreshTests {
    @Test func oneRefreshInFlightForFiftyCallers() async throws {
        let clock = ManualClock()
        let base = CountingProvider(
            [.success(keys("A", expiration: clock.now.addingTimeInterval(3600)))], delay: .milliseconds(200))
        let p = RefreshingCredentialProvider(base, now: { clock.now })
        let results = try await withThrowingTaskGroup(of: AWSCredentials.self) { group in
            for _ in 0..<50 { group.addTask { try await p.credentials() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 50)
        #expect(results.allSatisfy { $0.accessKeyID == "A" })
        #expect(base.calls == 1)
        #expect(await p.fetchCount == 1)
    }

    /// AWS answering ExpiredToken before the cache expected it: the credentials are fetched again
    /// once, and the request is sent again with them.
    @Test func anExpiredTokenAnswerFetchesTheCredentialsAgainOnce() async throws {
        let clock = ManualClock()
        let base = CountingProvider([
            .success(keys("STALE", expiration: clock.now.addingTimeInterval(3600))),
            .success(keys("FRESH", expiration: clock.now.addingTimeInterval(3600))),
            .success(keys("THIRD", expiration: clock.now.addingTimeInterval(3600))),
        ])
        let expired =
            "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"
        try await withLoopbackServer({ request in
            (request.header("Authorization") ?? "").contains("Credential=STALE/")
                ? .xml(expired, status: 400) : .xml("<ok/>")
        }) { server in
            let client = AWSServiceClient(
                service: "s3", region: "eu-west-1", endpoint: server.baseURL,
                credentials: RefreshingCredentialProvider(base, now: { clock.now }), transport: transport,
                retry: RetryPolicy(
                    maxAttempts: 4, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5),
                    throttlingBaseDelay: .milliseconds(1)))
            let request = HTTPRequest(
                method: "PUT", url: server.baseURL.appendingPathComponent("b/k"), body: [1])
            let response = try await client.send(
                request, operation: "PutObject", resource: "s3://b/k", idempotent: false,
                parseError: { ($0.bodyText.contains("ExpiredToken") ? "ExpiredToken" : "Other", "") })
            #expect(response.status == 200)
            #expect(base.calls == 2)
            #expect(server.requestCount == 2)
        }
        // Still expired after fetching again: reported, after one more fetch only.
        let always = CountingProvider([
            .success(keys("A", expiration: clock.now.addingTimeInterval(3600))),
            .success(keys("B", expiration: clock.now.addingTimeInterval(3600))),
            .success(keys("C", expiration: clock.now.addingTimeInterval(3600))),
        ])
        try await withLoopbackServer({ _ in .xml(expired, status: 400) }) { server in
            let client = AWSServiceClient(
                service: "s3", region: "eu-west-1", endpoint: server.baseURL,
                credentials: RefreshingCredentialProvider(always, now: { clock.now }), transport: transport)
            let request = HTTPRequest(method: "GET", url: server.baseURL.appendingPathComponent("b/k"))
            let error = await #expect(throws: AWSError.self) {
                try await client.send(
                    request, operation: "GetObject", resource: "s3://b/k",
                    parseError: { _ in ("ExpiredToken", "") })
            }
            #expect(error?.description.contains("still expired after being fetched again") == true)
            #expect(always.calls == 2)
            #expect(server.requestCount == 2)
        }
    }

    @Test func longTermCredentialsAreCachedForever() async throws {
        let clock = ManualClock()
        let base = CountingProvider([.success(keys("LONG"))])
        let p = RefreshingCredentialProvider(base, now: { clock.now })
        for _ in 0..<5 {
            #expect(try await p.credentials().accessKeyID == "LONG")
            clock.advance(seconds: 86_400 * 365)
        }
        #expect(base.calls == 1)
    }

    @Test func refreshesWithinFiveMinutesOfExpiry() async throws {
        let clock = ManualClock()
        let t0 = clock.now
        let base = CountingProvider([
            .success(keys("FIRST", expiration: t0.addingTimeInterval(900))),
            .success(keys("SECOND", expiration: t0.addingTimeInterval(4500))),
        ])
        let p = RefreshingCredentialProvider(base, now: { clock.now })
        #expect(try await p.credentials().accessKeyID == "FIRST")
        clock.advance(seconds: 590)  // 5 min 10 s before expiry: still fresh
        #expect(try await p.credentials().accessKeyID == "FIRST")
        #expect(base.calls == 1)
        clock.advance(seconds: 20)  // 4 min 50 s before expiry: refresh
        #expect(try await p.credentials().accessKeyID == "SECOND")
        #expect(base.calls == 2)
        #expect(try await p.credentials().accessKeyID == "SECOND")
        #expect(base.calls == 2)
    }

    @Test func configurableRefreshWindow() async throws {
        let clock = ManualClock()
        let base = CountingProvider([.success(keys("X", expiration: clock.now.addingTimeInterval(900)))])
        let p = RefreshingCredentialProvider(base, refreshBefore: .seconds(600), now: { clock.now })
        _ = try await p.credentials()
        clock.advance(seconds: 310)
        _ = try await p.credentials()
        #expect(base.calls == 2)
    }

    @Test func keepsValidCredentialsWhenRefreshFailsAndRetriesLater() async throws {
        let clock = ManualClock()
        let t0 = clock.now
        let failure = CredentialsError(.providerFailed, source: "fake", problem: "HTTP 500")
        let base = CountingProvider([
            .success(keys("OLD", expiration: t0.addingTimeInterval(600))),
            .failure(failure),
            .failure(failure),
            .success(keys("NEW", expiration: t0.addingTimeInterval(7200))),
        ])
        let p = RefreshingCredentialProvider(base, retryAfterFailure: .seconds(10), now: { clock.now })
        #expect(try await p.credentials().accessKeyID == "OLD")
        clock.advance(seconds: 400)  // within the refresh window
        #expect(try await p.credentials().accessKeyID == "OLD")  // refresh failed: old kept
        #expect(base.calls == 2)
        clock.advance(seconds: 5)
        #expect(try await p.credentials().accessKeyID == "OLD")  // no retry within 10 s
        #expect(base.calls == 2)
        clock.advance(seconds: 6)
        #expect(try await p.credentials().accessKeyID == "OLD")  // retried, failed again
        #expect(base.calls == 3)
        clock.advance(seconds: 11)
        #expect(try await p.credentials().accessKeyID == "NEW")
        #expect(base.calls == 4)
    }

    @Test func expiredCredentialsAndFailedRefreshThrow() async throws {
        let clock = ManualClock()
        let failure = CredentialsError(.providerFailed, source: "fake", problem: "HTTP 500")
        let base = CountingProvider([
            .success(keys("OLD", expiration: clock.now.addingTimeInterval(600))), .failure(failure),
        ])
        let p = RefreshingCredentialProvider(base, now: { clock.now })
        _ = try await p.credentials()
        clock.advance(seconds: 601)
        let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
        #expect(error?.problem == "HTTP 500")
    }

    @Test func invalidateForcesAFetch() async throws {
        let base = CountingProvider([.success(keys("A")), .success(keys("B"))])
        let p = RefreshingCredentialProvider(base)
        #expect(try await p.credentials().accessKeyID == "A")
        await p.invalidate()
        #expect(try await p.credentials().accessKeyID == "B")
    }
}

/// Credential values that no request can carry are refused where they are found, named and never
/// quoted: a header value with a line break would otherwise be quoted by the HTTP client's error.
@Suite("Credential characters")
struct CredentialCharacterTests {
    @Test(arguments: [
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEJrSecretPart\r\nMoreSecret", "session token"),
        ("AWS_SESSION_TOKEN", "IQoJb3JpZ2luX2VjEJrSecretPart\nMoreSecret", "session token"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI\u{1}K7MDENGbPxRfiCYEXAMPLEKEY", "secret access key"),
        ("AWS_ACCESS_KEY_ID", "AKIA\u{7F}IOSFODNN7EXAMPLE", "access key id"),
    ])
    func aControlCharacterInACredentialIsRefusedWithoutQuotingIt(
        variable: String, value: String, name: String
    )
        async throws
    {
        let home = try makeHome()
        defer { home.remove() }
        var variables = ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"]
        variables[variable] = value
        let env = isolatedEnvironment(home: home.path, variables)
        let error = await #expect(throws: CredentialsError.self) {
            try await CredentialProviderChain.standard(environment: env, transport: transport).credentials()
        }
        #expect(error?.kind == .invalidConfiguration)
        let text = error?.description ?? ""
        #expect(text.contains("from environment: the \(name) holds a control character"), "\(text)")
        for part in value.split(whereSeparator: { $0.isNewline }) where part.count > 4 {
            #expect(!text.contains(part.prefix(12)), "\(text)")
        }
    }

    @Test(arguments: ["first-part\r\nsecond-part", "first-part\u{1}second-part", "first\tpart"])
    func aContainerAuthorizationTokenWithAControlCharacterIsRefused(token: String) async throws {
        let p = ECSCredentialProvider(
            environment: [
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
            ], transport: transport, timeout: .seconds(10))
        let error = await #expect(throws: CredentialsError.self) { try await p.credentials() }
        #expect(error?.kind == .invalidConfiguration)
        #expect(error?.description.contains("line break or another control character") == true)
        #expect(error?.description.contains("second") == false)
    }

    @Test func aHeaderValueHTTPCannotCarryIsNamedNotQuotedAndNotSent() async throws {
        try await withLoopbackServer({ _ in .json("{}") }) { server in
            let request = HTTPRequest(
                method: "GET", url: server.baseURL.appendingPathComponent("x"),
                headers: [HTTPHeader("X-Amz-Security-Token", "TopSecretPart\r\nRest")])
            let error = await #expect(throws: TransportError.self) {
                try await transport.send(request, timeout: .seconds(10))
            }
            #expect(error?.mayHaveBeenSent == false)
            #expect(error?.reason.contains("the header X-Amz-Security-Token holds a line break") == true)
            #expect(error?.description.contains("TopSecret") == false)
            #expect(server.requestCount == 0)
        }
    }

    @Test func anAWSErrorMessageNeverQuotesASecretByItsShape() {
        let e = AWSError(
            service: "S3", operation: "GetObject", resource: "s3://b/k", statusCode: 400,
            code: "InvalidArgument",
            message:
                "Header x-amz-security-token FwoGZXIvYXdzEJr//////////wEaDGHsessiontokenvalue123456 is malformed; key AKIAIOSFODNN7EXAMPLE, secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            requestID: "4442587FB7D0A2F9")
        #expect(!e.message.contains("FwoGZXIvYXdz"))
        #expect(!e.description.contains("AKIAIOSFODNN7EXAMPLE"))
        #expect(!e.description.contains("wJalrXUtnFEMI"))
        #expect(e.description.contains("Header x-amz-security-token <redacted> is malformed"), "\(e)")
        #expect(e.description.contains("[request id 4442587FB7D0A2F9]"))
    }
}
