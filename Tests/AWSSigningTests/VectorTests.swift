import AWSSigning
import Foundation
import Testing

/// Every case in Vectors.swift was signed by botocore (scripts/sigv4_vectors.py); we must agree byte for byte.
@Suite("botocore vectors")
struct VectorTests {
    static func lowerCased(_ headers: [HTTPHeader]) -> [String: String] {
        var map: [String: String] = [:]
        for header in headers { map[header.name.lowercased()] = header.value }
        return map
    }

    @Test("signHeaders matches botocore", arguments: Vectors.headerCases)
    func signHeaders(_ vector: Vectors.HeaderCase) throws {
        let signer = SigV4Signer(
            credentials: vector.credentials, region: vector.region, service: vector.service)
        let url = try #require(URL(string: vector.url))
        let added = signer.signHeaders(
            method: vector.method, url: url, headers: vector.headers, payload: vector.payload,
            date: Date(timeIntervalSince1970: TimeInterval(vector.epochSeconds)),
            includeContentSHA256: vector.includeContentSHA256)
        #expect(added.count == vector.expectedAdded.count)
        #expect(Self.lowerCased(added) == Self.lowerCased(vector.expectedAdded))
        #expect(added.last?.name == "Authorization")
    }

    @Test("presignURL matches botocore", arguments: Vectors.presignCases)
    func presignURL(_ vector: Vectors.PresignCase) throws {
        let signer = SigV4Signer(
            credentials: vector.credentials, region: vector.region, service: vector.service)
        let url = try #require(URL(string: vector.url))
        let signed = try signer.presignURL(
            method: vector.method, url: url, expires: vector.expires, headers: vector.headers,
            date: Date(timeIntervalSince1970: TimeInterval(vector.epochSeconds)))
        #expect(signed.absoluteString == vector.expectedURL)
    }

    @Test("presignPOST matches botocore", arguments: Vectors.postCases)
    func presignPOST(_ vector: Vectors.PostCase) throws {
        let signer = SigV4Signer(
            credentials: Vectors.credentials(token: vector.token), region: vector.region, service: "s3")
        let url = try #require(URL(string: vector.url))
        let date = Date(timeIntervalSince1970: TimeInterval(vector.epochSeconds))
        let post = try signer.presignPOST(
            url: url, bucket: vector.bucket, key: vector.key, expires: vector.expires,
            conditions: vector.conditions, fields: vector.fields, date: date)
        #expect(post.url == url)
        #expect(post.fields == vector.expectedFields)

        // The policy and signature equal botocore's (above); the signing key equals Python's hmac chain,
        // and the signature is the HMAC of the base64 policy with it.
        let dateStamp = String(SigV4Signer.amzDate(date).prefix(8))
        let key = SigV4Signer.signingKey(
            secretAccessKey: Vectors.secretAccessKey, dateStamp: dateStamp, region: vector.region,
            service: "s3")
        #expect(hex(key) == vector.signingKeyHex)
        let policy = try #require(post.fields["policy"])
        #expect(post.fields["x-amz-signature"] == signer.signature(of: policy, date: date))
    }
}
