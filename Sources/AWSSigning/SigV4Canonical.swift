import Crypto
import Foundation

/// The byte-level pieces of SigV4: URI encoding, canonical URI / query / headers, timestamps, hex.
/// Everything works on UTF-8 bytes, without Foundation formatters, because it runs on every request.
enum SigV4Canonical {
    static let algorithm = "AWS4-HMAC-SHA256"
    static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// SHA-256 of the empty string.
    static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Headers that are never signed: hop-by-hop headers a proxy or the HTTP client may add, drop or
    /// rewrite, plus `user-agent`, `expect` and `x-amzn-trace-id` (the same list as the AWS SDKs).
    /// `authorization` is what we produce.
    static let unsignedHeaderNames: Set<String> = [
        "authorization", "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id",
    ]

    // MARK: - URI encoding

    private static let hexUpper: [UInt8] = Array("0123456789ABCDEF".utf8)
    private static let hexLower: [UInt8] = Array("0123456789abcdef".utf8)

    /// RFC 3986 unreserved characters: A-Z a-z 0-9 - _ . ~
    @inline(__always)
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// AWS `UriEncode`: every byte except the unreserved characters becomes `%XX` (upper-case hex);
    /// `/` is kept when `encodeSlash` is false.
    static func appendEncoded<S: Sequence<UInt8>>(_ bytes: S, to out: inout [UInt8], encodeSlash: Bool) {
        for byte in bytes {
            if isUnreserved(byte) || (!encodeSlash && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexUpper[Int(byte >> 4)])
                out.append(hexUpper[Int(byte & 0x0F)])
            }
        }
    }

    static func encode(_ string: String, encodeSlash: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count + 8)
        appendEncoded(string.utf8, to: &out, encodeSlash: encodeSlash)
        return String(decoding: out, as: UTF8.self)
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Decodes `%XX` escapes into raw bytes. A `%` that does not start a valid escape is kept as is
    /// (and re-encoded as `%25` later). `+` is a literal plus, not a space (RFC 3986).
    static func percentDecode<C: Collection<UInt8>>(_ bytes: C) -> [UInt8] where C.Index == Int {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        let end = bytes.endIndex
        while i < end {
            let byte = bytes[i]
            if byte == UInt8(ascii: "%"), end - i >= 3, let hi = hexValue(bytes[i + 1]),
                let lo = hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(byte)
                i += 1
            }
        }
        return out
    }

    // MARK: - Canonical URI and query

    /// The canonical URI for `percentEncodedPath` (the path exactly as it goes on the wire).
    ///
    /// - S3: the path is decoded and URI-encoded once again with `/` kept, and is *not* normalised:
    ///   `//`, `.` and `..` are part of object keys. This makes `a+b` and `a%2Bb` sign the same way,
    ///   as S3 itself decodes the path before it checks the signature.
    /// - Other services: the path is normalised (empty and `.` segments removed, `..` resolved, a
    ///   trailing `/` kept) and then encoded once more, so an already encoded path is encoded twice.
    static func canonicalURI(percentEncodedPath path: String, service: String) -> String {
        if path.isEmpty { return "/" }
        var out: [UInt8] = []
        out.reserveCapacity(path.utf8.count + 16)
        if service == "s3" {
            let decoded = percentDecode(Array(path.utf8))
            if decoded.first != UInt8(ascii: "/") { out.append(UInt8(ascii: "/")) }
            appendEncoded(decoded, to: &out, encodeSlash: false)
        } else {
            var segments: [Substring] = []
            for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
                if segment == "." { continue }
                if segment == ".." {
                    _ = segments.popLast()
                    continue
                }
                segments.append(segment)
            }
            out.append(UInt8(ascii: "/"))
            for (index, segment) in segments.enumerated() {
                if index > 0 { out.append(UInt8(ascii: "/")) }
                appendEncoded(segment.utf8, to: &out, encodeSlash: true)
            }
            if path.utf8.last == UInt8(ascii: "/") && !segments.isEmpty { out.append(UInt8(ascii: "/")) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// One query parameter, URI-encoded the canonical way.
    struct EncodedPair {
        var key: [UInt8]
        var value: [UInt8]
    }

    /// Splits a raw (percent-encoded) query on `&` and `=`, decodes each name and value and encodes it
    /// again canonically. Empty pieces (`a=1&&b=2`) are skipped; `flag` becomes `flag=`.
    static func encodedPairs(percentEncodedQuery query: String?) -> [EncodedPair] {
        guard let query, !query.isEmpty else { return [] }
        var pairs: [EncodedPair] = []
        for piece in query.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let bytes = Array(piece)
            let key: ArraySlice<UInt8>
            let value: ArraySlice<UInt8>
            if let eq = bytes.firstIndex(of: UInt8(ascii: "=")) {
                key = bytes[..<eq]
                value = bytes[(eq + 1)...]
            } else {
                key = bytes[...]
                value = []
            }
            var pair = EncodedPair(key: [], value: [])
            appendEncoded(percentDecode(Array(key)), to: &pair.key, encodeSlash: true)
            appendEncoded(percentDecode(Array(value)), to: &pair.value, encodeSlash: true)
            pairs.append(pair)
        }
        return pairs
    }

    /// Sorted by encoded name, then encoded value (byte order), joined as `k=v&k=v`.
    static func canonicalQuery(_ pairs: [EncodedPair]) -> String {
        if pairs.isEmpty { return "" }
        let sorted = pairs.sorted { a, b in
            if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) }
            return a.value.lexicographicallyPrecedes(b.value)
        }
        var out: [UInt8] = []
        for (index, pair) in sorted.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "&")) }
            out.append(contentsOf: pair.key)
            out.append(UInt8(ascii: "="))
            out.append(contentsOf: pair.value)
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - Headers

    /// Trims the value and collapses runs of whitespace (space, tab, CR, LF, VT, FF) into one space.
    static func canonicalHeaderValue(_ value: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(value.utf8.count)
        var pendingSpace = false
        for byte in value.utf8 {
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D:
                pendingSpace = !out.isEmpty
            default:
                if pendingSpace {
                    out.append(0x20)
                    pendingSpace = false
                }
                out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The `Host` value for `url`: the host (IPv6 literals in brackets) plus `:port` unless the port is
    /// the scheme's default (80 for http, 443 for https).
    static func hostHeader(for url: URL) -> String {
        var host = url.host(percentEncoded: true) ?? ""
        if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
        if let port = url.port {
            let scheme = url.scheme?.lowercased()
            let isDefault = (scheme == "http" && port == 80) || (scheme == "https" && port == 443)
            if !isDefault { host += ":\(port)" }
        }
        return host
    }

    // MARK: - Time

    struct Timestamp {
        /// `yyyyMMdd'T'HHmmss'Z'`
        var amzDate: String
        /// `yyyyMMdd`
        var dateStamp: String
    }

    /// UTC calendar fields of `date` (whole seconds, rounded down), without Foundation calendars.
    static func utcFields(_ date: Date) -> (
        year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int
    ) {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (
            Int(year), Int(month), Int(day), Int(secondOfDay / 3_600), Int(secondOfDay % 3_600 / 60),
            Int(secondOfDay % 60)
        )
    }

    @inline(__always)
    private static func appendDigits(_ value: Int, width: Int, to out: inout [UInt8]) {
        var digits = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var v = value
        var i = width - 1
        while i >= 0 {
            digits[i] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
            i -= 1
        }
        out.append(contentsOf: digits)
    }

    static func timestamp(_ date: Date) -> Timestamp {
        let f = utcFields(date)
        var out: [UInt8] = []
        out.reserveCapacity(16)
        appendDigits(f.year, width: 4, to: &out)
        appendDigits(f.month, width: 2, to: &out)
        appendDigits(f.day, width: 2, to: &out)
        let dateStamp = String(decoding: out, as: UTF8.self)
        out.append(UInt8(ascii: "T"))
        appendDigits(f.hour, width: 2, to: &out)
        appendDigits(f.minute, width: 2, to: &out)
        appendDigits(f.second, width: 2, to: &out)
        out.append(UInt8(ascii: "Z"))
        return Timestamp(amzDate: String(decoding: out, as: UTF8.self), dateStamp: dateStamp)
    }

    /// `yyyy-MM-dd'T'HH:mm:ss'Z'`, as used for POST policy expirations.
    static func iso8601(_ date: Date) -> String {
        let f = utcFields(date)
        var out: [UInt8] = []
        appendDigits(f.year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(f.month, width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        appendDigits(f.day, width: 2, to: &out)
        out.append(UInt8(ascii: "T"))
        appendDigits(f.hour, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(f.minute, width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        appendDigits(f.second, width: 2, to: &out)
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - Hashing

    static func hex<S: Sequence<UInt8>>(_ bytes: S) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for byte in bytes {
            out.append(hexLower[Int(byte >> 4)])
            out.append(hexLower[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func sha256Hex<D: DataProtocol>(_ data: D) -> String {
        hex(SHA256.hash(data: data))
    }

    static func hmac(key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    /// kSecret = "AWS4" + secret; kDate = HMAC(kSecret, date); kRegion; kService; kSigning = HMAC(kService, "aws4_request").
    static func deriveSigningKey(secretAccessKey: String, dateStamp: String, region: String, service: String)
        -> [UInt8]
    {
        let kDate = hmac(key: Array("AWS4\(secretAccessKey)".utf8), dateStamp)
        let kRegion = hmac(key: kDate, region)
        let kService = hmac(key: kRegion, service)
        return hmac(key: kService, "aws4_request")
    }
}
