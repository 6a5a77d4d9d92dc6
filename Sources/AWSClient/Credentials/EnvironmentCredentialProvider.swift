import AWSSigning
import Foundation

/// Long-term or temporary keys from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
public struct EnvironmentCredentialProvider: CredentialProvider {
    public static let source = "environment"
    public let environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    public func credentials() async throws -> AWSCredentials {
        try resolve()
    }

    /// The same, synchronously.
    public func resolve() throws -> AWSCredentials {
        let key = environmentValue(environment, "AWS_ACCESS_KEY_ID")
        let secret = environmentValue(environment, "AWS_SECRET_ACCESS_KEY")
        switch (key, secret) {
        case (let key?, let secret?):
            return AWSCredentials(
                accessKeyID: key, secretAccessKey: secret,
                sessionToken: environmentValue(environment, "AWS_SESSION_TOKEN"))
        case (nil, nil):
            throw CredentialsError(.notConfigured, source: Self.source, problem: "AWS_ACCESS_KEY_ID unset")
        case (nil, _):
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is unset",
                fix: "set AWS_ACCESS_KEY_ID too, or unset AWS_SECRET_ACCESS_KEY")
        case (_, nil):
            throw CredentialsError(
                .invalidConfiguration, source: Self.source,
                problem: "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is unset",
                fix: "set AWS_SECRET_ACCESS_KEY too, or unset AWS_ACCESS_KEY_ID")
        }
    }
}
