import AWSSigning
import Crypto
import Foundation

/// Server-side encryption for objects written to S3.
public enum ServerSideEncryption: Sendable, Hashable {
    /// SSE-S3 (`AES256`).
    case s3
    /// SSE-KMS with a key id or ARN (nil: the account's default `aws/s3` key).
    case kms(keyID: String?)
}

/// An object read from S3.
public struct S3Object: Sendable {
    public var body: [UInt8]
    public var eTag: String
    /// `AES256` or `aws:kms` when the object is encrypted at rest with SSE.
    public var serverSideEncryption: String?
    /// True when `getObject(ifNoneMatch:)` found the object unchanged (304): the body is empty and
    /// the copy the caller holds is current.
    public var notModified = false
}

/// One page of ListObjectsV2.
public struct S3Listing: Sendable {
    public var keys: [String]
    public var nextContinuationToken: String?
    public var isTruncated: Bool
}

/// The S3 operations CarbonStore uses, over `AWSServiceClient`. Path-style addressing when an
/// endpoint is configured (S3-compatible stores, moto), virtual-hosted style on AWS.
public struct S3Client: Sendable {
    public var client: AWSServiceClient
    public var pathStyle: Bool

    public init(client: AWSServiceClient, pathStyle: Bool) {
        self.client = client
        self.pathStyle = pathStyle
    }

    // MARK: Objects

    /// GetObject; nil if there is no such key.
    ///
    /// With `ifNoneMatch` (an ETag the caller holds, quoted exactly as S3 gave it) the request is
    /// conditional, for cache revalidation: an object that still has that ETag comes back as
    /// `notModified`, with no body and the ETag S3 names in the 304 (the one asked about if it
    /// names none). A 304 is an answer, not an error: it is never retried and costs one request.
    /// A 304 to a request without `ifNoneMatch` is an error (no server sends one).
    public func getObject(bucket: String, key: String, ifNoneMatch: String? = nil) async throws -> S3Object? {
        var headers: [HTTPHeader] = []
        if let ifNoneMatch { headers.append(HTTPHeader("If-None-Match", ifNoneMatch)) }
        let conditional = ifNoneMatch != nil
        let response = try await client.send(
            HTTPRequest(method: "GET", url: url(bucket: bucket, key: key), headers: headers),
            operation: "GetObject", resource: "s3://\(bucket)/\(key)",
            accept: { $0 < 300 || $0 == 404 || ($0 == 304 && conditional) },
            parseError: Self.parseError)
        if response.status == 304 {
            return S3Object(
                body: [], eTag: response.header("ETag") ?? ifNoneMatch ?? "", serverSideEncryption: nil,
                notModified: true)
        }
        if response.status == 404 {
            let (code, message) = Self.parseError(response)
            if code == "NoSuchKey" { return nil }
            throw AWSError(
                service: "S3", operation: "GetObject", resource: "s3://\(bucket)/\(key)", statusCode: 404,
                code: code,
                message: message, requestID: response.header("x-amz-request-id"))
        }
        return S3Object(
            body: response.body, eTag: response.header("ETag") ?? "",
            serverSideEncryption: response.header("x-amz-server-side-encryption"))
    }

    /// The condition of a write.
    public enum Precondition: Sendable, Hashable {
        case none
        /// `If-None-Match: *`: create only.
        case ifNoneMatchAny
        /// `If-Match: ETAG`: replace only this version.
        case ifMatch(String)
    }

    /// PutObject; returns the new ETag. A failed condition is an `AWSError` with status 412
    /// (`PreconditionFailed`), a concurrent conditional write 409 (`ConditionalRequestConflict`).
    public func putObject(
        bucket: String, key: String, body: [UInt8], precondition: Precondition = .none,
        encryption: ServerSideEncryption? = nil, contentType: String = "application/octet-stream"
    ) async throws -> String {
        var headers = [
            HTTPHeader("Content-Type", contentType), HTTPHeader("Content-Length", String(body.count)),
        ]
        headers += Self.headers(for: precondition)
        switch encryption {
        case nil: break
        case .s3: headers.append(HTTPHeader("x-amz-server-side-encryption", "AES256"))
        case .kms(let keyID):
            headers.append(HTTPHeader("x-amz-server-side-encryption", "aws:kms"))
            if let keyID { headers.append(HTTPHeader("x-amz-server-side-encryption-aws-kms-key-id", keyID)) }
        }
        let response = try await client.send(
            HTTPRequest(method: "PUT", url: url(bucket: bucket, key: key), headers: headers, body: body),
            operation: "PutObject", resource: "s3://\(bucket)/\(key)", parseError: Self.parseError)
        return response.header("ETag") ?? ""
    }

    /// DeleteObject, optionally only if the object has an ETag.
    public func deleteObject(bucket: String, key: String, ifMatch: String? = nil) async throws {
        let headers = ifMatch.map { [HTTPHeader("If-Match", $0)] } ?? []
        _ = try await client.send(
            HTTPRequest(method: "DELETE", url: url(bucket: bucket, key: key), headers: headers),
            operation: "DeleteObject", resource: "s3://\(bucket)/\(key)", parseError: Self.parseError)
    }

    /// ListObjectsV2: keys under `prefix`, after `startAfter` (or from a continuation token).
    public func listObjects(
        bucket: String, prefix: String?, startAfter: String? = nil, continuationToken: String? = nil,
        maxKeys: Int = 1000
    ) async throws -> S3Listing {
        var query = [("list-type", "2"), ("max-keys", String(max(1, min(maxKeys, 1000))))]
        if let prefix, !prefix.isEmpty { query.append(("prefix", prefix)) }
        if let startAfter { query.append(("start-after", startAfter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let response = try await client.send(
            HTTPRequest(method: "GET", url: url(bucket: bucket, key: nil, query: query)),
            operation: "ListObjectsV2", resource: "s3://\(bucket)/\(prefix ?? "")",
            parseError: Self.parseError)
        let root: XMLElement
        do {
            root = try XMLElement.read(response.body)
        } catch {
            throw AWSError(
                service: "S3", operation: "ListObjectsV2", resource: "s3://\(bucket)",
                statusCode: response.status,
                code: "MalformedResponse", message: "the answer is not a ListBucketResult document: \(error)",
                requestID: response.header("x-amz-request-id"))
        }
        guard root.name == "ListBucketResult" else {
            throw AWSError(
                service: "S3", operation: "ListObjectsV2", resource: "s3://\(bucket)",
                statusCode: response.status,
                code: "MalformedResponse",
                message:
                    "the answer is not a ListBucketResult document but <\(oneLine(root.name, limit: 60))>",
                requestID: response.header("x-amz-request-id"))
        }
        return S3Listing(
            keys: root.all("Contents").compactMap { $0["Key"] },
            nextContinuationToken: root["NextContinuationToken"], isTruncated: root["IsTruncated"] == "true")
    }

    // MARK: Buckets (set-up only)

    /// HeadBucket: whether the bucket exists and is reachable with these credentials.
    public func headBucket(_ bucket: String) async throws -> Int {
        let response = try await client.send(
            HTTPRequest(method: "HEAD", url: url(bucket: bucket, key: nil)), operation: "HeadBucket",
            resource: "s3://\(bucket)", accept: { _ in true }, parseError: Self.parseError)
        return response.status
    }

    public func createBucket(_ bucket: String) async throws {
        var body: [UInt8] = []
        if client.region != "us-east-1" {
            body = Array(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(client.region)</LocationConstraint></CreateBucketConfiguration>"
                    .utf8)
        }
        _ = try await client.send(
            HTTPRequest(method: "PUT", url: url(bucket: bucket, key: nil), body: body),
            operation: "CreateBucket",
            resource: "s3://\(bucket)", parseError: Self.parseError)
    }

    /// Blocks every form of public access to the bucket.
    public func putPublicAccessBlock(_ bucket: String) async throws {
        let xml =
            "<PublicAccessBlockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls><BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets></PublicAccessBlockConfiguration>"
        _ = try await client.send(
            HTTPRequest(
                method: "PUT", url: url(bucket: bucket, key: nil, query: [("publicAccessBlock", "")]),
                headers: [HTTPHeader("Content-MD5", Self.md5Base64(Array(xml.utf8)))], body: Array(xml.utf8)),
            operation: "PutPublicAccessBlock", resource: "s3://\(bucket)", parseError: Self.parseError)
    }

    /// Default encryption for new objects: SSE-S3, or SSE-KMS with a key.
    public func putBucketEncryption(_ bucket: String, _ encryption: ServerSideEncryption) async throws {
        let rule: String
        switch encryption {
        case .s3: rule = "<SSEAlgorithm>AES256</SSEAlgorithm>"
        case .kms(let keyID):
            rule =
                "<SSEAlgorithm>aws:kms</SSEAlgorithm>"
                + (keyID.map { "<KMSMasterKeyID>\($0)</KMSMasterKeyID>" } ?? "")
        }
        let xml =
            "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ApplyServerSideEncryptionByDefault>\(rule)</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"
        _ = try await client.send(
            HTTPRequest(
                method: "PUT", url: url(bucket: bucket, key: nil, query: [("encryption", "")]),
                headers: [HTTPHeader("Content-MD5", Self.md5Base64(Array(xml.utf8)))], body: Array(xml.utf8)),
            operation: "PutBucketEncryption", resource: "s3://\(bucket)", parseError: Self.parseError)
    }

    // MARK: Presigned URLs

    /// A URL that lets its holder GET or PUT one object until it expires.
    public func presignedURL(method: String, bucket: String, key: String, expires: Int) async throws -> URL {
        let creds = try await client.credentials.credentials()
        return try SigV4Signer(credentials: creds, region: client.region, service: "s3")
            .presignURL(method: method, url: url(bucket: bucket, key: key), expires: expires)
    }

    // MARK: Helpers

    /// The URL of a bucket or an object; the key is percent-encoded segment by segment.
    public func url(bucket: String, key: String?, query: [(String, String)] = []) -> URL {
        var c = URLComponents(url: client.endpoint, resolvingAgainstBaseURL: false)!
        let encodedKey = key.map { "/" + Self.encodePath($0) } ?? "/"
        if pathStyle || bucket.contains(".") {
            let base =
                c.percentEncodedPath.hasSuffix("/")
                ? String(c.percentEncodedPath.dropLast()) : c.percentEncodedPath
            c.percentEncodedPath = base + "/" + bucket + (key == nil ? "" : encodedKey)
        } else {
            c.host = bucket + "." + (c.host ?? "")
            c.percentEncodedPath = encodedKey
        }
        if !query.isEmpty {
            c.percentEncodedQuery = query.map { k, v in
                v.isEmpty && (k == "publicAccessBlock" || k == "encryption")
                    ? k : "\(Self.encode(k))=\(Self.encode(v))"
            }.joined(separator: "&")
        }
        return c.url!
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 signs it.
    static func encode(_ s: String) -> String { SigV4Signer.uriEncode(s, encodeSlash: true) }

    static func encodePath(_ key: String) -> String {
        key.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(
            separator: "/")
    }

    static func parseError(_ response: HTTPResponse) -> (code: String, message: String) {
        if let error = XMLElement.awsError(response.body) { return error }
        switch response.status {
        case 301:
            return (
                "PermanentRedirect", "bucket is in region \(response.header("x-amz-bucket-region") ?? "?")"
            )
        case 304: return ("NotModified", "")
        case 403: return ("AccessDenied", "")
        case 404: return ("NotFound", "")
        case 412: return ("PreconditionFailed", "")
        default: return ("HTTP\(response.status)", XMLElement.unreadableErrorBody(response.body))
        }
    }

    static func md5Base64(_ bytes: [UInt8]) -> String {
        Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
    }

    static func headers(for p: Precondition) -> [HTTPHeader] {
        switch p {
        case .none: return []
        case .ifNoneMatchAny: return [HTTPHeader("If-None-Match", "*")]
        case .ifMatch(let etag): return [HTTPHeader("If-Match", etag)]
        }
    }
}

extension String {
    func leftPadded(_ n: Int) -> String {
        count >= n ? self : String(repeating: "0", count: n - count) + self
    }
}
