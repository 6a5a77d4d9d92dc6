import AWSClient
import CarbonStore

/// An option of `carbonstore aws setup` or `carbonstore aws policy` that cannot be used: which
/// option, what is wrong, and an example of a valid value.
public struct InvalidAWSOptionError: CarbonStoreError, Hashable {
    /// The option, e.g. `--bucket`.
    public var option: String
    public var problem: String
    /// A valid use of the option, e.g. `--bucket my-bucket`.
    public var example: String

    public init(option: String, problem: String, example: String) {
        self.option = option
        self.problem = problem
        self.example = example
    }

    public var kind: ErrorKind { .invalidInput }
    public var description: String { "invalid \(option): \(problem). Example: \(example)" }
}

/// The checks of the values that `carbonstore aws setup` and `carbonstore aws policy` take. Each
/// value is held to the rule the storage URI holds the same value to (`StorageURI`): a bucket, a
/// table, a region or a prefix these commands accept is one the engine accepts, and the prefix is
/// normalised as the engine normalises it.
public enum AWSOptionChecks {
    public static let bucketExample = "--bucket my-bucket"
    public static let tableExample = "--table carbonstore-locks"
    public static let prefixExample = "--prefix tenants/eu"
    public static let regionExample = "--region eu-west-1"

    /// A bucket name the storage URI accepts in `s3:BUCKET`.
    public static func checkBucket(_ name: String) throws(InvalidAWSOptionError) {
        if let problem = StorageURI.problem(bucketName: name) {
            throw InvalidAWSOptionError(option: "--bucket", problem: problem, example: bucketExample)
        }
    }

    /// A table name the storage URI accepts in `table=`.
    public static func checkTable(_ name: String) throws(InvalidAWSOptionError) {
        if let problem = StorageURI.problem(tableName: name) {
            throw InvalidAWSOptionError(option: "--table", problem: problem, example: tableExample)
        }
    }

    /// The key prefix as the storage URI's `prefix=` leaves it, which is the prefix of every key the
    /// engine reads, writes and lists: leading `/` dropped, empty segments dropped, and `/` at the
    /// end (`tenants/eu` and `/tenants//eu/` are `tenants/eu/`), or empty for the whole bucket.
    /// Refused like `prefix=`: control characters, and `.`, `..` or hidden (`.name`) segments.
    public static func normalizedPrefix(_ prefix: String) throws(InvalidAWSOptionError) -> String {
        if prefix.isEmpty { return "" }
        return try parsed(["prefix": prefix], option: "--prefix", example: prefixExample).prefix
    }

    /// A region name the storage URI accepts in `region=`: lower-case letters, digits and `-`.
    public static func checkRegion(_ region: String) throws(InvalidAWSOptionError) {
        guard !region.isEmpty else {
            throw InvalidAWSOptionError(option: "--region", problem: "it is empty", example: regionExample)
        }
        _ = try parsed(["region": region], option: "--region", example: regionExample)
    }

    /// A region name as the storage URI's `region=` takes it: lower-case letters, digits and `-`.
    static func isRegionName(_ region: String) -> Bool {
        !region.isEmpty
            && region.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D
            }
    }

    /// Throws unless `region` is one of AWS's region names (`isAWSRegionName`): where it goes into an
    /// ARN or names AWS's own endpoints. `option`: where the region came from, for the message.
    public static func checkAWSRegionName(_ region: String, option: String, note: String = "")
        throws(InvalidAWSOptionError)
    {
        guard !isAWSRegionName(region) else { return }
        throw InvalidAWSOptionError(
            option: option,
            problem: "'\(region)' is not an AWS region name such as eu-west-1 or us-gov-west-1" + note,
            example: regionExample)
    }

    /// A region of AWS itself, which its endpoints and ARNs name: two letters, one or more words and
    /// a number, joined by `-` (`eu-west-1`, `us-gov-west-1`, `ap-southeast-2`). S3- and
    /// DynamoDB-compatible stores may name their regions otherwise.
    public static func isAWSRegionName(_ region: String) -> Bool {
        let parts = region.split(separator: "-", omittingEmptySubsequences: false)
        func letters(_ s: Substring) -> Bool { !s.isEmpty && s.utf8.allSatisfy { $0 >= 0x61 && $0 <= 0x7A } }
        guard parts.count >= 3, let first = parts.first, let last = parts.last else { return false }
        return first.utf8.count == 2 && letters(first) && parts.dropFirst().dropLast().allSatisfy(letters)
            && (1...2).contains(last.utf8.count) && last.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// `--sse` and `--sse-kms-key-id` as the storage URI's `sse=` and `sse-kms-key-id=`: `AES256`
    /// or `aws:kms`, and a KMS key only with `aws:kms`.
    public static func encryption(sse: String, kmsKeyID: String?) throws(InvalidAWSOptionError)
        -> ServerSideEncryption
    {
        let sseExample = "--sse aws:kms --sse-kms-key-id alias/carbonstore"
        guard !sse.isEmpty else {
            throw InvalidAWSOptionError(
                option: "--sse", problem: "it is empty; it is AES256 (SSE-S3) or aws:kms (SSE-KMS)",
                example: "--sse AES256")
        }
        _ = try parsed(["sse": sse], option: "--sse", example: "--sse AES256")
        guard let kmsKeyID else { return sse == "aws:kms" ? .kms(keyID: nil) : .s3 }
        guard sse == "aws:kms" else {
            throw InvalidAWSOptionError(
                option: "--sse-kms-key-id",
                problem:
                    "a KMS key needs --sse aws:kms (SSE-KMS), as sse-kms-key-id= in the storage URI needs sse=aws:kms; --sse is \(sse)",
                example: sseExample)
        }
        guard !kmsKeyID.isEmpty else {
            throw InvalidAWSOptionError(
                option: "--sse-kms-key-id",
                problem: "it is empty; leave it out to use the account's aws/s3 key", example: sseExample)
        }
        let uri = try parsed(
            ["sse": sse, "sse-kms-key-id": kmsKeyID], option: "--sse-kms-key-id", example: sseExample)
        guard case .kms(let keyID) = uri.encryption else { return .kms(keyID: kmsKeyID) }
        return .kms(keyID: keyID)
    }

    /// An AWS account id: 12 digits.
    public static func checkAccount(_ account: String) throws(InvalidAWSOptionError) {
        guard EnginePolicy.isAccountID(account) else {
            throw InvalidAWSOptionError(
                option: "--account", problem: "it is a 12-digit AWS account id, not '\(account)'",
                example: "--account 123456789012")
        }
    }

    /// `--table-arn`: `*` (any table, as the tests' moto needs), or the ARN of table `table`,
    /// `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/TABLE`, with an AWS partition, a region as
    /// `region=` takes it (compatible stores name their own) or `*`, a 12-digit account or `*`.
    public static func checkTableARN(_ arn: String, table: String) throws(InvalidAWSOptionError) {
        let example = "--table-arn arn:aws:dynamodb:eu-west-1:123456789012:table/\(table)"
        if arn == "*" { return }
        let parts = arn.split(separator: ":", maxSplits: 5, omittingEmptySubsequences: false).map(String.init)
        func fail(_ problem: String) -> InvalidAWSOptionError {
            InvalidAWSOptionError(option: "--table-arn", problem: problem, example: example)
        }
        guard parts.count == 6, parts[0] == "arn", parts[2] == "dynamodb", parts[5].hasPrefix("table/") else {
            throw fail(
                "'\(arn)' is not the ARN of a DynamoDB table (arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME)"
            )
        }
        let partition = parts[1].split(separator: "-", omittingEmptySubsequences: false)
        guard partition.first == "aws",
            partition.dropFirst().allSatisfy({
                !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x61 && $0 <= 0x7A }
            })
        else {
            throw fail("'\(parts[1])' in '\(arn)' is not an AWS partition such as aws, aws-cn or aws-us-gov")
        }
        // A region as the storage URI takes it: an S3- or DynamoDB-compatible store answers its
        // own names (DynamoDB Local: `ddblocal`).
        guard parts[3] == "*" || isRegionName(parts[3]) else {
            throw fail("'\(parts[3])' in '\(arn)' is not a region such as eu-west-1 (or *)")
        }
        guard parts[4] == "*" || EnginePolicy.isAccountID(parts[4]) else {
            throw fail("'\(parts[4])' in '\(arn)' is not a 12-digit AWS account id (or *)")
        }
        let name = String(parts[5].dropFirst("table/".count))
        guard name == table else {
            throw fail("'\(arn)' names table '\(name)', not --table \(table)")
        }
    }

    /// Parses `s3:my-bucket?locking=none` with `query` added, percent-encoded: the storage URI's
    /// own checks of those keys. Its problem is reported as the option's.
    static func parsed(_ query: [String: String], option: String, example: String)
        throws(InvalidAWSOptionError)
        -> StorageURI
    {
        var text = "s3:my-bucket?locking=none"
        for (key, value) in query.sorted(by: { $0.key < $1.key }) {
            text += "&\(key)=\(percentEncoded(value))"
        }
        do {
            return try StorageURI(text)
        } catch {
            throw InvalidAWSOptionError(option: option, problem: error.problem, example: example)
        }
    }

    /// Every byte but ASCII letters, digits, `-`, `.`, `_`, `~` and `/` as a %-escape, so that the
    /// URI's parser decodes exactly `value`.
    static func percentEncoded(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            let plain =
                (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F || byte == 0x7E || byte == 0x2F
            if plain {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]], as: UTF8.self)
            }
        }
        return out
    }
}
