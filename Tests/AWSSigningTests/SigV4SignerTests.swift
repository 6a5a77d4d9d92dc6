import AWSSigning
import Foundation
import Testing

@Suite("SigV4 signer")
struct SigV4SignerTests {
    static let date = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z
    static let credentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")

    static func signer(_ service: String = "s3", token: String? = nil) -> SigV4Signer {
        var credentials = credentials
        credentials.sessionToken = token
        return SigV4Signer(credentials: credentials, region: "us-east-1", service: service)
    }

    static func authorization(_ headers: [HTTPHeader]) -> String {
        headers.first { $0.name == "Authorization" }?.value ?? ""
    }

    static func signedHeaders(_ headers: [HTTPHeader]) -> String {
        let auth = authorization(headers)
        guard let start = auth.range(of: "SignedHeaders=")?.upperBound,
            let end = auth.range(of: ", Signature=")?.lowerBound
        else { return "" }
        return String(auth[start..<end])
    }

    func sign(
        _ signer: SigV4Signer, _ url: String, method: String = "GET", headers: [HTTPHeader] = [],
        payload: SigV4Payload = .bytes([])
    ) throws -> [HTTPHeader] {
        signer.signHeaders(
            method: method, url: try #require(URL(string: url)), headers: headers, payload: payload,
            date: Self.date)
    }

    func canonical(
        _ signer: SigV4Signer, _ url: String, headers: [HTTPHeader] = [], payload: SigV4Payload = .bytes([])
    ) throws -> [Substring] {
        signer.canonicalRequest(
            method: "GET", url: try #require(URL(string: url)), headers: headers, payload: payload,
            date: Self.date
        ).split(separator: "\n", omittingEmptySubsequences: false)
    }

    // MARK: Key derivation and time

    @Test func signingKeyMatchesPublishedAWSExample() {
        let key = SigV4Signer.signingKey(
            secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", dateStamp: "20150830",
            region: "us-east-1",
            service: "iam")
        #expect(hex(key) == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9")
    }

    @Test func credentialScope() {
        #expect(
            Self.signer("dynamodb").credentialScope(for: Self.date)
                == "20150830/us-east-1/dynamodb/aws4_request")
    }

    @Test(arguments: [
        (0.0, "19700101T000000Z"),
        (1_440_938_160.999, "20150830T123600Z"),
        (951_782_400, "20000229T000000Z"),
        (1_709_251_199, "20240229T235959Z"),
        (4_102_444_799, "20991231T235959Z"),
        (-1, "19691231T235959Z"),
    ])
    func amzDate(seconds: Double, expected: String) {
        #expect(SigV4Signer.amzDate(Date(timeIntervalSince1970: seconds)) == expected)
    }

    /// Whole seconds only: DateFormatter rounds fractions, SigV4 (and botocore's strftime) truncates.
    @Test func amzDateAgreesWithFoundationOverManyDays() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var seconds = 0.0
        while seconds < 5_000_000_000 {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(SigV4Signer.amzDate(date) == formatter.string(from: date))
            seconds += 7_777_777
        }
    }

    // MARK: Added headers

    @Test func s3AlwaysAddsContentSHA256AndOthersOnlyOnRequest() throws {
        let s3 = try sign(Self.signer("s3"), "https://b.s3.amazonaws.com/k")
        #expect(s3.map(\.name) == ["X-Amz-Date", "X-Amz-Content-SHA256", "Authorization"])
        #expect(s3[1].value == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

        let dynamo = try sign(
            Self.signer("dynamodb"), "https://dynamodb.us-east-1.amazonaws.com/", method: "POST")
        #expect(dynamo.map(\.name) == ["X-Amz-Date", "Authorization"])

        let withSHA = Self.signer("dynamodb").signHeaders(
            method: "POST", url: try #require(URL(string: "https://dynamodb.us-east-1.amazonaws.com/")),
            headers: [],
            payload: .bytes(Array("abc".utf8)), date: Self.date, includeContentSHA256: true)
        #expect(withSHA.map(\.name) == ["X-Amz-Date", "X-Amz-Content-SHA256", "Authorization"])
        #expect(withSHA[1].value == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Self.signedHeaders(withSHA) == "host;x-amz-content-sha256;x-amz-date")
    }

    @Test func sessionTokenIsAddedAndSigned() throws {
        let headers = try sign(Self.signer(token: "tok/en+=="), "https://b.s3.amazonaws.com/k")
        #expect(headers.first { $0.name == "X-Amz-Security-Token" }?.value == "tok/en+==")
        #expect(Self.signedHeaders(headers) == "host;x-amz-content-sha256;x-amz-date;x-amz-security-token")

        let empty = try sign(Self.signer(token: ""), "https://b.s3.amazonaws.com/k")
        #expect(!empty.contains { $0.name == "X-Amz-Security-Token" })
    }

    @Test func payloadHashes() {
        #expect(
            SigV4Payload.bytes([]).hashValueForSigning
                == SigV4Payload.bytes(Array("".utf8)).hashValueForSigning)
        #expect(
            SigV4Payload.bytes(Array("abc".utf8)).hashValueForSigning
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SigV4Payload.unsigned.hashValueForSigning == "UNSIGNED-PAYLOAD")
        #expect(SigV4Payload.precomputed(hexSHA256: "ABCDEF").hashValueForSigning == "abcdef")
    }

    // MARK: Canonical request pieces

    @Test func unsignedHeadersAreLeftOut() throws {
        let headers = [
            "User-Agent", "Expect", "Connection", "Keep-Alive", "Transfer-Encoding", "X-Amzn-Trace-Id", "TE",
            "Upgrade", "Trailer", "Proxy-Authorization", "Authorization",
        ].map { HTTPHeader($0, "x") }
        let signed = try sign(
            Self.signer(), "https://b.s3.amazonaws.com/k", headers: headers + [HTTPHeader("Accept", "*/*")])
        #expect(Self.signedHeaders(signed) == "accept;host;x-amz-content-sha256;x-amz-date")
    }

    @Test func givenHeadersWithGeneratedNamesAreReplaced() throws {
        let headers = [
            HTTPHeader("x-amz-date", "19990101T000000Z"), HTTPHeader("X-Amz-Content-SHA256", "bogus"),
            HTTPHeader("X-Amz-Security-Token", "stale"),
        ]
        let lines = try canonical(
            Self.signer(token: "fresh"), "https://b.s3.amazonaws.com/k", headers: headers)
        #expect(lines.contains("x-amz-date:20150830T123600Z"))
        #expect(lines.contains("x-amz-security-token:fresh"))
        #expect(!lines.contains { $0.contains("bogus") || $0.contains("stale") || $0.contains("1999") })
    }

    @Test func headerValuesAreTrimmedCollapsedAndJoined() throws {
        let headers = [
            HTTPHeader("X-Amz-Meta-A", "  one   two\t\tthree  "), HTTPHeader("x-amz-meta-b", "first"),
            HTTPHeader("X-AMZ-META-B", " second "), HTTPHeader("x-amz-meta-empty", "   "),
        ]
        let lines = try canonical(Self.signer(), "https://b.s3.amazonaws.com/k", headers: headers)
        #expect(lines.contains("x-amz-meta-a:one two three"))
        #expect(lines.contains("x-amz-meta-b:first,second"))
        #expect(lines.contains("x-amz-meta-empty:"))
    }

    @Test(arguments: [
        ("https://b.s3.amazonaws.com/k", "b.s3.amazonaws.com"),
        ("https://b.s3.amazonaws.com:443/k", "b.s3.amazonaws.com"),
        ("http://localhost:80/k", "localhost"),
        ("http://127.0.0.1:5000/k", "127.0.0.1:5000"),
        ("https://example.com:80/k", "example.com:80"),
        ("http://[::1]:9000/k", "[::1]:9000"),
    ])
    func hostIsDerivedFromTheURL(url: String, host: String) throws {
        let lines = try canonical(Self.signer(), url)
        #expect(lines.contains("host:\(Substring(host))"))
    }

    @Test func explicitHostHeaderWins() throws {
        let lines = try canonical(
            Self.signer(), "http://127.0.0.1:5000/k", headers: [HTTPHeader("Host", "b.s3.amazonaws.com")])
        #expect(lines.contains("host:b.s3.amazonaws.com"))
        #expect(!lines.contains("host:127.0.0.1:5000"))
    }

    @Test(arguments: [
        ("https://b.s3.amazonaws.com", "/"),
        ("https://b.s3.amazonaws.com/", "/"),
        ("https://b.s3.amazonaws.com/a+b", "/a%2Bb"),
        ("https://b.s3.amazonaws.com/a%2Bb", "/a%2Bb"),
        ("https://b.s3.amazonaws.com/a%20b/c:d@e!f", "/a%20b/c%3Ad%40e%21f"),
        ("https://b.s3.amazonaws.com/x%25y_2f~z", "/x%25y_2f~z"),
        ("https://b.s3.amazonaws.com/a//b/./c/../d/", "/a//b/./c/../d/"),
        ("https://b.s3.amazonaws.com/zo%C3%AB", "/zo%C3%AB"),
        ("https://b.s3.amazonaws.com/zo%c3%ab", "/zo%C3%AB"),
    ])
    func s3PathIsEncodedOnceAndNotNormalised(url: String, expected: String) throws {
        #expect(try canonical(Self.signer("s3"), url)[1] == Substring(expected))
    }

    @Test(arguments: [
        ("https://h.example.com", "/"),
        ("https://h.example.com/", "/"),
        ("https://h.example.com/a//b/./c/../d/", "/a/b/d/"),
        ("https://h.example.com/a/..", "/"),
        ("https://h.example.com/../../a", "/a"),
        ("https://h.example.com/a%20b/c:d", "/a%2520b/c%3Ad"),
        ("https://h.example.com/a+b~c", "/a%2Bb~c"),
    ])
    func otherPathsAreNormalisedAndEncodedTwice(url: String, expected: String) throws {
        #expect(try canonical(Self.signer("execute-api"), url)[1] == Substring(expected))
    }

    @Test(arguments: [
        ("https://h/?", ""),
        ("https://h/?b=2&a=1", "a=1&b=2"),
        ("https://h/?a=2&a=10&a=1", "a=1&a=10&a=2"),
        ("https://h/?acl", "acl="),
        ("https://h/?x=&y", "x=&y="),
        ("https://h/?a=b=c", "a=b%3Dc"),
        ("https://h/?p=a%2Fb%20c+d~e", "p=a%2Fb%20c%2Bd~e"),
        ("https://h/?Z=1&a=1&_=1", "Z=1&_=1&a=1"),
        ("https://h/?a=1&&b=2", "a=1&b=2"),
        ("https://h/?k%20ey=%E2%82%AC", "k%20ey=%E2%82%AC"),
    ])
    func canonicalQueryString(url: String, expected: String) throws {
        #expect(try canonical(Self.signer(), url)[2] == Substring(expected))
    }

    @Test func uriEncode() {
        #expect(SigV4Signer.uriEncode("a/b c+d=é~_.-") == "a%2Fb%20c%2Bd%3D%C3%A9~_.-")
        #expect(SigV4Signer.uriEncode("a/b c", encodeSlash: false) == "a/b%20c")
    }

    @Test func signatureChangesWithEverySignedInput() throws {
        let base = Self.authorization(try sign(Self.signer(), "https://b.s3.amazonaws.com/k"))
        var variants: Set<String> = [base]
        variants.insert(
            Self.authorization(try sign(Self.signer(), "https://b.s3.amazonaws.com/k", method: "PUT")))
        variants.insert(Self.authorization(try sign(Self.signer(), "https://b.s3.amazonaws.com/k2")))
        variants.insert(Self.authorization(try sign(Self.signer(), "https://b.s3.amazonaws.com/k?a=1")))
        variants.insert(
            Self.authorization(
                try sign(Self.signer(), "https://b.s3.amazonaws.com/k", headers: [HTTPHeader("A", "1")])))
        variants.insert(
            Self.authorization(try sign(Self.signer(), "https://b.s3.amazonaws.com/k", payload: .unsigned)))
        var other = Self.signer()
        other.region = "eu-west-1"
        variants.insert(Self.authorization(try sign(other, "https://b.s3.amazonaws.com/k")))
        other = Self.signer()
        other.credentials.secretAccessKey = "another"
        variants.insert(Self.authorization(try sign(other, "https://b.s3.amazonaws.com/k")))
        #expect(variants.count == 8)
    }

    @Test func signingIsThreadSafeAndTheKeyCacheFollowsTheDay() async throws {
        let signer = Self.signer("dynamodb")
        let url = try #require(URL(string: "https://dynamodb.us-east-1.amazonaws.com/"))
        let days = (0..<5).map { Self.date.addingTimeInterval(Double($0) * 86_400) }
        let expected = days.map {
            Self.authorization(
                Self.signer("dynamodb").signHeaders(
                    method: "POST", url: url, headers: [], payload: .bytes([1]), date: $0))
        }
        #expect(Set(expected).count == days.count)
        let results = await withTaskGroup(of: (Int, String).self) { group in
            for i in 0..<200 {
                group.addTask {
                    let index = i % days.count
                    let headers = signer.signHeaders(
                        method: "POST", url: url, headers: [], payload: .bytes([1]), date: days[index])
                    return (index, Self.authorization(headers))
                }
            }
            var all: [(Int, String)] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(results.count == 200)
        for (index, authorization) in results { #expect(authorization == expected[index]) }
    }

    // MARK: Presigned URLs

    @Test(arguments: [0, -1, 604_801])
    func presignRejectsBadExpiry(expires: Int) throws {
        let url = try #require(URL(string: "https://b.s3.amazonaws.com/k"))
        let error = #expect(throws: SigningError.self) {
            try Self.signer().presignURL(method: "GET", url: url, expires: expires, date: Self.date)
        }
        #expect(error?.kind == .invalidExpiry)
        #expect(error?.description.contains("\(expires)") == true)
    }

    @Test func presignAcceptsBounds() throws {
        let url = try #require(URL(string: "https://b.s3.amazonaws.com/k"))
        for expires in [1, 604_800] {
            let signed = try Self.signer().presignURL(
                method: "GET", url: url, expires: expires, date: Self.date)
            #expect(signed.query()?.contains("X-Amz-Expires=\(expires)&") == true)
        }
    }

    @Test func presignRejectsSignedOrHostlessURLs() throws {
        let signed = try #require(URL(string: "https://b.s3.amazonaws.com/k?x-amz-signature=abc"))
        #expect(throws: SigningError.self) {
            try Self.signer().presignURL(method: "GET", url: signed, expires: 60, date: Self.date)
        }
        let relative = try #require(URL(string: "/just/a/path"))
        let error = #expect(throws: SigningError.self) {
            try Self.signer().presignURL(method: "GET", url: relative, expires: 60, date: Self.date)
        }
        #expect(error?.kind == .invalidURL)
    }

    @Test func presignedURLKeepsPathAndQueryAndAppendsSignatureLast() throws {
        let url = try #require(URL(string: "https://b.s3.amazonaws.com/a%20b/c%2Bd?versionId=x%2Fy"))
        let signed = try Self.signer(token: "t").presignURL(
            method: "GET", url: url, expires: 60, date: Self.date)
        #expect(signed.path(percentEncoded: true) == "/a%20b/c%2Bd")
        let query = try #require(signed.query(percentEncoded: true))
        #expect(query.hasPrefix("versionId=x%2Fy&X-Amz-Algorithm=AWS4-HMAC-SHA256&"))
        #expect(query.contains("&X-Amz-Security-Token=t&"))
        let last = try #require(query.split(separator: "&").last)
        #expect(last.hasPrefix("X-Amz-Signature="))
        #expect(last.count == "X-Amz-Signature=".count + 64)
    }

    @Test func errorDescriptionIsOneLine() {
        let error = SigningError(.invalidExpiry, "expiry 0s is outside 1...604800 seconds (7 days)")
        #expect(!error.description.contains("\n"))
        #expect(error.description.hasPrefix("SigningError: "))
    }
}
