import AWSSigning
import Foundation

/// Temporary credentials for a role assumed with an OIDC token file, as on EKS (IAM roles for
/// service accounts): AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and optionally
/// AWS_ROLE_SESSION_NAME. Calls STS `AssumeRoleWithWebIdentity` (unsigned) at AWS_ENDPOINT_URL_STS,
/// AWS_ENDPOINT_URL, or the regional endpoint `https://sts.{region}.amazonaws.com` (the region from
/// AWS_REGION / AWS_DEFAULT_REGION; the global endpoint when neither is set). The token file is
/// read again on every call, since the kubelet rotates it.
public struct WebIdentityCredentialProvider: CredentialProvider {
    public static let source = "web identity"
    public let environment: [String: String]
    public let transport: any HTTPTransport
    public var timeout: Duration
    public var maxAttempts: Int
    public var retryDelay: Duration
    /// The session duration asked of STS; nil leaves STS's default (one hour).
    public var durationSeconds: Int?

    public init(
        environment: [String: String], transport: any HTTPTransport, timeout: Duration = .seconds(5),
        maxAttempts: Int = 3, retryDelay: Duration = .milliseconds(200), durationSeconds: Int? = nil
    ) {
        self.environment = environment
        self.transport = transport
        self.timeout = timeout
        self.maxAttempts = maxAttempts
        self.retryDelay = retryDelay
        self.durationSeconds = durationSeconds
    }

    /// The STS endpoint this provider calls.
    public func stsEndpoint() throws -> URL {
        do {
            if let explicit = try AWSConfiguration.configuredEndpoint(
                service: "sts", environment: environment)
            {
                return explicit
            }
        } catch let error as AWSConfigurationError {
            throw CredentialsError(.invalidConfiguration, source: Self.source, problem: error.description)
        }
        let region =
            environmentValue(environment, "AWS_REGION") ?? environmentValue(environment, "AWS_DEFAULT_REGION")
        guard let region else { return URL(string: "https://sts.amazonaws.com")! }
        guard AWSConfiguration.isValidRegion(region) else {
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "invalid region '\(oneLine(region, limit: 60))'",
                fix: "set AWS_REGION to a region name such as eu-west-1")
        }
        return AWSConfiguration.defaultEndpoint(service: "sts", region: region)
    }

    public func credentials() async throws -> AWSCredentials {
        let roleARN = environmentValue(environment, "AWS_ROLE_ARN")
        let tokenFile = environmentValue(environment, "AWS_WEB_IDENTITY_TOKEN_FILE")
        guard let roleARN, let tokenFile else {
            let problem =
                switch (roleARN, tokenFile) {
                case (nil, nil): "AWS_ROLE_ARN unset"
                case (nil, _): "AWS_WEB_IDENTITY_TOKEN_FILE set but AWS_ROLE_ARN unset"
                default: "AWS_ROLE_ARN set but AWS_WEB_IDENTITY_TOKEN_FILE unset"
                }
            throw CredentialsError(.notConfigured, source: Self.source, problem: problem)
        }
        guard roleARN.hasPrefix("arn:") else {
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "AWS_ROLE_ARN '\(oneLine(roleARN, limit: 80))' is not an ARN",
                fix: "set it to a role ARN such as arn:aws:iam::123456789012:role/carbonstore")
        }
        let sessionName = environmentValue(environment, "AWS_ROLE_SESSION_NAME") ?? Self.defaultSessionName()
        guard Self.isValidSessionName(sessionName) else {
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "AWS_ROLE_SESSION_NAME '\(oneLine(sessionName, limit: 80))' is invalid",
                fix: "use 2 to 64 characters from letters, digits and =,.@_-")
        }
        let path = expandingTilde(tokenFile, environment: environment) ?? tokenFile
        guard let data = FileManager.default.contents(atPath: path) else {
            let missing = !FileManager.default.fileExists(atPath: path)
            throw CredentialsError(
                .providerFailed, source: Self.source,
                problem:
                    "cannot read AWS_WEB_IDENTITY_TOKEN_FILE \(path) (\(missing ? "file not found" : "unreadable"))",
                fix: "check the service account token volume is mounted")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else {
            throw CredentialsError(
                .providerFailed, source: Self.source, problem: "token file \(path) is empty",
                fix: "check the service account token volume is mounted")
        }

        let endpoint = try stsEndpoint()
        var form = [
            ("Action", "AssumeRoleWithWebIdentity"), ("Version", "2011-06-15"), ("RoleArn", roleARN),
            ("RoleSessionName", sessionName), ("WebIdentityToken", token),
        ]
        if let durationSeconds { form.append(("DurationSeconds", String(durationSeconds))) }
        let request = HTTPRequest(
            method: "POST", url: endpoint,
            headers: [
                HTTPHeader("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
                HTTPHeader("Accept", "text/xml"),
            ],
            body: Array(formEncode(form).utf8))
        let fix = "check the role's trust policy allows this service account, and AWS_ROLE_ARN"
        // STS answers IDPCommunicationError when the identity provider is briefly unreachable.
        let outcome = try await sendRetrying(
            request, transport: transport, timeout: timeout, attempts: maxAttempts, delay: retryDelay,
            retryStatus: {
                isTransientAnswer($0) || xmlElementText("Code", in: $0.bodyText) == "IDPCommunicationError"
            })
        switch outcome {
        case .transportFailure(let error, let attempts):
            throw CredentialsError(
                .providerFailed, source: Self.source,
                problem: "STS at \(endpoint.absoluteString) did not answer (\(describeAttempts(attempts))): "
                    + describeTransportError(error),
                fix: "check network access to STS, or set AWS_ENDPOINT_URL_STS", isTransient: true)
        case .response(let response, let attempts):
            let body = response.bodyText
            guard response.status == 200 else {
                let code = xmlElementText("Code", in: body)
                let message = xmlElementText("Message", in: body)
                let detail = [code, message].compactMap { $0 }.joined(separator: ": ")
                // Throttling, a server error or the identity provider out of reach: try again later;
                // anything else is the role's or the token's.
                let transient = isTransientAnswer(response) || code == "IDPCommunicationError"
                throw CredentialsError(
                    .providerFailed, source: Self.source,
                    problem:
                        "STS AssumeRoleWithWebIdentity for \(roleARN) failed with HTTP \(response.status)"
                        + (attempts > 1 ? " after \(describeAttempts(attempts))" : "")
                        + (detail.isEmpty ? "" : " (\(oneLine(SecretRedaction.redact(detail))))"),
                    fix: transient ? "STS is throttling or unavailable: try again later" : fix,
                    isTransient: transient)
            }
            return try Self.parseResponse(body, fix: fix)
        }
    }

    /// Parses the XML of a successful AssumeRoleWithWebIdentity (or AssumeRole) answer.
    static func parseResponse(_ body: String, fix: String) throws -> AWSCredentials {
        // AccessKeyId, SecretAccessKey, SessionToken and Expiration occur only in <Credentials>.
        let credentials = body
        guard body.contains("<Credentials>"),
            let key = xmlElementText("AccessKeyId", in: credentials), !key.isEmpty,
            let secret = xmlElementText("SecretAccessKey", in: credentials), !secret.isEmpty,
            let token = xmlElementText("SessionToken", in: credentials), !token.isEmpty
        else {
            throw CredentialsError(
                .providerFailed, source: source,
                problem:
                    "STS answer lacks Credentials/AccessKeyId, SecretAccessKey or SessionToken; it begins: "
                    + SecretRedaction.excerpt(Array(body.utf8)), fix: fix)
        }
        var expiration: Date?
        if let text = xmlElementText("Expiration", in: credentials) {
            guard let date = parseISO8601(text) else {
                throw CredentialsError(
                    .providerFailed, source: source,
                    problem:
                        "STS answer's Expiration '\(oneLine(SecretRedaction.redact(text), limit: 40))' is not an ISO 8601 time",
                    fix: fix)
            }
            expiration = date
        }
        return AWSCredentials(
            accessKeyID: key, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }

    static func defaultSessionName() -> String {
        "carbonstore-\(Int64(Date().timeIntervalSince1970 * 1000))"
    }

    static func isValidSessionName(_ name: String) -> Bool {
        (2...64).contains(name.count)
            && name.unicodeScalars.allSatisfy {
                $0.isASCII
                    && (CharacterSet.alphanumerics.contains($0) || "=,.@_-+".unicodeScalars.contains($0))
            }
    }
}
