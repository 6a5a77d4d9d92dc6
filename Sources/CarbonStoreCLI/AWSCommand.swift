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
                "Create the bucket (public access blocked, default encryption) and the lock table (partition key id of type string, on-demand); print the engine's IAM policy, pinned to the table's region and account. Needs rights to create them; existing ones are kept, and an existing table with another key schema is refused (exit 64)."
        )
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(help: "The DynamoDB lock table.") var table: String?
        @Option(help: "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's).") var region:
            String?
        @Option(help: "An S3/DynamoDB-compatible endpoint URL.") var endpoint: String?
        @Option(help: "Default encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).") var sse = "AES256"
        @Option(help: "KMS key id or ARN for --sse aws:kms.") var sseKMSKeyID: String?
        @Option(
            help:
                "The AWS account id (12 digits) that holds the table, to pin the policy to it when the endpoint does not return the table's ARN."
        ) var account: String?

        func run() async throws {
            try await runReportingErrors {
                guard bucket != nil || table != nil else {
                    throw InvalidRequestError("give --bucket, --table or both")
                }
                let encryption: ServerSideEncryption
                switch sse {
                case "AES256": encryption = .s3
                case "aws:kms": encryption = .kms(keyID: sseKMSKeyID)
                default: throw InvalidRequestError("--sse is AES256 or aws:kms, not '\(sse)'")
                }
                if let account, !EnginePolicy.isAccountID(account) {
                    throw InvalidRequestError("--account is a 12-digit AWS account id, not '\(account)'")
                }
                let clients = try await AWSBackends().clients(
                    region: region, endpoint: endpoint, overrides: .commandLine)
                var tableARN: String?
                do {
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
                        if let existing = try await clients.dynamo.describeTable(table) {
                            // The locks are read and written by `id` alone: a table with another
                            // key schema would refuse every lock item.
                            if let problem = DynamoDBLockService.keySchemaProblem(existing) {
                                throw LockTableKeySchemaError(table: table, problem: problem, underlying: nil)
                            }
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
                } catch let e as AWSError {
                    throw StoreAWSErrorMessage(e)
                }
                if let table, tableARN == nil {
                    printUnpinnedNote(table: table)
                }
                print("\nIAM policy for the engine's role (least privilege):")
                print(EnginePolicy.document(bucket: bucket, table: table, tableARN: tableARN))
            }
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the engine's least-privilege IAM policy.")
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(help: "The key prefix in the bucket, if the storage URI has one.") var prefix = ""
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
                var arn = tableArn
                if arn == nil, let table {
                    switch (region, account) {
                    case (let region?, let account?):
                        guard AWSConfiguration.isValidRegion(region) else {
                            throw InvalidRequestError(
                                "--region is a region name such as eu-west-1, not '\(region)'")
                        }
                        guard EnginePolicy.isAccountID(account) else {
                            throw InvalidRequestError(
                                "--account is a 12-digit AWS account id, not '\(account)'")
                        }
                        arn = EnginePolicy.tableARN(table: table, region: region, account: account)
                    case (nil, nil):
                        printUnpinnedNote(table: table)
                    default:
                        throw InvalidRequestError(
                            "give --region and --account together, to pin the lock table")
                    }
                }
                print(EnginePolicy.document(bucket: bucket, prefix: prefix, table: table, tableARN: arn))
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

/// An AWS error from the set-up command, reported like engine errors.
struct StoreAWSErrorMessage: CarbonStoreError {
    var error: AWSError
    init(_ error: AWSError) { self.error = error }
    var kind: ErrorKind { error.isRetryable ? .unavailable : .invalidInput }
    var description: String { error.description }
}
