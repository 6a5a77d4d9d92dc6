import CarbonFormat
import Crypto
import Foundation

/// What a key may do. Each role may do what the one before it may.
public enum Role: String, Sendable, Hashable, Comparable, CaseIterable {
    case read, write, admin

    var rank: Int {
        switch self {
        case .read: return 0
        case .write: return 1
        case .admin: return 2
        }
    }

    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// A configured key: the SHA-256 of the key, never the key, with its role.
public struct APIKeyEntry: Sendable, Hashable {
    public var role: Role
    public var sha256: [UInt8]

    public init(role: Role, sha256: [UInt8]) {
        self.role = role
        self.sha256 = sha256
    }

    /// The key's name in logs: the first 8 hex digits of its hash.
    public var keyID: String { hexString(sha256.prefix(4)) }

    /// The configuration line for this entry: `role:sha256hex`.
    public var entry: String { "\(role.rawValue):\(hexString(sha256))" }
}

/// A configuration entry that is not `role:sha256hex`.
public struct InvalidKeyEntryError: Error, Sendable, CustomStringConvertible {
    public var source: String
    public var line: Int
    public var problem: String

    public var description: String {
        "\(source), entry \(line): \(problem). Write each entry as role:sha256hex, e.g. write:\(String(repeating: "0", count: 64)); make a key and its entry with `carbonstore keys new --role write`"
    }
}

/// The keys a service accepts, checked in constant time.
public struct APIKeys: Sendable {
    public private(set) var entries: [APIKeyEntry]

    public init(_ entries: [APIKeyEntry]) { self.entries = entries }

    public var isEmpty: Bool { entries.isEmpty }

    /// Parses entries separated by commas or line ends (LF or CRLF); blank entries and `#` comments
    /// (to the end of their line) are skipped.
    public static func parse(_ text: String, source: String) throws(InvalidKeyEntryError) -> [APIKeyEntry] {
        var result: [APIKeyEntry] = []
        var number = 0
        for rawLine in text.split(
            omittingEmptySubsequences: false, whereSeparator: { $0.isNewline || $0 == "," })
        {
            number += 1
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let item = line.trimmed(" \t\r\u{FEFF}")
            if item.isEmpty { continue }
            guard let colon = item.firstIndex(of: ":") else {
                throw InvalidKeyEntryError(
                    source: source, line: number,
                    problem: "the entry has no role (was a key given instead of its entry?)")
            }
            let roleText = String(item[..<colon])
            guard let role = Role(rawValue: roleText) else {
                throw InvalidKeyEntryError(
                    source: source, line: number,
                    problem: "'\(roleText.prefix(40))' is not a role; use read, write or admin")
            }
            let hex = item[item.index(after: colon)...]
            guard hex.utf8.count == 64, let bytes = [UInt8](hexDigits: hex) else {
                throw InvalidKeyEntryError(
                    source: source, line: number,
                    problem:
                        "the hash must be 64 hex digits (the SHA-256 of the key, not the key itself)")
            }
            result.append(APIKeyEntry(role: role, sha256: bytes))
        }
        return result
    }

    /// The entry of the presented key, if it is one of the configured keys. Every configured hash
    /// is compared, each in constant time, whether or not an earlier one matched.
    public func match(_ presented: String) -> APIKeyEntry? {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        var found: APIKeyEntry?
        for entry in entries {
            var difference: UInt8 = 0
            for i in 0..<32 { difference |= digest[i] ^ entry.sha256[i] }
            if difference == 0, found == nil { found = entry }
        }
        return found
    }

    /// A new random key (`csk_` and 43 base64url characters, 256 bits) and its entry.
    public static func newKey(role: Role) -> (key: String, entry: APIKeyEntry) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let key = "csk_" + base64URL(bytes)
        return (key, APIKeyEntry(role: role, sha256: Array(SHA256.hash(data: Array(key.utf8)))))
    }

    /// Base64url without padding (RFC 4648 section 5).
    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

extension StringProtocol {
    /// The text without the given characters at either end.
    func trimmed(_ set: String) -> String {
        let scalars = Set(set.unicodeScalars)
        var s = Substring(self)
        while let f = s.unicodeScalars.first, scalars.contains(f) { s = s.dropFirst() }
        while let l = s.unicodeScalars.last, scalars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

extension Array where Element == UInt8 {
    init?(hexDigits text: some StringProtocol) {
        var out: [UInt8] = []
        var high: UInt8?
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        guard high == nil else { return nil }
        self = out
    }
}
