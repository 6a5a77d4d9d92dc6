import AWSSigning
import Foundation

/// A DynamoDB attribute value in the service's JSON form (`{"S": "x"}`, `{"N": "12"}`, ...).
public enum AttributeValue: Sendable, Hashable, Codable {
    case s(String)
    case n(String)
    case bool(Bool)
    case null
    case b(Data)
    case ss([String])
    case ns([String])
    case l([AttributeValue])
    case m([String: AttributeValue])

    public static func number(_ v: Int64) -> AttributeValue { .n(String(v)) }

    public var string: String? {
        if case .s(let v) = self { return v }
        return nil
    }

    public var int64: Int64? {
        if case .n(let v) = self { return Int64(v) }
        return nil
    }

    enum Key: String, CodingKey { case S, N, BOOL, NULL, B, SS, NS, L, M }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        guard let key = c.allKeys.first else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: c.codingPath, debugDescription: "empty attribute value"))
        }
        switch key {
        case .S: self = .s(try c.decode(String.self, forKey: key))
        case .N: self = .n(try c.decode(String.self, forKey: key))
        case .BOOL: self = .bool(try c.decode(Bool.self, forKey: key))
        case .NULL: self = .null
        case .B: self = .b(try c.decode(Data.self, forKey: key))
        case .SS: self = .ss(try c.decode([String].self, forKey: key))
        case .NS: self = .ns(try c.decode([String].self, forKey: key))
        case .L: self = .l(try c.decode([AttributeValue].self, forKey: key))
        case .M: self = .m(try c.decode([String: AttributeValue].self, forKey: key))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        switch self {
        case .s(let v): try c.encode(v, forKey: .S)
        case .n(let v): try c.encode(v, forKey: .N)
        case .bool(let v): try c.encode(v, forKey: .BOOL)
        case .null: try c.encode(true, forKey: .NULL)
        case .b(let v): try c.encode(v, forKey: .B)
        case .ss(let v): try c.encode(v, forKey: .SS)
        case .ns(let v): try c.encode(v, forKey: .NS)
        case .l(let v): try c.encode(v, forKey: .L)
        case .m(let v): try c.encode(v, forKey: .M)
        }
    }
}

public typealias DynamoItem = [String: AttributeValue]

/// A condition or update expression with its placeholders.
public struct DynamoExpression: Sendable {
    public var expression: String
    public var names: [String: String]
    public var values: DynamoItem

    public init(_ expression: String, names: [String: String] = [:], values: DynamoItem = [:]) {
        self.expression = expression
        self.names = names
        self.values = values
    }
}

/// The DynamoDB operations CarbonStore uses (JSON 1.0 protocol), over `AWSServiceClient`.
public struct DynamoDBClient: Sendable {
    public var client: AWSServiceClient

    public init(client: AWSServiceClient) { self.client = client }

    /// A conditional operation whose condition was false: the one error callers expect.
    public static func isConditionFailure(_ error: any Error) -> Bool {
        (error as? AWSError)?.code == "ConditionalCheckFailedException"
    }

    public func getItem(table: String, key: DynamoItem, consistentRead: Bool = true) async throws
        -> DynamoItem?
    {
        struct Out: Decodable { var Item: DynamoItem? }
        let out: Out = try await call(
            "GetItem", table: table,
            ["TableName": .string(table), "Key": .item(key), "ConsistentRead": .bool(consistentRead)])
        return out.Item
    }

    /// PutItem, under a condition if one is given (`ConditionalCheckFailedException` when false).
    public func putItem(table: String, item: DynamoItem, condition: DynamoExpression? = nil) async throws {
        var body: [String: JSONValue] = ["TableName": .string(table), "Item": .item(item)]
        add(condition, as: "ConditionExpression", to: &body)
        let _: Empty = try await call("PutItem", table: table, body)
    }

    public func updateItem(
        table: String, key: DynamoItem, update: DynamoExpression, condition: DynamoExpression? = nil
    ) async throws {
        var body: [String: JSONValue] = ["TableName": .string(table), "Key": .item(key)]
        add(update, as: "UpdateExpression", to: &body)
        add(condition, as: "ConditionExpression", to: &body)
        let _: Empty = try await call("UpdateItem", table: table, body)
    }

    public func deleteItem(table: String, key: DynamoItem, condition: DynamoExpression? = nil) async throws {
        var body: [String: JSONValue] = ["TableName": .string(table), "Key": .item(key)]
        add(condition, as: "ConditionExpression", to: &body)
        let _: Empty = try await call("DeleteItem", table: table, body)
    }

    public struct Page: Sendable {
        public var items: [DynamoItem]
        public var lastEvaluatedKey: DynamoItem?
    }

    public func query(
        table: String, keyCondition: DynamoExpression, limit: Int? = nil, exclusiveStartKey: DynamoItem? = nil
    ) async throws -> Page {
        var body: [String: JSONValue] = ["TableName": .string(table)]
        add(keyCondition, as: "KeyConditionExpression", to: &body)
        if let limit { body["Limit"] = .int(limit) }
        if let exclusiveStartKey { body["ExclusiveStartKey"] = .item(exclusiveStartKey) }
        return try await page("Query", table: table, body)
    }

    public func scan(
        table: String, limit: Int? = nil, exclusiveStartKey: DynamoItem? = nil, consistentRead: Bool = true
    )
        async throws -> Page
    {
        var body: [String: JSONValue] = [
            "TableName": .string(table), "ConsistentRead": .bool(consistentRead),
        ]
        if let limit { body["Limit"] = .int(limit) }
        if let exclusiveStartKey { body["ExclusiveStartKey"] = .item(exclusiveStartKey) }
        return try await page("Scan", table: table, body)
    }

    /// Creates a table with a string partition key, on-demand capacity (set-up only), and returns
    /// what CreateTable tells of it (its ARN among others).
    @discardableResult
    public func createTable(_ table: String, partitionKey: String) async throws -> TableDescription {
        let body: [String: JSONValue] = [
            "TableName": .string(table),
            "AttributeDefinitions": .array([
                .object(["AttributeName": .string(partitionKey), "AttributeType": .string("S")])
            ]),
            "KeySchema": .array([
                .object(["AttributeName": .string(partitionKey), "KeyType": .string("HASH")])
            ]),
            "BillingMode": .string("PAY_PER_REQUEST"),
        ]
        let out: TableOut = try await call("CreateTable", table: table, body)
        return out.description ?? TableDescription(status: nil, arn: nil)
    }

    /// The table's status (`ACTIVE`, `CREATING`, ...), or nil if it does not exist.
    public func tableStatus(_ table: String) async throws -> String? {
        try await describeTable(table)?.status
    }

    /// What DescribeTable and CreateTable tell of a table.
    public struct TableDescription: Sendable, Hashable {
        /// `ACTIVE`, `CREATING`, ...
        public var status: String?
        /// The table's ARN, `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`, which names the
        /// account that holds it.
        public var arn: String?
        /// The table's primary key (`KeySchema`): its partition key (`HASH`) and any sort key
        /// (`RANGE`); nil when the answer does not tell.
        public var keySchema: [KeyElement]?
        /// The types of the key attributes (`AttributeDefinitions`: `S`, `N` or `B`), by name; nil
        /// when the answer does not tell.
        public var attributeTypes: [String: String]?

        public init(
            status: String?, arn: String?, keySchema: [KeyElement]? = nil,
            attributeTypes: [String: String]? = nil
        ) {
            self.status = status
            self.arn = arn
            self.keySchema = keySchema
            self.attributeTypes = attributeTypes
        }
    }

    /// One attribute of a table's primary key.
    public struct KeyElement: Sendable, Hashable {
        public var attributeName: String
        /// `HASH` (the partition key) or `RANGE` (the sort key).
        public var keyType: String

        public init(attributeName: String, keyType: String) {
            self.attributeName = attributeName
            self.keyType = keyType
        }
    }

    private struct TableOut: Decodable {
        struct Key: Decodable {
            var AttributeName: String
            var KeyType: String
        }
        struct Attribute: Decodable {
            var AttributeName: String
            var AttributeType: String
        }
        struct T: Decodable {
            var TableStatus: String?
            var TableArn: String?
            var KeySchema: [Key]?
            var AttributeDefinitions: [Attribute]?
        }
        var Table: T?
        var TableDescription: T?

        var description: TableDescription? {
            (Table ?? TableDescription).map { t in
                .init(
                    status: t.TableStatus, arn: t.TableArn,
                    keySchema: t.KeySchema?.map {
                        KeyElement(attributeName: $0.AttributeName, keyType: $0.KeyType)
                    },
                    attributeTypes: t.AttributeDefinitions.map { definitions in
                        Dictionary(definitions.map { ($0.AttributeName, $0.AttributeType) }) { first, _ in
                            first
                        }
                    })
            }
        }
    }

    /// DescribeTable (set-up only): the table's status, ARN and key schema, or nil if it does not
    /// exist.
    public func describeTable(_ table: String) async throws -> TableDescription? {
        do {
            let out: TableOut = try await call("DescribeTable", table: table, ["TableName": .string(table)])
            return out.description ?? TableDescription(status: nil, arn: nil)
        } catch let e as AWSError where e.code == "ResourceNotFoundException" {
            return nil
        }
    }

    // MARK: Plumbing

    private struct Empty: Decodable {}

    private func page(_ op: String, table: String, _ body: [String: JSONValue]) async throws -> Page {
        struct Out: Decodable {
            var Items: [DynamoItem]?
            var LastEvaluatedKey: DynamoItem?
        }
        let out: Out = try await call(op, table: table, body)
        return Page(items: out.Items ?? [], lastEvaluatedKey: out.LastEvaluatedKey)
    }

    private func add(_ e: DynamoExpression?, as name: String, to body: inout [String: JSONValue]) {
        guard let e else { return }
        body[name] = .string(e.expression)
        if !e.names.isEmpty {
            var names = body["ExpressionAttributeNames"]?.objectValue ?? [:]
            for (k, v) in e.names { names[k] = .string(v) }
            body["ExpressionAttributeNames"] = .object(names)
        }
        if !e.values.isEmpty {
            var values = body["ExpressionAttributeValues"]?.objectValue ?? [:]
            for (k, v) in e.values { values[k] = .attribute(v) }
            body["ExpressionAttributeValues"] = .object(values)
        }
    }

    private func call<Out: Decodable>(_ operation: String, table: String, _ body: [String: JSONValue])
        async throws
        -> Out
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = try encoder.encode(JSONValue.object(body))
        let request = HTTPRequest(
            method: "POST", url: client.endpoint,
            headers: [
                HTTPHeader("Content-Type", "application/x-amz-json-1.0"),
                HTTPHeader("X-Amz-Target", "DynamoDB_20120810.\(operation)"),
            ], body: [UInt8](data))
        let response = try await client.send(
            request, operation: operation, resource: "table \(table)", parseError: Self.parseError)
        if response.body.isEmpty, let empty = Empty() as? Out { return empty }
        do {
            return try JSONDecoder().decode(Out.self, from: Data(response.body))
        } catch {
            throw AWSError(
                service: "DynamoDB", operation: operation, resource: "table \(table)",
                statusCode: response.status,
                code: "MalformedResponse", message: "unreadable answer: \(error)",
                requestID: response.header("x-amzn-RequestId"))
        }
    }

    static func parseError(_ response: HTTPResponse) -> (code: String, message: String) {
        struct E: Decodable {
            var __type: String?
            var message: String?
            var Message: String?
        }
        if let e = try? JSONDecoder().decode(E.self, from: Data(response.body)), let type = e.__type {
            let code = type.split(separator: "#").last.map(String.init) ?? type
            return (code, e.message ?? e.Message ?? "")
        }
        // Authentication failures may come from a front end that answers in XML.
        if let error = XMLElement.awsError(response.body) { return error }
        return (
            response.status == 403 ? "AccessDeniedException" : "HTTP\(response.status)",
            XMLElement.unreadableErrorBody(response.body)
        )
    }
}

/// Just enough JSON to build request bodies.
enum JSONValue: Encodable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case item(DynamoItem)
    case attribute(AttributeValue)

    var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let v): try c.encode(v)
        case .int(let v): try c.encode(v)
        case .bool(let v): try c.encode(v)
        case .array(let v): try c.encode(v)
        case .object(let v): try c.encode(v)
        case .item(let v): try c.encode(v)
        case .attribute(let v): try c.encode(v)
        }
    }
}
