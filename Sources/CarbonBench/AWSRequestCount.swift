import AWSClient
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation

/// Counts the AWS requests a committed update costs, against the moto server that
/// scripts/with_moto.sh prepares (the counts are the same on AWS: they come from the protocol).
enum AWSRequestCount {
    static func run(updates: Int) async throws {
        guard let moto = MotoEnvironment.current else {
            print(
                "--only aws needs a moto server: scripts/with_moto.sh .build/release/CarbonBench --only aws")
            exit(64)
        }
        let (endpoint, bucket, table) = (moto.endpoint, moto.bucket, moto.table)
        let environment = moto.engineEnvironment()
        print("## AWS requests per committed update")
        print()
        print(
            "\(updates) updates per row, each appending one transaction to one of 8 users; requests counted at the HTTP layer, retries included."
        )
        print()
        print(
            "| mode | writers | requests per update | by operation (per update) | est. cost per million updates |"
        )
        print("| --- | ---: | ---: | --- | ---: |")
        for (mode, locking) in [
            ("seed: s3 + locking=dynamo", "locking=dynamo&table=\(table)"),
            ("s3 + locking=none (compare-and-swap only)", "locking=none"),
        ] {
            for writers in [1, 4] {
                let metrics = RequestMetrics()
                let prefix = "bench-\(UInt32.random(in: 0...UInt32.max))/"
                let store = try await AWSBackends(environment: environment, metrics: metrics).storeFactory()
                    .makeStore("s3:\(bucket)?\(locking)&endpoint=\(endpoint)&prefix=\(prefix)")
                let eur = CurrencyCode("EUR")!
                let perWriter = updates / writers
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for w in 0..<writers {
                        group.addTask {
                            for n in 0..<perWriter {
                                let t = Transaction(
                                    id: "w\(w)-\(n)",
                                    time: Timestamp(millisecondsSince1970: 1_800_000_000_000),
                                    amount: Money(minorUnits: 100, currency: eur))
                                try await store.update("user-\(n % 8)") { try $0.upsert(t) }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let committed = Double(perWriter * writers)
                let counts = metrics.snapshot
                let by = counts.sorted { $0.key < $1.key }
                    .map { "\($0.key) \(String(format: "%.2f", Double($0.value) / committed))" }.joined(
                        separator: ", ")
                print(
                    "| \(mode) | \(writers) | \(String(format: "%.2f", Double(metrics.total) / committed)) | \(by) | \(cost(counts, per: committed)) |"
                )
            }
        }
        print()
        print(
            "Prices used (on-demand, us-east-1 list prices): S3 Standard PUT/LIST $0.005 per 1,000, GET $0.0004 per 1,000; S3 DELETE free; DynamoDB on-demand $0.625 per million write request units and $0.125 per million read request units (a lock item is under 1 KB: one write unit per PutItem, UpdateItem or DeleteItem, one read unit per strongly consistent GetItem). Storage and data transfer are not included."
        )
    }

    /// Estimated dollars per million updates from request counts.
    static func cost(_ counts: [String: Int], per committed: Double) -> String {
        var dollars = 0.0
        for (op, n) in counts {
            let perUpdate = Double(n) / committed
            let price: Double
            switch op {
            case "s3:PutObject", "s3:ListObjectsV2", "s3:DeleteObject":
                price = op == "s3:DeleteObject" ? 0 : 5.0
            case "s3:GetObject": price = 0.40
            case "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem": price = 0.625
            case "dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan": price = 0.125
            default: price = 0
            }
            dollars += perUpdate * price
        }
        return String(format: "$%.2f", dollars)
    }
}
