import AWSSigning
import Foundation

/// The task role's credentials from the ECS container agent (also EKS Pod Identity and Greengrass):
/// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (appended to http://169.254.170.2) or
/// AWS_CONTAINER_CREDENTIALS_FULL_URI, with an Authorization header from
/// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (read again on every call) or
/// AWS_CONTAINER_AUTHORIZATION_TOKEN.
///
/// As in the AWS SDKs, a full URI over plain http must name a loopback host, 169.254.170.2 (ECS),
/// 169.254.170.23 or fd00:ec2::23 (EKS Pod Identity); https may name any host.
public struct ECSCredentialProvider: CredentialProvider {
    public static let source = "ECS container"
    public static let relativeURIBase = "http://169.254.170.2"
    public let environment: [String: String]
    public let transport: any HTTPTransport
    public var timeout: Duration
    public var maxAttempts: Int
    public var retryDelay: Duration

    public init(
        environment: [String: String], transport: any HTTPTransport, timeout: Duration = .seconds(2),
        maxAttempts: Int = 3, retryDelay: Duration = .milliseconds(200)
    ) {
        self.environment = environment
        self.transport = transport
        self.timeout = timeout
        self.maxAttempts = maxAttempts
        self.retryDelay = retryDelay
    }

    /// The credentials URL the environment names. Throws `.notConfigured` when neither variable is
    /// set and `.invalidConfiguration` for a malformed or disallowed URL.
    public static func endpoint(environment: [String: String]) throws -> URL {
        if let relative = environmentValue(environment, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            let path = relative.hasPrefix("/") ? relative : "/" + relative
            guard let url = URL(string: relativeURIBase + path), url.host == "169.254.170.2" else {
                throw CredentialsError(
                    .invalidConfiguration, source: source,
                    problem:
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI '\(oneLine(relative, limit: 100))' is not a URL path",
                    fix: "set it to a path such as /v2/credentials/ID, as the ECS agent does")
            }
            return url
        }
        guard let full = environmentValue(environment, "AWS_CONTAINER_CREDENTIALS_FULL_URI") else {
            throw CredentialsError(
                .notConfigured, source: source, problem: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI unset")
        }
        let fix =
            "use https, or an http URL on a loopback address, 169.254.170.2, 169.254.170.23 or [fd00:ec2::23]"
        guard let url = URL(string: full), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            let host = hostName(url), !host.isEmpty
        else {
            throw CredentialsError(
                .invalidConfiguration, source: source,
                problem:
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI '\(oneLine(full, limit: 100))' is not an http(s) URL",
                fix: fix)
        }
        if scheme == "http" && !isAllowedHTTPHost(host) {
            throw CredentialsError(
                .invalidConfiguration, source: source,
                problem: "AWS_CONTAINER_CREDENTIALS_FULL_URI host '\(host)' is not allowed over http",
                fix: fix)
        }
        return url
    }

    /// The host without IPv6 brackets, lower-cased.
    static func hostName(_ url: URL) -> String? {
        guard var host = URLComponents(url: url, resolvingAgainstBaseURL: false)?.host ?? url.host else {
            return nil
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.lowercased()
    }

    static func isAllowedHTTPHost(_ host: String) -> Bool {
        if ["169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost", "::1", "0:0:0:0:0:0:0:1"]
            .contains(host)
        {
            return true
        }
        // 127.0.0.0/8
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The Authorization header value, if one is configured.
    func authorization() throws -> String? {
        var value: String?
        if let file = environmentValue(environment, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            let path = expandingTilde(file, environment: environment) ?? file
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CredentialsError(
                    .providerFailed, source: Self.source,
                    problem: "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(path)",
                    fix: "check the token volume is mounted")
            }
            value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            value = environmentValue(environment, "AWS_CONTAINER_AUTHORIZATION_TOKEN")
        }
        // By Unicode scalars: "\r\n" is one Character, equal to neither "\r" nor "\n".
        if let value, CredentialProviderChain.firstControlCharacter(in: value) != nil {
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "the authorization token contains a line break or another control character",
                fix: "check AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)")
        }
        return value.flatMap { $0.isEmpty ? nil : $0 }
    }

    public func credentials() async throws -> AWSCredentials {
        let url = try Self.endpoint(environment: environment)
        var headers = [HTTPHeader("Accept", "application/json")]
        if let auth = try authorization() { headers.append(HTTPHeader("Authorization", auth)) }
        let request = HTTPRequest(method: "GET", url: url, headers: headers)
        let fix = "check the task role (taskRoleArn) and that the container credentials endpoint is reachable"
        // The URL without its query, which may carry a secret.
        var bare = URLComponents(url: url, resolvingAgainstBaseURL: false)
        bare?.query = nil
        let shown = bare?.string ?? url.absoluteString
        switch try await sendRetrying(
            request, transport: transport, timeout: timeout, attempts: maxAttempts, delay: retryDelay)
        {
        case .transportFailure(let error, let attempts):
            throw CredentialsError(
                .providerFailed, source: Self.source,
                problem: "\(shown) did not answer (\(describeAttempts(attempts))): "
                    + describeTransportError(error),
                fix: fix, isTransient: true)
        case .response(let response, let attempts):
            guard response.status == 200 else {
                throw CredentialsError(
                    .providerFailed, source: Self.source,
                    problem: "\(shown) answered HTTP \(response.status)"
                        + (attempts > 1 ? " after \(describeAttempts(attempts))" : "")
                        + (response.body.isEmpty ? "" : ": " + SecretRedaction.excerpt(response.body)),
                    fix: fix, isTransient: isTransientAnswer(response))
            }
            return try CredentialsDocument.parse(response.body, source: Self.source, fix: fix)
        }
    }
}
