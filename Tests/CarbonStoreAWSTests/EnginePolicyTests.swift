import AWSClient
import AWSSigning
import CarbonStore
import CarbonStoreAWS
import CarbonStoreTestSupport
import Foundation
import Testing

/// The engine's IAM policy: pinned to the lock table's region and account when known, and granting
/// only the actions the engine calls.
@Suite struct EnginePolicyTests {
    /// The statements of a policy document, by Sid.
    static func statements(_ document: String) throws -> [String: [String: Any]] {
        let object = try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any]
        let list = try #require(object?["Statement"] as? [[String: Any]])
        var bySid: [String: [String: Any]] = [:]
        for s in list { bySid[s["Sid"] as? String ?? "?"] = s }
        return bySid
    }

    /// A DynamoDB client for a fake DynamoDB at `url` (region eu-west-1, test credentials).
    static func dynamoClient(at url: URL) -> DynamoDBClient {
        DynamoDBClient(
            client: AWSServiceClient(
                service: "dynamodb", region: "eu-west-1", endpoint: url,
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                transport: AsyncHTTPTransport.shared))
    }

    @Test func pinnedToTheTableInItsRegionAndAccount() throws {
        let arn = EnginePolicy.tableARN(
            table: "carbonstore-locks", region: "eu-west-1", account: "123456789012")
        #expect(arn == "arn:aws:dynamodb:eu-west-1:123456789012:table/carbonstore-locks")
        let doc = try EnginePolicy.document(bucket: "my-bucket", table: "carbonstore-locks", tableARN: arn)
        let locks = try #require(try Self.statements(doc)["CarbonStoreWriteLocks"])
        #expect(locks["Resource"] as? [String] == [arn, arn + "/index/*"])
        #expect(!doc.contains("*:*"))
    }

    @Test func unpinnedNamesTheTableInAnyRegionAndAccount() throws {
        let doc = try EnginePolicy.document(bucket: nil, table: "locks")
        let locks = try #require(try Self.statements(doc)["CarbonStoreWriteLocks"])
        #expect(
            locks["Resource"] as? [String] == [
                "arn:aws:dynamodb:*:*:table/locks", "arn:aws:dynamodb:*:*:table/locks/index/*",
            ])
    }

    @Test func grantsTheDocumentedActionsOnTheTableAndItsIndexes() throws {
        let doc = try EnginePolicy.document(bucket: "my-bucket", prefix: "tenant/", table: "locks")
        let s = try Self.statements(doc)
        #expect(
            Set(s["CarbonStoreWriteLocks"]?["Action"] as? [String] ?? [])
                == [
                    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query", "dynamodb:Scan",
                ])
        #expect(
            s["CarbonStoreWriteLocks"]?["Resource"] as? [String]
                == ["arn:aws:dynamodb:*:*:table/locks", "arn:aws:dynamodb:*:*:table/locks/index/*"])
        #expect(
            Set(EnginePolicy.dynamoActionsCalledByTheEngine).isSubset(of: Set(EnginePolicy.dynamoActions)))
        #expect(
            Set(s["CarbonStoreUserFiles"]?["Action"] as? [String] ?? [])
                == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        #expect(s["CarbonStoreUserFiles"]?["Resource"] as? String == "arn:aws:s3:::my-bucket/tenant/*")
        #expect(s["CarbonStoreListUsers"]?["Action"] as? [String] == ["s3:ListBucket"])
    }

    @Test func partitionsAndAccountIDs() {
        #expect(
            EnginePolicy.tableARN(table: "t", region: "cn-north-1", account: "123456789012")
                == "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/t")
        #expect(
            EnginePolicy.tableARN(table: "t", region: "us-gov-west-1", account: "123456789012")
                == "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/t")
        #expect(EnginePolicy.isAccountID("123456789012"))
        #expect(!EnginePolicy.isAccountID("12345678901") && !EnginePolicy.isAccountID("12345678901x"))
        #expect(EnginePolicy.isPinnedTableARN("arn:aws:dynamodb:eu-west-1:123456789012:table/t", table: "t"))
        #expect(!EnginePolicy.isPinnedTableARN("arn:aws:dynamodb:eu-west-1:123456789012:table/u", table: "t"))
        #expect(!EnginePolicy.isPinnedTableARN("arn:aws:dynamodb:*:*:table/t", table: "t"))
        #expect(!EnginePolicy.isPinnedTableARN("*", table: "t"))
    }

    /// The bucket's ARNs are in the partition of the region (or of the table's ARN): in China and
    /// GovCloud an `arn:aws:s3` resource grants nothing.
    @Test(arguments: [
        ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("eu-west-1", "aws"),
        ("us-iso-east-1", "aws-iso"), ("us-isob-east-1", "aws-iso-b"),
    ])
    func theBucketIsInTheRegionsPartition(region: String, partition: String) throws {
        let arn = EnginePolicy.tableARN(table: "locks", region: region, account: "123456789012")
        for doc in [
            try EnginePolicy.document(
                bucket: "my-bucket", prefix: "eu", table: "locks", tableARN: arn, region: region),
            try EnginePolicy.document(bucket: "my-bucket", prefix: "eu", table: "locks", tableARN: arn),
        ] {
            let s = try Self.statements(doc)
            #expect(
                s["CarbonStoreUserFiles"]?["Resource"] as? String == "arn:\(partition):s3:::my-bucket/eu/*")
            #expect(s["CarbonStoreListUsers"]?["Resource"] as? String == "arn:\(partition):s3:::my-bucket")
            #expect((s["CarbonStoreWriteLocks"]?["Resource"] as? [String])?.first == arn)
        }
        // A bucket alone, with the region it is in.
        let alone = try Self.statements(
            EnginePolicy.document(bucket: "my-bucket", table: nil, region: region))
        #expect(alone["CarbonStoreListUsers"]?["Resource"] as? String == "arn:\(partition):s3:::my-bucket")
        // Neither region nor ARN: the commercial partition.
        let open = try Self.statements(
            EnginePolicy.document(bucket: "my-bucket", table: "locks", tableARN: "*"))
        #expect(open["CarbonStoreListUsers"]?["Resource"] as? String == "arn:aws:s3:::my-bucket")
    }

    /// DescribeTable and CreateTable, which `aws setup` calls anyway, tell the table's ARN: that is
    /// how setup learns the account without any further permission.
    @Test func setupLearnsTheTableARNFromDescribeAndCreate() async throws {
        let arn = "arn:aws:dynamodb:eu-west-1:210987654321:table/locks"
        let server = try await LoopbackHTTPServer.start { request in
            switch request.header("X-Amz-Target") {
            case "DynamoDB_20120810.DescribeTable" where request.bodyText.contains(#""locks""#):
                return .json(#"{"Table":{"TableName":"locks","TableStatus":"ACTIVE","TableArn":"\#(arn)"}}"#)
            case "DynamoDB_20120810.DescribeTable":
                return .json(
                    #"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"not found"}"#,
                    status: 400)
            case "DynamoDB_20120810.CreateTable":
                return .json(
                    #"{"TableDescription":{"TableName":"new","TableStatus":"CREATING","TableArn":"arn:aws:dynamodb:eu-west-1:210987654321:table/new"}}"#
                )
            default:
                return .text("unexpected", status: 400)
            }
        }
        defer { Task { try? await server.shutdown() } }
        let dynamo = EnginePolicyTests.dynamoClient(at: server.baseURL)
        let described = try await dynamo.describeTable("locks")
        #expect(described == DynamoDBClient.TableDescription(status: "ACTIVE", arn: arn))
        #expect(try await dynamo.describeTable("new") == nil)
        let created = try await dynamo.createTable("new", partitionKey: "id")
        #expect(created.arn == "arn:aws:dynamodb:eu-west-1:210987654321:table/new")
        #expect(EnginePolicy.isPinnedTableARN(try #require(described?.arn), table: "locks"))
        let doc = try EnginePolicy.document(bucket: nil, table: "locks", tableARN: described?.arn)
        #expect(
            try Self.statements(doc)["CarbonStoreWriteLocks"]?["Resource"] as? [String] == [
                arn, arn + "/index/*",
            ])
    }

    /// IAM's `StringLike` and resource matching: `*` is any run of characters (the empty one too),
    /// `?` any one character.
    static func iamMatches(_ pattern: String, _ value: String) -> Bool {
        let p = Array(pattern.unicodeScalars)
        let v = Array(value.unicodeScalars)
        func match(_ i: Int, _ j: Int) -> Bool {
            if i == p.count { return j == v.count }
            if p[i] == "*" { return (j...v.count).contains { match(i + 1, $0) } }
            return j < v.count && (p[i] == "?" || p[i] == v[j]) && match(i + 1, j + 1)
        }
        return match(0, 0)
    }

    /// The prefix is the storage URI's folder (`prefix=tenants/eu` is `tenants/eu/`): the policy
    /// grants it and nothing that merely begins with the same characters.
    @Test(arguments: ["tenants/eu", "tenants/eu/", "/tenants//eu", "tenants%2Feu"])
    func prefixIsTheStorageURIsFolder(_ given: String) throws {
        let uri = try StorageURI("s3:my-bucket?locking=none&prefix=\(given)")
        #expect(uri.prefix == "tenants/eu/")
        // The policy takes the prefix as typed (no %-decoding): the URI's text of tenants/eu is it.
        let typed = given.removingPercentEncoding ?? given
        let s = try Self.statements(try EnginePolicy.document(bucket: "my-bucket", prefix: typed, table: nil))
        let resource = try #require(s["CarbonStoreUserFiles"]?["Resource"] as? String)
        #expect(resource == "arn:aws:s3:::my-bucket/tenants/eu/*")
        let condition = s["CarbonStoreListUsers"]?["Condition"] as? [String: [String: [String]]]
        let listed = try #require(condition?["StringLike"]?["s3:prefix"])
        #expect(listed == ["tenants/eu/", "tenants/eu/*"])
        #expect(try AWSOptionChecks.normalizedPrefix(typed) == uri.prefix)

        // What the engine reads, writes and lists under the prefix is granted ...
        let key = try UserKeys(prefix: uri.prefix).key(for: "alice")
        #expect(Self.iamMatches(resource, "arn:aws:s3:::my-bucket/\(key)"))
        #expect(listed.contains { Self.iamMatches($0, uri.prefix) })
        // ... and nothing beside it.
        for other in [
            "tenants/eu2/87/22/alice.cstore", "tenants/europe/x", "tenants/eu", "tenants/eu-west/x",
        ] {
            #expect(!Self.iamMatches(resource, "arn:aws:s3:::my-bucket/\(other)"), "\(other)")
        }
        for other in ["tenants/eu2/", "tenants/europe/", "tenants/eu", "tenants/"] {
            #expect(!listed.contains { Self.iamMatches($0, other) }, "\(other)")
        }
    }

    /// A prefix holding IAM's wildcards or a variable's `$` is written with IAM's escapes, so that
    /// `a*` grants the folder `a*/` and not every folder that starts with `a`.
    @Test func wildcardsInThePrefixAreEscaped() throws {
        let doc = try EnginePolicy.document(bucket: "my-bucket", prefix: "a*b?/$x", table: nil)
        let s = try Self.statements(doc)
        let folder = "a" + "${*}" + "b" + "${?}" + "/" + "${$}" + "x/"
        let resource = s["CarbonStoreUserFiles"]?["Resource"] as? String
        #expect(resource == "arn:aws:s3:::my-bucket/" + folder + "*")
        let condition = s["CarbonStoreListUsers"]?["Condition"] as? [String: [String: [String]]]
        let expected = ["StringLike": ["s3:prefix": [folder, folder + "*"]]]
        #expect(condition == expected)
        #expect(EnginePolicy.iamEscaped("plain/path") == "plain/path")
    }

    @Test func noPrefixGrantsTheBucketWithoutACondition() throws {
        for prefix in ["", "/", "//"] {
            let s = try Self.statements(
                try EnginePolicy.document(bucket: "my-bucket", prefix: prefix, table: nil))
            #expect(s["CarbonStoreUserFiles"]?["Resource"] as? String == "arn:aws:s3:::my-bucket/*")
            #expect(s["CarbonStoreListUsers"]?["Condition"] == nil)
        }
    }

    /// A value the storage URI refuses is refused by the policy too, naming the option.
    @Test func refusesWhatTheStorageURIRefuses() throws {
        func refused(
            _ option: String, sourceLocation: SourceLocation = #_sourceLocation, _ make: () throws -> String
        ) {
            let error = #expect(throws: InvalidAWSOptionError.self, sourceLocation: sourceLocation) {
                _ = try make()
            }
            #expect(error?.option == option, "\(String(describing: error))", sourceLocation: sourceLocation)
            #expect(error?.kind == .invalidInput, sourceLocation: sourceLocation)
        }
        for prefix in ["../x", "a/../b", "./a", "a/.", ".hidden", "a/.git/b", "a\nb", "a\u{7F}"] {
            refused("--prefix") { try EnginePolicy.document(bucket: "my-bucket", prefix: prefix, table: nil) }
            #expect(throws: InvalidStorageURIError.self) {
                try StorageURI(
                    "s3:my-bucket?locking=none&prefix=\(prefix.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)"
                )
            }
        }
        for bucket in ["", "b", "Bad_Bucket", "-bucket", "my..bucket", "my bucket"] {
            refused("--bucket") { try EnginePolicy.document(bucket: bucket, table: nil) }
            #expect(StorageURI.problem(bucketName: bucket) != nil)
        }
        for table in ["", "t", "bad table!", "locks/x"] {
            refused("--table") { try EnginePolicy.document(bucket: nil, table: table) }
        }
        for arn in [
            "garbage", "arn:aws:s3:::my-bucket", "arn:aws:dynamodb:eu-west-1:123456789012:table/other",
            "arn:aws:dynamodb:Mars!:123456789012:table/locks", "arn:aws:dynamodb:eu-west-1:1234:table/locks",
            "arn:azure:dynamodb:eu-west-1:123456789012:table/locks",
        ] {
            refused("--table-arn") { try EnginePolicy.document(bucket: nil, table: "locks", tableARN: arn) }
        }
        refused("--table-arn") { try EnginePolicy.document(bucket: "my-bucket", table: nil, tableARN: "*") }
        refused("--prefix") { try EnginePolicy.document(bucket: nil, prefix: "tenants/eu", table: "locks") }
        for arn in [
            "*", "arn:aws:dynamodb:eu-west-1:123456789012:table/locks", "arn:aws:dynamodb:*:*:table/locks",
            "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/locks",
        ] {
            #expect(throws: Never.self) {
                try EnginePolicy.document(bucket: nil, table: "locks", tableARN: arn)
            }
        }
    }

    @Test func regionsAndEncryptionAsTheStorageURIHasThem() throws {
        for region in ["eu-west-1", "us-gov-west-1", "ap-southeast-2", "cn-northwest-1", "us-isob-east-1"] {
            #expect(AWSOptionChecks.isAWSRegionName(region), "\(region)")
            #expect(throws: Never.self) { try AWSOptionChecks.checkRegion(region) }
        }
        for region in ["mars", "eu-west", "europe-west-1", "eu-west-x", "eu--1", "EU-WEST-1", ""] {
            #expect(!AWSOptionChecks.isAWSRegionName(region), "\(region)")
        }
        // The URI's rule (lower-case letters, digits and '-') holds for every endpoint.
        for region in ["Eu_West_1", "eu west", ""] {
            #expect(throws: InvalidAWSOptionError.self) { try AWSOptionChecks.checkRegion(region) }
        }
        #expect(try AWSOptionChecks.encryption(sse: "AES256", kmsKeyID: nil) == .s3)
        #expect(try AWSOptionChecks.encryption(sse: "aws:kms", kmsKeyID: nil) == .kms(keyID: nil))
        #expect(try AWSOptionChecks.encryption(sse: "aws:kms", kmsKeyID: "alias/x") == .kms(keyID: "alias/x"))
        let kms = #expect(throws: InvalidAWSOptionError.self) {
            try AWSOptionChecks.encryption(sse: "AES256", kmsKeyID: "alias/x")
        }
        #expect(kms?.option == "--sse-kms-key-id")
        #expect(throws: InvalidStorageURIError.self) {
            try StorageURI("s3:my-bucket?locking=none&sse=AES256&sse-kms-key-id=alias/x")
        }
        let sse = #expect(throws: InvalidAWSOptionError.self) {
            try AWSOptionChecks.encryption(sse: "aes256", kmsKeyID: nil)
        }
        #expect(sse?.option == "--sse")
    }
}

/// Endpoint settings are checked for the services a store calls: S3 for `s3:`, and STS when the
/// credentials come from web identity, so that a FIPS deployment never asks STS's regional endpoint.
@Suite struct EndpointSettingsForServicesUsedTests {
    static let base = [
        "HOME": "/nonexistent-home", "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1",
        "AWS_USE_FIPS_ENDPOINT": "true", "AWS_ENDPOINT_URL_S3": "https://s3-fips.us-east-1.amazonaws.com",
    ]

    @Test func s3NamedIsEnoughForAStoreOnS3() async throws {
        let clients = try await AWSBackends(environment: Self.base).clients(
            region: nil, endpoint: nil, uses: ["s3"])
        #expect(clients.configuration.endpoints["s3"]?.host == "s3-fips.us-east-1.amazonaws.com")
    }

    @Test func webIdentityAddsSTS() async throws {
        var env = Self.base
        env["AWS_ROLE_ARN"] = "arn:aws:iam::123456789012:role/engine"
        env["AWS_WEB_IDENTITY_TOKEN_FILE"] = "/var/run/token"
        let error = await #expect(throws: AWSConfigurationStoreError.self) {
            _ = try await AWSBackends(environment: env).clients(region: nil, endpoint: nil, uses: ["s3"])
        }
        #expect(error?.description.contains("AWS_ENDPOINT_URL_STS") == true, "\(String(describing: error))")
        #expect(error?.description.contains("https://sts-fips.us-east-1.amazonaws.com") == true)
        env["AWS_ENDPOINT_URL_STS"] = "https://sts-fips.us-east-1.amazonaws.com"
        _ = try await AWSBackends(environment: env).clients(region: nil, endpoint: nil, uses: ["s3"])
    }
}

/// The store's S3 and DynamoDB clients retry as AWS_MAX_ATTEMPTS and AWS_RETRY_MODE (or the
/// profile's `max_attempts` and `retry_mode`) say, unless a policy is given.
@Suite struct RetrySettingsOfTheStoresClientsTests {
    static let base = [
        "HOME": "/nonexistent-home", "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1",
    ]

    @Test func theEnvironmentSetsTheAttempts() async throws {
        var env = Self.base
        env["AWS_MAX_ATTEMPTS"] = "9"
        let clients = try await AWSBackends(environment: env).clients(region: nil, endpoint: nil)
        #expect(clients.s3.client.retry.maxAttempts == 9)
        #expect(clients.dynamo.client.retry.maxAttempts == 9)
        env["AWS_MAX_ATTEMPTS"] = nil
        env["AWS_RETRY_MODE"] = "standard"
        let standard = try await AWSBackends(environment: env).clients(region: nil, endpoint: nil)
        #expect(standard.s3.client.retry.maxAttempts == 3)
        let given = RetryPolicy(maxAttempts: 2)
        let explicit = try await AWSBackends(environment: env, retry: given).clients(
            region: nil, endpoint: nil)
        #expect(explicit.dynamo.client.retry == given)
    }

    @Test func aBadSettingIsAConfigurationError() async throws {
        var env = Self.base
        env["AWS_MAX_ATTEMPTS"] = "0"
        let error = await #expect(throws: AWSConfigurationStoreError.self) {
            _ = try await AWSBackends(environment: env).clients(region: nil, endpoint: nil)
        }
        #expect(error?.description.hasPrefix("invalid max attempts '0' (from AWS_MAX_ATTEMPTS)") == true)
        #expect(error?.kind == .invalidInput)
    }
}
