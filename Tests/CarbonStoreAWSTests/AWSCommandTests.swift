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

    @Test func policyGrantsThePrefixAsAFolder() async throws {
        let out = try await Self.run([
            "policy", "--bucket", "my-bucket", "--prefix", "tenants/eu", "--table", "locks",
            "--region", "eu-west-1", "--account", "123456789012",
        ])
        #expect(out.status == 0, "\(out.stderr)")
        let s = try EnginePolicyTests.statements(out.stdout)
        #expect(s["CarbonStoreUserFiles"]?["Resource"] as? String == "arn:aws:s3:::my-bucket/tenants/eu/*")
        let condition = s["CarbonStoreListUsers"]?["Condition"] as? [String: [String: [String]]]
        #expect(condition == ["StringLike": ["s3:prefix": ["tenants/eu/", "tenants/eu/*"]]], "\(out.stdout)")
        #expect(!out.stdout.contains("tenants/eu*"))
    }

    @Test func policyRefusesWhatTheStorageURIRefuses() async throws {
        let table = ["--table", "locks"]
        Self.expectRefused(
            try await Self.run(["policy", "--bucket", ""] + table),
            ["--bucket", "the bucket name is missing", "Example: --bucket my-bucket"])
        Self.expectRefused(
            try await Self.run(["policy", "--bucket", "Bad_Bucket"] + table),
            ["--bucket", "Bad_Bucket", "lower-case letters", "Example: --bucket my-bucket"])
        Self.expectRefused(
            try await Self.run(["policy", "--table", ""]),
            ["--table", "3 to 255 characters", "Example: --table"])
        Self.expectRefused(
            try await Self.run(["policy", "--table", "bad table!"]),
            ["--table", "'bad table!'", "Example: --table"])
        for prefix in ["../x", "a/../b", "a/./b", ".hidden/x", "tenants/.git"] {
            Self.expectRefused(
                try await Self.run(["policy", "--bucket", "my-bucket", "--prefix", prefix]),
                ["--prefix", "'.', '..' or hidden segments", "Example: --prefix tenants/eu"])
        }
        Self.expectRefused(
            try await Self.run(["policy", "--bucket", "my-bucket", "--prefix", "a\u{7}b"]),
            ["--prefix", "control characters"])
        // An unpinned table's note is printed with a policy only: a refusal stays one line.
        Self.expectRefused(
            try await Self.run(["policy", "--prefix", "x", "--table", "locks"]),
            ["--prefix", "give --bucket too"])
        Self.expectRefused(
            try await Self.run(["policy", "--table", "locks", "--table-arn", "garbage"]),
            [
                "--table-arn", "'garbage' is not the ARN of a DynamoDB table",
                "Example: --table-arn arn:aws:dynamodb:",
            ])
        Self.expectRefused(
            try await Self.run([
                "policy", "--table", "locks", "--table-arn",
                "arn:aws:dynamodb:eu-west-1:123456789012:table/other",
            ]), ["--table-arn", "names table 'other', not --table locks"])
        Self.expectRefused(
            try await Self.run([
                "policy", "--table", "locks", "--region", "mars", "--account", "123456789012",
            ]),
            ["--region", "'mars' is not an AWS region name", "Example: --region eu-west-1"])
        Self.expectRefused(
            try await Self.run([
                "policy", "--table", "locks", "--region", "Eu_West_1", "--account", "123456789012",
            ]
            ),
            ["--region", "Eu_West_1"])
        // `*` stays accepted (moto checks DynamoDB permissions against `*` only).
        let star = try await Self.run([
            "policy", "--bucket", "my-bucket", "--table", "locks", "--table-arn", "*",
        ])
        #expect(star.status == 0, "\(star.stderr)")
    }

    @Test func setupRefusesWhatTheStorageURIRefusesBeforeAnyRequest() async throws {
        // No endpoint and no network: each refusal comes before the first request.
        var env = Self.offline
        env["AWS_REGION"] = "eu-west-1"
        Self.expectRefused(
            try await Self.run(["setup", "--bucket", ""], environment: env),
            ["--bucket", "the bucket name is missing"])
        Self.expectRefused(
            try await Self.run(["setup", "--bucket", "Bad_Bucket"], environment: env),
            ["--bucket", "Bad_Bucket"])
        Self.expectRefused(try await Self.run(["setup", "--table", ""], environment: env), ["--table"])
        Self.expectRefused(
            try await Self.run(["setup", "--table", "bad table!"], environment: env),
            ["--table", "'bad table!'"])
        Self.expectRefused(
            try await Self.run(
                ["setup", "--bucket", "my-bucket", "--sse-kms-key-id", "x"], environment: env),
            [
                "--sse-kms-key-id", "needs --sse aws:kms",
                "Example: --sse aws:kms --sse-kms-key-id alias/carbonstore",
            ])
        Self.expectRefused(
            try await Self.run(["setup", "--bucket", "my-bucket", "--sse", "rot13"], environment: env),
            ["--sse", "rot13", "AES256"])
        Self.expectRefused(
            try await Self.run(["setup", "--bucket", "my-bucket", "--region", "Mars!"], environment: env),
            ["--region", "Mars!"])
        // On AWS's own endpoints the region must be one of AWS's.
        Self.expectRefused(
            try await Self.run(["setup", "--bucket", "my-bucket", "--region", "mars"], environment: env),
            ["--region", "'mars' is not an AWS region name", "--endpoint", "Example: --region eu-west-1"])
        var marsFromEnvironment = env
        marsFromEnvironment["AWS_REGION"] = "mars"
        Self.expectRefused(
            try await Self.run(["setup", "--table", "locks"], environment: marsFromEnvironment),
            ["AWS_REGION", "'mars' is not an AWS region name"])
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
    static func fakeDynamoDB(
        keySchema: String, attributes: String,
        arn: String = "arn:aws:dynamodb:eu-west-1:123456789012:table/locks"
    ) async throws -> LoopbackHTTPServer {
        try await LoopbackHTTPServer.start { request in
            switch request.header("X-Amz-Target") {
            case "DynamoDB_20120810.DescribeTable":
                return .json(
                    #"{"Table":{"TableName":"locks","TableStatus":"ACTIVE","TableArn":"\#(arn)","KeySchema":\#(keySchema),"AttributeDefinitions":\#(attributes)}}"#
                )
            default:
                return .text("unexpected", status: 400)
            }
        }
    }

    static let idKeySchema = #"[{"AttributeName":"id","KeyType":"HASH"}]"#
    static let idAttributes = #"[{"AttributeName":"id","AttributeType":"S"}]"#

    /// `carbonstore aws setup ARGS` against a fake DynamoDB (and S3) answering DescribeTable with
    /// `keySchema`, `attributes` and `arn`; also returns the fake, whose requests the caller reads.
    static func runSetup(
        _ args: [String], keySchema: String = idKeySchema, attributes: String = idAttributes,
        arn: String = "arn:aws:dynamodb:eu-west-1:123456789012:table/locks"
    ) async throws -> (out: CommandRunner.Output, server: LoopbackHTTPServer) {
        let server = try await fakeDynamoDB(keySchema: keySchema, attributes: attributes, arn: arn)
        var env = offline
        env["AWS_REGION"] = "eu-west-1"
        env["AWS_ENDPOINT_URL"] = server.baseURL.absoluteString
        do {
            let out = try await run(["setup"] + args, environment: env)
            try? await server.shutdown()
            return (out, server)
        } catch {
            try? await server.shutdown()
            throw error
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
        // With a bucket too, which the refusal must leave alone (the fake answers S3 as well).
        let (out, server) = try await Self.runSetup(
            ["--bucket", "fresh-bucket", "--table", "locks"], keySchema: keySchema, attributes: attributes)
        #expect(out.status == 64, "\(out.stderr)")
        #expect(!out.stdout.contains("bucket"), "\(out.stdout)")
        #expect(!out.stdout.contains("exists"), "\(out.stdout)")
        #expect(!out.stdout.contains("IAM policy"), "\(out.stdout)")
        #expect(out.stderr.split(separator: "\n").count == 1, "\(out.stderr)")
        for fragment in ["table locks", "partition key id of type S", "no sort key", found, "--table"] {
            #expect(out.stderr.contains(fragment), "'\(fragment)' not in: \(out.stderr)")
        }
        // Nothing but DescribeTable (retried, on a slow machine): an existing table is never
        // changed, and no bucket is made or changed.
        let targets = server.requests.map { $0.header("X-Amz-Target") }
        #expect(
            !targets.isEmpty && targets.allSatisfy { $0 == "DynamoDB_20120810.DescribeTable" }, "\(targets)")
    }

    @Test func setupKeepsALockTableWithTheRightKeySchema() async throws {
        let out = try await Self.runSetup(["--table", "locks"]).out
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("table locks exists (ACTIVE"), "\(out.stdout)")
        #expect(out.stdout.contains("arn:aws:dynamodb:eu-west-1:123456789012:table/locks"), "\(out.stdout)")
    }

    /// An ARN that a policy cannot name (a region with capitals): not pinned, and setup still ends
    /// well, with the note that says how to pin it.
    @Test func setupLeavesAnARNItCannotUseUnpinned() async throws {
        let out = try await Self.runSetup(
            ["--table", "locks"], arn: "arn:aws:dynamodb:Garage:000000000000:table/locks"
        ).out
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("arn:aws:dynamodb:*:*:table/locks"), "\(out.stdout)")
    }

    /// DynamoDB Local answers ARNs in its own region, `ddblocal`: the policy is pinned to it.
    @Test func setupPinsThePolicyToACompatibleStoresARN() async throws {
        let arn = "arn:aws:dynamodb:ddblocal:000000000000:table/locks"
        let out = try await Self.runSetup(["--table", "locks"], arn: arn).out
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains(arn), "\(out.stdout)")
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
        let dynamo = EnginePolicyTests.dynamoClient(at: server.baseURL)
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

/// The same against moto: tables with another key schema, and the IAM policy of a prefix enforced.
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

    static let createEngineUser = """
        import sys, boto3
        endpoint, name, policy = sys.argv[1:4]
        iam = boto3.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        arn = iam.create_policy(PolicyName=name, PolicyDocument=policy)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        print(key["AccessKeyId"])
        print(key["SecretAccessKey"])
        """

    /// The policy of `--prefix T/eu` lets its holder use T/eu/ and nothing beside it: T/eu2/ and
    /// T/europe/ share the characters but not the folder.
    @Test func aPrefixPolicyGrantsItsFolderOnly() async throws {
        let env = try AWSTestEnvironment.get()
        let suffix = UInt32.random(in: 0...UInt32.max)
        let tenants = "tenants-\(suffix)"
        let policy = try await AWSCommandTests.run(
            [
                "policy", "--bucket", env.bucket, "--prefix", "\(tenants)/eu", "--table", env.table,
                "--table-arn", "*",
            ], environment: [:])
        #expect(policy.status == 0, "\(policy.stderr)")
        let keys = try await Self.boto3(
            Self.createEngineUser, ["eu-engine-\(suffix)", policy.stdout], env: env
        )
        .split(separator: "\n").map(String.init)
        try #require(keys.count == 2)
        var tenant = env.engineEnvironment()
        tenant["AWS_ACCESS_KEY_ID"] = keys[0]
        tenant["AWS_SECRET_ACCESS_KEY"] = keys[1]
        let s3 = try await env.backends(environment: tenant).clients(
            region: env.region, endpoint: env.endpoint
        ).s3
        let admin = try await env.backends(environment: env.adminEnvironment()).clients(
            region: env.region, endpoint: env.endpoint
        ).s3

        _ = try await s3.putObject(bucket: env.bucket, key: "\(tenants)/eu/ok.bin", body: [1])
        #expect(try await s3.getObject(bucket: env.bucket, key: "\(tenants)/eu/ok.bin")?.body == [1])
        for neighbour in ["eu2", "europe", "eu-west"] {
            let key = "\(tenants)/\(neighbour)/x.bin"
            _ = try await admin.putObject(bucket: env.bucket, key: key, body: [2])
            let put = await #expect(throws: AWSError.self) {
                _ = try await s3.putObject(bucket: env.bucket, key: key, body: [3])
            }
            #expect(put?.isAccessDenied == true, "\(String(describing: put))")
            let get = await #expect(throws: AWSError.self) {
                _ = try await s3.getObject(bucket: env.bucket, key: key)
            }
            #expect(get?.isAccessDenied == true, "\(String(describing: get))")
            #expect(try await admin.getObject(bucket: env.bucket, key: key)?.body == [2])
        }

        // The engine, with the same policy and prefix= given without its '/', works in its folder.
        let store = try await env.store(
            "s3:\(env.bucket)?locking=dynamo&table=\(env.table)&endpoint=\(env.endpoint)&prefix=\(tenants)/eu",
            environment: tenant)
        try await store.update("ana") {
            $0.setPreference("k", value: "v", at: Timestamp(millisecondsSince1970: 0))
        }
        #expect(try await store.get("ana").revision == 1)
    }
}
