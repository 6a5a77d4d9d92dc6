import Foundation

/// One condition of a browser-upload (S3 POST Object) policy.
public enum PostPolicyCondition: Sendable, Hashable {
    /// Form field `name` must equal `value` exactly: `{"name": "value"}`. A leading `$` is optional.
    case equals(String, String)
    /// Form field `name` must start with `prefix` (`""` allows anything): `["starts-with", "$name", "prefix"]`.
    case startsWith(String, String)
    /// The uploaded file's size in bytes must be within `min...max`: `["content-length-range", min, max]`.
    case contentLengthRange(Int, Int)

    /// The form field the condition is about, lower-cased, without `$`; nil for `contentLengthRange`.
    var fieldName: String? {
        switch self {
        case .equals(let name, _), .startsWith(let name, _):
            return (name.hasPrefix("$") ? String(name.dropFirst()) : name).lowercased()
        case .contentLengthRange:
            return nil
        }
    }
}

/// Where and what a browser posts: `multipart/form-data` with `fields` (in any order) and then the file.
public struct PresignedPOST: Sendable, Hashable {
    public var url: URL
    public var fields: [String: String]

    public init(url: URL, fields: [String: String]) {
        self.url = url
        self.fields = fields
    }
}

extension SigV4Signer {
    /// A presigned S3 POST (browser-based upload, SigV4 POST policy).
    ///
    /// The policy's conditions are, in order: `conditions`; `{"bucket": bucket}`; `{"key": key}` (or
    /// `["starts-with", "$key", prefix]` when `key` ends with `${filename}`); `{"name": value}` for every
    /// entry of `fields` that no condition mentions (S3 rejects form fields the policy does not cover);
    /// then `x-amz-algorithm`, `x-amz-credential`, `x-amz-date` and `x-amz-security-token` (with a session
    /// token). `expiration` is `date + expires` as `yyyy-MM-dd'T'HH:mm:ss'Z'`.
    ///
    /// The returned fields are `fields` plus `key`, `policy` (base64 of the JSON policy),
    /// `x-amz-algorithm`, `x-amz-credential`, `x-amz-date`, `x-amz-security-token` (if any) and
    /// `x-amz-signature` (hex HMAC-SHA256 of the base64 policy with the day's signing key).
    ///
    /// - Parameters:
    ///   - url: where the form is posted (the bucket's endpoint); returned unchanged.
    ///   - expires: lifetime of the policy in seconds, 1...604800.
    /// - Throws: ``SigningError`` for a bad expiry.
    public func presignPOST(
        url: URL, bucket: String, key: String, expires: Int, conditions: [PostPolicyCondition],
        fields: [String: String] = [:], date: Date = Date()
    ) throws -> PresignedPOST {
        try Self.checkExpiry(expires)
        let time = SigV4Canonical.timestamp(date)
        let credential = "\(credentials.accessKeyID)/\(credentialScope(time.dateStamp))"

        var json = PolicyJSON()
        json.raw("{")
        json.string("expiration")
        json.raw(": ")
        json.string(SigV4Canonical.iso8601(date.addingTimeInterval(TimeInterval(expires))))
        json.raw(", ")
        json.string("conditions")
        json.raw(": [")

        var first = true
        func separator() {
            if !first { json.raw(", ") }
            first = false
        }
        func object(_ name: String, _ value: String) {
            separator()
            json.raw("{")
            json.string(name)
            json.raw(": ")
            json.string(value)
            json.raw("}")
        }

        var covered: Set<String> = ["key", "bucket"]
        for condition in conditions {
            separator()
            switch condition {
            case .equals(let name, let value):
                json.raw("{")
                json.string(name.hasPrefix("$") ? String(name.dropFirst()) : name)
                json.raw(": ")
                json.string(value)
                json.raw("}")
            case .startsWith(let name, let prefix):
                json.raw("[")
                json.string("starts-with")
                json.raw(", ")
                json.string(name.hasPrefix("$") ? name : "$" + name)
                json.raw(", ")
                json.string(prefix)
                json.raw("]")
            case .contentLengthRange(let min, let max):
                json.raw("[")
                json.string("content-length-range")
                json.raw(", \(min), \(max)]")
            }
            if let name = condition.fieldName { covered.insert(name) }
        }

        object("bucket", bucket)
        let filenameVariable = "${filename}"
        if key.hasSuffix(filenameVariable) {
            separator()
            json.raw("[")
            json.string("starts-with")
            json.raw(", ")
            json.string("$key")
            json.raw(", ")
            json.string(String(key.dropLast(filenameVariable.count)))
            json.raw("]")
        } else {
            object("key", key)
        }

        let generatedNames: Set<String> = [
            "policy", "x-amz-signature", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
            "x-amz-security-token", "file",
        ]
        for name in fields.keys.sorted() {
            let lower = name.lowercased()
            if covered.contains(lower) || generatedNames.contains(lower) || lower.hasPrefix("x-ignore-") {
                continue
            }
            object(name, fields[name]!)
            covered.insert(lower)
        }

        var result = fields
        for name in fields.keys where generatedNames.contains(name.lowercased()) || name.lowercased() == "key"
        {
            result[name] = nil
        }
        object("x-amz-algorithm", SigV4Canonical.algorithm)
        object("x-amz-credential", credential)
        object("x-amz-date", time.amzDate)
        if let token = sessionToken {
            object("x-amz-security-token", token)
            result["x-amz-security-token"] = token
        }
        json.raw("]}")

        let policy = Data(json.bytes).base64EncodedString()
        result["key"] = key
        result["policy"] = policy
        result["x-amz-algorithm"] = SigV4Canonical.algorithm
        result["x-amz-credential"] = credential
        result["x-amz-date"] = time.amzDate
        result["x-amz-signature"] = signature(of: policy, date: date)
        return PresignedPOST(url: url, fields: result)
    }
}

/// A tiny JSON writer in the shape Python's `json.dumps` produces (`", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`), so a policy can be compared byte for byte with botocore's. Any JSON parser reads it.
struct PolicyJSON {
    var bytes: [UInt8] = []

    mutating func raw(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    mutating func string(_ value: String) {
        let hex = Array("0123456789abcdef".utf8)
        func unicodeEscape(_ unit: UInt16) {
            bytes.append(contentsOf: "\\u".utf8)
            bytes.append(hex[Int(unit >> 12 & 0xF)])
            bytes.append(hex[Int(unit >> 8 & 0xF)])
            bytes.append(hex[Int(unit >> 4 & 0xF)])
            bytes.append(hex[Int(unit & 0xF)])
        }
        bytes.append(UInt8(ascii: "\""))
        for unit in value.utf16 {
            switch unit {
            case 0x22: bytes.append(contentsOf: "\\\"".utf8)
            case 0x5C: bytes.append(contentsOf: "\\\\".utf8)
            case 0x0A: bytes.append(contentsOf: "\\n".utf8)
            case 0x0D: bytes.append(contentsOf: "\\r".utf8)
            case 0x09: bytes.append(contentsOf: "\\t".utf8)
            case 0x08: bytes.append(contentsOf: "\\b".utf8)
            case 0x0C: bytes.append(contentsOf: "\\f".utf8)
            case 0x20...0x7E: bytes.append(UInt8(unit))
            default: unicodeEscape(unit)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
