import CarbonFormat

/// The one string that configures where user files live and how writers are serialised.
///
/// ```
/// s3:BUCKET?locking=dynamo&table=TABLE          files in S3, locks in DynamoDB
/// path:///ABSOLUTE/DIR?locking=dynamo&table=T   files on a mounted volume, locks in DynamoDB
/// path:/ABSOLUTE/DIR  or  path:RELATIVE/DIR      files on a volume, local locks
/// memory:                                       in-process, for tests and demos
/// ```
/// Query keys: `locking` (`local`, `dynamo`, `none`), `table`, `region`, `endpoint`, `prefix`,
/// `lease` (ms), `wait` (ms), `sse`, `sse-kms-key-id` (s3:), `mode` (path:), `cache` (MiB),
/// `compression` (`zstd`, `zlib`, `none`). Values are
/// percent-decoded, then checked. `s3://BUCKET/PREFIX` is accepted as a spelling of
/// `s3:BUCKET?prefix=PREFIX`.
public struct StorageURI: Sendable, Hashable, CustomStringConvertible {
    public enum Backend: Sendable, Hashable {
        /// A directory, as written (absolute, or relative to the working directory).
        case path(String)
        case s3(bucket: String)
        case memory
    }

    public enum Locking: Sendable, Hashable {
        /// Advisory file locks (path:) or in-process locks (memory:).
        case local
        case dynamo(table: String)
        /// No lock: every write is a compare-and-swap and conflicting writers retry.
        case none
    }

    public var backend: Backend
    public var locking: Locking

    /// The name a `BackendRegistry` knows a storage by: `path`, `s3` or `memory`.
    public var scheme: String {
        switch backend {
        case .path: return "path"
        case .s3: return "s3"
        case .memory: return "memory"
        }
    }

    /// The value of `locking`: `local`, `dynamo` or `none`.
    public var lockingName: String {
        switch locking {
        case .local: return "local"
        case .dynamo: return "dynamo"
        case .none: return "none"
        }
    }
    public var region: String?
    /// An S3-compatible or DynamoDB-compatible endpoint, e.g. `http://127.0.0.1:9000`.
    public var endpoint: String?
    /// Prefix of every key (a sub-folder on a volume), without leading `/`; empty or ending in `/`.
    public var prefix: String
    /// How long a lock lease lasts, in milliseconds.
    public var leaseMilliseconds: Int64?
    /// How long a writer waits for a lock before it gives up, in milliseconds.
    public var waitMilliseconds: Int64?
    /// S3 server-side encryption of written objects (`sse=AES256`, or `sse=aws:kms` with an
    /// optional `sse-kms-key-id`), parsed once here.
    public var encryption: Encryption?
    /// Permissions of the files of `path:` (`mode=0640`); nil for the default, 0600.
    public var fileMode: UInt32?
    /// The memory of the record cache in MiB (`cache=256`; `cache=0` turns it off); nil for the
    /// default (`StoreOptions.cacheBytes`, 64 MiB).
    public var cacheMebibytes: Int?
    /// How written files compress their sections (`compression=zstd`, the default: format version
    /// 3; `compression=zlib`: version 2, which earlier releases read; `compression=none`); nil for
    /// the default (`StoreOptions.codec`).
    public var compression: RecordCodec.Compression?
    /// Where `path:` makes the blocking file-system calls of its operations (`io=threads`: on
    /// threads kept for them; `io=task`: on the calling task's thread; `io=auto`: threads on a
    /// network file system, the task's thread on a local one); nil for the default, `auto`
    /// (docs/STORAGE.md, "On a network file system, every blocking step runs on threads of its
    /// own").
    public var pathIO: PathIO?

    /// The values of `io=`.
    public enum PathIO: String, Sendable, Hashable, CaseIterable {
        case auto, threads, task
    }

    public enum Encryption: Sendable, Hashable {
        /// SSE-S3 (`sse=AES256`).
        case s3
        /// SSE-KMS (`sse=aws:kms`), with the key id or ARN, or nil for the account's `aws/s3` key.
        case kms(keyID: String?)
    }
    /// The text this was parsed from.
    public let original: String

    /// The embedded default: files in `./carbonstore-data`, local locks.
    public static let defaultURI = "path:carbonstore-data"
    public static let knownKeys = [
        "locking", "table", "region", "endpoint", "prefix", "lease", "wait", "sse", "sse-kms-key-id", "mode",
        "cache", "compression", "io",
    ]

    public var description: String { original }

    public init(_ text: String) throws(InvalidStorageURIError) {
        original = text
        func fail(_ problem: String, _ example: String = "path:///mnt/efs/users?locking=dynamo&table=locks")
            -> InvalidStorageURIError
        {
            InvalidStorageURIError(uri: text, problem: problem, example: example)
        }
        let s3Example = "s3:my-bucket?locking=dynamo&table=locks"
        // A '#' would start a fragment, which a storage URI has none of: refused as written, in
        // the path and in the values alike; %23 gives one.
        if text.contains("#") {
            throw fail(
                "the URI contains '#', which would start a fragment; write %23 for a '#' in a path or a value",
                text.hasPrefix("s3:") ? s3Example : "path:carbonstore-data")
        }
        guard let colon = text.firstIndex(of: ":") else {
            throw fail(
                "a storage URI starts with 'path:', 's3:' or 'memory:'", "path:carbonstore-data")
        }
        let scheme = String(text[..<colon])
        var rest = String(text[text.index(after: colon)...])
        var query = ""
        if let q = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: q)...])
            rest = String(rest[..<q])
        }

        // Query parameters.
        var params: [String: String] = [:]
        if !query.isEmpty {
            for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
                guard let eq = pair.firstIndex(of: "=") else {
                    throw fail("query item '\(pair)' has no value; write key=value")
                }
                let key = String(pair[..<eq])
                guard let value = Self.percentDecode(String(pair[pair.index(after: eq)...])) else {
                    throw fail("the value of '\(key)' has a malformed %-escape")
                }
                guard Self.knownKeys.contains(key) else {
                    throw fail(
                        "unknown key '\(key)'; the keys are \(Self.knownKeys.joined(separator: ", "))")
                }
                guard params[key] == nil else { throw fail("'\(key)' is given twice") }
                guard !value.isEmpty else { throw fail("'\(key)' has an empty value") }
                guard !value.utf8.contains(0) else {
                    throw fail("the value of '\(key)' contains a NUL byte (%00)")
                }
                params[key] = value
            }
        }

        prefix = ""
        switch scheme {
        case "path":
            if rest.hasPrefix("//") {
                guard rest.hasPrefix("///") else {
                    throw fail(
                        "'path://' names a host; a directory on a mounted volume takes three slashes (path:///mnt/efs/users) or none (path:relative/dir)"
                    )
                }
                rest.removeFirst(2)
            }
            guard !rest.isEmpty else {
                throw fail("the path is empty", "path:carbonstore-data or path:///var/lib/carbonstore")
            }
            // Spaces at either end are a copy-and-paste slip far more often than a name: refused
            // as written, and can be given %-escaped (%20).
            if let first = rest.unicodeScalars.first, let last = rest.unicodeScalars.last,
                first.properties.isWhitespace || last.properties.isWhitespace
            {
                throw fail(
                    "the path begins or ends with white space; remove it, or write %20 for a space that is part of the directory name",
                    "path:carbonstore-data")
            }
            guard let decoded = Self.percentDecode(rest) else {
                throw fail("the path has a malformed %-escape")
            }
            // Checked after decoding: %00 is a NUL byte too, and no file name can hold one.
            guard !decoded.utf8.contains(0) else { throw fail("the path contains a NUL byte (%00)") }
            guard !decoded.unicodeScalars.contains(where: Self.isControl) else {
                throw fail("the path contains a control character; remove it", "path:carbonstore-data")
            }
            backend = .path(decoded)
        case "s3":
            var bucket = rest
            if bucket.hasPrefix("//") {
                bucket.removeFirst(2)
                if let slash = bucket.firstIndex(of: "/") {
                    let p = String(bucket[bucket.index(after: slash)...])
                    bucket = String(bucket[..<slash])
                    if !p.isEmpty {
                        guard params["prefix"] == nil else {
                            throw fail("the prefix is given both in the path and as 'prefix='", s3Example)
                        }
                        params["prefix"] = p
                    }
                }
            }
            if let problem = Self.bucketNameProblem(bucket) { throw fail(problem, s3Example) }
            backend = .s3(bucket: bucket)
        case "memory":
            guard rest.isEmpty || rest == "//" else {
                throw fail("'memory:' takes no path", "memory:")
            }
            backend = .memory
        default:
            throw fail(
                "unknown scheme '\(scheme)'; use path:, s3: or memory:",
                scheme.lowercased() == "file" ? "path:///var/lib/carbonstore" : "path:carbonstore-data")
        }

        // Locking.
        switch params["locking"] {
        case nil:
            if case .s3 = backend {
                throw fail(
                    "s3: needs 'locking': locking=dynamo&table=TABLE, or locking=none for compare-and-swap only",
                    s3Example)
            }
            locking = .local
        case "local":
            if case .s3 = backend {
                throw fail(
                    "locking=local cannot serialise writers on S3; use locking=dynamo&table=TABLE or locking=none",
                    s3Example)
            }
            locking = .local
        case "none":
            locking = .none
        case "dynamo":
            guard let table = params["table"] else {
                throw fail("locking=dynamo needs 'table', the DynamoDB lock table", s3Example)
            }
            if case .memory = backend {
                throw fail("memory: keeps data in one process; use locking=local or none", "memory:")
            }
            if let problem = Self.tableNameProblem(table) { throw fail(problem, s3Example) }
            locking = .dynamo(table: table)
        case let other?:
            throw fail("unknown locking '\(other)'; use local, dynamo or none", s3Example)
        }
        if params["table"] != nil, case .dynamo = locking {
        } else if params["table"] != nil {
            throw fail("'table' is only used with locking=dynamo", s3Example)
        }

        let usesAWS: Bool
        if case .s3 = backend {
            usesAWS = true
        } else if case .dynamo = locking {
            usesAWS = true
        } else {
            usesAWS = false
        }
        for key in ["region", "endpoint"] where params[key] != nil && !usesAWS {
            throw fail("'\(key)' is only used with s3: or locking=dynamo", s3Example)
        }
        region = params["region"]
        if let region,
            !region.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
            )
        {
            throw fail(
                "region '\(region)' is not an AWS region name such as eu-west-1",
                s3Example + "&region=eu-west-1")
        }
        endpoint = params["endpoint"]
        if let endpoint,
            !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) || endpoint.count < 10
        {
            throw fail(
                "endpoint '\(endpoint)' must be an http:// or https:// URL",
                "s3:my-bucket?locking=none&endpoint=http://127.0.0.1:9000")
        }

        if var p = params["prefix"] {
            while p.hasPrefix("/") { p.removeFirst() }
            guard !p.unicodeScalars.contains(where: Self.isControl) else {
                throw fail("prefix '\(p)' must not contain control characters", s3Example + "&prefix=users/")
            }
            // Split as bytes, as the file system and `PathStorage` split a key: split by
            // `Character`, a '/' that joins a grapheme cluster with the character before it (a
            // prepended concatenation mark) would hide a '.' or '..' segment.
            let segments = p.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).map {
                String(Substring($0))
            }
            if segments.contains(where: { $0 == ".." || $0 == "." || $0.hasPrefix(".") }) {
                throw fail(
                    "prefix '\(p)' must not contain '.', '..' or hidden segments",
                    s3Example + "&prefix=users/")
            }
            let joined = segments.joined(separator: "/")
            // Keys stay within S3's 1,024 bytes with the longest user id (`UserKeys`).
            guard joined.utf8.count <= UserKeys.maximumPrefixBytes else {
                throw fail(
                    "prefix '\(p)' is \(joined.utf8.count) bytes; a prefix is at most \(UserKeys.maximumPrefixBytes) bytes",
                    s3Example + "&prefix=users/")
            }
            prefix = segments.isEmpty ? "" : joined + "/"
        }

        func milliseconds(_ key: String, minimum: Int64) throws(InvalidStorageURIError) -> Int64? {
            guard let v = params[key] else { return nil }
            guard let n = Int64(v), n >= minimum, n <= 86_400_000 else {
                throw fail(
                    "'\(key)' is a whole number of milliseconds from \(minimum) to 86400000, not '\(v)'")
            }
            return n
        }
        let sse = params["sse"]
        let sseKMSKeyID = params["sse-kms-key-id"]
        encryption = nil
        if let sse {
            guard case .s3 = backend else {
                throw fail("'sse' is only used with s3:", s3Example + "&sse=AES256")
            }
            switch sse {
            case "AES256": encryption = .s3
            case "aws:kms": encryption = .kms(keyID: sseKMSKeyID)
            default:
                throw fail(
                    "sse '\(sse)' must be AES256 (SSE-S3) or aws:kms (SSE-KMS)", s3Example + "&sse=aws:kms")
            }
        }
        if sseKMSKeyID != nil && sse != "aws:kms" {
            throw fail(
                "'sse-kms-key-id' needs sse=aws:kms",
                s3Example + "&sse=aws:kms&sse-kms-key-id=alias/carbonstore")
        }
        fileMode = nil
        if let mode = params["mode"] {
            let pathExample = "path:///var/lib/carbonstore?mode=0640"
            guard case .path = backend else { throw fail("'mode' is only used with path:", pathExample) }
            guard (3...4).contains(mode.count), mode.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }),
                let bits = UInt32(mode, radix: 8), bits <= 0o777
            else {
                throw fail(
                    "mode '\(mode)' must be octal file permissions such as 0600 or 0640", pathExample)
            }
            guard bits & 0o600 == 0o600 else {
                throw fail(
                    "mode '\(mode)' must let the owner read and write (0600 at least)", pathExample)
            }
            guard bits & 0o111 == 0 else {
                throw fail("mode '\(mode)' must not make user files executable", pathExample)
            }
            guard bits & 0o002 == 0 else {
                throw fail(
                    "mode '\(mode)' would let every local user change user files; grant a group instead",
                    pathExample)
            }
            fileMode = bits
        }
        leaseMilliseconds = try milliseconds("lease", minimum: 1000)
        if leaseMilliseconds != nil, case .dynamo = locking {
        } else if leaseMilliseconds != nil {
            throw fail("'lease' is only used with locking=dynamo (local locks end with their process)")
        }
        waitMilliseconds = try milliseconds("wait", minimum: 0)
        cacheMebibytes = nil
        if let v = params["cache"] {
            guard let n = Int(v), n >= 0, n <= 1 << 20 else {
                throw fail(
                    "'cache' is the record cache's memory in MiB, a whole number from 0 (off) to 1048576, not '\(v)'",
                    "path:carbonstore-data?cache=256")
            }
            cacheMebibytes = n
        }
        pathIO = nil
        if let v = params["io"] {
            let pathExample = "path:///mnt/efs/users?io=threads"
            guard case .path = backend else { throw fail("'io' is only used with path:", pathExample) }
            guard let placement = PathIO(rawValue: v) else {
                throw fail(
                    "'io' is auto (the default: threads of their own on a file system not known to be local, such as NFS or EFS; the task's thread on ext4, XFS and other local ones), threads or task, not '\(v)'",
                    pathExample)
            }
            pathIO = placement
        }
        compression = nil
        if let v = params["compression"] {
            switch v {
            case "zstd": compression = .zstd(level: 1)
            case "zlib": compression = .zlib(level: 1)
            case "none": compression = RecordCodec.Compression.none
            default:
                throw fail(
                    "'compression' is zstd (the default, format version 3), zlib (version 2, which earlier releases read) or none, not '\(v)'",
                    "path:carbonstore-data?compression=zlib")
            }
        }
    }

    static func percentDecode(_ s: String) -> String? {
        guard s.contains("%") else { return s }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%") {
                let isHex = { (c: UInt8) in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
                }
                guard i + 2 < b.count, isHex(b[i + 1]), isHex(b[i + 2]),
                    let v = UInt8(String(decoding: b[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)
                else { return nil }
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// S3 bucket naming rules (general purpose buckets).
    static func bucketNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "the bucket name is missing" }
        let b = Array(name.utf8)
        guard (3...63).contains(b.count) else {
            return "bucket name '\(name)' must be 3 to 63 characters long"
        }
        let allowed = b.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E
        }
        let edgeOK = { (c: UInt8) in (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        guard allowed, edgeOK(b.first!), edgeOK(b.last!) else {
            return
                "bucket name '\(name)' may hold only lower-case letters, digits, '.' and '-', and must begin and end with a letter or digit"
        }
        if name.contains("..") { return "bucket name '\(name)' must not hold two periods in a row" }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 4,
            parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } })
        {
            return "bucket name '\(name)' must not be formatted as an IP address"
        }
        // Prefixes and suffixes that S3 keeps for its own names (access points, aliases, directory
        // and table buckets).
        if let prefix = ["xn--", "sthree-", "amzn-s3-demo-"].first(where: { name.hasPrefix($0) }) {
            return "bucket name '\(name)' must not begin with '\(prefix)', which S3 reserves"
        }
        if let suffix = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].first(where: {
            name.hasSuffix($0)
        }) {
            return "bucket name '\(name)' must not end with '\(suffix)', which S3 reserves"
        }
        return nil
    }

    /// DynamoDB table naming rules.
    static func tableNameProblem(_ name: String) -> String? {
        let ok = name.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39)
                || $0 == 0x2D
                || $0 == 0x2E || $0 == 0x5F
        }
        guard ok, (3...255).contains(name.utf8.count) else {
            return "table name '\(name)' must be 3 to 255 characters of letters, digits, '_', '-' and '.'"
        }
        return nil
    }
}

extension StorageURI {
    /// A control character: C0 (below U+0020), DEL (U+007F) or C1 (U+0080 to U+009F).
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }
}

// MARK: - The URI's name checks, for commands that take the same names as options

extension StorageURI {
    /// Why `name` cannot be the bucket of `s3:NAME`, or nil when it can (`bucketNameProblem`).
    public static func problem(bucketName name: String) -> String? { bucketNameProblem(name) }

    /// Why `name` cannot be the lock table of `table=NAME`, or nil when it can (`tableNameProblem`).
    public static func problem(tableName name: String) -> String? { tableNameProblem(name) }
}
