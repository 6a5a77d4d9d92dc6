import AWSSigning
import Foundation

/// Something that produces AWS credentials: the environment, a profile, a metadata service.
public protocol CredentialProvider: Sendable {
    func credentials() async throws -> AWSCredentials
}

/// Why credentials could not be had, in one line: the source, what is wrong, and how to fix it.
public struct CredentialsError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The source is not set up here (its variables are unset, its file is absent, no metadata
        /// service answers): a chain moves on to the next source.
        case notConfigured
        /// The source is set up but wrongly (half a key pair, a missing named profile, a bad URL).
        case invalidConfiguration
        /// The source is set up but did not deliver (HTTP error, unparseable answer).
        case providerFailed
        /// No source in a chain is set up.
        case noCredentials
    }

    public var kind: Kind
    /// The source, e.g. "environment", "profile 'dev'", "ECS container".
    public var source: String
    /// What is wrong. For `.notConfigured`, a short reason such as "AWS_ACCESS_KEY_ID unset".
    public var problem: String
    /// How to fix it, if there is a useful hint.
    public var fix: String?
    /// The source is set up and may deliver later: it did not answer, or answered with a server
    /// error or throttling after its retries. Other failures need a change of configuration.
    public var isTransient: Bool

    public init(_ kind: Kind, source: String, problem: String, fix: String? = nil, isTransient: Bool = false)
    {
        self.kind = kind
        self.source = source
        self.problem = problem
        self.fix = fix
        self.isTransient = isTransient
    }

    public var description: String {
        let head: String
        switch kind {
        case .noCredentials: head = problem
        case .notConfigured: head = "AWS credentials from \(source) not configured: \(problem)"
        case .invalidConfiguration, .providerFailed: head = "AWS credentials from \(source): \(problem)"
        }
        // Values of secret-named fields never leave in a message, whatever put them in `problem`.
        return oneLine(
            SecretRedaction.redact(fix.map { head + "; " + $0 } ?? head, bySecretShape: false), limit: 2000)
    }
}

/// Credentials fixed at construction (tests, explicit keys).
public struct StaticCredentialProvider: CredentialProvider {
    public let value: AWSCredentials

    public init(_ credentials: AWSCredentials) { value = credentials }

    public func credentials() async throws -> AWSCredentials { value }
}

/// Tries providers in order. A provider that is not configured (its `CredentialsError.kind` is
/// `.notConfigured`) passes to the next; any other error stops the chain, as the AWS SDKs do, so a
/// broken profile or a failing container endpoint is reported rather than silently skipped.
public struct CredentialProviderChain: CredentialProvider {
    public let providers: [any CredentialProvider]

    public init(_ providers: [any CredentialProvider]) {
        self.providers = providers
    }

    /// The AWS SDK order: environment variables, web identity (EKS service account), shared
    /// profile files, ECS container endpoint, EC2 instance metadata.
    public static func standard(environment: [String: String], transport: any HTTPTransport)
        -> CredentialProviderChain
    {
        CredentialProviderChain([
            EnvironmentCredentialProvider(environment: environment),
            WebIdentityCredentialProvider(environment: environment, transport: transport),
            ProfileCredentialProvider(environment: environment),
            ECSCredentialProvider(environment: environment, transport: transport),
            InstanceMetadataCredentialProvider(environment: environment, transport: transport),
        ])
    }

    public func credentials() async throws -> AWSCredentials {
        var tried: [String] = []
        for provider in providers {
            do {
                let found = try await provider.credentials()
                try Self.checkCharacters(of: found, from: provider)
                return found
            } catch let error as CredentialsError where error.kind == .notConfigured {
                tried.append("\(error.source) (\(error.problem))")
            }
        }
        throw CredentialsError(
            .noCredentials, source: "credential chain",
            problem: "no AWS credentials found: tried "
                + (tried.isEmpty ? "no sources" : tried.joined(separator: ", ")),
            fix: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    }

    /// Refuses credentials that no request can carry: a key id, secret or session token holding a
    /// control character (a line break in a token pasted from a wrapped terminal, say) would be
    /// refused by the HTTP client as a header value, which would quote the value, and retried as if
    /// the network had failed. The error names the value, never quotes it.
    static func checkCharacters(of credentials: AWSCredentials, from provider: any CredentialProvider) throws
    {
        let parts = [
            ("access key id", credentials.accessKeyID), ("secret access key", credentials.secretAccessKey),
            ("session token", credentials.sessionToken ?? ""),
        ]
        for (name, value) in parts {
            guard let at = firstControlCharacter(in: value) else { continue }
            throw CredentialsError(
                .invalidConfiguration, source: sourceName(of: provider),
                problem:
                    "the \(name) holds a control character (a line break?) at character \(at + 1) of \(value.unicodeScalars.count)",
                fix: "set it again as one line of printable characters")
        }
    }

    /// The position (in Unicode scalars) of the first C0 control character or DEL, if any.
    package static func firstControlCharacter(in value: String) -> Int? {
        value.unicodeScalars.firstIndex { $0.value < 0x20 || $0.value == 0x7F }.map {
            value.unicodeScalars.distance(from: value.unicodeScalars.startIndex, to: $0)
        }
    }

    static func sourceName(of provider: any CredentialProvider) -> String {
        switch provider {
        case is EnvironmentCredentialProvider: EnvironmentCredentialProvider.source
        case let p as ProfileCredentialProvider: p.source
        case is ECSCredentialProvider: ECSCredentialProvider.source
        case is InstanceMetadataCredentialProvider: InstanceMetadataCredentialProvider.source
        case is WebIdentityCredentialProvider: WebIdentityCredentialProvider.source
        default: "the credential provider"
        }
    }
}
