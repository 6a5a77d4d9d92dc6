import AWSClient
import AWSSigning
import CarbonModel
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// `carbonstore aws setup` and `carbonstore aws policy` hold every value to the storage URI's rules,
/// and say which option is wrong; no AWS is needed for what they refuse before any request.
@Suite struct AWSCommandTests {
    /// An environment with dummy credentials, no instance metadata and no shared files.
    static let offline: [String: String] = [
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_EC2_METADATA_DISABLED": "true", "HOME": "/nonexistent",
    ]

    /// Runs `carbonstore aws ARGUMENTS` without holding a thread of the concurrency pool while it
    /// runs (the fake servers of this process, and of tests beside it, answer on that pool).
    static func run(_ arguments: [String], environment: [String: String] = offline) async throws
        -> CommandRunner.Output
    {
        try await runTool(["aws"] + arguments, environment: environment)
    }

    /// Runs `carbonstore ARGUMENTS` so, without holding a thread of the pool.
    static func runTool(_ arguments: [String], environment: [String: String]) async throws
        -> CommandRunner.Output
    {
        let running = try CommandRunner(environment: environment).start(arguments)
        while running.termination == nil { try await Task.sleep(for: .milliseconds(20)) }
        return running.finish()
    }

    /// Exit code 64 and one line that names the option, says what is wrong and shows a valid value.
    static func expectRefused(
        _ out: CommandRunner.Output, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(out.status == 64, "\(out.stderr)", sourceLocation: sourceLocation)
        #expect(out.stdout.isEmpty, "\(out.stdout)", sourceLocation: sourceLocation)
        #expect(out.stderr.hasPrefix("carbonstore: "), "\(out.stderr)", sourceLocation: sourceLocation)
        #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(out.stderr.contains(f), "'\(f)' not in: \(out.stderr)", sourceLocation: sourceLocation)
        }
    }

    @Test func setupNamesItsOwnOptionsInConfigurationErrors() async throws {
        let noRegion = try await Self.run(["setup", "--bucket", "my-bucket"])
        Self.expectRefused(noRegion, ["no AWS region", "--region", "AWS_REGION"])
        #expect(!noRegion.stderr.contains("storage URI"), "\(noRegion.stderr)")
        let ftp = try await Self.run([
            "setup", "--bucket", "my-bucket", "--region", "eu-west-1", "--endpoint", "ftp://x",
        ])
        Self.expectRefused(ftp, ["ftp://x", "(from --endpoint)", "http or https"])
        #expect(!ftp.stderr.contains("storage URI"), "\(ftp.stderr)")
    }

    /// A DynamoDB that answers DescribeTable for `locks` with `keySchema` (JSON) and
    /// `attributes` (JSON), and records every request.
    static func fakeDynamoDB(keySchema: String, attributes: String) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            switch request.header("X-Amz-Target") {
            case "DynamoDB_20120810.DescribeTable":
                return .json(
                    #"{"Table":{"TableName":"locks","TableStatus":"ACTIVE","TableArn":"arn:aws:dynamodb:eu-west-1:123456789012:table/locks","KeySchema":\#(keySchema),"AttributeDefinitions":\#(attributes)}}"#
                )
            default:
                return .text("unexpected", status: 400)
            }
        }
    }

    @Test(arguments: [
        (
            #"[{"AttributeName":"pk","KeyType":"HASH"}]"#, #"[{"AttributeName":"pk","AttributeType":"S"}]"#,
            "pk"
        ),
        (
            #"[{"AttributeName":"id","KeyType":"HASH"}]"#, #"[{"AttributeName":"id","AttributeType":"N"}]"#,
            "type N"
        ),
        (
            #"[{"AttributeName":"id","KeyType":"HASH"},{"AttributeName":"sk","KeyType":"RANGE"}]"#,
            #"[{"AttributeName":"id","AttributeType":"S"},{"AttributeName":"sk","AttributeType":"S"}]"#,
            "sk (sort key"
        ),
    ])
    func setupRefusesALockTableWithAnotherKeySchema(keySchema: String, attributes: String, found: String)
        async throws
    {
        let server = try await Self.fakeDynamoDB(keySchema: keySchema, attributes: attributes)
        defer { Task { try? await server.shutdown() } }
        var env = Self.offline
        env["AWS_REGION"] = "eu-west-1"
        env["AWS_ENDPOINT_URL"] = server.baseURL.absoluteString
        let out = try await Self.run(["setup", "--table", "locks"], environment: env)
        #expect(out.status == 64, "\(out.stderr)")
        #expect(!out.stdout.contains("exists"), "\(out.stdout)")
        #expect(!out.stdout.contains("IAM policy"), "\(out.stdout)")
        #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)")
        for fragment in ["table locks", "partition key id of type S", "no sort key", found, "--table"] {
            #expect(out.stderr.contains(fragment), "'\(fragment)' not in: \(out.stderr)")
        }
        // Nothing but DescribeTable (retried, on a slow machine): an existing table is never changed.
        let targets = server.requests.map { $0.header("X-Amz-Target") }
        #expect(
            !targets.isEmpty && targets.allSatisfy { $0 == "DynamoDB_20120810.DescribeTable" }, "\(targets)")
    }

    @Test func setupKeepsALockTableWithTheRightKeySchema() async throws {
        let server = try await Self.fakeDynamoDB(
            keySchema: #"[{"AttributeName":"id","KeyType":"HASH"}]"#,
            attributes: #"[{"AttributeName":"id","AttributeType":"S"}]"#)
        defer { Task { try? await server.shutdown() } }
        var env = Self.offline
        env["AWS_REGION"] = "eu-west-1"
        env["AWS_ENDPOINT_URL"] = server.baseURL.absoluteString
        let out = try await Self.run(["setup", "--table", "locks"], environment: env)
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("table locks exists (ACTIVE"), "\(out.stdout)")
        #expect(out.stdout.contains("arn:aws:dynamodb:eu-west-1:123456789012:table/locks"), "\(out.stdout)")
    }

    /// The lock table's key schema: partition key `id` of type S, and nothing else.
    @Test func lockTableKeySchema() {
        typealias Key = DynamoDBClient.KeyElement
        func problem(_ keys: [Key], _ types: [String: String]) -> String? {
            DynamoDBLockService.keySchemaProblem(
                .init(status: "ACTIVE", arn: nil, keySchema: keys, attributeTypes: types))
        }
        #expect(problem([Key(attributeName: "id", keyType: "HASH")], ["id": "S"]) == nil)
        #expect(
            problem([Key(attributeName: "pk", keyType: "HASH")], ["pk": "S"])
                == "its key schema is pk (partition key, type S)")
        #expect(
            problem([Key(attributeName: "id", keyType: "HASH")], ["id": "N"])
                == "its key schema is id (partition key, type N)")
        #expect(
            problem(
                [Key(attributeName: "id", keyType: "HASH"), Key(attributeName: "sk", keyType: "RANGE")],
                ["id": "S", "sk": "S"])
                == "its key schema is id (partition key, type S), sk (sort key, type S)")
        // An answer that does not tell the key schema is not held against the table.
        #expect(DynamoDBLockService.keySchemaProblem(.init(status: "ACTIVE", arn: nil)) == nil)

        func mismatch(_ code: String, _ message: String) -> Bool {
            LockTableKeySchemaError.isKeySchemaMismatch(
                AWSError(
                    service: "DynamoDB", operation: "PutItem", resource: "table t", statusCode: 400,
                    code: code,
                    message: message, requestID: nil))
        }
        #expect(
            mismatch(
                "ValidationException",
                "One or more parameter values were invalid: Missing the key pk in the item"))
        #expect(mismatch("ValidationException", "The provided key element does not match the schema"))
        #expect(
            mismatch(
                "ValidationException",
                "One or more parameter values were invalid: Type mismatch for key id expected: N actual: S"))
        #expect(!mismatch("ValidationException", "ExpressionAttributeValues must not be empty"))
        #expect(!mismatch("ConditionalCheckFailedException", "Missing the key pk in the item"))
    }

    /// The engine's lock operations turn DynamoDB's "Missing the key" into an error that names the
    /// table and the key schema it needs.
    @Test func lockServiceNamesTheKeySchemaItNeeds() async throws {
        let server = try await LoopbackHTTPServer.start { request in
            .json(
                #"{"__type":"com.amazon.coral.validate#ValidationException","message":"One or more parameter values were invalid: Missing the key pk in the item"}"#,
                status: 400)
        }
        defer { Task { try? await server.shutdown() } }
        let dynamo = DynamoDBClient(
            client: AWSServiceClient(
                service: "dynamodb", region: "eu-west-1", endpoint: server.baseURL,
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                transport: AsyncHTTPTransport.shared))
        let locks = DynamoDBLockService(dynamo: dynamo, table: "wrong-locks", namespace: "s3://b/")
        let error = await #expect(throws: LockTableKeySchemaError.self) {
            _ = try await locks.acquire("alice", userID: "alice", wait: .seconds(1))
        }
        #expect(error?.kind == .invalidInput)
        let text = String(describing: error)
        for fragment in [
            "wrong-locks", "partition key id of type S", "Missing the key pk", "ValidationException",
        ] {
            #expect(text.contains(fragment), "'\(fragment)' not in: \(text)")
        }
        await #expect(throws: LockTableKeySchemaError.self) { try await locks.checkReachable() }
    }
}

/// The same against moto: a table with another key schema.
@Suite(AWSTestEnvironment.enabled) struct AWSCommandMotoTests {
    /// Runs a Python script with boto3 as moto's admin; `sys.argv[1]` is the endpoint, the rest
    /// `arguments`. Returns its stdout (a few lines).
    static func boto3(_ script: String, _ arguments: [String], env: MotoEnvironment) async throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, env.endpoint] + arguments
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("AWS_") }
        environment.merge(env.adminEnvironment()) { $1 }
        environment["AWS_DEFAULT_REGION"] = env.region
        p.environment = environment
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        while p.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        guard p.terminationStatus == 0 else {
            throw TestSetupError("boto3 script failed: \(String(decoding: stderr, as: UTF8.self))")
        }
        return String(decoding: stdout, as: UTF8.self)
    }

    static let createTable = """
        import sys, json, boto3
        endpoint, name, keys, attributes = sys.argv[1:5]
        boto3.client("dynamodb", endpoint_url=endpoint).create_table(
            TableName=name, KeySchema=json.loads(keys), AttributeDefinitions=json.loads(attributes),
            BillingMode="PAY_PER_REQUEST")
        """

    @Test func setupAndTheEngineRefuseALockTableWithAnotherKeySchema() async throws {
        let env = try AWSTestEnvironment.get()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let table = "pk-locks-\(suffix)"
        _ = try await Self.boto3(
            Self.createTable,
            [
                table, #"[{"AttributeName":"pk","KeyType":"HASH"}]"#,
                #"[{"AttributeName":"pk","AttributeType":"S"}]"#,
            ], env: env)
        var admin = env.adminEnvironment()
        admin["AWS_ENDPOINT_URL"] = env.endpoint
        let setup = try await AWSCommandTests.run(["setup", "--table", table], environment: admin)
        #expect(setup.status == 64, "\(setup.stderr)")
        #expect(
            setup.stderr.contains("table \(table)") && setup.stderr.contains("pk (partition key, type S)"),
            "\(setup.stderr)")
        #expect(!setup.stdout.contains("exists"), "\(setup.stdout)")

        // The engine, pointed at it anyway, says what is wrong rather than DynamoDB's bare refusal.
        var engine = env.engineEnvironment()
        engine["CARBONSTORE_STORAGE"] =
            "s3:\(env.bucket)?locking=dynamo&table=\(table)&endpoint=\(env.endpoint)&prefix=schema-\(suffix)/"
        let out = try await AWSCommandTests.runTool(
            ["txn", "add", "erin", "--id", "t1", "--amount", "1", "--currency", "EUR"], environment: engine)
        ErrorMessageTests.expectOneLine(
            out, status: 64, [table, "partition key id of type S", "no sort key", "ValidationException"])
    }

}
