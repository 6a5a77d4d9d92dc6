import AWSClient
import ArgumentParser
import CarbonStore
import CarbonStoreAWS
import Foundation

struct AWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aws", abstract: "Create the AWS resources CarbonStore needs, and print its IAM policy.",
        subcommands: [Setup.self, Policy.self])

    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Create the bucket (public access blocked, default encryption) and the lock table (partition key id of type string, on-demand); print the engine's IAM policy, pinned to the table's region and account. Needs rights to create them; existing ones are kept, and an existing table with another key schema is refused (exit 64).",
            discussion:
                "Names are checked as the storage URI checks them (s3:BUCKET, table=, region=, sse=, sse-kms-key-id=); a value the URI would refuse is refused with exit code 64."
        )
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(help: "The DynamoDB lock table.") var table: String?
        @Option(help: "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's).") var region:
            String?
        @Option(help: "An S3/DynamoDB-compatible endpoint URL.") var endpoint: String?
        @Option(help: "Default encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).") var sse = "AES256"
        @Option(help: "KMS key id or ARN, with --sse aws:kms only.") var sseKMSKeyID: String?
        @Option(
            help:
                "The AWS account id (12 digits) that holds the table, to pin the policy to it when the endpoint does not return the table's ARN."
        ) var account: String?

        func run() async throws {
            try await runReportingErrors {
                guard bucket != nil || table != nil else {
                    throw InvalidRequestError("give --bucket, --table or both")
                }
                if let bucket { try AWSOptionChecks.checkBucket(bucket) }
                if let table { try AWSOptionChecks.checkTable(table) }
                if let region { try AWSOptionChecks.checkRegion(region) }
                let encryption = try AWSOptionChecks.encryption(sse: sse, kmsKeyID: sseKMSKeyID)
                if let account { try AWSOptionChecks.checkAccount(account) }
                if let endpoint, endpoint.isEmpty {
                    throw InvalidAWSOptionError(
                        option: "--endpoint", problem: "it is empty; leave it out to use AWS's own endpoints",
                        example: "--endpoint http://localhost:9000")
                }
                let clients = try await AWSBackends().clients(
                    region: region, endpoint: endpoint, overrides: .commandLine,
                    uses: Set((bucket != nil ? ["s3"] : []) + (table != nil ? ["dynamodb"] : [])))
                try checkRegionOfAWS(clients.configuration)
                var tableARN: String?
                do {
                    // The table is looked at first: one whose key schema the locks cannot use is
                    // refused before anything is made or changed. The locks are read and written by
                    // `id` alone: a table with another key schema would refuse every lock item.
                    var existingTable: DynamoDBClient.TableDescription?
                    if let table { existingTable = try await clients.dynamo.describeTable(table) }
                    if let table, let existingTable,
                        let problem = DynamoDBLockService.keySchemaProblem(existingTable)
                    {
                        throw LockTableKeySchemaError(table: table, problem: problem, underlying: nil)
                    }
                    if let bucket {
                        let status = try await clients.s3.headBucket(bucket)
                        if status == 404 {
                            try await clients.s3.createBucket(bucket)
                            print("created bucket \(bucket) in \(clients.configuration.region)")
                        } else if status < 300 {
                            print("bucket \(bucket) exists")
                        } else {
                            throw InvalidRequestError(
                                status == 403
                                    ? "bucket \(bucket): AccessDenied (HTTP 403 from HeadBucket): it belongs to another account, or these credentials may not create or inspect buckets; run 'carbonstore aws setup' with an administrator's credentials"
                                    : "bucket \(bucket) cannot be used (HTTP \(status) from HeadBucket): it may be in another region; set --region"
                            )
                        }
                        try await clients.s3.putPublicAccessBlock(bucket)
                        print("blocked public access to bucket \(bucket)")
                        try await clients.s3.putBucketEncryption(bucket, encryption)
                        print("set default encryption \(sse) on bucket \(bucket)")
                    }
                    if let table {
                        let described: DynamoDBClient.TableDescription
                        if let existing = existingTable {
                            let schema: String
                            if existing.keySchema == nil {
                                schema = "key schema not told"
                                printNote(
                                    "DescribeTable did not tell the key schema of table \(table); the locks need partition key id of type S and no sort key"
                                )
                            } else {
                                schema = "partition key id"
                            }
                            described = existing
                            print("table \(table) exists (\(existing.status ?? "status unknown"), \(schema))")
                        } else {
                            described = try await clients.dynamo.createTable(
                                table, partitionKey: DynamoDBLockService.partitionKey)
                            print(
                                "created table \(table) (partition key id, on-demand) in \(clients.configuration.region)"
                            )
                        }
                        // The table's ARN names its region and account: pin the policy to it.
                        if let arn = described.arn, EnginePolicy.isPinnedTableARN(arn, table: table) {
                            tableARN = arn
                        } else if let account {
                            tableARN = EnginePolicy.tableARN(
                                table: table, region: clients.configuration.region, account: account)
                        }
                    }
                } catch {
                    // As the engine reports the same failure: no answer exits 6, AccessDenied 77.
                    throw StoreAWSError.wrapping(error)
                }
                let policy = try EnginePolicy.document(
                    bucket: bucket, table: table, tableARN: tableARN, region: clients.configuration.region)
                if let table, tableARN == nil {
                    printUnpinnedNote(table: table)
                }
                print("\nIAM policy for the engine's role (least privilege):")
                print(policy)
            }
        }

        /// On AWS's own endpoints (no --endpoint and no AWS_ENDPOINT_URL*), the region must be one
        /// of AWS's: `--region mars` would only fail later, resolving s3.mars.amazonaws.com.
        func checkRegionOfAWS(_ configuration: AWSConfiguration) throws {
            let onAWS =
                (bucket != nil && configuration.endpoints["s3"] == nil)
                || (table != nil && configuration.endpoints["dynamodb"] == nil)
            guard onAWS else { return }
            try AWSOptionChecks.checkAWSRegionName(
                configuration.region,
                option: region != nil
                    ? "--region" : "region (from AWS_REGION, AWS_DEFAULT_REGION or the profile)",
                note:
                    " (S3- and DynamoDB-compatible stores named with --endpoint or AWS_ENDPOINT_URL may name regions otherwise)"
            )
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the engine's least-privilege IAM policy.",
            discussion:
                "The prefix is normalised as the storage URI's prefix= is (tenants/eu grants tenants/eu/*, not tenants/eu2/), and names are checked as the URI checks them; a value the URI would refuse is refused with exit code 64."
        )
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(
            help:
                "The key prefix in the bucket, if the storage URI has one (as prefix=: tenants/eu is the folder tenants/eu/)."
        ) var prefix = ""
        @Option(help: "The DynamoDB lock table.") var table: String?
        @Option(
            help:
                "The table's full ARN (default: built from --region and --account, else arn:aws:dynamodb:*:*:table/TABLE)."
        ) var tableArn: String?
        @Option(help: "The table's region, to pin the policy to it (with --account).") var region: String?
        @Option(help: "The AWS account id (12 digits) that holds the table (with --region).") var account:
            String?

        func run() async throws {
            try await runReportingErrors {
                guard bucket != nil || table != nil else {
                    throw InvalidRequestError("give --bucket, --table or both")
                }
                if let bucket { try AWSOptionChecks.checkBucket(bucket) }
                _ = try AWSOptionChecks.normalizedPrefix(prefix)
                if let table { try AWSOptionChecks.checkTable(table) }
                if let region {
                    try AWSOptionChecks.checkRegion(region)
                    // The region goes into an ARN of AWS: it must be one of AWS's.
                    try AWSOptionChecks.checkAWSRegionName(region, option: "--region")
                }
                if let account { try AWSOptionChecks.checkAccount(account) }
                if tableArn != nil, region != nil || account != nil {
                    throw InvalidRequestError(
                        "give either --table-arn or --region and --account, not both: the ARN names the region and account"
                    )
                }
                var arn = tableArn
                if arn == nil, let table {
                    switch (region, account) {
                    case (let region?, let account?):
                        arn = EnginePolicy.tableARN(table: table, region: region, account: account)
                    case (nil, nil):
                        break
                    default:
                        throw InvalidRequestError(
                            "give --region and --account together, to pin the lock table")
                    }
                }
                // Made before the note: a refused option is the one line a failure prints.
                let policy = try EnginePolicy.document(
                    bucket: bucket, prefix: prefix, table: table, tableARN: arn, region: region)
                if let table, arn == nil { printUnpinnedNote(table: table) }
                print(policy)
            }
        }
    }
}

/// Says on stderr that the policy names the table in any region and account, and how to pin it.
func printUnpinnedNote(table: String) {
    printNote(
        "the policy names table \(table) in any region and account "
            + "(arn:aws:dynamodb:*:*:table/\(table)); to pin it, give --region and --account "
            + "(or --table-arn) to 'carbonstore aws policy', or --account to 'carbonstore aws setup' "
            + "when the endpoint does not return the table's ARN")
}

/// Prints `carbonstore: note: MESSAGE` on stderr.
func printNote(_ message: String) {
    FileHandle.standardError.write(Data(("carbonstore: note: " + message + "\n").utf8))
}
