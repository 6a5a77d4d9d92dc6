import AWSClient
import CarbonModel
import CarbonStore
import Foundation

/// Write locks as short-lived items in a DynamoDB table (partition key `id`, on-demand).
///
/// Item: `id` (the lock name), `op` (a fresh id per operation), `expires` (epoch ms), `owner`
/// (host and process), `acquired` (epoch ms), `user`.
/// - Acquire: `PutItem` if `attribute_not_exists(id) OR attribute_not_exists(expires) OR
///   expires < :now`; on failure wait with
///   exponential backoff and full jitter and try again until the deadline.
/// - Renew: `UpdateItem` of `expires` if `op = :op`.
/// - Release: `DeleteItem` if `op = :op`, never read-then-delete.
/// Expiry is the `expires` attribute checked in the condition; DynamoDB's TTL is not used.
public struct DynamoDBLockService: LockService {
    public let dynamo: DynamoDBClient
    public let table: String
    /// Prepended to every lock name, so that stores sharing a table never share locks.
    public let namespace: String
    public let leaseDuration: Duration
    public let owner: String
    /// The wall clock, in epoch milliseconds (lock items compare wall-clock times).
    public var wallClock: @Sendable () -> Int64

    public init(
        dynamo: DynamoDBClient, table: String, namespace: String, leaseDuration: Duration = .seconds(10),
        owner: String = DynamoDBLockService.defaultOwner,
        wallClock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    ) {
        self.dynamo = dynamo
        self.table = table
        self.namespace = namespace
        self.leaseDuration = leaseDuration
        self.owner = owner
        self.wallClock = wallClock
    }

    public static var defaultOwner: String {
        "\(ProcessInfo.processInfo.hostName) pid \(ProcessInfo.processInfo.processIdentifier)"
    }

    func id(_ name: String) -> String { namespace + name }
    var leaseMilliseconds: Int64 {
        leaseDuration.components.seconds * 1000 + leaseDuration.components.attoseconds / 1_000_000_000_000_000
    }

    public func acquire(_ name: String, userID: String, wait: Duration) async throws -> Lease {
        let op = OperationID.make()
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + wait
        var backoff = Backoff(base: .milliseconds(10), cap: .milliseconds(500))
        while true {
            let attemptStart = clock.now
            let now = wallClock()
            let item: DynamoItem = [
                "id": .s(id(name)), "op": .s(op), "expires": .number(now + leaseMilliseconds),
                "owner": .s(owner),
                "acquired": .number(now), "user": .s(userID),
            ]
            do {
                try await dynamo.putItem(
                    table: table, item: item,
                    condition: DynamoExpression(
                        // An item without `expires` (not written by an engine) holds nobody.
                        "attribute_not_exists(id) OR attribute_not_exists(expires) OR expires < :now",
                        values: [":now": .number(now)]))
                return Lease(
                    name: name, userID: userID, operationID: op, validUntil: attemptStart + leaseDuration,
                    term: leaseDuration
                )
            } catch  where DynamoDBClient.isConditionFailure(error) {
                // Held by someone else, or by us if an earlier attempt's answer was lost.
                let holder = try await currentHolder(name)
                if holder?.op == op {
                    return Lease(
                        name: name, userID: userID, operationID: op, validUntil: attemptStart + leaseDuration,
                        term: leaseDuration)
                }
                let remaining = deadline - clock.now
                if remaining <= .zero {
                    throw LockTimeoutError(
                        userID: userID, waitedMilliseconds: (clock.now - start).milliseconds,
                        holder: holder.map { describe($0, name: name) })
                }
                var delay = backoff.next()
                if let expires = holder?.expires {
                    // No point in trying long before the holder's lease runs out, unless it releases.
                    delay = max(
                        delay, min(.milliseconds(max(expires - wallClock(), 0)) / 4, .milliseconds(200)))
                }
                try await Task.sleep(for: min(delay, remaining))
            } catch {
                throw wrap(error)
            }
        }
    }

    public func renew(_ lease: Lease) async throws -> Lease {
        let started = ContinuousClock.now
        do {
            try await dynamo.updateItem(
                table: table, key: ["id": .s(id(lease.name))],
                update: DynamoExpression(
                    "SET expires = :expires", values: [":expires": .number(wallClock() + leaseMilliseconds)]),
                condition: DynamoExpression("op = :op", values: [":op": .s(lease.operationID)]))
        } catch  where DynamoDBClient.isConditionFailure(error) {
            throw LeaseExpiredError(userID: lease.userID, operationID: lease.operationID)
        } catch {
            throw wrap(error)
        }
        var renewed = lease
        renewed.validUntil = started + leaseDuration
        return renewed
    }

    public func release(_ lease: Lease) async throws {
        do {
            try await dynamo.deleteItem(
                table: table, key: ["id": .s(id(lease.name))],
                condition: DynamoExpression("op = :op", values: [":op": .s(lease.operationID)]))
        } catch  where DynamoDBClient.isConditionFailure(error) {
            // The lease had expired and another writer holds the lock now: it is not ours to delete.
        } catch {
            throw wrap(error)
        }
    }

    /// Reads one lock item (GetItem, an action the engine needs anyway): the table exists and this
    /// process may use it.
    public func checkReachable() async throws {
        _ = try await currentHolder("carbonstore-readiness-probe")
    }

    /// An AWS error as the engine reports it (`StoreAWSError`), except that DynamoDB's
    /// ValidationException for a key that does not fit the table's key schema becomes a
    /// `LockTableKeySchemaError` naming the table and the key schema it needs.
    func wrap(_ error: any Error) -> any Error {
        if let e = error as? AWSError, LockTableKeySchemaError.isKeySchemaMismatch(e) {
            return LockTableKeySchemaError(table: table, problem: nil, underlying: e)
        }
        return StoreAWSError.wrap(error)
    }

    /// The name of the lock table's partition key, of type string (`S`); the table has no sort key.
    public static let partitionKey = "id"

    /// Why a table whose DescribeTable answer is `description` cannot hold the locks, or nil when it
    /// can (or when the answer does not tell its key schema): the primary key must be the partition
    /// key `id` of type `S` alone, as `carbonstore aws setup` creates it, since every lock item is
    /// written, read, renewed and deleted by `id` alone.
    public static func keySchemaProblem(_ description: DynamoDBClient.TableDescription) -> String? {
        guard let schema = description.keySchema else { return nil }
        let types = description.attributeTypes ?? [:]
        let shown = schema.map { key in
            let role =
                switch key.keyType {
                case "HASH": "partition key"
                case "RANGE": "sort key"
                default: key.keyType
                }
            return "\(key.attributeName) (\(role), type \(types[key.attributeName] ?? "unknown"))"
        }.joined(separator: ", ")
        guard schema.count == 1, let key = schema.first, key.keyType == "HASH",
            key.attributeName == partitionKey,
            types[partitionKey] ?? "S" == "S"
        else {
            return "its key schema is \(shown.isEmpty ? "empty" : shown)"
        }
        return nil
    }

    struct Holder {
        var op: String
        var owner: String
        /// The lease's end in epoch milliseconds; nil when the item's `expires` is missing or is not
        /// such a number (an item not written by an engine, or altered).
        var expires: Int64?
        /// The item's `expires` as stored, for messages when it cannot be read.
        var expiresText: String?
    }

    /// A number attribute as whole epoch milliseconds (a fraction is cut), nil for anything else or
    /// beyond `Int64`.
    package static func epochMilliseconds(_ value: AttributeValue) -> Int64? {
        if let whole = value.int64 { return whole }
        guard case .n(let text) = value, let d = Double(text), d.isFinite, abs(d) < 9.2e18 else { return nil }
        return Int64(d)
    }

    /// `{"id":{"S":"…"}}` for the AWS CLI's `--key`, with the id escaped for JSON and for a shell's
    /// single quotes (a prefix may hold `"` or `'`).
    package static func shellQuotedKey(_ id: String) -> String {
        var json = ""
        for scalar in id.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case _ where scalar.value < 0x20: json += String(format: "\\u%04x", scalar.value)
            default: json.unicodeScalars.append(scalar)
            }
        }
        return "{\"id\":{\"S\":\"\(json)\"}}".replacingOccurrences(of: "'", with: "'\\''")
    }

    /// An attribute as the AWS CLI writes it, for messages: `N "1795809278319.5"`, `S "soon"`.
    static func shown(_ value: AttributeValue) -> String {
        switch value {
        case .n(let t): "N \"\(t.prefix(40))\""
        case .s(let t): "S \"\(DisplayText.escaped(String(t.prefix(40))))\""
        default: "a value of another type"
        }
    }

    /// The holder, for a lock timeout's message: its lease's end, or what is wrong with its item.
    func describe(_ holder: Holder, name: String) -> String {
        guard let expires = holder.expires else {
            let stored = holder.expiresText.map { "expires = \($0)" } ?? "no expires"
            return
                "\(holder.owner) (operation \(holder.op)), whose lock item has \(stored), not a time in epoch milliseconds, so its lease never ends: the item was not written by CarbonStore or was altered; if its holder is gone, delete it: aws dynamodb delete-item --table-name \(table) --key '\(Self.shellQuotedKey(id(name)))'"
        }
        let left = expires - wallClock()
        let lease =
            left >= 0 ? "lease ends in \(left) ms" : "lease ended \(-left) ms ago by this machine's clock"
        return "\(holder.owner) (operation \(holder.op), \(lease))"
    }

    /// The lock's item, read strongly consistently. Called from `acquire`'s catch clause, whose
    /// sibling clause does not see what it throws: AWS errors are wrapped here.
    func currentHolder(_ name: String) async throws -> Holder? {
        let found: DynamoItem?
        do {
            found = try await dynamo.getItem(table: table, key: ["id": .s(id(name))])
        } catch {
            throw wrap(error)
        }
        guard let item = found else { return nil }
        let expires = item["expires"]
        return Holder(
            op: item["op"]?.string ?? "?", owner: item["owner"]?.string ?? "unknown owner",
            expires: expires.flatMap(Self.epochMilliseconds),
            expiresText: expires.map(Self.shown))
    }
}

/// The lock table's key schema is not the one the locks need: partition key `id` of type string
/// (`S`) and no sort key. Found by `carbonstore aws setup` (from DescribeTable, `problem`), or by
/// the engine when DynamoDB refuses a lock item's key with a ValidationException (`underlying`).
public struct LockTableKeySchemaError: CarbonStoreError {
    public var table: String
    /// What is wrong with the key schema, when it is known (`DynamoDBLockService.keySchemaProblem`).
    public var problem: String?
    /// DynamoDB's refusal, when the error comes from a lock operation.
    public var underlying: AWSError?

    public init(table: String, problem: String?, underlying: AWSError?) {
        self.table = table
        self.problem = problem
        self.underlying = underlying
    }

    public var kind: ErrorKind { .invalidInput }

    public var description: String {
        var s = "DynamoDB table \(table) cannot hold CarbonStore's write locks: "
        s += "its key schema must be the partition key id of type S (string), with no sort key"
        if let problem { s += "; \(problem)" }
        if let underlying {
            s += " (\(underlying.service) \(underlying.operation) failed: \(underlying.code): "
            s += "\(SecretRedaction.redact(underlying.message, bySecretShape: false))"
            if let requestID = underlying.requestID { s += " [request id \(requestID)]" }
            s += ")"
        }
        s += "; use another table: 'carbonstore aws setup --table NEW-NAME' creates one with that key "
        s += "schema, and table=NEW-NAME in the storage URI names it"
        return s
    }

    /// Whether DynamoDB refused an item's key because it does not fit the table's key schema:
    /// a ValidationException that says "Missing the key", "Type mismatch for key" or "The provided
    /// key element does not match the schema".
    public static func isKeySchemaMismatch(_ error: AWSError) -> Bool {
        guard error.code == "ValidationException" else { return false }
        let message = error.message.lowercased()
        return message.contains("missing the key") || message.contains("type mismatch for key")
            || message.contains("key element does not match the schema")
    }
}
