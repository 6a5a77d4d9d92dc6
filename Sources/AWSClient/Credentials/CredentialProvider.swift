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

    public init(_ kind: Kind, source: String, problem: String, fix: String? = nil) {
        self.kind = kind
        self.source = source
        self.problem = problem
        self.fix = fix
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
                return try await provider.credentials()
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
}
