import CarbonFormat

/// Maps user ids to storage keys and back.
///
/// A key is `PREFIX` + `hh/hh/` + the encoded id + `.cstore`, where `hh/hh` are the first four hex
/// digits of the FNV-1a 32-bit hash of the id's UTF-8 bytes (65,536 leaf folders, which spreads
/// both directory sizes on a volume and S3 request rates over prefixes).
///
/// The encoding keeps ASCII letters, digits and `-`, and writes every other byte of the id's UTF-8
/// form as `_` followed by two lower-case hex digits. So `alice@example.com` becomes
/// `alice_40example_2ecom`. No encoded id contains `/` or `.`, so none can name a hidden file, a
/// parent folder or another user's file; decoding is the exact inverse. An encoded id longer than
/// 200 characters is cut into folder levels of 200 characters, so file names stay under the usual
/// 255-byte limit. Volumes must be case-sensitive (EBS with ext4/xfs, EFS and NFS are).
public struct UserKeys: Sendable, Hashable {
    /// The longest user id accepted, in UTF-8 bytes. Its worst-case key (every byte escaped) stays
    /// within S3's 1,024-byte key limit together with a prefix of up to 200 bytes.
    public static let maximumUserIDBytes = 256
    /// The longest prefix, in UTF-8 bytes without its final `/` (the storage URI's `prefix=`): a
    /// key of the longest user id, every byte escaped, then stays within S3's 1,024 bytes.
    public static let maximumPrefixBytes = 200
    public static let fileExtension = ".cstore"
    static let segmentLength = 200

    /// Either empty or ending in `/`.
    public let prefix: String

    public init(prefix: String = "") {
        if prefix.isEmpty || prefix.hasSuffix("/") {
            self.prefix = prefix
        } else {
            self.prefix = prefix + "/"
        }
    }

    /// Checks a user id and returns its key.
    public func key(for userID: String) throws(InvalidUserIDError) -> String {
        try Self.validate(userID)
        let bytes = Array(userID.utf8)
        let hash = Self.fnv1a(bytes)
        let hex = hexString(hash)
        var encoded = Self.encode(bytes)
        if encoded.count > Self.segmentLength {
            var parts: [Substring] = []
            var rest = Substring(encoded)
            while rest.count > Self.segmentLength {
                parts.append(rest.prefix(Self.segmentLength))
                rest = rest.dropFirst(Self.segmentLength)
            }
            parts.append(rest)
            encoded = parts.joined(separator: "/")
        }
        return "\(prefix)\(hex.prefix(2))/\(hex.dropFirst(2).prefix(2))/\(encoded)\(Self.fileExtension)"
    }

    /// The user id of a key made by `key(for:)`, or nil if the key is not one of ours (another
    /// file under the prefix, or a name whose hash folder does not match).
    public func userID(forKey key: String) -> String? {
        guard key.hasPrefix(prefix), key.hasSuffix(Self.fileExtension) else { return nil }
        let body = key.dropFirst(prefix.count).dropLast(Self.fileExtension.count)
        let parts = body.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].count == 2, parts[1].count == 2 else { return nil }
        guard let bytes = Self.decode(parts[2...].joined()) else { return nil }
        guard !bytes.isEmpty, bytes.count <= Self.maximumUserIDBytes else { return nil }
        guard let id = String(validating: bytes, as: UTF8.self) else { return nil }
        // The key must be exactly the one we would make for this id.
        guard (try? self.key(for: id)) == key else { return nil }
        return id
    }

    /// For a key below this prefix that `userID(forKey:)` refuses because it belongs to a longer
    /// prefix (a store whose `prefix=` is a sub-folder of this one's, such as `tenants/eu` under
    /// none): that prefix, ending in `/`, and the user id. Nil for any other key.
    public func nestedUserID(forKey key: String) -> (prefix: String, userID: String)? {
        guard key.hasPrefix(prefix), key.hasSuffix(Self.fileExtension) else { return nil }
        let body = key.utf8.dropFirst(prefix.utf8.count)
        // Each `/` may end the longer prefix; the hash folders and the name come after it.
        for slash in body.indices where body[slash] == UInt8(ascii: "/") {
            let nested = prefix + String(Substring(key.utf8[body.startIndex...slash]))
            if let id = UserKeys(prefix: nested).userID(forKey: key) { return (nested, id) }
        }
        return nil
    }

    /// For a key that `userID(forKey:)` refuses only because its file is in another folder than
    /// its name's (a file moved or copied by hand): the user id the name says, and the key where
    /// that user's file belongs. Nil for any other key.
    public func misplacedUserID(forKey key: String) -> (userID: String, expectedKey: String)? {
        guard userID(forKey: key) == nil, key.hasPrefix(prefix), key.hasSuffix(Self.fileExtension) else {
            return nil
        }
        let body = key.dropFirst(prefix.count).dropLast(Self.fileExtension.count)
        let parts = body.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 3, let bytes = Self.decode(parts[2...].joined()), !bytes.isEmpty,
            bytes.count <= Self.maximumUserIDBytes, let id = String(validating: bytes, as: UTF8.self),
            let expected = try? self.key(for: id), expected != key,
            // The name must be exactly the one the user's key ends with.
            expected.hasSuffix("/" + parts[2...].joined(separator: "/") + Self.fileExtension)
        else { return nil }
        return (id, expected)
    }

    public static func validate(_ userID: String) throws(InvalidUserIDError) {
        if userID.isEmpty {
            throw InvalidUserIDError(userID: userID, reason: "a user id must not be empty")
        }
        let n = userID.utf8.count
        if n > maximumUserIDBytes {
            throw InvalidUserIDError(
                userID: userID,
                reason: "a user id is at most \(maximumUserIDBytes) bytes of UTF-8, this one has \(n)")
        }
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt32 {
        var h: UInt32 = 0x811C_9DC5
        for b in bytes {
            h ^= UInt32(b)
            h = h &* 0x0100_0193
        }
        return h
    }

    static func isKept(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
    }

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 8)
        for b in bytes {
            if isKept(b) {
                out.append(b)
            } else {
                out.append(0x5F)
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let b = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        while i < b.count {
            let c = b[i]
            if c == 0x5F {
                guard i + 2 < b.count, let hi = nibble(b[i + 1]), let lo = nibble(b[i + 2]) else {
                    return nil
                }
                let v = hi << 4 | lo
                // Canonical form only: a kept byte is never escaped.
                guard !isKept(v) else { return nil }
                out.append(v)
                i += 3
            } else {
                guard isKept(c) else { return nil }
                out.append(c)
                i += 1
            }
        }
        return out
    }
}
