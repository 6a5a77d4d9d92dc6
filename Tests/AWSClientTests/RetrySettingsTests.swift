import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation
import Testing

/// AWS_MAX_ATTEMPTS, AWS_RETRY_MODE and the shared config file's `max_attempts` and `retry_mode`,
/// read as the AWS SDKs read them (`RetryPolicy.resolve`).
@Suite struct RetrySettingsTests {
    func attempts(_ environment: [String: String]) throws -> Int {
        var environment = environment
        if environment["HOME"] == nil { environment["HOME"] = "/nonexistent-home" }
        return try RetryPolicy.resolve(environment: environment).maxAttempts
    }

    @Test func modesHaveTheSDKsDefaultAttempts() throws {
        #expect(try attempts([:]) == RetryPolicy.standard.maxAttempts)
        #expect(try attempts(["AWS_RETRY_MODE": "legacy"]) == 4)
        #expect(try attempts(["AWS_RETRY_MODE": "standard"]) == 3)
        #expect(try attempts(["AWS_RETRY_MODE": "Adaptive"]) == 3)
        #expect(try attempts(["AWS_RETRY_MODE": "  "]) == 4)
    }

    @Test func maxAttemptsWinsOverTheModesDefault() throws {
        #expect(try attempts(["AWS_MAX_ATTEMPTS": "10"]) == 10)
        #expect(try attempts(["AWS_MAX_ATTEMPTS": " 1 ", "AWS_RETRY_MODE": "standard"]) == 1)
        #expect(try attempts(["AWS_MAX_ATTEMPTS": "7", "AWS_RETRY_MODE": "adaptive"]) == 7)
        // Only the number of attempts changes: the delays are those of the standard policy.
        var environment = ["HOME": "/nonexistent-home", "AWS_MAX_ATTEMPTS": "6"]
        var expected = RetryPolicy.standard
        expected.maxAttempts = 6
        #expect(try RetryPolicy.resolve(environment: environment) == expected)
        environment["AWS_MAX_ATTEMPTS"] = nil
        #expect(try RetryPolicy.resolve(environment: environment) == .standard)
    }

    @Test func theProfileIsReadAndTheEnvironmentWins() throws {
        let home = try makeHome()
        defer { home.remove() }
        try write(
            "[default]\nmax_attempts = 8\n[profile batch]\nretry_mode = standard\n[profile patient]\nretry_mode = standard\nmax_attempts = 12\n",
            to: home.path + "/.aws/config")
        #expect(try attempts(["HOME": home.path]) == 8)
        #expect(try attempts(["HOME": home.path, "AWS_PROFILE": "batch"]) == 3)
        #expect(try attempts(["HOME": home.path, "AWS_PROFILE": "patient"]) == 12)
        #expect(try attempts(["HOME": home.path, "AWS_PROFILE": "patient", "AWS_MAX_ATTEMPTS": "2"]) == 2)
        #expect(try attempts(["HOME": home.path, "AWS_PROFILE": "batch", "AWS_RETRY_MODE": "legacy"]) == 4)
    }

    @Test func valuesTheSDKsRefuseAreNamedWithTheirOrigin() throws {
        for bad in ["0", "-1", "+3", "3.5", "three", "99999999999999999999999"] {
            let error = #expect(throws: AWSConfigurationError.self) {
                try attempts(["AWS_MAX_ATTEMPTS": bad])
            }
            #expect(
                error?.description
                    == "invalid max attempts '\(bad)' (from AWS_MAX_ATTEMPTS): expected a whole number of 1 or more, such as 5 (attempts in all, the first included: 1 retries nothing)"
            )
        }
        let mode = #expect(throws: AWSConfigurationError.self) { try attempts(["AWS_RETRY_MODE": "fast"]) }
        #expect(
            mode?.description
                == "invalid retry mode 'fast' (from AWS_RETRY_MODE): expected standard, adaptive or legacy")

        let home = try makeHome()
        defer { home.remove() }
        try write("[profile ops]\nmax_attempts = none\n", to: home.path + "/.aws/config")
        let profile = #expect(throws: AWSConfigurationError.self) {
            try attempts(["HOME": home.path, "AWS_PROFILE": "ops"])
        }
        #expect(
            profile?.description.hasPrefix(
                "invalid max attempts 'none' (from max_attempts in profile 'ops' of \(home.path)/.aws/config)"
            )
                == true, "\(String(describing: profile))")
    }

    /// The client makes as many attempts as the policy says, then names the setting that allows more.
    @Test func aThrottledRequestIsTriedMaxAttemptsTimes() async throws {
        let slowDown = HTTPResponseSpec(
            status: 503, headers: [("Content-Type", "application/xml")],
            body: "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
        for maxAttempts in [1, 3] {
            try await withLoopbackServer({ _ in slowDown }) { server in
                let client = AWSServiceClient(
                    service: "s3", region: "us-east-1", endpoint: server.baseURL,
                    credentials: StaticCredentialProvider(
                        AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                    transport: AsyncHTTPTransport.shared,
                    retry: RetryPolicy(
                        maxAttempts: maxAttempts, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5),
                        throttlingBaseDelay: .milliseconds(1)))
                let error = await #expect(throws: AWSError.self) {
                    _ = try await S3Client(client: client, pathStyle: true).getObject(bucket: "b", key: "k")
                }
                #expect(server.requests.count == maxAttempts)
                #expect(error?.description.contains("allow more attempts with AWS_MAX_ATTEMPTS") == true)
            }
        }
    }
}
