import AWSClient
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// Every set-up mistake an operator makes is one line that says what to fix.
@Suite(AWSTestEnvironment.enabled) struct ErrorMessageTests {
    /// Runs one update through the command-line tool and returns its exit status and stderr.
    static func attempt(_ uri: String, environment: [String: String]) throws -> CommandRunner.Output {
        var env = environment
        env["CARBONSTORE_STORAGE"] = uri
        return try CommandRunner(environment: env).run([
            "txn", "add", "erin", "--id", "t1", "--amount", "1", "--currency", "EUR",
        ])
    }

    static func expectOneLine(_ out: CommandRunner.Output, status: Int32, _ fragments: [String]) {
        #expect(out.status == status, "\(out.stderr)")
        #expect(out.stderr.hasPrefix("carbonstore: "))
        #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)")
        for f in fragments { #expect(out.stderr.contains(f), "'\(f)' not in: \(out.stderr)") }
    }

    @Test func wrongSecretKey() throws {
        let env = try AWSTestEnvironment.get()
        let out = try Self.attempt(
            env.s3URI(prefix: "errors/"), environment: env.engineEnvironment(secret: "not-the-secret"))
        Self.expectOneLine(out, status: 64, ["SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"])
    }

    @Test func missingCredentials() throws {
        let env = try AWSTestEnvironment.get()
        let home = try TemporaryDirectory("no-creds")
        defer { home.remove() }
        let out = try Self.attempt(
            env.s3URI(prefix: "errors/"),
            environment: ["AWS_REGION": env.region, "AWS_EC2_METADATA_DISABLED": "true", "HOME": home.path])
        Self.expectOneLine(out, status: 64, ["no AWS credentials", "AWS_ACCESS_KEY_ID"])
    }

    @Test func unknownBucket() throws {
        let env = try AWSTestEnvironment.get()
        let uri =
            "s3:no-such-bucket-\(UInt32.random(in: 0...UInt32.max))?locking=none&endpoint=\(env.endpoint)"
        let out = try Self.attempt(uri, environment: env.engineEnvironment())
        // The engine's policy covers only its own bucket, so AWS may answer AccessDenied rather
        // than NoSuchBucket for a bucket it does not know; either way the message says what to do,
        // and the exit code says which: 77 permission denied, 64 invalid input.
        #expect(out.status == (out.stderr.contains("AccessDenied") ? 77 : 64), "\(out.stderr)")
        #expect(out.stderr.contains("NoSuchBucket") || out.stderr.contains("AccessDenied"), "\(out.stderr)")
        #expect(out.stderr.contains("no-such-bucket"))
    }

    @Test func unknownBucketWithBroadRights() throws {
        let env = try AWSTestEnvironment.get()
        let uri =
            "s3:no-such-bucket-\(UInt32.random(in: 0...UInt32.max))?locking=none&endpoint=\(env.endpoint)"
        let out = try Self.attempt(uri, environment: env.adminEnvironment())
        Self.expectOneLine(out, status: 64, ["NoSuchBucket", "carbonstore aws setup"])
    }

    @Test func missingTable() throws {
        let env = try AWSTestEnvironment.get()
        let uri =
            "s3:\(env.bucket)?locking=dynamo&table=no-such-table&endpoint=\(env.endpoint)&prefix=errors/"
        let out = try Self.attempt(uri, environment: env.engineEnvironment())
        Self.expectOneLine(
            out, status: 64, ["ResourceNotFoundException", "no-such-table", "table= or region="])
    }

    @Test func wrongRegion() throws {
        // The lock table exists in the test region only: in another region it is not there.
        let env = try AWSTestEnvironment.get()
        let out = try Self.attempt(
            env.s3URI(prefix: "errors/", extra: "&region=eu-central-2"), environment: env.engineEnvironment())
        Self.expectOneLine(out, status: 64, ["ResourceNotFoundException", "region"])
    }

    @Test func noRegion() throws {
        let env = try AWSTestEnvironment.get()
        var e = env.engineEnvironment()
        e.removeValue(forKey: "AWS_REGION")
        let out = try Self.attempt(env.s3URI(prefix: "errors/"), environment: e)
        Self.expectOneLine(out, status: 64, ["region", "AWS_REGION"])
    }

    @Test func accessDenied() async throws {
        // A bucket outside the engine's policy.
        let env = try AWSTestEnvironment.get()
        let other = "other-\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await env.backends(environment: env.adminEnvironment()).clients(
            region: env.region, endpoint: env.endpoint)
        try await admin.s3.createBucket(other)
        let out = try Self.attempt(
            "s3:\(other)?locking=none&endpoint=\(env.endpoint)", environment: env.engineEnvironment())
        Self.expectOneLine(out, status: 77, ["AccessDenied", "carbonstore aws policy"])
    }

    @Test func awsSetupCreatesResourcesAndPrintsThePolicy() async throws {
        let env = try AWSTestEnvironment.get()
        let suffix = UInt32.random(in: 0...UInt32.max)
        var admin = env.adminEnvironment()
        admin["AWS_ENDPOINT_URL"] = env.endpoint
        let cli = try CommandRunner(environment: admin)
        let out = try cli.run([
            "aws", "setup", "--bucket", "setup-\(suffix)", "--table", "setup-locks-\(suffix)",
        ])
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("created bucket setup-\(suffix)"))
        #expect(out.stdout.contains("blocked public access"))
        #expect(out.stdout.contains("created table setup-locks-\(suffix)"))
        #expect(out.stdout.contains("\"dynamodb:PutItem\""))
        // The policy is pinned to the table's region and account, which CreateTable's answer names.
        #expect(
            out.stdout.contains(":dynamodb:\(env.region):123456789012:table/setup-locks-\(suffix)\""),
            "\(out.stdout)")
        #expect(!out.stdout.contains("*:*"), "\(out.stdout)")
        // Running it again keeps what exists.
        let again = try cli.run([
            "aws", "setup", "--bucket", "setup-\(suffix)", "--table", "setup-locks-\(suffix)",
        ])
        #expect(again.status == 0 && again.stdout.contains("exists"), "\(again.stderr)")
        #expect(again.stdout.contains(":123456789012:table/setup-locks-\(suffix)\""), "\(again.stdout)")
        // The new resources work with the store.
        let store = try await env.store(
            "s3:setup-\(suffix)?locking=dynamo&table=setup-locks-\(suffix)&endpoint=\(env.endpoint)",
            environment: env.adminEnvironment())
        try await store.update("sam") {
            $0.setPreference("k", value: "v", at: Timestamp(millisecondsSince1970: 0))
        }
        #expect(try await store.get("sam").revision == 1)

        // The engine's own keys may not create resources.
        var engine = env.engineEnvironment()
        engine["AWS_ENDPOINT_URL"] = env.endpoint
        let denied = try CommandRunner(environment: engine).run([
            "aws", "setup", "--bucket", "denied-\(suffix)",
        ])
        #expect(denied.status == 64 && denied.stderr.contains("AccessDenied"), "\(denied.stderr)")
    }
}
