import Foundation

/// The least-privilege IAM policy of the engine's role: the actions the engine calls, on its own
/// bucket (and prefix) and lock table.
///
/// What calls each action (see docs/AWS.md):
/// - `s3:GetObject`: reading a user (`S3Storage.get`; also before a delete that must find no object);
/// - `s3:PutObject`: writing a user with `If-Match` / `If-None-Match` (`S3Storage.put`);
/// - `s3:DeleteObject`: deleting a user (`S3Storage.delete`);
/// - `s3:ListBucket`: listing users (`S3Storage.list`, ListObjectsV2);
/// - `dynamodb:PutItem`: acquiring a lock; `dynamodb:GetItem`: reading the holder when the
///   acquire's condition fails; `dynamodb:UpdateItem`: renewing a lease; `dynamodb:DeleteItem`:
///   releasing (`DynamoDBLockService`).
///
/// `dynamodb:Query` and `dynamodb:Scan` (on the table and its indexes, `table/T/index/*`) belong to
/// the documented deployment's policy, for the operations tools that list lock items; the engine
/// itself calls neither today.
public enum EnginePolicy {
    public static let s3ObjectActions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    public static let s3BucketActions = ["s3:ListBucket"]
    public static let dynamoActions = [
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ]
    /// The actions of `dynamoActions` that the engine calls (the rest are granted for operations).
    public static let dynamoActionsCalledByTheEngine = [
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    ]

    /// The policy document as JSON. `tableARN` pins the lock table statement to one table in one
    /// region and account (see `tableARN(table:region:account:)`); without it, the statement names
    /// the table in any region and account (`arn:aws:dynamodb:*:*:table/NAME`).
    ///
    /// `prefix` is normalised as the storage URI's `prefix=` is (`AWSOptionChecks.normalizedPrefix`):
    /// `tenants/eu` is the folder `tenants/eu/`, so the objects granted are
    /// `arn:aws:s3:::BUCKET/tenants/eu/*` and ListBucket is allowed for the prefixes `tenants/eu/`
    /// (the one the engine lists with) and `tenants/eu/*`, never `tenants/eu2/` or
    /// `tenants/europe/`. A bucket, prefix, table or table ARN that the storage URI (or
    /// `AWSOptionChecks.checkTableARN`) refuses is refused here too.
    ///
    /// The bucket's ARNs are in `region`'s partition (`arn:aws-cn:s3:::…` in China: an ARN of
    /// another partition grants nothing there), else in the partition of `tableARN`, else in `aws`.
    public static func document(
        bucket: String?, prefix: String = "", table: String?, tableARN: String? = nil, region: String? = nil
    ) throws(InvalidAWSOptionError) -> String {
        var statements: [[String: Any]] = []
        if let bucket {
            try AWSOptionChecks.checkBucket(bucket)
            // IAM reads `*`, `?` and `${…}` in a resource or a condition value as a wildcard or a
            // policy variable: a prefix holding them is written with IAM's escapes.
            let prefix = iamEscaped(try AWSOptionChecks.normalizedPrefix(prefix))
            let partition =
                region.map { Self.partition(region: $0) } ?? tableARN.flatMap(partition(ofARN:)) ?? "aws"
            statements.append([
                "Sid": "CarbonStoreUserFiles", "Effect": "Allow", "Action": s3ObjectActions,
                "Resource": "arn:\(partition):s3:::\(bucket)/\(prefix)*",
            ])
            var list: [String: Any] = [
                "Sid": "CarbonStoreListUsers", "Effect": "Allow", "Action": s3BucketActions,
                "Resource": "arn:\(partition):s3:::\(bucket)",
            ]
            if !prefix.isEmpty {
                list["Condition"] = ["StringLike": ["s3:prefix": listPrefixes(normalizedPrefix: prefix)]]
            }
            statements.append(list)
        } else if !prefix.isEmpty {
            throw InvalidAWSOptionError(
                option: "--prefix", problem: "a prefix is a folder in a bucket: give --bucket too",
                example: "--bucket my-bucket --prefix tenants/eu")
        }
        if let table {
            try AWSOptionChecks.checkTable(table)
            if let tableARN { try AWSOptionChecks.checkTableARN(tableARN, table: table) }
            statements.append([
                "Sid": "CarbonStoreWriteLocks", "Effect": "Allow", "Action": dynamoActions,
                "Resource": tableResources(tableARN ?? "arn:aws:dynamodb:*:*:table/\(table)"),
            ])
        } else if tableARN != nil {
            throw InvalidAWSOptionError(
                option: "--table-arn", problem: "the lock table's ARN needs its name: give --table too",
                example:
                    "--table carbonstore-locks --table-arn arn:aws:dynamodb:eu-west-1:123456789012:table/carbonstore-locks"
            )
        }
        let doc: [String: Any] = ["Version": "2012-10-17", "Statement": statements]
        let data = try! JSONSerialization.data(
            withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// `text` with IAM's escapes for the characters that a policy's resources and `StringLike`
    /// values would read as a wildcard or a variable: `${*}` for `*`, `${?}` for `?`, `${$}` for
    /// `$`.
    public static func iamEscaped(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "*": out += "${*}"
            case "?": out += "${?}"
            case "$": out += "${$}"
            default: out.append(c)
            }
        }
        return out
    }

    /// The values of `s3:prefix` that the ListBucket statement allows under a normalised prefix
    /// (ending in `/`): the prefix itself, which `S3Storage.list` sends as ListObjectsV2's
    /// `prefix`, and everything under it. (IAM's `*` matches the empty string too, so the first is
    /// implied by the second; it is listed to make the grant explicit.)
    public static func listPrefixes(normalizedPrefix prefix: String) -> [String] {
        [prefix, prefix + "*"]
    }

    /// The table and its indexes (`table/T/index/*`); `*` stands for every resource alone.
    static func tableResources(_ arn: String) -> [String] {
        arn == "*" ? ["*"] : [arn, arn + "/index/*"]
    }

    /// The ARN of a DynamoDB table: `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`, the partition
    /// following the region (`aws-cn` for cn-*, `aws-us-gov` for us-gov-*, else `aws`).
    public static func tableARN(table: String, region: String, account: String) -> String {
        "arn:\(partition(region: region)):dynamodb:\(region):\(account):table/\(table)"
    }

    /// The AWS partition of a region, by the prefixes of the SDKs' partition table: `aws-cn` (cn-*),
    /// `aws-us-gov` (us-gov-*), `aws-iso` (us-iso-*), `aws-iso-b` (us-isob-*), `aws-iso-e`
    /// (eu-isoe-*), `aws-iso-f` (us-isof-*), `aws-eusc` (eusc-*), else `aws`.
    public static func partition(region: String) -> String {
        let prefixes = [
            ("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-iso-", "aws-iso"), ("us-isob-", "aws-iso-b"),
            ("eu-isoe-", "aws-iso-e"), ("us-isof-", "aws-iso-f"), ("eusc-", "aws-eusc"),
        ]
        return prefixes.first { region.hasPrefix($0.0) }?.1 ?? "aws"
    }

    /// The partition named by an ARN (`arn:PARTITION:…`); nil for `*` or a partition left open.
    static func partition(ofARN arn: String) -> String? {
        let parts = arn.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "arn", !parts[1].isEmpty, !parts[1].contains("*") else {
            return nil
        }
        return String(parts[1])
    }

    /// An AWS account id: 12 digits.
    public static func isAccountID(_ text: String) -> Bool {
        text.count == 12 && text.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Whether `arn` is the ARN of table `table` in a named region and account (as DescribeTable and
    /// CreateTable return it), so that a policy may be pinned to it: one that `document` takes
    /// (`AWSOptionChecks.checkTableARN`), with neither region nor account `*`.
    public static func isPinnedTableARN(_ arn: String, table: String) -> Bool {
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false)
        return parts.count == 6 && parts[3] != "*" && isAccountID(String(parts[4]))
            && (try? AWSOptionChecks.checkTableARN(arn, table: table)) != nil
    }
}
