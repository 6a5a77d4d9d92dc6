import AWSSigning
import Foundation

/// The instance role's credentials from EC2 instance metadata (IMDSv2): a session token from
/// `PUT /latest/api/token`, then the role name from `/latest/meta-data/iam/security-credentials/`
/// and its credentials from `.../ROLE`. The endpoint is http://169.254.169.254 (or
/// http://[fd00:ec2::254] when AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6), or
/// AWS_EC2_METADATA_SERVICE_ENDPOINT. AWS_EC2_METADATA_DISABLED=true turns it off.
///
/// Timeouts are short (1 s) with one retry, so a machine outside EC2 fails fast; no answer counts
/// as "not configured", so a chain reports every source it tried.
public struct InstanceMetadataCredentialProvider: CredentialProvider {
    public static let source = "EC2 instance metadata"
    public let environment: [String: String]
    public let transport: any HTTPTransport
    public var timeout: Duration
    public var maxAttempts: Int
    /// The lifetime asked for the IMDSv2 session token.
    public var tokenTTLSeconds: Int

    public init(
        environment: [String: String], transport: any HTTPTransport, timeout: Duration = .seconds(1),
        maxAttempts: Int = 2, tokenTTLSeconds: Int = 21_600
    ) {
        self.environment = environment
        self.transport = transport
        self.timeout = timeout
        self.maxAttempts = maxAttempts
        self.tokenTTLSeconds = tokenTTLSeconds
    }

    public var isDisabled: Bool { environmentFlag(environment, "AWS_EC2_METADATA_DISABLED") }

    /// The metadata service's base URL, without a trailing slash.
    public func endpoint() throws -> URL {
        if let configured = environmentValue(environment, "AWS_EC2_METADATA_SERVICE_ENDPOINT") {
            var text = configured
            while text.hasSuffix("/") { text.removeLast() }
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host != nil
            else {
                throw CredentialsError(
                    .invalidConfiguration, source: Self.source,
                    problem:
                        "AWS_EC2_METADATA_SERVICE_ENDPOINT '\(oneLine(configured, limit: 100))' is not an http(s) URL",
                    fix: "unset it, or set it to a URL such as http://169.254.169.254")
            }
            return url
        }
        switch environmentValue(environment, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")?.lowercased() {
        case nil, "ipv4": return URL(string: "http://169.254.169.254")!
        case "ipv6": return URL(string: "http://[fd00:ec2::254]")!
        case let other?:
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem:
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE '\(oneLine(other, limit: 20))' is neither IPv4 nor IPv6",
                fix: "set it to IPv4 or IPv6, or unset it")
        }
    }

    public func credentials() async throws -> AWSCredentials {
        let session = try await openSession()
        let listing = try await session.get("/latest/meta-data/iam/security-credentials/")
        guard listing.status == 200 else {
            if listing.status == 404 {
                throw CredentialsError(
                    .notConfigured, source: Self.source, problem: "the instance has no IAM role")
            }
            throw session.failure("listing the instance's role answered HTTP \(listing.status)", listing)
        }
        guard
            let role = listing.bodyText.split(whereSeparator: \.isNewline).first.map({
                $0.trimmingCharacters(in: .whitespaces)
            }), !role.isEmpty
        else {
            throw CredentialsError(
                .notConfigured, source: Self.source, problem: "the instance has no IAM role")
        }
        let encoded = role.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? role
        let answer = try await session.get("/latest/meta-data/iam/security-credentials/" + encoded)
        guard answer.status == 200 else {
            throw session.failure("the credentials of role '\(role)' answered HTTP \(answer.status)", answer)
        }
        return try CredentialsDocument.parse(
            answer.body, source: Self.source, fix: "check the instance profile's role '\(role)'")
    }

    /// The instance's region, from `/latest/meta-data/placement/region`.
    public func region() async throws -> String {
        let session = try await openSession()
        let answer = try await session.get("/latest/meta-data/placement/region")
        let region = answer.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard answer.status == 200, !region.isEmpty else {
            throw session.failure("the region lookup answered HTTP \(answer.status)", answer)
        }
        return region
    }

    /// An IMDS session: the base URL and the v2 token (nil when the service only speaks IMDSv1).
    struct Session {
        let provider: InstanceMetadataCredentialProvider
        let base: URL
        let token: String?

        func get(_ path: String) async throws -> HTTPResponse {
            var headers: [HTTPHeader] = []
            if let token { headers.append(HTTPHeader("X-aws-ec2-metadata-token", token)) }
            let request = HTTPRequest(
                method: "GET", url: URL(string: base.absoluteString + path)!, headers: headers)
            return try await provider.send(request)
        }

        func failure(_ problem: String, _ response: HTTPResponse) -> CredentialsError {
            CredentialsError(
                .providerFailed, source: InstanceMetadataCredentialProvider.source,
                problem: problem
                    + (response.body.isEmpty
                        ? "" : ": " + SecretRedaction.excerpt(response.body, limit: 160)),
                fix: "check the instance profile, or set AWS_EC2_METADATA_DISABLED=true off EC2")
        }
    }

    func openSession() async throws -> Session {
        if isDisabled {
            throw CredentialsError(
                .notConfigured, source: Self.source, problem: "AWS_EC2_METADATA_DISABLED=true")
        }
        let base = try endpoint()
        let request = HTTPRequest(
            method: "PUT", url: URL(string: base.absoluteString + "/latest/api/token")!,
            headers: [HTTPHeader("X-aws-ec2-metadata-token-ttl-seconds", String(tokenTTLSeconds))])
        let response = try await send(request)
        switch response.status {
        case 200:
            let token = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, !token.contains(where: \.isNewline) else {
                throw Session(provider: self, base: base, token: nil).failure(
                    "the IMDSv2 token is empty", response)
            }
            return Session(provider: self, base: base, token: token)
        case 404, 405:
            // An IMDSv1-only service (or a proxy that does not know PUT): go on without a token.
            return Session(provider: self, base: base, token: nil)
        case 403:
            throw Session(provider: self, base: base, token: nil).failure(
                "the IMDSv2 token request was refused (HTTP 403; IMDS may be turned off for this instance)",
                response)
        default:
            throw Session(provider: self, base: base, token: nil).failure(
                "the IMDSv2 token request answered HTTP \(response.status)", response)
        }
    }

    /// Sends with the short timeout and retries; no answer at all means "not on EC2".
    func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        switch try await sendRetrying(
            request, transport: transport, timeout: timeout, attempts: maxAttempts, delay: .zero)
        {
        case .response(let response, _):
            return response
        case .transportFailure(let error, let attempts):
            let host = request.url.host.map { h in request.url.port.map { "\(h):\($0)" } ?? h } ?? "?"
            let seconds = timeout.components.seconds
            let limit =
                seconds > 0 ? "\(seconds) s" : "\(timeout.components.attoseconds / 1_000_000_000_000_000) ms"
            throw CredentialsError(
                .notConfigured, source: Self.source,
                problem: "no answer from \(host) in \(limit), \(describeAttempts(attempts)): "
                    + describeTransportError(error))
        }
    }
}
