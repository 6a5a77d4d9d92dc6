import AWSClient
import CarbonStore
import CarbonStoreAWS
import Foundation
import Testing

/// The moto server prepared by scripts/with_moto.sh, as seen through CARBONSTORE_TEST_* variables.
struct AWSTestEnvironment: Sendable {
    var endpoint: String
    var region: String
    var bucket: String
    var table: String
    var accessKeyID: String
    var secretAccessKey: String
    var adminAccessKeyID: String
    var adminSecretAccessKey: String

    static let current: AWSTestEnvironment? = {
        let e = ProcessInfo.processInfo.environment
        guard let endpoint = e["CARBONSTORE_TEST_AWS_ENDPOINT"],
            let region = e["CARBONSTORE_TEST_AWS_REGION"],
            let bucket = e["CARBONSTORE_TEST_BUCKET"], let table = e["CARBONSTORE_TEST_TABLE"],
            let key = e["CARBONSTORE_TEST_ACCESS_KEY_ID"],
            let secret = e["CARBONSTORE_TEST_SECRET_ACCESS_KEY"],
            let adminKey = e["CARBONSTORE_TEST_ADMIN_ACCESS_KEY_ID"],
            let adminSecret = e["CARBONSTORE_TEST_ADMIN_SECRET_ACCESS_KEY"]
        else { return nil }
        return AWSTestEnvironment(
            endpoint: endpoint, region: region, bucket: bucket, table: table, accessKeyID: key,
            secretAccessKey: secret, adminAccessKeyID: adminKey, adminSecretAccessKey: adminSecret)
    }()

    /// When the test command prepared moto, AWS tests must run; a missing server is a failure.
    static let required = ProcessInfo.processInfo.environment["CARBONSTORE_REQUIRE_AWS_TESTS"] == "1"

    /// Runs when moto is there, or when it is required (and then fails, saying why).
    static var enabled: ConditionTrait {
        .enabled(
            if: current != nil || required, "needs moto: run through scripts/test.sh or scripts/with_moto.sh")
    }

    static func get() throws -> AWSTestEnvironment {
        guard let current else {
            throw TestSetupError(
                "CARBONSTORE_TEST_* variables are missing: run the tests through scripts/test.sh")
        }
        return current
    }

    /// The moto server without IAM enforcement, for what moto cannot check with it on.
    static func openEndpoint() throws -> String {
        guard let e = ProcessInfo.processInfo.environment["CARBONSTORE_TEST_OPEN_ENDPOINT"] else {
            throw TestSetupError(
                "CARBONSTORE_TEST_OPEN_ENDPOINT is missing: run the tests through scripts/test.sh")
        }
        return e
    }

    /// The environment a process of the engine gets: the engine user's keys, nothing else of AWS.
    func engineEnvironment(secret: String? = nil) -> [String: String] {
        [
            "AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secret ?? secretAccessKey,
            "AWS_REGION": region, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
    }

    func adminEnvironment() -> [String: String] {
        [
            "AWS_ACCESS_KEY_ID": adminAccessKeyID, "AWS_SECRET_ACCESS_KEY": adminSecretAccessKey,
            "AWS_REGION": region, "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
        ]
    }

    /// A storage URI for a fresh prefix, so that tests never see each other's users.
    func s3URI(prefix: String, locking: String = "dynamo", extra: String = "") -> String {
        let lock = locking == "dynamo" ? "locking=dynamo&table=\(table)" : "locking=\(locking)"
        return "s3:\(bucket)?\(lock)&endpoint=\(endpoint)&prefix=\(prefix)\(extra)"
    }

    func pathURI(dir: String, extra: String = "") -> String {
        "path://\(dir)?locking=dynamo&table=\(table)&endpoint=\(endpoint)\(extra)"
    }

    func backends(environment: [String: String]? = nil, metrics: RequestMetrics? = nil) -> AWSBackends {
        AWSBackends(environment: environment ?? engineEnvironment(), metrics: metrics)
    }

    func store(_ uri: String, environment: [String: String]? = nil, metrics: RequestMetrics? = nil)
        async throws
        -> Store
    {
        try await backends(environment: environment, metrics: metrics).storeFactory().makeStore(uri)
    }

    /// Lock items of a namespace still in the table (as admin, who may Scan freely).
    func lockItems(namespacePrefix: String) async throws -> [DynamoItem] {
        let clients = try await backends(environment: adminEnvironment()).clients(
            region: region, endpoint: endpoint)
        var items: [DynamoItem] = []
        var start: DynamoItem?
        repeat {
            let page = try await clients.dynamo.scan(table: table, exclusiveStartKey: start)
            items += page.items.filter { $0["id"]?.string?.hasPrefix(namespacePrefix) == true }
            start = page.lastEvaluatedKey
        } while start != nil
        return items
    }

    static func uniquePrefix(_ label: String) -> String {
        "\(label)-\(UInt32.random(in: 0...UInt32.max))/"
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
