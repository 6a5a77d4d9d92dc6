import AWSSigning
import Foundation
import Testing

@Suite("presigned POST policy")
struct PostPolicyTests {
    static let date = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z

    static func signer(token: String? = nil) -> SigV4Signer {
        SigV4Signer(
            credentials: AWSCredentials(
                accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                sessionToken: token),
            region: "eu-west-1", service: "s3")
    }

    /// Decodes the base64 policy into (expiration, conditions as JSON strings for easy comparison).
    static func decodePolicy(_ base64: String) throws -> (expiration: String, conditions: [String]) {
        let data = try #require(Data(base64Encoded: base64))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let expiration = try #require(object["expiration"] as? String)
        let conditions = try #require(object["conditions"] as? [Any])
        let rendered = try conditions.map { condition in
            let bytes = try JSONSerialization.data(withJSONObject: condition, options: [.sortedKeys])
            return String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\\/", with: "/")
        }
        #expect(object.count == 2)
        return (expiration, rendered)
    }

    @Test func policyStructureAndSignature() throws {
        let url = try #require(URL(string: "https://b.s3.eu-west-1.amazonaws.com/"))
        let post = try Self.signer(token: "session\"token").presignPOST(
            url: url, bucket: "b", key: "users/zoë/1.cstore", expires: 600,
            conditions: [
                .contentLengthRange(0, 1_048_576), .startsWith("Content-Type", ""),
                .equals("$acl", "private"),
            ],
            fields: [
                "acl": "private", "Content-Type": "application/x-carbon", "success_action_status": "201",
            ],
            date: Self.date)
        #expect(post.url == url)

        let policy = try #require(post.fields["policy"])
        let decoded = try Self.decodePolicy(policy)
        #expect(decoded.expiration == "2015-08-30T12:46:00Z")
        #expect(
            decoded.conditions == [
                #"["content-length-range",0,1048576]"#,
                #"["starts-with","$Content-Type",""]"#,
                #"{"acl":"private"}"#,
                #"{"bucket":"b"}"#,
                #"{"key":"users/zoë/1.cstore"}"#,
                #"{"success_action_status":"201"}"#,
                #"{"x-amz-algorithm":"AWS4-HMAC-SHA256"}"#,
                #"{"x-amz-credential":"AKIDEXAMPLE/20150830/eu-west-1/s3/aws4_request"}"#,
                #"{"x-amz-date":"20150830T123600Z"}"#,
                #"{"x-amz-security-token":"session\"token"}"#,
            ])

        #expect(
            Set(post.fields.keys) == [
                "acl", "Content-Type", "success_action_status", "key", "policy", "x-amz-algorithm",
                "x-amz-credential", "x-amz-date", "x-amz-security-token", "x-amz-signature",
            ])
        #expect(post.fields["key"] == "users/zoë/1.cstore")
        #expect(post.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256")
        #expect(post.fields["x-amz-credential"] == "AKIDEXAMPLE/20150830/eu-west-1/s3/aws4_request")
        #expect(post.fields["x-amz-date"] == "20150830T123600Z")
        #expect(post.fields["x-amz-security-token"] == "session\"token")
        #expect(post.fields["x-amz-signature"] == Self.signer().signature(of: policy, date: Self.date))
        #expect(post.fields["x-amz-signature"]?.count == 64)
    }

    @Test func filenameVariableBecomesAStartsWithCondition() throws {
        let post = try Self.signer().presignPOST(
            url: try #require(URL(string: "https://b.s3.amazonaws.com/")), bucket: "b", key: "in/${filename}",
            expires: 60, conditions: [], date: Self.date)
        let decoded = try Self.decodePolicy(try #require(post.fields["policy"]))
        #expect(decoded.conditions.contains(#"["starts-with","$key","in/"]"#))
        #expect(!decoded.conditions.contains { $0.hasPrefix(#"{"key""#) })
        #expect(post.fields["key"] == "in/${filename}")
        #expect(post.fields["x-amz-security-token"] == nil)
    }

    @Test func generatedFieldsCannotBeOverridden() throws {
        let post = try Self.signer().presignPOST(
            url: try #require(URL(string: "https://b.s3.amazonaws.com/")), bucket: "b", key: "k", expires: 60,
            conditions: [], fields: ["policy": "evil", "X-Amz-Signature": "evil", "key": "other"],
            date: Self.date)
        #expect(!post.fields.values.contains("evil"))
        #expect(post.fields["key"] == "k")
        #expect(post.fields["X-Amz-Signature"] == nil)
    }

    @Test(arguments: [0, 604_801])
    func rejectsBadExpiry(expires: Int) throws {
        let error = #expect(throws: SigningError.self) {
            try Self.signer().presignPOST(
                url: try #require(URL(string: "https://b.s3.amazonaws.com/")), bucket: "b", key: "k",
                expires: expires, conditions: [], date: Self.date)
        }
        #expect(error?.kind == .invalidExpiry)
    }
}
