import AWSSigning
import Foundation

/// Keys from the shared AWS files, as `aws configure` writes them.
///
/// - Profile: AWS_PROFILE, else `default`. A profile named by AWS_PROFILE must exist.
/// - Files: AWS_SHARED_CREDENTIALS_FILE (default `~/.aws/credentials`, sections `[name]`) and
///   AWS_CONFIG_FILE (default `~/.aws/config`, sections `[profile name]` and `[default]`).
/// - Keys: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`; the credentials file
///   wins over the config file for the same profile. `region` is read from the config file.
public struct ProfileCredentialProvider: CredentialProvider {
    public let environment: [String: String]
    /// The profile to read.
    public let profileName: String
    /// Whether the profile was named explicitly (AWS_PROFILE or the initialiser), so it must exist.
    public let profileIsExplicit: Bool
    /// The credentials file path, nil when it cannot be located (HOME unset).
    public let credentialsFilePath: String?
    /// The config file path, nil when it cannot be located (HOME unset).
    public let configFilePath: String?

    public init(environment: [String: String], profile: String? = nil) {
        self.environment = environment
        let named = profile ?? environmentValue(environment, "AWS_PROFILE")
        profileName = named ?? "default"
        profileIsExplicit = named != nil
        credentialsFilePath = expandingTilde(
            environmentValue(environment, "AWS_SHARED_CREDENTIALS_FILE") ?? "~/.aws/credentials",
            environment: environment)
        configFilePath = expandingTilde(
            environmentValue(environment, "AWS_CONFIG_FILE") ?? "~/.aws/config", environment: environment)
    }

    var source: String { "profile '\(profileName)'" }

    public func credentials() async throws -> AWSCredentials {
        try resolve()
    }

    /// The same, synchronously.
    public func resolve() throws -> AWSCredentials {
        let files = try loadFiles()
        let fromCredentials = files.credentials?.sections[profileName]
        let fromConfig = files.config?.sections[profileName]
        guard fromCredentials != nil || fromConfig != nil else {
            let problem: String
            if files.credentials == nil && files.config == nil {
                problem =
                    credentialsFilePath.map { "\($0) not found" }
                    ?? "no shared files (HOME, AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE unset)"
            } else {
                problem = "not in \(filesDescription)"
            }
            if profileIsExplicit {
                throw CredentialsError(
                    .invalidConfiguration, source: source, problem: "profile not found: \(problem)",
                    fix:
                        "add [\(profileName)] to \(credentialsFilePath ?? "~/.aws/credentials") or correct AWS_PROFILE"
                )
            }
            throw CredentialsError(.notConfigured, source: source, problem: problem)
        }
        // The credentials file wins when it holds a key for the profile.
        let (section, file): ([String: String], String) =
            if let c = fromCredentials,
                c["aws_access_key_id"] != nil || fromConfig?["aws_access_key_id"] == nil
            {
                (c, credentialsFilePath ?? "credentials file")
            } else {
                (fromConfig!, configFilePath ?? "config file")
            }
        let key = section["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = section["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (key, secret) {
        case (let key?, let secret?):
            let token = section["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
            return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token)
        case (_?, nil):
            throw CredentialsError(
                .invalidConfiguration, source: source,
                problem: "aws_secret_access_key missing in \(file)",
                fix: "add aws_secret_access_key to [\(profileName)]")
        case (nil, _?):
            throw CredentialsError(
                .invalidConfiguration, source: source,
                problem: "aws_access_key_id missing in \(file)",
                fix: "add aws_access_key_id to [\(profileName)]")
        case (nil, nil):
            let merged = (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { $1 }
            let unsupported = Self.unsupportedKeys.filter { merged[$0] != nil }
            if !unsupported.isEmpty {
                throw CredentialsError(
                    .invalidConfiguration, source: source,
                    problem:
                        "uses \(unsupported.joined(separator: ", ")), which CarbonStore does not support",
                    fix: "give the profile aws_access_key_id and aws_secret_access_key, or export the role's "
                        + "credentials (aws configure export-credentials --format env)")
            }
            // A profile holding only settings (region, output), named by AWS_PROFILE or not: other
            // sources (the container's or the instance's role) may apply, as in the SDKs.
            throw CredentialsError(
                .notConfigured, source: source, problem: "no aws_access_key_id in \(filesDescription)")
        }
    }

    /// Profile settings for credentials this provider cannot use.
    static let unsupportedKeys = [
        "role_arn", "source_profile", "credential_source", "credential_process", "sso_session",
        "sso_start_url",
        "web_identity_token_file",
    ]

    /// The profile's `region` from the config file, nil when the files, the profile or the key is
    /// absent (a missing profile is reported by `credentials()`, not here).
    public func region() -> String? {
        guard let config = try? loadFiles().config else { return nil }
        return config.sections[profileName]?["region"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The services that the profile's `services` setting gives endpoints to (the names of the
    /// nested settings in its `[services NAME]` section of the config file: `s3`, `dynamodb`, ...);
    /// nil when the profile has no `services` setting.
    public func servicesWithEndpoints() -> Set<String>? {
        guard let files = try? loadFiles(), let config = files.config,
            let name = config.sections[profileName]?["services"], !name.isEmpty
        else { return nil }
        let section = config.sections[SharedConfigFile.servicesSectionPrefix + name] ?? [:]
        return Set(section.keys)
    }

    /// A setting of the profile in the config file.
    public func configValue(_ key: String) -> String? {
        guard let config = try? loadFiles().config else { return nil }
        return config.sections[profileName]?[key.lowercased()].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Any setting of the profile: credentials file first, then config file.
    public func value(_ key: String) -> String? {
        guard let files = try? loadFiles() else { return nil }
        return files.credentials?.sections[profileName]?[key.lowercased()]
            ?? files.config?.sections[profileName]?[key.lowercased()]
    }

    private var filesDescription: String {
        [credentialsFilePath, configFilePath].compactMap { $0 }.joined(separator: " or ")
    }

    private func loadFiles() throws -> (credentials: SharedConfigFile?, config: SharedConfigFile?) {
        let credentials = try credentialsFilePath.flatMap {
            try SharedConfigFile.load(path: $0, kind: .credentials, source: source)
        }
        let config = try configFilePath.flatMap {
            try SharedConfigFile.load(path: $0, kind: .config, source: source)
        }
        return (credentials, config)
    }
}

/// A parsed `~/.aws/credentials` or `~/.aws/config` file: profile name → lower-cased key → value.
public struct SharedConfigFile: Sendable, Hashable {
    public enum Kind: Sendable {
        /// Sections are profile names: `[default]`, `[dev]`.
        case credentials
        /// Sections are `[default]` and `[profile name]`; others (`[sso-session x]`) are ignored.
        case config
    }

    public var sections: [String: [String: String]]

    public init(sections: [String: [String: String]]) {
        self.sections = sections
    }

    /// Reads the file; nil when it does not exist.
    static func load(path: String, kind: Kind, source: String) throws -> SharedConfigFile? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CredentialsError(
                .invalidConfiguration, source: source, problem: "cannot read \(path)",
                fix: "check the file's permissions")
        }
        return parse(String(decoding: data, as: UTF8.self), kind: kind)
    }

    /// Parses INI text tolerantly: `#` and `;` comments (whole lines, or after whitespace), blank
    /// lines, whitespace around names, `key = value` or `key=value`. Indented lines below a key
    /// with an empty value (nested settings such as `s3 =`) are skipped. Repeated sections merge.
    public static func parse(_ text: String, kind: Kind) -> SharedConfigFile {
        var sections: [String: [String: String]] = [:]
        var current: String?
        var inNested = false
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            let indented = rawLine.first == " " || rawLine.first == "\t"
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                inNested = false
                guard let close = line.firstIndex(of: "]") else {
                    current = nil
                    continue
                }
                let name = line[line.index(after: line.startIndex)..<close]
                    .split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
                current = profileName(section: name, kind: kind)
                if let current, sections[current] == nil { sections[current] = [:] }
                continue
            }
            guard let profile = current else { continue }
            if indented && inNested { continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = String(line[line.index(after: eq)...])
            value = stripInlineComment(value).trimmingCharacters(in: .whitespaces)
            if key.isEmpty { continue }
            inNested = value.isEmpty
            if value.isEmpty && sections[profile]?[key] != nil { continue }
            sections[profile, default: [:]][key] = value
        }
        return SharedConfigFile(sections: sections)
    }

    private static func profileName(section: String, kind: Kind) -> String? {
        switch kind {
        case .credentials:
            return section.isEmpty ? nil : section
        case .config:
            if section == "default" { return "default" }
            // `[services NAME]`: kept under a name no profile can have, for `servicesNamed`.
            if section.hasPrefix("services ") {
                let name = section.dropFirst("services ".count).trimmingCharacters(in: .whitespaces)
                return name.isEmpty ? nil : servicesSectionPrefix + name
            }
            if section.hasPrefix("profile ") {
                let name = section.dropFirst("profile ".count).trimmingCharacters(in: .whitespaces)
                return name.isEmpty ? nil : name
            }
            return nil
        }
    }

    /// The key under which `[services NAME]` sections are kept (a control character: no profile's name).
    static let servicesSectionPrefix = "\u{1}services "

    /// Drops ` # comment` / ` ; comment` (a comment mark preceded by whitespace).
    private static func stripInlineComment(_ value: String) -> String {
        var previous: Character = " "
        var index = value.startIndex
        var sawText = false
        while index < value.endIndex {
            let c = value[index]
            if (c == "#" || c == ";") && sawText && (previous == " " || previous == "\t") {
                return String(value[..<index])
            }
            if c != " " && c != "\t" { sawText = true }
            previous = c
            index = value.index(after: index)
        }
        return value
    }
}
