import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

/// The engine's side of the HTTP benchmark (scripts/bench-http.sh): W1 users seeded through the
/// engine, and the rate of `Store.update` appending one transaction, with as many concurrent
/// writers as the HTTP benchmark has connections.
enum UpdateRate {
    /// The id of the `n`th seeded user: `prefix` and five digits (`w1-00042`), as
    /// scripts/bench-http.lua names them.
    static func userID(_ prefix: String, _ n: Int) -> String {
        let digits = String(n)
        return prefix + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
    }

    /// Gives `users` users the content of the W1 workload (seed 7), `concurrency` at a time.
    static func seed(_ store: Store, prefix: String, users: Int, concurrency: Int = 4) async throws {
        let base = RecordGenerator.workload(.w1, seed: 7)
        let next = CarbonStoreTestSupport.Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, concurrency) {
                group.addTask {
                    while true {
                        let n = next.withLock { n -> Int in
                            defer { n += 1 }
                            return n
                        }
                        guard n < users else { return }
                        try await store.update(userID(prefix, n)) { r in
                            r.transactions = base.transactions
                            r.responses = base.responses
                            r.preferences = base.preferences
                            r.footprints = base.footprints
                            r.savings = base.savings
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    struct Result {
        var updates: Int
        var elapsed: Duration
        var latencies: [Duration]
        var transactionsAfter: Int

        var perSecond: Double {
            let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            return Double(updates) / s
        }

        func percentile(_ p: Double) -> Duration {
            let sorted = latencies.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
        }
    }

    /// `concurrency` writers, for `seconds`, each appending one new transaction per
    /// `Store.update` to the seeded users in turn (one shared round-robin counter).
    static func measure(_ store: Store, prefix: String, users: Int, concurrency: Int, seconds: Int)
        async throws -> Result
    {
        let eur = CurrencyCode("EUR")!
        let next = CarbonStoreTestSupport.Locked(0)
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(seconds)
        let latencies = try await withThrowingTaskGroup(of: [Duration].self) { group in
            for w in 0..<concurrency {
                group.addTask {
                    var samples: [Duration] = []
                    var n = 0
                    while clock.now < end {
                        let turn = next.withLock { t -> Int in
                            defer { t += 1 }
                            return t
                        }
                        let t = Transaction(
                            id: "rate-\(w)-\(n)",
                            time: Timestamp(millisecondsSince1970: 1_800_000_000_000 + Int64(turn)),
                            amount: Money(minorUnits: -1234, currency: eur), merchant: "Bench Merchant",
                            mcc: 5411)
                        n += 1
                        let began = clock.now
                        try await store.update(userID(prefix, turn % users)) { try $0.upsert(t) }
                        samples.append(clock.now - began)
                    }
                    return samples
                }
            }
            var all: [Duration] = []
            for try await samples in group { all += samples }
            return all
        }
        let elapsed = clock.now - start
        let last = try await store.get(userID(prefix, 0))
        return Result(
            updates: latencies.count, elapsed: elapsed, latencies: latencies,
            transactionsAfter: last.transactions.count)
    }

    /// `--only update-rate`: seeds `users` W1 users and one hot W1 user in `dir`, and prints the
    /// rate of `Store.update` on many users and on the hot one.
    static func run(dir: String, users: Int, concurrency: Int, seconds: Int) async throws {
        let uri = "path:" + dir + "/rate"
        let store = try await StoreFactory().makeStore(uri)
        let clock = ContinuousClock()
        let seedStart = clock.now
        try await seed(store, prefix: "w1-", users: users)
        try await seed(store, prefix: "hot-", users: 1)
        let seedTime = clock.now - seedStart
        print(
            "## Store.update rate: append one transaction, \(concurrency) concurrent writers, \(seconds) s each"
        )
        print()
        print("- storage: \(uri) (locking=local), one process")
        print("- seeded \(users + 1) W1 users through Store.update in \(CarbonBench.format(seedTime))")
        print()
        print("| case | updates/s | p50 | p99 | transactions of the first user after |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for (label, prefix, count) in [
            ("\(users) W1 users, round-robin", "w1-", users), ("one hot W1 user", "hot-", 1),
        ] {
            let r = try await measure(
                store, prefix: prefix, users: count, concurrency: concurrency, seconds: seconds)
            print(
                "| \(label) | \(String(format: "%.0f", r.perSecond)) (\(r.updates) in \(CarbonBench.format(r.elapsed))) | \(CarbonBench.format(r.percentile(0.5))) | \(CarbonBench.format(r.percentile(0.99))) | \(r.transactionsAfter) |"
            )
        }
        print()
    }
}
