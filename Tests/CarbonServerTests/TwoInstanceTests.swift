import CarbonServer
import CarbonStore
import CarbonStoreTestSupport
import Foundation
import Testing

/// Two `carbonstore serve` processes on different ports over the same storage, with concurrent
/// clients adding transactions to the same users through both (issue 8, "Two instances"). Nothing
/// acknowledged may be lost, no id may appear twice, and every write that added something must
/// have its own revision.
@Suite(.serialized) struct TwoInstanceTests {
    @Test func pathWithLocalLocks() async throws {
        let dir = try TemporaryDirectory("two-instances-local")
        defer { dir.remove() }
        let uri = "path:\(dir.path)/data"
        let outcome = try await TwoInstanceRun(storage: uri).run()
        try await outcome.checkEngine(record: { user in try await Self.engineRecord(uri, user) })
    }

    @Test func pathFenceOnly() async throws {
        let dir = try TemporaryDirectory("two-instances-fence")
        defer { dir.remove() }
        let uri = "path:\(dir.path)/data?locking=none"
        let outcome = try await TwoInstanceRun(storage: uri).run()
        try await outcome.checkEngine(record: { user in try await Self.engineRecord(uri, user) })
    }

    @Test(MotoEnvironment.enabled) func s3WithDynamoLocks() async throws {
        let moto = try MotoEnvironment.get()
        let uri = moto.storageURI(label: "two-instances")
        let outcome = try await TwoInstanceRun(
            storage: uri, environment: moto.engineEnvironment(), requestsPerClient: 20
        ).run()
        // The engine's own read, in a process of its own with the engine user's keys.
        var environment = moto.engineEnvironment()
        environment["CARBONSTORE_STORAGE"] = uri
        let runner = try CommandRunner(environment: environment)
        try await outcome.checkEngine(record: { user in
            let shown = try runner.run(["user", "show", "--json", user])
            guard shown.status == 0, let record = TwoInstanceRecord(json: shown.stdout) else {
                throw ServeInstanceError(
                    "carbonstore user show \(user) failed (\(shown.status)): \(shown.stderr)")
            }
            return record
        })
    }

    /// The user's record as the engine reads it in this process.
    static func engineRecord(_ uri: String, _ user: String) async throws -> TwoInstanceRecord {
        let record = try await StoreFactory().makeStore(uri).get(user)
        return TwoInstanceRecord(revision: record.revision, transactionIDs: record.transactions.map(\.id))
    }
}

/// The part of a user's record the checks need.
struct TwoInstanceRecord: Sendable {
    var revision: UInt64
    var transactionIDs: [String]

    init(revision: UInt64, transactionIDs: [String]) {
        self.revision = revision
        self.transactionIDs = transactionIDs
    }

    /// From the JSON form of a record (`GET /v1/users/{userId}`, `carbonstore user show --json`).
    init?(json: String) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any],
            let revision = (object["revision"] as? NSNumber)?.uint64Value,
            let transactions = object["transactions"] as? [[String: Any]]
        else { return nil }
        let ids = transactions.compactMap { $0["id"] as? String }
        guard ids.count == transactions.count else { return nil }
        self.init(revision: revision, transactionIDs: ids)
    }
}

/// One run: two instances over `storage`, `clients` concurrent clients, each sending
/// `requestsPerClient` batches, alternating between the instances.
struct TwoInstanceRun: Sendable {
    static let users = ["ana", "ben", "chloe"]

    var storage: String
    var environment: [String: String] = [:]
    var clients = 8
    var requestsPerClient = 30

    /// What the clients were told, per user.
    struct Ledger: Sendable {
        /// Transaction ids whose batch was answered `added`.
        var acknowledged: [String: [String]] = [:]
        /// The revision of every answer that added something (each must be its own write).
        var committedRevisions: [String: [UInt64]] = [:]
        var resends = 0
        var retriesAfter503 = 0
        var retriesAfter409 = 0
    }

    struct Outcome: Sendable {
        var ledger: Ledger

        /// Checks one view of a user's record against what was acknowledged.
        func check(_ record: TwoInstanceRecord, user: String, view: String) {
            let acknowledged = ledger.acknowledged[user] ?? []
            let revisions = ledger.committedRevisions[user] ?? []
            let ids = record.transactionIDs
            #expect(Set(ids).count == ids.count, "\(view): an id of \(user) appears twice: \(ids.sorted())")
            let missing = Set(acknowledged).subtracting(ids)
            #expect(
                missing.isEmpty, "\(view): acknowledged transactions of \(user) are lost: \(missing.sorted())"
            )
            let unknown = Set(ids).subtracting(acknowledged)
            #expect(
                unknown.isEmpty, "\(view): \(user) has transactions never acknowledged: \(unknown.sorted())")
            #expect(
                record.revision == UInt64(revisions.count),
                "\(view): \(user) is at revision \(record.revision) after \(revisions.count) committed writes"
            )
        }

        /// Checks the record as the engine reads it, for every user.
        func checkEngine(record: (String) async throws -> TwoInstanceRecord) async throws {
            for user in TwoInstanceRun.users {
                check(try await record(user), user: user, view: "engine")
            }
        }
    }

    func run() async throws -> Outcome {
        let (key, entry) = APIKeys.newKey(role: .write)
        var env = environment
        env["CARBONSTORE_STORAGE"] = storage
        env["CARBONSTORE_API_KEYS"] = entry.entry
        env["CARBONSTORE_LOG_LEVEL"] = "notice"
        let a = try await ServeInstance.start(label: "A", environment: env)
        defer { a.forceStop() }
        let b = try await ServeInstance.start(label: "B", environment: env)
        defer { b.forceStop() }
        #expect(a.port != b.port)
        let ports = [a.port, b.port]

        let started = ContinuousClock.now
        let ledger = CarbonStoreTestSupport.Locked(Ledger())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    try await client(c, ports: ports, key: key, ledger: ledger)
                }
            }
            try await group.waitForAll()
        }
        let final = ledger.withLock { $0 }
        let outcome = Outcome(ledger: final)
        let elapsed = ContinuousClock.now - started
        // How much the instances contended, from their own metrics (informative: contention is
        // likely, not certain, so it is not asserted).
        var contention: [String] = []
        for (label, port) in [("A", a.port), ("B", b.port)] {
            let metrics = try await sendHTTP(port: port, .get, "/metrics", key: key).body
            let wanted = ["carbonstore_fence_conflicts_total", "carbonstore_lock_wait_seconds_sum"]
            let lines = metrics.split(separator: "\n").filter { line in
                wanted.contains { line.hasPrefix($0 + " ") }
            }
            contention.append("\(label): " + lines.joined(separator: ", "))
        }
        print(
            "two instances over \(storage): \(clients) clients x \(requestsPerClient) batches in"
                + " \(elapsed); \(final.resends) resends, \(final.retriesAfter503) retries after 503,"
                + " \(final.retriesAfter409) after 409; \(contention.joined(separator: "; "))")

        for user in Self.users {
            let revisions = final.committedRevisions[user] ?? []
            #expect(
                revisions.sorted() == (0..<revisions.count).map { UInt64($0 + 1) },
                "the writes that added to \(user) must have the revisions 1...\(revisions.count), each once: \(revisions.sorted())"
            )
            for (label, port) in [("A", a.port), ("B", b.port)] {
                let answer = try await sendHTTP(port: port, .get, "/v1/users/\(user)", key: key)
                #expect(answer.status == 200, "GET \(user) through \(label): \(answer.status) \(answer.body)")
                guard let record = TwoInstanceRecord(json: answer.body) else {
                    Issue.record("GET \(user) through \(label) is not a record: \(answer.body)")
                    continue
                }
                outcome.check(record, user: user, view: "GET through instance \(label)")
            }
        }
        for instance in [a, b] {
            let status = await instance.stop()
            #expect(
                status == 0,
                "instance \(instance.label) exits 0 on SIGTERM (status \(String(describing: status))); stderr: \(instance.stderrText)"
            )
        }
        return outcome
    }

    /// One client: `requestsPerClient` batches of unique transactions, each to the instance after
    /// the previous one's; some resent to the other instance, which must answer `unchanged`.
    func client(_ c: Int, ports: [Int], key: String, ledger: CarbonStoreTestSupport.Locked<Ledger>)
        async throws
    {
        for k in 0..<requestsPerClient {
            let user = Self.users[(c * 5 + k) % Self.users.count]
            let size = [1, 3, 1, 2][k % 4]
            let ids = (0..<size).map { "c\(c)-b\(k)-\(UInt32.random(in: 0...UInt32.max))-\($0)" }
            let items = ids.enumerated().map { j, id in
                """
                {"id": "\(id)", "time": "2026-03-\(10 + k % 18)T1\(j):\(10 + c):00Z", \
                "amount": {"amount": "-\(c + 1).\(k % 10)\(j)", "currency": "EUR"}, \
                "merchant": "Shop \(c)", "mcc": 5411}
                """
            }
            let body = "{\"transactions\": [\(items.joined(separator: ", "))]}"
            let port = ports[(c + k) % ports.count]
            let first = try await post(user: user, body: body, port: port, key: key, ledger: ledger)
            let statuses = first.results.map(\.status)
            #expect(first.results.map(\.id) == ids, "the answer names the batch's ids in order")
            #expect(statuses == Array(repeating: "added", count: size), "a new batch is added: \(statuses)")
            ledger.withLock {
                $0.acknowledged[user, default: []] += ids
                $0.committedRevisions[user, default: []].append(first.revision)
            }
            // A client that did not see the answer sends the same batch again, to the other instance.
            if k % 3 == 1 {
                let again = try await post(
                    user: user, body: body, port: ports[(c + k + 1) % ports.count], key: key, ledger: ledger)
                ledger.withLock { $0.resends += 1 }
                #expect(
                    again.results.map(\.status) == Array(repeating: "unchanged", count: size),
                    "a resent batch changes nothing: \(again.results)")
                #expect(again.revision >= first.revision)
            }
        }
    }

    struct BatchAnswer: Sendable {
        var revision: UInt64
        var results: [(id: String, status: String)]
    }

    /// POSTs a batch until it is answered 200, waiting as a client would: `Retry-After` on 503,
    /// a short random pause on 409 (the writes kept conflicting).
    func post(
        user: String, body: String, port: Int, key: String, ledger: CarbonStoreTestSupport.Locked<Ledger>
    ) async throws
        -> BatchAnswer
    {
        for _ in 0..<40 {
            let answer = try await sendHTTP(
                port: port, .post, "/v1/users/\(user)/transactions", key: key, body: body)
            switch answer.status {
            case 200:
                guard let object = answer.json, let revision = (object["revision"] as? NSNumber)?.uint64Value,
                    let results = object["results"] as? [[String: Any]]
                else { throw ServeInstanceError("a 200 answer that is no batch result: \(answer.body)") }
                return BatchAnswer(
                    revision: revision,
                    results: results.map { ($0["id"] as? String ?? "?", $0["status"] as? String ?? "?") })
            case 503:
                ledger.withLock { $0.retriesAfter503 += 1 }
                let seconds = answer.retryAfter.flatMap(Int.init) ?? 1
                #expect(answer.retryAfter != nil, "a 503 says when to retry: \(answer.body)")
                try await Task.sleep(for: .seconds(min(max(seconds, 0), 5)))
            case 409:
                ledger.withLock { $0.retriesAfter409 += 1 }
                try await Task.sleep(for: .milliseconds(Int.random(in: 20...200)))
            default:
                throw ServeInstanceError(
                    "POST to \(user) on port \(port) answered \(answer.status): \(answer.body)")
            }
        }
        throw ServeInstanceError("POST to \(user) on port \(port) was refused 40 times")
    }
}
