import Foundation

/// The moto server that scripts/with_moto.sh prepares (scripts/aws_test_env.py), as its
/// `CARBONSTORE_TEST_*` variables describe it: the endpoint, a bucket and a lock table, the engine
/// user's least-privilege keys and an admin's. Shared by every test and benchmark that talks to it.
public struct MotoEnvironment: Sendable {
    public var endpoint: String
    public var region: String
    public var bucket: String
    public var table: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var adminAccessKeyID: String
    public var adminSecretAccessKey: String

    /// The server of this run, or nil when the variables are not set.
    public static let current: MotoEnvironment? = {
        let e = ProcessInfo.processInfo.environment
        guard let endpoint = e["CARBONSTORE_TEST_AWS_ENDPOINT"],
            let bucket = e["CARBONSTORE_TEST_BUCKET"], let table = e["CARBONSTORE_TEST_TABLE"],
            let key = e["CARBONSTORE_TEST_ACCESS_KEY_ID"],
            let secret = e["CARBONSTORE_TEST_SECRET_ACCESS_KEY"],
            let adminKey = e["CARBONSTORE_TEST_ADMIN_ACCESS_KEY_ID"],
            let adminSecret = e["CARBONSTORE_TEST_ADMIN_SECRET_ACCESS_KEY"]
        else { return nil }
        return MotoEnvironment(
            endpoint: endpoint, region: e["CARBONSTORE_TEST_AWS_REGION"] ?? "us-east-1", bucket: bucket,
            table: table, accessKeyID: key, secretAccessKey: secret, adminAccessKeyID: adminKey,
            adminSecretAccessKey: adminSecret)
    }()

    /// When the test command prepared moto, AWS tests must run; a missing server is a failure.
    public static let required = ProcessInfo.processInfo.environment["CARBONSTORE_REQUIRE_AWS_TESTS"] == "1"

    /// Whether the tests that need moto run: it is there, or it is required (and they then fail,
    /// saying why).
    public static var testsEnabled: Bool { current != nil || required }

    public static func get() throws -> MotoEnvironment {
        guard let current else {
            throw TestSetupError(
                "CARBONSTORE_TEST_* variables are missing: run the tests through scripts/test.sh or scripts/with_moto.sh"
            )
        }
        return current
    }

    /// The environment a process of the engine gets: the engine user's keys, nothing else of AWS.
    public func engineEnvironment(secret: String? = nil) -> [String: String] {
        [
            "AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secret ?? secretAccessKey,
            "AWS_REGION": region, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
    }

    public func adminEnvironment() -> [String: String] {
        [
            "AWS_ACCESS_KEY_ID": adminAccessKeyID, "AWS_SECRET_ACCESS_KEY": adminSecretAccessKey,
            "AWS_REGION": region, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
    }

    /// A storage URI for a fresh prefix, so that tests never see each other's users.
    public func s3URI(prefix: String, locking: String = "dynamo", extra: String = "") -> String {
        let lock = locking == "dynamo" ? "locking=dynamo&table=\(table)" : "locking=\(locking)"
        return "s3:\(bucket)?\(lock)&endpoint=\(endpoint)&prefix=\(prefix)\(extra)"
    }

    public static func uniquePrefix(_ label: String) -> String {
        "\(label)-\(UInt32.random(in: 0...UInt32.max))/"
    }
}

/// A test that cannot run as set up (a missing server or variable), with what to do.
public struct TestSetupError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
