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
            "\(updates) updates per row, each appending one transaction; requests counted at the HTTP layer, retries included. Rows over 8 users spread each writer's updates over them; the hot-user row has 8 writers in one process updating one user at once."
        )
        print()
        print(
            "| mode | writers | users | requests per update | by operation (per update) | answers by status (per update) | est. cost per million updates |"
        )
        print("| --- | ---: | ---: | ---: | --- | --- | ---: |")
        let seed = "locking=dynamo&table=\(table)"
        for row in [
            Row(mode: "seed: s3 + locking=dynamo", locking: seed, writers: 1, users: 8),
            Row(mode: "seed: s3 + locking=dynamo", locking: seed, writers: 4, users: 8),
            Row(
                mode: "s3 + locking=none (compare-and-swap only)", locking: "locking=none", writers: 1,
                users: 8),
            Row(
                mode: "s3 + locking=none (compare-and-swap only)", locking: "locking=none", writers: 4,
                users: 8),
            Row(mode: "seed: s3 + locking=dynamo, one hot user", locking: seed, writers: 8, users: 1),
        ] {
            let r = try await measure(
                row, updates: updates, bucket: bucket, endpoint: endpoint, environment: environment)
            print(
                "| \(row.mode) | \(row.writers) | \(row.users) | \(perUpdate(r.total, r.committed)) | \(r.byOperation) | \(r.byStatus) | \(cost(r.counts, per: Double(r.committed))) |"
            )
        }
        print()
        print(
            "Prices used (on-demand, us-east-1 list prices): S3 Standard PUT/LIST $0.005 per 1,000, GET $0.0004 per 1,000; S3 DELETE free; DynamoDB on-demand $0.625 per million write request units and $0.125 per million read request units (a lock item is under 1 KB: one write unit per PutItem, UpdateItem or DeleteItem, one read unit per strongly consistent GetItem). Storage and data transfer are not included."
        )
    }

    /// One row of the table: a lock mode, how many writers at once, over how many users.
    struct Row {
        var mode: String
        var locking: String
        var writers: Int
        var users: Int
    }

    struct Counts {
        var committed: Int
        var counts: [String: Int]
        var statuses: [Int: Int]
        var total: Int { counts.values.reduce(0, +) }

        var byOperation: String {
            counts.sorted { $0.key < $1.key }.map { "\($0.key) \(perUpdate($0.value, committed))" }
                .joined(separator: ", ")
        }

        /// Every status, 304 (a cache revalidation that found the object unchanged) always shown.
        var byStatus: String {
            var all = statuses
            all[304, default: 0] += 0
            return all.sorted { $0.key < $1.key }.map { "\($0.key) \(perUpdate($0.value, committed))" }
                .joined(separator: ", ")
        }
    }

    static func perUpdate(_ n: Int, _ committed: Int) -> String {
        String(format: "%.2f", Double(n) / Double(max(committed, 1)))
    }

    /// `row.writers` tasks in one process, each committing its share of `updates` through
    /// `Store.update`: user `n % row.users` for its `n`th update. Counts every request and answer.
    static func measure(
        _ row: Row, updates: Int, bucket: String, endpoint: String, environment: [String: String]
    ) async throws -> Counts {
        let metrics = RequestMetrics()
        let transport = StatusCountingTransport(AsyncHTTPTransport.shared)
        let prefix = "bench-\(UInt32.random(in: 0...UInt32.max))/"
        let store = try await AWSBackends(environment: environment, transport: transport, metrics: metrics)
            .storeFactory()
            .makeStore("s3:\(bucket)?\(row.locking)&endpoint=\(endpoint)&prefix=\(prefix)")
        let eur = CurrencyCode("EUR")!
        let perWriter = updates / row.writers
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<row.writers {
                group.addTask {
                    for n in 0..<perWriter {
                        let t = Transaction(
                            id: "w\(w)-\(n)",
                            time: Timestamp(millisecondsSince1970: 1_800_000_000_000),
                            amount: Money(minorUnits: 100, currency: eur))
                        try await store.update("user-\(n % row.users)") { try $0.upsert(t) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let committed = perWriter * row.writers
        // Taken before the check below, whose reads are not part of the updates' cost.
        let counts = Counts(committed: committed, counts: metrics.snapshot, statuses: transport.snapshot)
        // Every update committed exactly once: the users hold one transaction per update.
        var held = 0
        for u in 0..<min(row.users, committed) { held += try await store.get("user-\(u)").transactions.count }
        guard held == committed else {
            throw BenchError(
                "\(row.mode), \(row.writers) writers: \(committed) updates committed, \(held) transactions held"
            )
        }
        return counts
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

/// Counts the HTTP answers by status, around another transport: how many GetObjects were answered
/// 304 (not modified), how many conditional writes and lock acquisitions were refused.
final class StatusCountingTransport: HTTPTransport {
    let base: any HTTPTransport
    let counts = CarbonStoreTestSupport.Locked<[Int: Int]>([:])

    init(_ base: any HTTPTransport) { self.base = base }

    func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        let response = try await base.send(request, timeout: timeout)
        counts.withLock { $0[response.status, default: 0] += 1 }
        return response
    }

    var snapshot: [Int: Int] { counts.withLock { $0 } }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
