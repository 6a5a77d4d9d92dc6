import AWSClient
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// The moto server prepared by scripts/with_moto.sh (`MotoEnvironment`), with what only the AWS
/// tests need of it.
typealias AWSTestEnvironment = MotoEnvironment

extension MotoEnvironment {
    /// Runs when moto is there, or when it is required (and then fails, saying why).
    static var enabled: ConditionTrait {
        .enabled(if: testsEnabled, "needs moto: run through scripts/test.sh or scripts/with_moto.sh")
    }

    /// The moto server without IAM enforcement, for what moto cannot check with it on.
    static func openEndpoint() throws -> String {
        guard let e = ProcessInfo.processInfo.environment["CARBONSTORE_TEST_OPEN_ENDPOINT"] else {
            throw TestSetupError(
                "CARBONSTORE_TEST_OPEN_ENDPOINT is missing: run the tests through scripts/test.sh")
        }
        return e
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

}
