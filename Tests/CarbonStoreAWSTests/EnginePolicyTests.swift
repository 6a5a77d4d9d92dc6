import AWSClient
import AWSSigning
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

    @Test func pinnedToTheTableInItsRegionAndAccount() throws {
        let arn = EnginePolicy.tableARN(
            table: "carbonstore-locks", region: "eu-west-1", account: "123456789012")
        #expect(arn == "arn:aws:dynamodb:eu-west-1:123456789012:table/carbonstore-locks")
        let doc = EnginePolicy.document(bucket: "b", table: "carbonstore-locks", tableARN: arn)
        let locks = try #require(try Self.statements(doc)["CarbonStoreWriteLocks"])
        #expect(locks["Resource"] as? [String] == [arn, arn + "/index/*"])
        #expect(!doc.contains("*:*"))
    }

    @Test func unpinnedNamesTheTableInAnyRegionAndAccount() throws {
        let doc = EnginePolicy.document(bucket: nil, table: "t")
        let locks = try #require(try Self.statements(doc)["CarbonStoreWriteLocks"])
        #expect(
            locks["Resource"] as? [String] == [
                "arn:aws:dynamodb:*:*:table/t", "arn:aws:dynamodb:*:*:table/t/index/*",
            ])
    }

    @Test func grantsTheDocumentedActionsOnTheTableAndItsIndexes() throws {
        let doc = EnginePolicy.document(bucket: "b", prefix: "tenant/", table: "t")
        let s = try Self.statements(doc)
        #expect(
            Set(s["CarbonStoreWriteLocks"]?["Action"] as? [String] ?? [])
                == [
                    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                    "dynamodb:Query", "dynamodb:Scan",
                ])
        #expect(
            s["CarbonStoreWriteLocks"]?["Resource"] as? [String]
                == ["arn:aws:dynamodb:*:*:table/t", "arn:aws:dynamodb:*:*:table/t/index/*"])
        #expect(
            Set(EnginePolicy.dynamoActionsCalledByTheEngine).isSubset(of: Set(EnginePolicy.dynamoActions)))
        #expect(
            Set(s["CarbonStoreUserFiles"]?["Action"] as? [String] ?? [])
                == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])
        #expect(s["CarbonStoreUserFiles"]?["Resource"] as? String == "arn:aws:s3:::b/tenant/*")
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
        let dynamo = DynamoDBClient(
            client: AWSServiceClient(
                service: "dynamodb", region: "eu-west-1", endpoint: server.baseURL,
                credentials: StaticCredentialProvider(
                    AWSCredentials(accessKeyID: "AKID", secretAccessKey: "s")),
                transport: AsyncHTTPTransport.shared))
        let described = try await dynamo.describeTable("locks")
        #expect(described == DynamoDBClient.TableDescription(status: "ACTIVE", arn: arn))
        #expect(try await dynamo.describeTable("new") == nil)
        let created = try await dynamo.createTable("new", partitionKey: "id")
        #expect(created.arn == "arn:aws:dynamodb:eu-west-1:210987654321:table/new")
        #expect(EnginePolicy.isPinnedTableARN(try #require(described?.arn), table: "locks"))
        let doc = EnginePolicy.document(bucket: nil, table: "locks", tableARN: described?.arn)
        #expect(
            try Self.statements(doc)["CarbonStoreWriteLocks"]?["Resource"] as? [String] == [
                arn, arn + "/index/*",
            ])
    }
}
