import Crypto
import Foundation

/// What the request body contributes to the signature.
public enum SigV4Payload: Sendable, Hashable {
    /// The body itself; its SHA-256 is signed (use `[]` for an empty body).
    case bytes([UInt8])
    /// The literal `UNSIGNED-PAYLOAD` (S3 only, e.g. streaming uploads over TLS).
    case unsigned
    /// The hex SHA-256 of the body, computed elsewhere (for example while streaming it from disk).
    case precomputed(hexSHA256: String)

    /// The value that goes into the canonical request (and `x-amz-content-sha256`).
    public var hashValueForSigning: String {
        switch self {
        case .bytes(let bytes):
            return bytes.isEmpty ? SigV4Canonical.emptyPayloadHash : SigV4Canonical.sha256Hex(bytes)
        case .unsigned: return SigV4Canonical.unsignedPayload
        case .precomputed(let hex): return hex.lowercased()
        }
    }
}

/// A clear, one-line reason why something could not be signed.
public struct SigningError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// `expires` outside 1...604800 seconds.
        case invalidExpiry
        /// The URL has no host or cannot be taken apart / put back together.
        case invalidURL
        /// The URL already carries SigV4 query parameters.
        case alreadySigned
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "SigningError: \(message)" }
}

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`) for one service in one region.
///
/// It knows nothing of S3 or DynamoDB beyond the two rules SigV4 itself makes for service `"s3"`:
/// the path is not normalised and is encoded once (not twice), and `x-amz-content-sha256` is always
/// sent. Signing is pure and thread-safe; the derived signing key is cached per day.
///
/// Headers that are never signed (the AWS SDK list): `authorization`, `connection`, `expect`,
/// `keep-alive`, `proxy-authenticate`, `proxy-authorization`, `te`, `trailer`, `transfer-encoding`,
/// `upgrade`, `user-agent`, `x-amzn-trace-id`. Every other header you pass is signed, so pass only
/// headers that reach AWS unchanged.
public struct SigV4Signer: Sendable, Hashable {
    public var credentials: AWSCredentials
    public var region: String
    /// The signing name: "s3", "dynamodb", "sts", ...
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// The maximum lifetime of a presigned URL or POST policy: 7 days.
    public static let maximumExpiry = 604_800

    // MARK: - Header signing

    /// Signs a request and returns the headers to ADD to it: `X-Amz-Date`, `X-Amz-Security-Token` (when
    /// the credentials have a session token), `X-Amz-Content-SHA256` (always for service "s3"; for other
    /// services only when `includeContentSHA256` is true) and `Authorization`.
    ///
    /// - Parameters:
    ///   - method: the HTTP method, exactly as sent ("GET", "PUT", ...).
    ///   - url: the request URL, exactly as sent: path and query percent-encoded (RFC 3986; a `+` is a
    ///     literal plus, so encode spaces as `%20`). See ``uriEncode(_:encodeSlash:)``.
    ///   - headers: the request's other headers. All are signed except the unsigned list above. `Host`
    ///     is derived from the URL when absent (and signed, not returned: the HTTP client sends it).
    ///     Headers with the names of the returned ones are ignored: the returned values replace them.
    ///     Repeated names are signed as one comma-joined value, in the given order.
    ///   - payload: the body, its precomputed hash, or `.unsigned`.
    ///   - date: the signing time (whole seconds, UTC).
    public func signHeaders(
        method: String, url: URL, headers: [HTTPHeader], payload: SigV4Payload, date: Date = Date(),
        includeContentSHA256: Bool = false
    ) -> [HTTPHeader] {
        let signed = sign(
            method: method, url: url, headers: headers, payload: payload, date: date,
            includeContentSHA256: includeContentSHA256)
        return signed.added
    }

    /// The canonical request `signHeaders` would sign, for debugging signature mismatches (AWS returns
    /// its own canonical request in `SignatureDoesNotMatch` errors).
    public func canonicalRequest(
        method: String, url: URL, headers: [HTTPHeader], payload: SigV4Payload, date: Date = Date(),
        includeContentSHA256: Bool = false
    ) -> String {
        sign(
            method: method, url: url, headers: headers, payload: payload, date: date,
            includeContentSHA256: includeContentSHA256
        ).canonicalRequest
    }

    private struct Signed {
        var added: [HTTPHeader]
        var canonicalRequest: String
    }

    private func sign(
        method: String, url: URL, headers: [HTTPHeader], payload: SigV4Payload, date: Date,
        includeContentSHA256: Bool
    ) -> Signed {
        let time = SigV4Canonical.timestamp(date)
        let payloadHash = payload.hashValueForSigning
        var added: [HTTPHeader] = []
        added.reserveCapacity(4)
        added.append(HTTPHeader("X-Amz-Date", time.amzDate))
        if let token = sessionToken { added.append(HTTPHeader("X-Amz-Security-Token", token)) }
        if service == "s3" || includeContentSHA256 {
            added.append(HTTPHeader("X-Amz-Content-SHA256", payloadHash))
        }

        let canonicalHeaders = Self.canonicalHeaders(url: url, headers: headers, generated: added)
        let canonicalRequest = Self.canonicalRequest(
            method: method, url: url, service: service,
            query: SigV4Canonical.canonicalQuery(
                SigV4Canonical.encodedPairs(percentEncodedQuery: url.query(percentEncoded: true))),
            headers: canonicalHeaders, payloadHash: payloadHash)
        let scope = credentialScope(time.dateStamp)
        let signature = signature(
            canonicalRequest: canonicalRequest, amzDate: time.amzDate, scope: scope, time: time)
        added.append(
            HTTPHeader(
                "Authorization",
                "\(SigV4Canonical.algorithm) Credential=\(credentials.accessKeyID)/\(scope), "
                    + "SignedHeaders=\(canonicalHeaders.signedHeaders), Signature=\(signature)"))
        return Signed(added: added, canonicalRequest: canonicalRequest)
    }

    // MARK: - Presigned URLs

    /// A presigned URL: the URL's own query, then `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
    /// `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token` (with a session token) and
    /// `X-Amz-Signature`. The payload is `UNSIGNED-PAYLOAD` for "s3" and the empty body otherwise.
    ///
    /// - Parameters:
    ///   - expires: lifetime in seconds, 1...604800.
    ///   - headers: extra headers to sign (`host` always is); whoever uses the URL must send them
    ///     with exactly these values (e.g. `Content-Type` for a PUT).
    /// - Throws: ``SigningError`` for a bad expiry, a URL without host, or an already presigned URL.
    public func presignURL(
        method: String, url: URL, expires: Int, headers: [HTTPHeader] = [], date: Date = Date()
    ) throws -> URL {
        try Self.checkExpiry(expires)
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let host = url.host(percentEncoded: true), !host.isEmpty
        else {
            throw SigningError(.invalidURL, "cannot presign \(url.absoluteString): the URL has no host")
        }
        let existingQuery = components.percentEncodedQuery ?? ""
        var pairs = SigV4Canonical.encodedPairs(percentEncodedQuery: existingQuery)
        let lowerSignature = Array("x-amz-signature".utf8)
        let lowerCredential = Array("x-amz-credential".utf8)
        for pair in pairs {
            let name = pair.key.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
            if name == lowerSignature || name == lowerCredential {
                throw SigningError(
                    .alreadySigned, "cannot presign \(url.absoluteString): it is already signed")
            }
        }

        let time = SigV4Canonical.timestamp(date)
        let canonicalHeaders = Self.canonicalHeaders(url: url, headers: headers, generated: [])
        let scope = credentialScope(time.dateStamp)
        var auth: [(String, String)] = [
            ("X-Amz-Algorithm", SigV4Canonical.algorithm),
            ("X-Amz-Credential", "\(credentials.accessKeyID)/\(scope)"),
            ("X-Amz-Date", time.amzDate),
            ("X-Amz-Expires", String(expires)),
            ("X-Amz-SignedHeaders", canonicalHeaders.signedHeaders),
        ]
        if let token = sessionToken { auth.append(("X-Amz-Security-Token", token)) }

        var authQuery: [UInt8] = []
        for (index, (name, value)) in auth.enumerated() {
            var pair = SigV4Canonical.EncodedPair(key: [], value: [])
            SigV4Canonical.appendEncoded(name.utf8, to: &pair.key, encodeSlash: true)
            SigV4Canonical.appendEncoded(value.utf8, to: &pair.value, encodeSlash: true)
            if index > 0 { authQuery.append(UInt8(ascii: "&")) }
            authQuery += pair.key
            authQuery.append(UInt8(ascii: "="))
            authQuery += pair.value
            pairs.append(pair)
        }

        let payloadHash = service == "s3" ? SigV4Canonical.unsignedPayload : SigV4Canonical.emptyPayloadHash
        let canonicalRequest = Self.canonicalRequest(
            method: method, url: url, service: service, query: SigV4Canonical.canonicalQuery(pairs),
            headers: canonicalHeaders, payloadHash: payloadHash)
        let signature = signature(
            canonicalRequest: canonicalRequest, amzDate: time.amzDate, scope: scope, time: time)

        var query = existingQuery
        if !query.isEmpty && !query.hasSuffix("&") { query += "&" }
        query += String(decoding: authQuery, as: UTF8.self)
        query += "&X-Amz-Signature=\(signature)"
        components.percentEncodedQuery = query
        guard let signedURL = components.url else {
            throw SigningError(.invalidURL, "cannot presign \(url.absoluteString): cannot rebuild the URL")
        }
        return signedURL
    }

    // MARK: - Building blocks (public for tests, debugging and other signers)

    /// The SigV4 signing key: HMAC-SHA256 chain over `"AWS4" + secret`, `dateStamp` (yyyyMMdd), region,
    /// service and `"aws4_request"`.
    public static func signingKey(secretAccessKey: String, dateStamp: String, region: String, service: String)
        -> [UInt8]
    {
        SigV4Canonical.deriveSigningKey(
            secretAccessKey: secretAccessKey, dateStamp: dateStamp, region: region, service: service)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC, as in `X-Amz-Date`.
    public static func amzDate(_ date: Date) -> String {
        SigV4Canonical.timestamp(date).amzDate
    }

    /// AWS `UriEncode`: percent-encodes every byte of the UTF-8 string except A-Z a-z 0-9 `-` `_` `.` `~`
    /// (and `/` when `encodeSlash` is false). Use it to build paths (`encodeSlash: false` for S3 keys)
    /// and query values; `URLComponents.queryItems` does not encode `+`, `/`, `=`, `;` etc.
    public static func uriEncode(_ value: String, encodeSlash: Bool = true) -> String {
        SigV4Canonical.encode(value, encodeSlash: encodeSlash)
    }

    /// The credential scope `yyyyMMdd/region/service/aws4_request` for `date`.
    public func credentialScope(for date: Date) -> String {
        credentialScope(SigV4Canonical.timestamp(date).dateStamp)
    }

    /// The hex HMAC-SHA256 of `stringToSign` with this signer's key for the day of `date`
    /// (e.g. the signature of a base64 POST policy).
    public func signature(of stringToSign: String, date: Date) -> String {
        let time = SigV4Canonical.timestamp(date)
        return SigV4Canonical.hex(SigV4Canonical.hmac(key: signingKey(time.dateStamp), stringToSign))
    }

    // MARK: - Internals

    var sessionToken: String? {
        guard let token = credentials.sessionToken, !token.isEmpty else { return nil }
        return token
    }

    func credentialScope(_ dateStamp: String) -> String {
        "\(dateStamp)/\(region)/\(service)/aws4_request"
    }

    func signingKey(_ dateStamp: String) -> [UInt8] {
        SigningKeyCache.key(
            secretAccessKey: credentials.secretAccessKey, dateStamp: dateStamp, region: region,
            service: service)
    }

    static func checkExpiry(_ expires: Int) throws {
        guard expires >= 1 && expires <= maximumExpiry else {
            throw SigningError(
                .invalidExpiry, "expiry \(expires)s is outside 1...\(maximumExpiry) seconds (7 days)")
        }
    }

    private func signature(
        canonicalRequest: String, amzDate: String, scope: String, time: SigV4Canonical.Timestamp
    )
        -> String
    {
        let stringToSign =
            "\(SigV4Canonical.algorithm)\n\(amzDate)\n\(scope)\n\(SigV4Canonical.sha256Hex(Array(canonicalRequest.utf8)))"
        return SigV4Canonical.hex(SigV4Canonical.hmac(key: signingKey(time.dateStamp), stringToSign))
    }

    private struct CanonicalHeaders {
        /// `name:value\n` lines, sorted.
        var block: String
        /// `a;b;c`
        var signedHeaders: String
    }

    /// Lower-cases, filters, groups and sorts the headers. `generated` replace given headers of the same
    /// name; `host` is added from the URL when absent.
    private static func canonicalHeaders(url: URL, headers: [HTTPHeader], generated: [HTTPHeader])
        -> CanonicalHeaders
    {
        var names: [String] = []
        var values: [String: [String]] = [:]
        var replaced: Set<String> = []
        for header in generated { replaced.insert(header.name.lowercased()) }
        func add(_ name: String, _ value: String) {
            if values[name] == nil {
                names.append(name)
                values[name] = [SigV4Canonical.canonicalHeaderValue(value)]
            } else {
                values[name]!.append(SigV4Canonical.canonicalHeaderValue(value))
            }
        }
        for header in headers {
            let name = header.name.lowercased()
            if SigV4Canonical.unsignedHeaderNames.contains(name) || replaced.contains(name) { continue }
            add(name, header.value)
        }
        for header in generated { add(header.name.lowercased(), header.value) }
        if values["host"] == nil { add("host", SigV4Canonical.hostHeader(for: url)) }

        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var block = ""
        block.reserveCapacity(256)
        for name in names {
            block += name
            block += ":"
            block += values[name]!.joined(separator: ",")
            block += "\n"
        }
        return CanonicalHeaders(block: block, signedHeaders: names.joined(separator: ";"))
    }

    private static func canonicalRequest(
        method: String, url: URL, service: String, query: String, headers: CanonicalHeaders,
        payloadHash: String
    ) -> String {
        let uri = SigV4Canonical.canonicalURI(
            percentEncodedPath: url.path(percentEncoded: true), service: service)
        return "\(method)\n\(uri)\n\(query)\n\(headers.block)\n\(headers.signedHeaders)\n\(payloadHash)"
    }
}

/// Derived signing keys, shared by all signers so that a signer created per request still hits it.
/// A key depends on (secret, day, region, service), so the cache stays tiny; it is emptied when it grows
/// past `capacity` (old days, rotated credentials). The lock is held only to look up or insert.
enum SigningKeyCache {
    private struct Key: Hashable, Sendable {
        var secretAccessKey: String
        var dateStamp: String
        var region: String
        var service: String
    }

    private static let capacity = 32
    // A pthread mutex (NSLock), not Synchronization.Mutex, whose futex the thread sanitizer
    // cannot see on Linux.
    private static let lock = NSLock()
    nonisolated(unsafe) private static var keys: [Key: [UInt8]] = [:]

    static func key(secretAccessKey: String, dateStamp: String, region: String, service: String) -> [UInt8] {
        let lookup = Key(
            secretAccessKey: secretAccessKey, dateStamp: dateStamp, region: region, service: service)
        if let cached = lock.withLock({ keys[lookup] }) { return cached }
        let key = SigV4Canonical.deriveSigningKey(
            secretAccessKey: secretAccessKey, dateStamp: dateStamp, region: region, service: service)
        lock.withLock {
            if keys.count >= capacity { keys.removeAll(keepingCapacity: true) }
            keys[lookup] = key
        }
        return key
    }
}
