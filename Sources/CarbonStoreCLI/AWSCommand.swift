import AWSClient
import ArgumentParser
import CarbonStore
import CarbonStoreAWS

struct AWSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "aws", abstract: "Create the AWS resources CarbonStore needs, and print its IAM policy.",
        subcommands: [Setup.self, Policy.self])

    struct Setup: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Create the bucket (public access blocked, default encryption) and the lock table (partition key id, on-demand); print the engine's IAM policy. Needs rights to create them; existing ones are kept."
        )
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(help: "The DynamoDB lock table.") var table: String?
        @Option(help: "AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's).") var region:
            String?
        @Option(help: "An S3/DynamoDB-compatible endpoint URL.") var endpoint: String?
        @Option(help: "Default encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).") var sse = "AES256"
        @Option(help: "KMS key id or ARN for --sse aws:kms.") var sseKMSKeyID: String?

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
                let clients = try await AWSBackends().clients(region: region, endpoint: endpoint)
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
                        if let status = try await clients.dynamo.tableStatus(table) {
                            print("table \(table) exists (\(status))")
                        } else {
                            try await clients.dynamo.createTable(table, partitionKey: "id")
                            print(
                                "created table \(table) (partition key id, on-demand) in \(clients.configuration.region)"
                            )
                        }
                    }
                } catch let e as AWSError {
                    throw StoreAWSErrorMessage(e)
                }
                print("\nIAM policy for the engine's role (least privilege):")
                print(EnginePolicy.document(bucket: bucket, table: table))
            }
        }
    }

    struct Policy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the engine's least-privilege IAM policy.")
        @Option(help: "The S3 bucket for user files.") var bucket: String?
        @Option(help: "The key prefix in the bucket, if the storage URI has one.") var prefix = ""
        @Option(help: "The DynamoDB lock table.") var table: String?
        @Option(help: "The table's full ARN (default: arn:aws:dynamodb:*:*:table/TABLE).") var tableArn:
            String?

        func run() async throws {
            try await runReportingErrors {
                guard bucket != nil || table != nil else {
                    throw InvalidRequestError("give --bucket, --table or both")
                }
                print(EnginePolicy.document(bucket: bucket, prefix: prefix, table: table, tableARN: tableArn))
            }
        }
    }
}

/// An AWS error from the set-up command, reported like engine errors.
struct StoreAWSErrorMessage: CarbonStoreError {
    var error: AWSError
    init(_ error: AWSError) { self.error = error }
    var kind: ErrorKind { error.isRetryable ? .unavailable : .invalidInput }
    var description: String { error.description }
}
